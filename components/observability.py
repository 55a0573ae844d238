"""Observability: GPU, model and cost metrics in one place.

Installed (pinned, module constants below): kube-prometheus-stack with only Prometheus, the Prometheus operator (and
its CRDs), kube-state-metrics and Grafana (node-exporter when `observability.nodeExporter`), all on the system nodes;
no Alertmanager, no default rules or dashboards, no scraping of the EKS control plane or kubelets. Prometheus keeps
`observability.retentionDays` on a gp3 volume of `storageGiB`; it picks up every ServiceMonitor, PodMonitor and
PrometheusRule in the cluster. Grafana's admin password is generated (`random.RandomPassword`) into the Secret
`grafana-admin` that the chart reads, so it is never in the Helm values or the build output.

Scraped: the DCGM exporter (the GPU operator's ServiceMonitor, components/gpu_operator.py), kube-state-metrics (the
chart's own), Karpenter (ServiceMonitor here) and the queue-proxy sidecar of every InferenceService pod (PodMonitor
here; Knative Serving 1.21 exports request metrics only when `config-observability` says
`request-metrics-protocol: prometheus`, which the serving component sets). Every metric name the dashboards and rules
use is listed with its source in components/data/metrics.yaml.

Recording rules (PrometheusRule `mlops-gpu-cost`) turn those series into GPU allocation and cost:
- constants generated from the data files: $/GPU-hour per (instance type, capacity type) from
  components/data/prices.yaml through `catalog.gpu_hour_price` (the same function `python -m preview cost` uses),
  GPUs per instance type, and the share of a physical GPU one unit of each pool's GPU resource is (a time-sliced
  replica: 1/replicas; a MIG slice: its compute slices / 7);
- per pod: GPU equivalents held by running pods (kube-state-metrics requests x share, on the node's pool), their
  $/hour (x the node's $/GPU-hour by instance type and spot/on-demand); summed per namespace (team) and per workload
  (InferenceService, training job, notebook); GPUs on nodes that no pod holds; GPUs held but idle (DCGM).
Dashboards (ConfigMaps labelled for Grafana's sidecar): GPUs, cost, models. Alerts: PrometheusRules `mlops-models`
(p99 above each model's `latencyP99Ms`, error rate) and `mlops-gpu-capacity` (a GPU NodePool at its limit while GPU
pods wait). The GPU waste alerts (idle, rightsizing) are the GPU operator component's `gpu-waste` rule.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import catalog, labels
from components.config import GpuPool, ObservabilityAlertsConfig, ObservabilityConfig, TeamConfig
from components.endpoints import MLFLOW, PROMETHEUS, ClusterAccess, MetricsScraper
from components.karpenter import NAMESPACE as KARPENTER_NAMESPACE

# ---- pinned versions, in one place
# kube-prometheus-stack 88.x ships prometheus-operator v0.93.0, the version of the CRD schemas the tests validate the
# ServiceMonitors, PodMonitors and PrometheusRules against.
KUBE_PROMETHEUS_STACK = {"chart": "kube-prometheus-stack", "repo": "https://prometheus-community.github.io/helm-charts",
                         "version": "88.2.0"}
PROMETHEUS_OPERATOR_VERSION = "v0.93.0"

NAMESPACE = PROMETHEUS.source.namespace          # "monitoring": where the team NetworkPolicies expect Prometheus
RELEASE = "kube-prometheus-stack"
GRAFANA_URL = f"http://{RELEASE}-grafana.{NAMESPACE}.svc.cluster.local"
GRAFANA_ADMIN_SECRET = "grafana-admin"
GRAFANA_ADMIN_USER = "admin"
DASHBOARD_LABEL = "grafana_dashboard"            # the Grafana chart's dashboard sidecar loads ConfigMaps with it
SYSTEM_NODES = {"kubernetes.io/os": "linux", labels.NODE_ROLE: "system"}
RULE_INTERVAL_SECONDS = 60                       # recording rules' interval: one sample per minute
RATE_WINDOW = "5m"
NAMESPACE_LABELS = {
    "pod-security.kubernetes.io/enforce": "baseline",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}

# Karpenter's chart Service `karpenter` (its selector labels; release name "karpenter", components/karpenter.py).
KARPENTER_SELECTOR = {"app.kubernetes.io/name": "karpenter", "app.kubernetes.io/instance": "karpenter"}
KARPENTER_METRICS_PORT = "http-metrics"
# Knative Serving's queue-proxy: request metrics on the container port `http-usermetric` (9091), only with this set.
QUEUE_PROXY_METRICS_PORT = "http-usermetric"
KNATIVE_OBSERVABILITY = {"request-metrics-protocol": "prometheus"}
INFERENCE_SERVICE_LABEL = "serving.kserve.io/inferenceservice"
TRAINING_JOB_LABEL = "training.kubeflow.org/job-name"      # Kubeflow training operator v1 (components/training.py)

# kube-state-metrics `--metric-labels-allowlist`: the Kubernetes labels the rules and dashboards join on.
KSM_LABEL_ALLOWLIST = {
    "namespaces": [labels.TEAM],
    "pods": [labels.TEAM, labels.JOB_TYPE, INFERENCE_SERVICE_LABEL, TRAINING_JOB_LABEL],
    "nodes": [labels.NODE_POOL, labels.GPU_TYPE, labels.CAPACITY_TYPE, "eks.amazonaws.com/capacityType",
              "node.kubernetes.io/instance-type"],
}


def ksm_label(name: str) -> str:
    """The Prometheus label kube-state-metrics gives an allowlisted Kubernetes label (`label_` + sanitized name)."""
    return "label_" + re.sub(r"[^a-zA-Z0-9_]", "_", name)


def ksm_resource(resource: str) -> str:
    """How kube-state-metrics writes an extended resource name in its `resource` label."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", resource)


TEAM_NAMESPACES = f'kube_namespace_labels{{{ksm_label(labels.TEAM)}!=""}}'


@dataclass(frozen=True)
class ObservabilityArgs:
    config: ObservabilityConfig
    access: ClusterAccess
    is_prod: bool
    teams: list[TeamConfig]                    # namespaces, GPU quotas and models (latency targets)
    gpu_pools: list[GpuPool]                   # config.gpu_pools(cfg): prices and GPU shares per pool
    gpu_idle_percent: int                      # gpu.alerts.idleUtilizationPercent: what "idle" means here too
    scraper: MetricsScraper = PROMETHEUS       # what the team NetworkPolicies admit; must be this Prometheus


class Observability(pulumi.ComponentResource):
    namespace: str
    chart_version: str
    grafana_url: str
    grafana_admin_secret: str
    dashboards: list[str]                      # dashboard uids
    alert_names: list[str]
    recording_rules: list[str]
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:observability:Observability", name, None, opts)
        _check_scraper(args.scraper)
        cfg = args.config
        provider = args.access.provider

        def after(*deps: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, provider=provider, depends_on=list(deps))

        ns_labels = dict(NAMESPACE_LABELS)
        if cfg.node_exporter:   # host network, PID and paths
            ns_labels["pod-security.kubernetes.io/enforce"] = "privileged"
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace", metadata=k8s.meta.v1.ObjectMetaArgs(name=NAMESPACE, labels=ns_labels),
            opts=after(*args.access.depends_on))

        password = random.RandomPassword(f"{name}-grafana-admin", length=32, special=False,
                                         opts=pulumi.ResourceOptions(parent=self))
        admin = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=GRAFANA_ADMIN_SECRET, namespace=NAMESPACE),
            type="Opaque",
            string_data={"admin-user": GRAFANA_ADMIN_USER, "admin-password": pulumi.Output.secret(password.result)},
            opts=after(namespace))

        self.release = k8s.helm.v3.Release(
            f"{name}-stack", name=RELEASE, chart=KUBE_PROMETHEUS_STACK["chart"],
            version=KUBE_PROMETHEUS_STACK["version"],
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=KUBE_PROMETHEUS_STACK["repo"]),
            namespace=NAMESPACE, values=helm_values(cfg, args.is_prod), opts=after(namespace, admin))
        crds = after(self.release)      # ServiceMonitor, PodMonitor, PrometheusRule: the chart's CRDs

        def custom(role: str, kind: str, object_name: str, spec: dict[str, Any]) -> None:
            k8s.apiextensions.CustomResource(
                f"{name}-{role}", api_version="monitoring.coreos.com/v1", kind=kind,
                metadata=k8s.meta.v1.ObjectMetaArgs(name=object_name, namespace=NAMESPACE), spec=spec, opts=crds)

        custom("karpenter", "ServiceMonitor", "karpenter", karpenter_service_monitor_spec(cfg.scrape_interval))
        team_namespaces = [t.name for t in args.teams]
        if team_namespaces:
            custom("queue-proxy", "PodMonitor", "knative-queue-proxy",
                   queue_proxy_pod_monitor_spec(team_namespaces, cfg.scrape_interval))

        rules = prometheus_rules(args.teams, args.gpu_pools, args.gpu_idle_percent, cfg.alerts)
        for rule_name, groups in rules.items():
            custom(rule_name, "PrometheusRule", rule_name, {"groups": groups})

        boards = dashboards(args.teams, args.gpu_pools, args.gpu_idle_percent, cfg.alerts)
        for uid, board in boards.items():
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard-{uid}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=f"dashboard-{uid}", namespace=NAMESPACE,
                                                    labels={DASHBOARD_LABEL: "1"}),
                data={f"{uid}.json": json.dumps(board, indent=1, sort_keys=True)},
                opts=after(namespace))

        all_rules = [r for groups in rules.values() for g in groups for r in g["rules"]]
        self.namespace = NAMESPACE
        self.chart_version = KUBE_PROMETHEUS_STACK["version"]
        self.grafana_url = GRAFANA_URL
        self.grafana_admin_secret = GRAFANA_ADMIN_SECRET
        self.dashboards = list(boards)
        self.alert_names = sorted({r["alert"] for r in all_rules if "alert" in r})
        self.recording_rules = sorted({r["record"] for r in all_rules if "record" in r})
        self.register_outputs({
            "namespace": self.namespace,
            "chart_version": self.chart_version,
            "grafana_url": self.grafana_url,
            "grafana_admin_secret": self.grafana_admin_secret,
            "dashboards": self.dashboards,
            "alert_names": self.alert_names,
            "recording_rules": self.recording_rules,
        })


def _check_scraper(scraper: MetricsScraper) -> None:
    """The team NetworkPolicies admit `scraper`; this install must run Prometheus exactly there."""
    if scraper.source.namespace != NAMESPACE or \
            scraper.source.pod_labels.get("app.kubernetes.io/name") != "prometheus":
        raise ValueError(f"ObservabilityArgs.scraper names pods {scraper.source.pod_labels} in "
                         f"'{scraper.source.namespace}', but this Prometheus runs in '{NAMESPACE}' with "
                         "app.kubernetes.io/name=prometheus")


# ---------------------------------------------------------------------------------------------------
# Helm values and monitors


def helm_values(cfg: ObservabilityConfig, is_prod: bool) -> dict[str, Any]:
    """kube-prometheus-stack with only what the platform needs, on the system nodes."""
    off = {"enabled": False}
    prometheus_spec: dict[str, Any] = {
        "nodeSelector": dict(SYSTEM_NODES),
        "replicas": cfg.prometheus_replicas,
        "retention": f"{cfg.retention(is_prod)}d",
        # Prometheus drops the oldest blocks before the volume fills (sizes in powers of two: GB means GiB).
        "retentionSize": f"{int(cfg.storage_gib * 0.85)}GB",
        "scrapeInterval": cfg.scrape_interval,
        "evaluationInterval": f"{RULE_INTERVAL_SECONDS}s",
        # Every ServiceMonitor, PodMonitor and PrometheusRule in the cluster, not only the chart's own.
        "serviceMonitorSelectorNilUsesHelmValues": False,
        "podMonitorSelectorNilUsesHelmValues": False,
        "ruleSelectorNilUsesHelmValues": False,
        "probeSelectorNilUsesHelmValues": False,
        "scrapeConfigSelectorNilUsesHelmValues": False,
        "storageSpec": {"volumeClaimTemplate": {"spec": {
            "storageClassName": cfg.storage_class, "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": f"{cfg.storage_gib}Gi"}}}}},
        "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
    }
    if cfg.prometheus_replicas > 1:
        prometheus_spec["podAntiAffinity"] = "soft"
    values: dict[str, Any] = {
        "crds": {"enabled": True},
        "defaultRules": {"create": False},
        "alertmanager": off,
        # EKS runs the control plane; kubelet/cAdvisor series are not used by the platform's dashboards.
        "kubeApiServer": off, "kubelet": off, "kubeControllerManager": off, "coreDns": off, "kubeDns": off,
        "kubeEtcd": off, "kubeScheduler": off, "kubeProxy": off,
        "nodeExporter": {"enabled": cfg.node_exporter},
        "kubeStateMetrics": {"enabled": True},
        "kube-state-metrics": {
            "nodeSelector": dict(SYSTEM_NODES),
            "metricLabelsAllowlist": [f"{kind}=[{','.join(names)}]" for kind, names in KSM_LABEL_ALLOWLIST.items()],
            "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
        },
        "prometheusOperator": {
            "nodeSelector": dict(SYSTEM_NODES),
            "admissionWebhooks": {"deployment": {"nodeSelector": dict(SYSTEM_NODES)},
                                  "patch": {"nodeSelector": dict(SYSTEM_NODES)}},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
        },
        "prometheus": {"prometheusSpec": prometheus_spec},
        "grafana": {
            "enabled": True,
            "nodeSelector": dict(SYSTEM_NODES),
            # The generated password, from the Secret this component writes; never a value in these values.
            "admin": {"existingSecret": GRAFANA_ADMIN_SECRET, "userKey": "admin-user", "passwordKey": "admin-password"},
            "defaultDashboardsEnabled": False,
            "persistence": {"enabled": False},     # dashboards come from ConfigMaps, users from the admin Secret
            "sidecar": {
                "dashboards": {"enabled": True, "label": DASHBOARD_LABEL, "labelValue": "1",
                               "searchNamespace": NAMESPACE},
                "datasources": {"enabled": True, "defaultDatasourceEnabled": True},
            },
            "grafana.ini": {"auth.anonymous": {"enabled": False}, "users": {"allow_sign_up": False},
                            "analytics": {"reporting_enabled": False, "check_for_updates": False}},
            "testFramework": {"enabled": False},
        },
    }
    if cfg.node_exporter:     # every node, GPU nodes (tainted) included
        values["prometheus-node-exporter"] = {"tolerations": [{"operator": "Exists"}]}
    return values


def karpenter_service_monitor_spec(interval: str) -> dict[str, Any]:
    return {
        "selector": {"matchLabels": dict(KARPENTER_SELECTOR)},
        "namespaceSelector": {"matchNames": [KARPENTER_NAMESPACE]},
        "endpoints": [{"port": KARPENTER_METRICS_PORT, "path": "/metrics", "interval": interval}],
    }


def queue_proxy_pod_monitor_spec(team_namespaces: list[str], interval: str) -> dict[str, Any]:
    """The queue-proxy of every InferenceService pod in the team namespaces. Its series carry no revision or
    namespace of their own (OTel resource attributes), so the target's pod labels name the InferenceService."""
    def keep(pod_label: str, target: str) -> dict[str, Any]:
        return {"sourceLabels": [f"__meta_kubernetes_pod_label_{re.sub(r'[^a-zA-Z0-9_]', '_', pod_label)}"],
                "targetLabel": target, "action": "replace"}

    return {
        "selector": {"matchLabels": {labels.JOB_TYPE: "inference"},
                     "matchExpressions": [{"key": INFERENCE_SERVICE_LABEL, "operator": "Exists"}]},
        "namespaceSelector": {"matchNames": sorted(team_namespaces)},
        "podMetricsEndpoints": [{
            "port": QUEUE_PROXY_METRICS_PORT, "path": "/metrics", "interval": interval,
            "relabelings": [keep(INFERENCE_SERVICE_LABEL, "inferenceservice"),
                            keep("serving.knative.dev/revision", "revision"),
                            keep("component", "component")],
        }],
    }


# ---------------------------------------------------------------------------------------------------
# Prices and GPU shares, from the data files (the same functions as `python -m preview cost`)


def gpu_hour_prices(pools: list[GpuPool]) -> dict[tuple[str, str], float]:
    """(instance type, capacity type) -> $/GPU-hour for every GPU instance type of the stack's pools, spot and
    on-demand alike (a pool's nodes carry whichever capacity type Karpenter or EKS gave them)."""
    table = {}
    for instance_type in sorted({t for p in pools for t in p.instance_types}):
        for capacity in ("on-demand", "spot"):
            price, _ = catalog.gpu_hour_price([instance_type], spot=capacity == "spot")
            if price is not None:
                table[(instance_type, capacity)] = price
    return table


def gpu_hour_ceiling(pools: list[GpuPool]) -> float:
    """The dearest $/GPU-hour among the pools, each priced as `preview cost` prices it (spot only for spot-only pools):
    a team's whole GPU quota at this price is the cost command's per-team upper bound."""
    tops = [catalog.gpu_hour_price(p.instance_types, spot=tuple(p.capacity_types) == ("spot",))[0] for p in pools]
    return max((t for t in tops if t is not None), default=0.0)


def gpu_resource_shares(pool: GpuPool) -> dict[str, float]:
    """GPU extended resource -> the share of one physical GPU that one unit of it is, on this pool's nodes."""
    model = catalog.mig_model(pool.gpu_type)
    shares = {}
    for resource, units in pool.resources.items():
        if resource.startswith(labels.MIG_RESOURCE_PREFIX) and model is not None:
            profile = model.profiles[resource[len(labels.MIG_RESOURCE_PREFIX):]]
            shares[resource] = profile.compute_slices / model.compute_slices
        else:
            shares[resource] = 1 / units
    return shares


# ---------------------------------------------------------------------------------------------------
# Recording rules and alerts


def _constant(record: str, value: float, rule_labels: dict[str, str]) -> dict[str, Any]:
    return {"record": record, "expr": f"vector({value:.12g})", "labels": rule_labels}


def _relabel(expr: str, target: str, value: str, source: str, regex: str) -> str:
    return f'label_replace({expr}, "{target}", "{value}", "{source}", "{regex}")'


def catalog_rules(teams: list[TeamConfig], pools: list[GpuPool]) -> list[dict[str, Any]]:
    """Constant series from the data files and config: prices, GPUs per instance type, GPU shares, quota ceilings."""
    rules = [_constant("mlops:gpu_hour_price:usd", price, {"instance_type": t, "capacity_type": c})
             for (t, c), price in gpu_hour_prices(pools).items()]
    types = catalog.instance_types()
    rules += [_constant("mlops:instance_gpus:count", types[t].gpus, {"instance_type": t})
              for t in sorted({t for p in pools for t in p.instance_types})]
    rules += [_constant("mlops:gpu_resource_share:ratio", share, {"node_pool": p.name, "resource": ksm_resource(r)})
              for p in pools for r, share in sorted(gpu_resource_shares(p).items())]
    ceiling = gpu_hour_ceiling(pools)
    rules += [_constant("mlops:team_gpu_quota_ceiling:usd_per_hour", t.gpu_quota * ceiling, {"namespace": t.name})
              for t in teams]
    return rules


def allocation_rules(idle_percent: int) -> list[dict[str, Any]]:
    """GPU equivalents and their cost per pod, team and workload; unallocated and idle GPUs. In order: each rule
    may use the ones before it (a group's rules are evaluated in sequence)."""
    node_info = f'kube_node_labels{{{ksm_label(labels.GPU_TYPE)}!=""}}'
    node_info = _relabel(node_info, "node_pool", "$1", ksm_label(labels.NODE_POOL), "(.+)")
    node_info = _relabel(node_info, "instance_type", "$1", ksm_label("node.kubernetes.io/instance-type"), "(.+)")
    node_info = _relabel(node_info, "capacity_type", "$1", ksm_label(labels.CAPACITY_TYPE), "(.+)")
    managed = ksm_label("eks.amazonaws.com/capacityType")       # EKS managed node groups: SPOT / ON_DEMAND
    node_info = _relabel(_relabel(node_info, "capacity_type", "spot", managed, "SPOT"),
                         "capacity_type", "on-demand", managed, "ON_DEMAND")
    gpu_requests = 'kube_pod_container_resource_requests{resource=~"nvidia_com_.+"}'
    running = '(max by (namespace, pod) (kube_pod_status_phase{phase="Running"}) == 1)'

    def workload(selector: str, source: str, kind: str) -> str:
        return _relabel(_relabel(f"kube_pod_labels{selector}", "workload", "$1", source, "(.+)"),
                        "workload_kind", kind, "", "")

    inference = ksm_label(INFERENCE_SERVICE_LABEL)
    training = ksm_label(TRAINING_JOB_LABEL)
    workloads = " or on (namespace, pod) ".join([
        workload(f'{{{inference}!=""}}', inference, "inference"),
        workload(f'{{{training}!=""}}', training, "training"),
        workload(f'{{{ksm_label(labels.JOB_TYPE)}="notebook"}}', "pod", "notebook"),
        workload("", "pod", "other"),
    ])
    busy = (f"(avg_over_time(DCGM_FI_PROF_GR_ENGINE_ACTIVE[{RATE_WINDOW}]) * 100"
            f" or avg_over_time(DCGM_FI_DEV_GPU_UTIL[{RATE_WINDOW}]))")
    return [
        {"record": "mlops:gpu_node:info",
         "expr": f"max by (node, node_pool, instance_type, capacity_type) ({node_info})"},
        {"record": "mlops:node_gpu_hour_price:usd",
         "expr": "mlops:gpu_node:info * on (instance_type, capacity_type) group_left () mlops:gpu_hour_price:usd"},
        {"record": "mlops:node_gpus:count",
         "expr": "mlops:gpu_node:info * on (instance_type) group_left () mlops:instance_gpus:count"},
        {"record": "mlops:pod_gpus:sum",
         "expr": (f"sum by (namespace, pod, node, node_pool, instance_type, capacity_type) ({gpu_requests}"
                  " * on (node) group_left (node_pool, instance_type, capacity_type) mlops:gpu_node:info"
                  " * on (node_pool, resource) group_left () mlops:gpu_resource_share:ratio"
                  f" * on (namespace, pod) group_left () {running})")},
        {"record": "mlops:pod_gpu_cost:usd_per_hour",
         "expr": "mlops:pod_gpus:sum * on (node) group_left () mlops:node_gpu_hour_price:usd"},
        {"record": "mlops:namespace_gpus:sum", "expr": "sum by (namespace) (mlops:pod_gpus:sum)"},
        {"record": "mlops:namespace_gpu_cost:usd_per_hour",
         "expr": "sum by (namespace) (mlops:pod_gpu_cost:usd_per_hour)"},
        {"record": "mlops:namespace_gpus_by_capacity:sum",
         "expr": "sum by (namespace, capacity_type) (mlops:pod_gpus:sum)"},
        {"record": "mlops:pod_workload:info", "expr": f"max by (namespace, pod, workload_kind, workload) ({workloads})"},
        {"record": "mlops:workload_gpus:sum",
         "expr": ("sum by (namespace, workload_kind, workload) (mlops:pod_gpus:sum"
                  " * on (namespace, pod) group_left (workload_kind, workload) mlops:pod_workload:info)")},
        {"record": "mlops:workload_gpu_cost:usd_per_hour",
         "expr": ("sum by (namespace, workload_kind, workload) (mlops:pod_gpu_cost:usd_per_hour"
                  " * on (namespace, pod) group_left (workload_kind, workload) mlops:pod_workload:info)")},
        {"record": "mlops:node_unallocated_gpus:count",
         "expr": ("clamp_min(mlops:node_gpus:count - on (node) group_left ()"
                  " (sum by (node) (mlops:pod_gpus:sum) or on (node) (0 * mlops:node_gpus:count)), 0)")},
        {"record": "mlops:node_unallocated_gpu_cost:usd_per_hour",
         "expr": "mlops:node_unallocated_gpus:count * on (node) group_left () mlops:node_gpu_hour_price:usd"},
        # A GPU held by a team pod and below the idle threshold (engine activity, else GPU utilisation), as the
        # GPU waste alert judges it; only team namespaces count.
        {"record": "mlops:namespace_idle_gpus:count",
         "expr": (f"count by (namespace) (({busy} < {idle_percent})"
                  f" * on (namespace) group_left () {TEAM_NAMESPACES})")},
    ]


INFERENCE_SELECTOR = "kn_serving_invocation_duration_seconds"


def model_target_rules(teams: list[TeamConfig]) -> list[dict[str, Any]]:
    """Each model's p99 target (`latencyP99Ms`) as a series, for the alert and the models dashboard."""
    return [_constant("mlops:inference_latency_p99_target:seconds", m.latency_p99_ms / 1000,
                      {"namespace": t.name, "inferenceservice": m.name})
            for t in teams for m in t.models]


def _p99(by: str = "namespace, inferenceservice", selector: str = "") -> str:
    return (f"histogram_quantile(0.99, sum by ({by}, le) "
            f"(rate({INFERENCE_SELECTOR}_bucket{selector}[{RATE_WINDOW}])))")


def model_alert_rules(alerts: ObservabilityAlertsConfig) -> list[dict[str, Any]]:
    errors = f'{INFERENCE_SELECTOR}_count{{http_response_status_code=~"5.."}}'
    return [
        {
            "alert": "InferenceLatencyP99AboveTarget",
            "expr": (f"{_p99()} > on (namespace, inferenceservice) group_left ()"
                     " mlops:inference_latency_p99_target:seconds"),
            "for": alerts.latency_for,
            "labels": {"severity": "warning", "category": "serving"},
            "annotations": {
                "summary": "A model answers slower than its latency target.",
                "description": ("The p99 latency of InferenceService {{ $labels.namespace }}/{{ $labels.inferenceservice "
                                "}} is {{ $value | humanizeDuration }}, above its latencyP99Ms target, for "
                                f"{alerts.latency_for}. Check its replicas (maxReplicas), CPU throttling and the "
                                "model version."),
            },
        },
        {
            "alert": "InferenceErrorRateHigh",
            "expr": (f"sum by (namespace, inferenceservice) (rate({errors}[{RATE_WINDOW}])) * 100"
                     f" / sum by (namespace, inferenceservice) (rate({INFERENCE_SELECTOR}_count[{RATE_WINDOW}]))"
                     f" > {alerts.error_rate_percent:g}"),
            "for": alerts.error_rate_for,
            "labels": {"severity": "critical", "category": "serving"},
            "annotations": {
                "summary": "A model answers too many requests with server errors.",
                "description": ("{{ $value | humanize }}% of the requests to InferenceService {{ $labels.namespace }}/"
                                f"{{{{ $labels.inferenceservice }}}} failed with 5xx for {alerts.error_rate_for} "
                                f"(threshold {alerts.error_rate_percent:g}%)."),
            },
        },
    ]


def capacity_alert_rules(alerts: ObservabilityAlertsConfig) -> list[dict[str, Any]]:
    gpu = 'resource_type=~"nvidia\\\\.com/.+"'
    pending = ('sum(kube_pod_container_resource_requests{resource=~"nvidia_com_.+"} * on (namespace, pod)'
               ' group_left () (max by (namespace, pod) (kube_pod_status_phase{phase="Pending"}) == 1)) > 0')
    return [{
        "alert": "GpuNodePoolAtLimitWithPendingPods",
        "expr": (f"max by (nodepool, resource_type) (karpenter_nodepools_usage{{{gpu}}})"
                 f" >= on (nodepool, resource_type) max by (nodepool, resource_type) (karpenter_nodepools_limit{{{gpu}}})"
                 f" and on () ({pending})"),
        "for": alerts.pending_gpu_pods_for,
        "labels": {"severity": "warning", "category": "gpu-capacity"},
        "annotations": {
            "summary": "A GPU NodePool is at its limit while pods asking for GPUs wait.",
            "description": ("NodePool {{ $labels.nodepool }} uses all {{ $value }} of its {{ $labels.resource_type }} "
                            f"and GPU pods have been pending for {alerts.pending_gpu_pods_for}. Raise the pool's "
                            "gpuLimit (gpu.nodePools), or find the idle GPUs on the GPU dashboard."),
        },
    }]


def prometheus_rules(teams: list[TeamConfig], pools: list[GpuPool], idle_percent: int,
                     alerts: ObservabilityAlertsConfig) -> dict[str, list[dict[str, Any]]]:
    """PrometheusRule object name -> its groups."""
    interval = f"{RULE_INTERVAL_SECONDS}s"
    model_groups = [{"name": "mlops-model-alerts", "rules": model_alert_rules(alerts)}]
    targets = model_target_rules(teams)
    if targets:
        model_groups.insert(0, {"name": "mlops-model-targets", "interval": interval, "rules": targets})
    return {
        "mlops-gpu-cost": [
            {"name": "mlops-gpu-catalog", "interval": interval, "rules": catalog_rules(teams, pools)},
            {"name": "mlops-gpu-allocation", "interval": interval, "rules": allocation_rules(idle_percent)},
        ],
        "mlops-models": model_groups,
        "mlops-gpu-capacity": [{"name": "mlops-gpu-capacity", "rules": capacity_alert_rules(alerts)}],
    }


# ---------------------------------------------------------------------------------------------------
# Dashboards (Grafana dashboard JSON, schemaVersion 39)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
HOURS = f"/ {3600 // RULE_INTERVAL_SECONDS}"      # sum_over_time of a per-minute series -> hours
TEAM = '{namespace=~"$team"}'


def _target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> dict[str, Any]:
    target = {"refId": ref, "datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "range": not instant,
              "instant": instant}
    if instant:
        target["format"] = "table"
    return target


class _Layout:
    """Panels placed left to right in rows of 24 columns, with ids in order."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = self.y = self.row_height = 0

    def add(self, kind: str, title: str, targets: list[dict[str, Any]], width: int = 12, height: int = 8,
            unit: str | None = None, description: str = "", options: dict[str, Any] | None = None,
            transformations: list[dict[str, Any]] | None = None) -> None:
        if self.x + width > 24:
            self.x, self.y = 0, self.y + self.row_height
            self.row_height = 0
        defaults: dict[str, Any] = {}
        if unit:
            defaults["unit"] = unit
        panel: dict[str, Any] = {
            "id": len(self.panels) + 1, "type": kind, "title": title, "description": description,
            "gridPos": {"x": self.x, "y": self.y, "w": width, "h": height},
            "fieldConfig": {"defaults": defaults, "overrides": []}, "options": options or {},
        }
        if targets:
            panel["datasource"] = DATASOURCE
            panel["targets"] = [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)]
        if transformations:
            panel["transformations"] = transformations
        self.panels.append(panel)
        self.x += width
        self.row_height = max(self.row_height, height)

    def text(self, title: str, markdown: str, width: int = 24, height: int = 6) -> None:
        self.add("text", title, [], width, height, options={"mode": "markdown", "content": markdown})


def _variables(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0}, *extra]


def _query_variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "query": {"query": query, "refId": name}, "definition": query, "refresh": 2, "sort": 1,
            "multi": True, "includeAll": True, "allValue": ".*", "current": {}, "hide": 0}


TEAM_VARIABLE = _query_variable("team", "Team", f"label_values({TEAM_NAMESPACES}, namespace)")


def _dashboard(uid: str, title: str, description: str, layout: _Layout, variables: list[dict[str, Any]],
               time_from: str) -> dict[str, Any]:
    return {
        "uid": uid, "title": title, "description": description, "tags": ["mlops-platform"],
        "schemaVersion": 39, "version": 1, "editable": False, "graphTooltip": 1, "timezone": "browser",
        "refresh": "1m", "time": {"from": time_from, "to": "now"},
        "templating": {"list": variables}, "annotations": {"list": []}, "links": [], "panels": layout.panels,
    }


def gpu_dashboard(idle_percent: int) -> dict[str, Any]:
    layout = _Layout()
    layout.add("timeseries", "GPUs allocated per team", [
        _target(f"sum by (namespace) (mlops:pod_gpus:sum{TEAM})", "{{namespace}}")],
        description="GPUs held by running pods, in whole-GPU equivalents (a time-sliced replica counts "
                    "1/replicas, a MIG slice its share of the GPU's compute).")
    layout.add("timeseries", "GPUs allocated vs. GPUs on running nodes", [
        _target("sum(mlops:pod_gpus:sum)", "allocated"), _target("sum(mlops:node_gpus:count)", "on GPU nodes")])
    layout.add("table", "GPUs per pod", [
        _target(f"sum by (namespace, pod, node_pool, capacity_type) (mlops:pod_gpus:sum{TEAM})", instant=True)],
        width=24)
    layout.add("timeseries", "GPU utilisation per team", [
        _target(f"avg by (namespace) (DCGM_FI_DEV_GPU_UTIL{TEAM})", "{{namespace}}")], unit="percent")
    layout.add("timeseries", "GPU utilisation per pod", [
        _target('avg by (namespace, pod) (DCGM_FI_DEV_GPU_UTIL{namespace=~"$team", pod!=""})',
                "{{namespace}}/{{pod}}")], unit="percent")
    layout.add("timeseries", "Graphics engine active per pod (MIG slices included)", [
        _target(f"avg by (namespace, pod) (DCGM_FI_PROF_GR_ENGINE_ACTIVE{TEAM}) * 100", "{{namespace}}/{{pod}}")],
        unit="percent")
    used = f"DCGM_FI_DEV_FB_USED{TEAM}"
    total = f"({used} + DCGM_FI_DEV_FB_FREE{TEAM})"
    layout.add("timeseries", "GPU memory used vs. total per pod", [
        _target(f"sum by (namespace, pod) ({used})", "{{namespace}}/{{pod}} used"),
        _target(f"sum by (namespace, pod) {total}", "{{namespace}}/{{pod}} total")], unit="mbytes")
    layout.add("bargauge", "GPU memory used, % of the GPU's memory", [
        _target(f"100 * sum by (namespace, pod) ({used}) / sum by (namespace, pod) {total}", "{{namespace}}/{{pod}}",
                instant=True)], unit="percent")
    layout.add("bargauge", f"Idle GPU-hours per team (held, below {idle_percent}% busy)", [
        _target(f"sum by (namespace) (sum_over_time(mlops:namespace_idle_gpus:count{TEAM}[$__range])) {HOURS}",
                "{{namespace}}", instant=True)], width=8, unit="h")
    layout.add("bargauge", "Unallocated GPU-hours per pool (node up, no pod holds the GPU)", [
        _target(f"sum by (node_pool) (sum_over_time(mlops:node_unallocated_gpus:count[$__range])) {HOURS}",
                "{{node_pool}}", instant=True)], width=8, unit="h")
    layout.add("stat", "Idle GPUs now", [_target(f"sum(mlops:namespace_idle_gpus:count{TEAM})", instant=True)],
               width=8)
    return _dashboard("mlops-gpu", "MLOps / GPUs", "GPU allocation and utilisation per team, namespace and pod; "
                      "memory; idle and unallocated GPU-hours.", layout, _variables(TEAM_VARIABLE), "now-24h")


def cost_dashboard(pools: list[GpuPool]) -> dict[str, Any]:
    layout = _Layout()
    layout.add("bargauge", "GPU-hours per team", [
        _target(f"sum by (namespace) (sum_over_time(mlops:namespace_gpus:sum{TEAM}[$__range])) {HOURS}",
                "{{namespace}}", instant=True)], unit="h")
    layout.add("bargauge", "Estimated GPU cost per team", [
        _target(f"sum by (namespace) (sum_over_time(mlops:namespace_gpu_cost:usd_per_hour{TEAM}[$__range])) {HOURS}",
                "{{namespace}}", instant=True)], unit="currencyUSD",
        description="GPU-hours x the $/GPU-hour of the node's instance type and capacity type, from "
                    "components/data/prices.yaml (the prices `python -m preview cost` uses).")
    layout.add("timeseries", "GPU cost rate per team, and its quota ceiling", [
        _target(f"sum by (namespace) (mlops:namespace_gpu_cost:usd_per_hour{TEAM})", "{{namespace}}"),
        _target(f"mlops:team_gpu_quota_ceiling:usd_per_hour{TEAM}", "{{namespace}} whole quota (preview cost)")],
        width=24, unit="currencyUSD",
        description="USD per hour. The ceiling is the team's GPU quota at the dearest GPU-hour among the pools: the "
                    "per-team figure of `python -m preview cost`.")
    layout.add("table", "GPU-hours and cost per training job and inference service", [
        _target(f"sum by (namespace, workload_kind, workload) (sum_over_time(mlops:workload_gpus:sum{TEAM}[$__range]))"
                f" {HOURS}", instant=True),
        _target(f"sum by (namespace, workload_kind, workload) (sum_over_time("
                f"mlops:workload_gpu_cost:usd_per_hour{TEAM}[$__range])) {HOURS}", instant=True)],
        width=24, transformations=[{"id": "merge", "options": {}}])
    layout.add("piechart", "Spot vs. on-demand GPU-hours", [
        _target(f"sum by (capacity_type) (sum_over_time(mlops:namespace_gpus_by_capacity:sum{TEAM}[$__range])) "
                f"{HOURS}", "{{capacity_type}}", instant=True)], unit="h",
        options={"pieType": "pie", "displayLabels": ["name", "percent"], "legend": {"displayMode": "table"}})
    layout.add("bargauge", "Unallocated GPU cost per pool (nodes up, GPUs unused)", [
        _target(f"sum by (node_pool) (sum_over_time(mlops:node_unallocated_gpu_cost:usd_per_hour[$__range])) {HOURS}",
                "{{node_pool}}", instant=True)], unit="currencyUSD")
    prices = catalog.prices()
    rows = "\n".join(f"| {t} | {c} | ${p:.4f} |" for (t, c), p in gpu_hour_prices(pools).items())
    layout.text("Prices", f"$/GPU-hour from `components/data/prices.yaml` (list prices read "
                f"{prices['sources']['ec2']['read']}; spot figures are typical, not quotes), as "
                f"`python -m preview cost` uses them:\n\n| instance type | capacity | $/GPU-hour |\n|---|---|---:|\n{rows}",
                height=8)
    return _dashboard("mlops-cost", "MLOps / GPU cost", "GPU-hours and estimated cost per team and per workload; "
                      "spot vs. on-demand.", layout, _variables(TEAM_VARIABLE), "now-7d")


def models_dashboard(teams: list[TeamConfig], alerts: ObservabilityAlertsConfig) -> dict[str, Any]:
    layout = _Layout()
    sel = '{namespace=~"$team", inferenceservice=~"$model"}'
    by = "namespace, inferenceservice"
    layout.add("timeseries", "Requests per second", [
        _target(f"sum by ({by}) (rate({INFERENCE_SELECTOR}_count{sel}[{RATE_WINDOW}]))",
                "{{namespace}}/{{inferenceservice}}")], unit="reqps")
    layout.add("timeseries", "Error rate (5xx share of requests)", [
        _target(f'sum by ({by}) (rate({INFERENCE_SELECTOR}_count{{namespace=~"$team", inferenceservice=~"$model", '
                f'http_response_status_code=~"5.."}}[{RATE_WINDOW}])) / sum by ({by}) '
                f"(rate({INFERENCE_SELECTOR}_count{sel}[{RATE_WINDOW}]))", "{{namespace}}/{{inferenceservice}}")],
        unit="percentunit", description=f"The alert fires above {alerts.error_rate_percent:g}% for "
                                        f"{alerts.error_rate_for}.")
    quantiles = [
        _target(f"histogram_quantile({q}, sum by ({by}, le) (rate({INFERENCE_SELECTOR}_bucket{sel}[{RATE_WINDOW}])))",
                f"{{{{inferenceservice}}}} p{int(q * 100)}") for q in (0.5, 0.95, 0.99)]
    quantiles.append(_target(f"mlops:inference_latency_p99_target:seconds{sel}", "{{inferenceservice}} p99 target"))
    layout.add("timeseries", "Latency p50 / p95 / p99 and the p99 target", quantiles, width=24, unit="s")
    layout.add("timeseries", "Replicas running", [
        _target(f'count by (namespace, {ksm_label(INFERENCE_SERVICE_LABEL)}) (kube_pod_labels{{namespace=~"$team", '
                f'{ksm_label(INFERENCE_SERVICE_LABEL)}=~"$model"}} * on (namespace, pod) group_left () '
                '(max by (namespace, pod) (kube_pod_status_phase{phase="Running"}) == 1))',
                f"{{{{namespace}}}}/{{{{{ksm_label(INFERENCE_SERVICE_LABEL)}}}}}")])
    layout.add("stat", "GPU cost over the range", [
        _target(f'sum by (namespace, workload) (sum_over_time(mlops:workload_gpu_cost:usd_per_hour{{namespace=~"$team",'
                f' workload_kind="inference", workload=~"$model"}}[$__range])) {HOURS}', "{{namespace}}/{{workload}}",
                instant=True)], unit="currencyUSD")
    rows = "\n".join(
        f"| {t.name} | {m.name} | {m.framework}{' (GPU)' if m.gpu else ''} | `{m.location}` | "
        f"{f'`{m.canary.location}` at {m.canary.traffic_percent}%' if m.canary else '-'} | {m.latency_p99_ms} ms |"
        for t in teams for m in t.models) or "| - | - | - | - | - | - |"
    layout.text("Deployed models", "What the stack config deploys (teams[].models); accuracy and the model versions' "
                f"runs are in MLflow ({MLFLOW.url}).\n\n| team | InferenceService | framework | model | canary | "
                f"p99 target |\n|---|---|---|---|---|---:|\n{rows}")
    model_variable = _query_variable(
        "model", "InferenceService",
        f'label_values({INFERENCE_SELECTOR}_count{{namespace=~"$team"}}, inferenceservice)')
    return _dashboard("mlops-models", "MLOps / Models", "Request rate, latency and errors per InferenceService, "
                      "against each model's latency target.", layout, _variables(TEAM_VARIABLE, model_variable),
                      "now-6h")


def dashboards(teams: list[TeamConfig], pools: list[GpuPool], idle_percent: int,
               alerts: ObservabilityAlertsConfig) -> dict[str, dict[str, Any]]:
    """Dashboard uid -> Grafana dashboard JSON model."""
    return {d["uid"]: d for d in (gpu_dashboard(idle_percent), cost_dashboard(pools), models_dashboard(teams, alerts))}

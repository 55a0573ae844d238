"""The PrometheusRules: recording rules that turn DCGM, kube-state-metrics and queue-proxy series into GPU allocation
and cost, the model and capacity alerts, and the GPU waste alerts (declared by the GPU operator component beside
its DCGM exporter, written here with the other alerts)."""

from __future__ import annotations

from typing import Any

from components import catalog, labels
from components.config import GpuAlertsConfig, ObservabilityAlertsConfig, TeamConfig
from components.observability.metrics import (INFERENCE_SELECTOR, INFERENCE_SERVICE_LABEL, RATE_WINDOW,
                                              RULE_INTERVAL_SECONDS, TEAM_NAMESPACES, TRAINING_JOB_LABEL, ksm_label, ksm_resource)
from components.planning.gpu_supply import GpuPool
from components.planning.prices import gpu_hour_ceiling, gpu_hour_prices, gpu_resource_shares
from components.planning.rightsizing import HEADROOM, gpu_offers

# Team-scoped alerts carry the team: a team's namespace is its name (components/config/teams.py), and Alertmanager
# routes on this label (components/observability/alertmanager.py).
TEAM = {"team": "{{ $labels.namespace }}"}
GPU_OFFER = "mlops:gpu_offer_memory:gib"


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
    # What the pools offer and the memory of each: the rightsizing alert's suggestions (planning/rightsizing.py).
    rules += [_constant(GPU_OFFER, o.memory_gib, {"offer": o.offer, "gpu_resource": o.resource, "node_pool": o.pool})
              for o in gpu_offers(pools)]
    return rules


def node_info(selector: str) -> str:
    """kube_node_labels{selector} with `node_pool`, `instance_type` and `capacity_type` (spot | on-demand, from
    Karpenter's or EKS's label) as plain labels."""
    info = f"kube_node_labels{selector}"
    info = _relabel(info, "node_pool", "$1", ksm_label(labels.NODE_POOL), "(.+)")
    info = _relabel(info, "instance_type", "$1", ksm_label("node.kubernetes.io/instance-type"), "(.+)")
    info = _relabel(info, "capacity_type", "$1", ksm_label(labels.CAPACITY_TYPE), "(.+)")
    managed = ksm_label("eks.amazonaws.com/capacityType")       # EKS managed node groups: SPOT / ON_DEMAND
    return _relabel(_relabel(info, "capacity_type", "spot", managed, "SPOT"),
                    "capacity_type", "on-demand", managed, "ON_DEMAND")


def allocation_rules(idle_percent: int) -> list[dict[str, Any]]:
    """GPU equivalents and their cost per pod, team and workload; unallocated and idle GPUs. In order: each rule
    may use the ones before it (a group's rules are evaluated in sequence)."""
    gpu_nodes = node_info(f'{{{ksm_label(labels.GPU_TYPE)}!=""}}')
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
         "expr": f"max by (node, node_pool, instance_type, capacity_type) ({gpu_nodes})"},
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
            "labels": {"severity": "warning", "category": "serving", **TEAM},
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
            "labels": {"severity": "critical", "category": "serving", **TEAM},
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


def gpu_waste_alert_rules(alerts: GpuAlertsConfig, exporter_namespace: str) -> list[dict[str, Any]]:
    """The waste alerts on DCGM exporter series: a GPU held by a pod but idle; a pod using far less GPU memory than
    its GPU has. `exporter_namespace` is where the exporter runs (components/gpu_operator.py)."""
    # GPUs no pod holds carry the exporter pod's own namespace/pod (honorLabels): not "held".
    held = f'{{namespace!="",namespace!="{exporter_namespace}",pod!=""}}'
    idle = alerts.idle_utilization_percent
    mem = alerts.memory_used_percent
    return [
        {
            "alert": "GpuAllocatedButIdle",
            # Engine activity (also reported for MIG devices), else the coarser GPU utilisation.
            "expr": (f"(avg_over_time(DCGM_FI_PROF_GR_ENGINE_ACTIVE{held}[5m]) * 100"
                     f" or avg_over_time(DCGM_FI_DEV_GPU_UTIL{held}[5m])) < {idle}"),
            "for": alerts.idle_for,
            "labels": {"severity": "warning", "category": "gpu-waste", **TEAM},
            "annotations": {
                "summary": "A GPU is allocated to a pod that does not use it.",
                "description": (f"GPU {{{{ $labels.gpu }}}} on {{{{ $labels.Hostname }}}} is held by "
                                f"{{{{ $labels.namespace }}}}/{{{{ $labels.pod }}}} and has been below {idle}% busy "
                                f"for {alerts.idle_for}. Stop the pod or release the GPU."),
            },
        },
        {
            "alert": "GpuMemoryRightsizing",
            # The value: GiB the pod used at most over 10 minutes, while under `mem`% of its GPU (or MIG slice).
            "expr": (f"max_over_time(DCGM_FI_DEV_FB_USED{held}[10m]) / 1024"
                     f" < (DCGM_FI_DEV_FB_USED{held} + DCGM_FI_DEV_FB_FREE{held}) / 1024 * {mem / 100:g}"),
            "for": alerts.rightsizing_for,
            "labels": {"severity": "info", "category": "gpu-waste", **TEAM},
            "annotations": {
                "summary": "A pod uses a small part of its GPU's memory; a smaller GPU or MIG slice would do.",
                "description": _rightsizing_text(alerts.rightsizing_for),
            },
        },
    ]


def _rightsizing_text(duration: str) -> str:
    """"uses 7.8 GiB of 39.4 GiB ...: the 1g.10gb MIG profile (nvidia.com/mig-1g.10gb, pool inference-mig, 10 GiB)
    fits": the smallest offer of the stack's pools (GPU_OFFER) with HEADROOM over what the pod used, smaller than
    what it has. Templates cannot do arithmetic; the two queries do it in PromQL. `index` reads a label a series may
    lack (GPU_I_ID: only on MIG devices) as ""."""
    device = 'UUID="%s",GPU_I_ID="%s"'
    total = f"sum(DCGM_FI_DEV_FB_USED{{{device}}}) + sum(DCGM_FI_DEV_FB_FREE{{{device}}})"
    ids = '$labels.UUID (index $labels "GPU_I_ID")'
    return (
        "{{ $total := 0.0 }}"
        f"{{{{ with printf `({total}) / 1024` {ids} {ids} | query }}}}{{{{ $total = . | first | value }}}}{{{{ end }}}}"
        "{{ $labels.namespace }}/{{ $labels.pod }} uses {{ printf \"%.1f\" $value }} GiB of the "
        "{{ printf \"%.1f\" $total }} GiB of GPU {{ $labels.gpu }} ({{ $labels.modelName }}) at most, for "
        f"{duration}: "
        f"{{{{ with printf `bottomk(1, {GPU_OFFER} >= %f * {HEADROOM:g} < %f)` $value $total | query }}}}"
        "{{ with first . }}{{ label \"offer\" . }} ({{ label \"gpu_resource\" . }}, pool {{ label \"node_pool\" . }}, "
        f"{{{{ value . }}}} GiB) fits it with {round((HEADROOM - 1) * 100)}% headroom: ask for that resource instead "
        "(notebook profile or the pod's resources).{{ end }}{{ else }}no smaller GPU, share or MIG profile of the "
        f"platform's GPU pools fits it with {round((HEADROOM - 1) * 100)}% headroom; share the GPU between jobs."
        "{{ end }}")

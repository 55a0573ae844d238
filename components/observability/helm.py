"""kube-prometheus-stack's Helm values and the monitors the platform adds (Karpenter, Knative's queue-proxy)."""

from __future__ import annotations

import re
from typing import Any

from components import catalog, labels
from components.config import ObservabilityConfig
from components.karpenter import NAMESPACE as KARPENTER_NAMESPACE
from components.observability import alertmanager
from components.observability.metrics import (DASHBOARD_LABEL, GRAFANA_ADMIN_SECRET, INFERENCE_SERVICE_LABEL,
                                              KARPENTER_METRICS_PORT, KARPENTER_SELECTOR, KSM_ANNOTATION_ALLOWLIST,
                                              KSM_LABEL_ALLOWLIST,
                                              NAMESPACE, QUEUE_PROXY_METRICS_PORT, RULE_INTERVAL_SECONDS, SYSTEM_NODES)

# ---- pinned versions: components/data/versions.yaml. kube-prometheus-stack 88.x ships prometheus-operator v0.93.0,
# the version of the CRD schemas the tests validate the ServiceMonitors, PodMonitors and PrometheusRules against.
KUBE_PROMETHEUS_STACK = catalog.chart("kube-prometheus-stack")
PROMETHEUS_OPERATOR_VERSION = catalog.versions()["components"]["prometheus-operator"]


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
        # Configured from a Secret the component writes (alertmanager.py): receivers hold webhook URLs.
        "alertmanager": alertmanager.helm_values(cfg.alertmanager, SYSTEM_NODES) if cfg.alertmanager.enabled else off,
        # EKS runs the control plane; kubelet/cAdvisor series are not used by the platform's dashboards.
        "kubeApiServer": off, "kubelet": off, "kubeControllerManager": off, "coreDns": off, "kubeDns": off,
        "kubeEtcd": off, "kubeScheduler": off, "kubeProxy": off,
        "nodeExporter": {"enabled": cfg.node_exporter},
        "kubeStateMetrics": {"enabled": True},
        "kube-state-metrics": {
            "nodeSelector": dict(SYSTEM_NODES),
            "metricLabelsAllowlist": [f"{kind}=[{','.join(names)}]" for kind, names in KSM_LABEL_ALLOWLIST.items()],
            "metricAnnotationsAllowList": [f"{kind}=[{','.join(names)}]"
                                           for kind, names in KSM_ANNOTATION_ALLOWLIST.items()],
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

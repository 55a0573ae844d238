"""Observability: GPU, model and cost metrics in one place.

Installed (pinned in helm.py): kube-prometheus-stack with only Prometheus, the Prometheus operator (and
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
pods wait). The GPU waste alerts (idle, rightsizing) are written in rules.py with
the others and declared by the GPU operator component (PrometheusRule `gpu-waste`, beside its DCGM exporter).

Modules: component.py (the ComponentResource), helm.py (chart values and monitors), metrics.py (metric sources and
names), rules.py (recording rules and alerts, PromQL), dashboards.py (Grafana). Prices and GPU shares: planning.
"""

from __future__ import annotations

import importlib
from typing import Any

# Resolved on first use: the GPU operator imports rules.py, and the component imports Karpenter, which imports the
# GPU operator, so importing the package must not import the component eagerly.
_MODULES = {
    "component": ["Observability", "ObservabilityArgs", "_check_scraper"],
    "dashboards": ["cost_dashboard", "dashboards", "gpu_dashboard", "models_dashboard", "training_dashboard"],
    "helm": ["KUBE_PROMETHEUS_STACK", "PROMETHEUS_OPERATOR_VERSION", "helm_values", "karpenter_service_monitor_spec",
             "queue_proxy_pod_monitor_spec"],
    "metrics": ["NAMESPACE", "RELEASE", "GRAFANA_URL", "GRAFANA_ADMIN_SECRET", "GRAFANA_ADMIN_USER", "DASHBOARD_LABEL",
                "SYSTEM_NODES", "RULE_INTERVAL_SECONDS", "RATE_WINDOW", "NAMESPACE_LABELS", "KARPENTER_SELECTOR",
                "KARPENTER_METRICS_PORT", "QUEUE_PROXY_METRICS_PORT", "KNATIVE_OBSERVABILITY", "INFERENCE_SERVICE_LABEL",
                "TRAINING_JOB_LABEL", "TRAINING_COST_WINDOW", "KSM_LABEL_ALLOWLIST", "KSM_ANNOTATION_ALLOWLIST",
                "ksm_label", "ksm_annotation", "ksm_resource", "TEAM_NAMESPACES", "INFERENCE_SELECTOR"],
    "rules": ["allocation_rules", "capacity_alert_rules", "catalog_rules", "gpu_waste_alert_rules", "model_alert_rules",
              "model_target_rules", "node_info", "prometheus_rules"],
    "workloads": ["instance_price_rules", "serving_cost_rules", "training_rules", "workload_rule_groups"],
}
_OWNER = {name: module for module, names in _MODULES.items() for name in names}
_PLANNING = {"gpu_hour_ceiling", "gpu_hour_prices", "gpu_resource_shares"}


def __getattr__(name: str) -> Any:
    if name in _OWNER:
        return getattr(importlib.import_module(f"components.observability.{_OWNER[name]}"), name)
    if name in _PLANNING:
        return getattr(importlib.import_module("components.planning.prices"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

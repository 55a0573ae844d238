"""Where the platform's metrics come from and how they are named: the namespace, the labels kube-state-metrics keeps,
the scrape targets' selectors and ports (every metric name with its source: components/data/metrics.yaml)."""

from __future__ import annotations

import re

from components import labels
from components.endpoints import PROMETHEUS

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
# A training job's GPU-hours and cost are summed over this window (recording rules, one sample a minute): a job that
# runs longer is counted for its last 7 days only; a finished job's totals stay visible for the same 7 days.
TRAINING_COST_WINDOW = "7d"

# kube-state-metrics `--metric-labels-allowlist`: the Kubernetes labels the rules and dashboards join on.
KSM_LABEL_ALLOWLIST = {
    "namespaces": [labels.TEAM],
    "pods": [labels.TEAM, labels.JOB_TYPE, INFERENCE_SERVICE_LABEL, TRAINING_JOB_LABEL, labels.MLFLOW_RUN_ID],
    "nodes": [labels.NODE_POOL, labels.GPU_TYPE, labels.CAPACITY_TYPE, "eks.amazonaws.com/capacityType",
              "node.kubernetes.io/instance-type"],
}


# kube-state-metrics `--metric-annotations-allowlist`: the pod annotation the GPU culler joins DCGM series on
# (kube_pod_annotations{annotation_hub_jupyter_org_username}; components/gpu_culler.py).
KSM_ANNOTATION_ALLOWLIST = {"pods": [labels.NOTEBOOK_USER]}


def ksm_annotation(name: str) -> str:
    """The Prometheus label kube-state-metrics gives an allowlisted annotation: as `ksm_label`, with `annotation_`."""
    return "annotation_" + ksm_label(name).removeprefix("label_")


def ksm_label(name: str) -> str:
    """The Prometheus label kube-state-metrics (v2, internal/store/utils.go `labelName`) gives an allowlisted
    Kubernetes label: `label_` + the name with invalid characters as `_`, then camelCase split to snake_case and
    lower-cased (`eks.amazonaws.com/capacityType` -> `label_eks_amazonaws_com_capacity_type`). Shown against promtool
    on exporter-shaped series in tests/test_prometheus_rules.py."""
    sanitized = re.sub(r"[^a-zA-Z0-9_]", "_", name)
    return "label_" + re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", sanitized).lower()


def ksm_resource(resource: str) -> str:
    """How kube-state-metrics writes an extended resource name in its `resource` label."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", resource)


TEAM_NAMESPACES = f'kube_namespace_labels{{{ksm_label(labels.TEAM)}!=""}}'
INFERENCE_SELECTOR = "kn_serving_invocation_duration_seconds"

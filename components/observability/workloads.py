"""Recording rules that answer per-workload questions: how long a training job ran, its GPU-hours and what it cost
(joined to its MLflow run), and what an InferenceService costs per 1,000 requests.

Built on the GPU allocation rules (rules.py: `mlops:pod_gpus:sum`, `mlops:pod_gpu_cost:usd_per_hour`, priced by
each node's instance type and spot/on-demand capacity type) and on kube-state-metrics and queue-proxy series
(components/data/metrics.yaml). Shown against promtool on exporter-shaped series in
tests/test_workload_cost_rules.py."""

from __future__ import annotations

from typing import Any

from components import labels
from components.observability.metrics import (INFERENCE_SELECTOR, INFERENCE_SERVICE_LABEL, RATE_WINDOW,
                                              RULE_INTERVAL_SECONDS, TRAINING_COST_WINDOW, TRAINING_JOB_LABEL,
                                              ksm_label)
from components.observability.rules import node_info
from components.planning.prices import instance_hour_prices

PER_HOUR = 3600 // RULE_INTERVAL_SECONDS           # samples per hour of a per-minute recorded series
RUNNING = '(max by (namespace, pod) (kube_pod_status_phase{phase="Running"}) == 1)'
ACTIVE = '(max by (namespace, pod) (kube_pod_status_phase{phase=~"Pending|Running"}) == 1)'
JOB = "namespace, training_job, mlflow_run_id"
ISVC = "namespace, inferenceservice"


def _relabel(expr: str, target: str, source: str) -> str:
    return f'label_replace({expr}, "{target}", "$1", "{source}", "(.+)")'


def training_rules() -> list[dict[str, Any]]:
    """Per training job (the operator's `training.kubeflow.org/job-name` pod label) and the MLflow run its pods name
    (`mlops.platform/mlflow-run-id`): start, duration, GPUs and their cost now, GPU-hours and cost so far."""
    job_label, run_label = ksm_label(TRAINING_JOB_LABEL), ksm_label(labels.MLFLOW_RUN_ID)
    pods = _relabel(_relabel(f'kube_pod_labels{{{job_label}!=""}}', "training_job", job_label), "mlflow_run_id",
                    run_label)
    to_job = "* on (namespace, pod) group_left (training_job, mlflow_run_id) mlops:training_pod:info"
    # A pod ends when it completes (kube-state-metrics: its containers' last finish); a pending or running one
    # has not ended yet: now.
    pod_end = (f"(max by (namespace, pod) (kube_pod_completion_time) unless on (namespace, pod) {ACTIVE})"
               f" or on (namespace, pod) (0 * {ACTIVE} + time())")
    return [
        {"record": "mlops:training_pod:info", "expr": f"max by (namespace, pod, training_job, mlflow_run_id) ({pods})"},
        # From the first pod's start (queueing for a GPU excluded) to the last pod's completion, or now.
        {"record": "mlops:training_job_start:timestamp_seconds",
         "expr": f"min by ({JOB}) (max by (namespace, pod) (kube_pod_start_time) {to_job})"},
        {"record": "mlops:training_job_duration:seconds",
         "expr": (f"max by ({JOB}) (({pod_end}) {to_job})"
                  f" - on ({JOB}) mlops:training_job_start:timestamp_seconds")},
        {"record": "mlops:training_job_gpus:sum", "expr": f"sum by ({JOB}) (mlops:pod_gpus:sum {to_job})"},
        {"record": "mlops:training_job_gpu_cost:usd_per_hour",
         "expr": f"sum by ({JOB}) (mlops:pod_gpu_cost:usd_per_hour {to_job})"},
        # Totals over the window (metrics.TRAINING_COST_WINDOW); after the job ends they stay at its final figures
        # until its samples leave the window.
        {"record": "mlops:training_job_gpu_hours:sum",
         "expr": f"sum_over_time(mlops:training_job_gpus:sum[{TRAINING_COST_WINDOW}]) / {PER_HOUR}"},
        {"record": "mlops:training_job_cost:usd",
         "expr": f"sum_over_time(mlops:training_job_gpu_cost:usd_per_hour[{TRAINING_COST_WINDOW}]) / {PER_HOUR}"},
    ]


def instance_price_rules() -> list[dict[str, Any]]:
    """$/hour of every instance type in prices.yaml, on-demand and spot: CPU nodes (any type a Karpenter pool may
    launch) and GPU nodes alike."""
    return [{"record": "mlops:instance_hour_price:usd", "expr": f"vector({price:.12g})",
             "labels": {"instance_type": t, "capacity_type": c}}
            for (t, c), price in instance_hour_prices().items()]


def serving_cost_rules() -> list[dict[str, Any]]:
    """Per InferenceService: its pods' share of their nodes' $/hour, the request rate, and the cost per 1,000
    requests. A pod's share of its node is its largest share of the node's allocatable CPU, memory or GPUs (what
    keeps other pods off the node), so a GPU predictor costs its GPUs' share and a CPU predictor its CPU share."""
    isvc = ksm_label(INFERENCE_SERVICE_LABEL)
    requests = ('sum by (namespace, pod, node, resource) (kube_pod_container_resource_requests{resource=~"cpu|memory"})'
                ' / on (node, resource) group_left ()'
                ' max by (node, resource) (kube_node_status_allocatable{resource=~"cpu|memory"})')
    gpus = ('label_replace(mlops:pod_gpus:sum / on (node) group_left () mlops:node_gpus:count,'
            ' "resource", "gpu", "", "")')
    nodes = node_info(f'{{{ksm_label("node.kubernetes.io/instance-type")}!=""}}')
    pods = _relabel(f'kube_pod_labels{{{isvc}!=""}}', "inferenceservice", isvc)
    return [
        {"record": "mlops:node:info",
         "expr": f"max by (node, node_pool, instance_type, capacity_type) ({nodes})"},
        {"record": "mlops:node_hour_price:usd",
         "expr": "mlops:node:info * on (instance_type, capacity_type) group_left () mlops:instance_hour_price:usd"},
        {"record": "mlops:inference_pod:info", "expr": f"max by (namespace, pod, inferenceservice) ({pods})"},
        {"record": "mlops:inference_pod_node_share:ratio",
         "expr": (f"max by (namespace, pod, node) ({requests} or {gpus})"
                  " * on (namespace, pod) group_left (inferenceservice) mlops:inference_pod:info"
                  f" * on (namespace, pod) group_left () {RUNNING}")},
        {"record": "mlops:inference_cost:usd_per_hour",
         "expr": (f"sum by ({ISVC}) (mlops:inference_pod_node_share:ratio"
                  " * on (node) group_left () mlops:node_hour_price:usd)")},
        {"record": "mlops:inference_requests:rate5m",
         "expr": f"sum by ({ISVC}) (rate({INFERENCE_SELECTOR}_count[{RATE_WINDOW}]))"},
        # $/hour over requests/hour, per 1,000; no series while a model gets no requests.
        {"record": "mlops:inference_cost_per_1k_requests:usd",
         "expr": (f"mlops:inference_cost:usd_per_hour / on ({ISVC}) (mlops:inference_requests:rate5m > 0)"
                  " / 3.6")},
    ]


def workload_rule_groups() -> list[dict[str, Any]]:
    """The PrometheusRule `mlops-workload-cost`: evaluated after `mlops-gpu-cost` (whose series it reads)."""
    interval = f"{RULE_INTERVAL_SECONDS}s"
    return [
        {"name": "mlops-instance-prices", "interval": interval, "rules": instance_price_rules()},
        {"name": "mlops-training-jobs", "interval": interval, "rules": training_rules()},
        {"name": "mlops-serving-cost", "interval": interval, "rules": serving_cost_rules()},
    ]

"""A training job's duration, GPU-hours and cost (at the spot price of its nodes, joined to its MLflow run) and a
model's cost per 1,000 requests, computed by the real `promtool test rules` from the fixture stack's rendered
PrometheusRules (tests/observability_fixture.py) on series shaped as kube-state-metrics, the DCGM exporter and
Knative's queue-proxy emit them (labels as in tests/test_prometheus_rules.py). Every expected value is checked by hand
in its comment; mutations of the rules make promtool fail."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from components import labels, observability
from tests import upstream
from tests.conftest import Rendered
from tests.observability_fixture import PRICES, RUN_ID, TEAM, fixture_stack, rule_files
from tests.test_prometheus_rules import KSM_TARGET, PROMTOOL_HOW, ksm_label, promtool_test, sample, series


@pytest.fixture(scope="module")
def stack() -> Rendered:
    return fixture_stack()


@pytest.fixture(scope="module")
def promtool() -> str:
    return upstream.tool("promtool", PROMTOOL_HOW)


MINUTES = 130


def timeline(*spans: tuple[int, int, Any]) -> str:
    """promtool input values minute by minute: (first minute, last minute, value), missing elsewhere ('_')."""
    values = ["_"] * (MINUTES + 1)
    for first, last, value in spans:
        for m in range(first, last + 1):
            values[m] = f"{value:g}" if isinstance(value, (int, float)) else value
    return " ".join(values)


ALWAYS = (0, MINUTES)


def allowlisted(rendered: Rendered, kind: str, k8s_labels: dict[str, str]) -> dict[str, str]:
    """`label_*` of kube_{kind}_labels: only the Kubernetes labels the rendered kube-state-metrics allowlists."""
    ksm = rendered.helm(observability.RELEASE)["values"]["kube-state-metrics"]["metricLabelsAllowlist"]
    allowed = {k: v.strip("[]").split(",") for k, v in (item.split("=", 1) for item in ksm)}[kind]
    return {ksm_label(k): v for k, v in k8s_labels.items() if k in allowed}


def node(rendered: Rendered, name: str, k8s_labels: dict[str, str], cpu: float, memory: int, gpus: int = 0) -> list:
    out = [series("kube_node_labels", {**KSM_TARGET, "node": name, **allowlisted(rendered, "nodes", k8s_labels)},
                  timeline((*ALWAYS, 1)))]
    for resource, unit, value in (("cpu", "core", cpu), ("memory", "byte", memory), ("nvidia_com_gpu", "integer", gpus)):
        if value:
            out.append(series("kube_node_status_allocatable", {**KSM_TARGET, "node": name, "resource": resource,
                                                               "unit": unit}, timeline((*ALWAYS, value))))
    return out


def pod(rendered: Rendered, name: str, node_name: str, requests: dict[str, float], k8s_labels: dict[str, str],
        phases: dict[str, tuple[int, int]], start: tuple[int, float] | None = None,
        completion: tuple[int, float] | None = None) -> list:
    """A pod's kube-state-metrics series: requests, one 0/1 series per phase (`phases`: phase -> minutes), its
    start and completion timestamps from the minute kube-state-metrics first reports them."""
    own = {**KSM_TARGET, "namespace": TEAM, "pod": name, "uid": f"5e1d{abs(hash(name)) % 10**8:08d}-0000-4000-8000-0"}
    units = {"cpu": "core", "memory": "byte"}
    out = [series("kube_pod_container_resource_requests", {**own, "container": "main", "node": node_name,
                  "resource": r, "unit": units.get(r, "integer")}, timeline((*ALWAYS, v))) for r, v in requests.items()]
    for phase in ("Pending", "Running", "Succeeded", "Failed", "Unknown"):
        first, last = phases.get(phase, (0, -1))
        out.append(series("kube_pod_status_phase", {**own, "phase": phase},
                          timeline((*ALWAYS, 0), (first, last, 1))))
    out.append(series("kube_pod_labels", {**own, **allowlisted(rendered, "pods", {labels.TEAM: TEAM, **k8s_labels})},
                      timeline((*ALWAYS, 1))))
    for metric, at in (("kube_pod_start_time", start), ("kube_pod_completion_time", completion)):
        if at:
            out.append(series(metric, own, timeline((at[0], MINUTES, at[1]))))
    return out


def requests_counter(name: str, isvc: str, per_minute: int) -> dict:
    """A predictor pod's queue-proxy request count (the PodMonitor's target labels), `per_minute` requests a minute."""
    return series("kn_serving_invocation_duration_seconds_count", {
        "job": f"{TEAM}/inference", "namespace": TEAM, "pod": name, "container": "queue-proxy",
        "endpoint": "http-usermetric", "instance": "10.0.4.9:9091", "inferenceservice": isvc, "component": "predictor",
        "revision": f"{isvc}-predictor-00001", "otel_scope_name": "knative.dev/serving/pkg/queue",
        "otel_scope_version": "", "http_response_status_code": "200"}, f"0+{per_minute}x{MINUTES}")


SPOT_GPU_NODE = {labels.NODE_POOL: "training", labels.GPU_TYPE: "t4", labels.CAPACITY_TYPE: "spot",
                 labels.KARPENTER_NODEPOOL: "training", "node.kubernetes.io/instance-type": "g4dn.xlarge"}
GIB = 2**30


def scenario(rendered: Rendered) -> list:
    """Two Karpenter spot g4dn.xlarge nodes run a PyTorchJob's master and worker (one T4 each): pending minutes 0-9,
    running 10-99, succeeded from minute 100. An on-demand m6i.large (EKS node group) runs model `scorer`'s two CPU
    predictor pods, 10 requests/s each; an on-demand g4dn.xlarge (node group t4) runs model `vision`'s GPU
    predictor, 5 requests/s."""
    job = {labels.JOB_TYPE: "training", observability.TRAINING_JOB_LABEL: "fraud-train", labels.MLFLOW_RUN_ID: RUN_ID}
    life = {"Pending": (0, 9), "Running": (10, 99), "Succeeded": (100, MINUTES)}
    gpu_pod = {"nvidia_com_gpu": 1, "cpu": 3, "memory": 12 * GIB}
    return [
        *node(rendered, "ip-10-0-2-41.ec2.internal", SPOT_GPU_NODE, cpu=3.92, memory=15 * GIB, gpus=1),
        *node(rendered, "ip-10-0-2-42.ec2.internal", SPOT_GPU_NODE, cpu=3.92, memory=15 * GIB, gpus=1),
        *node(rendered, "ip-10-0-3-7.ec2.internal", {"eks.amazonaws.com/capacityType": "ON_DEMAND",
              labels.NODE_ROLE: "system", "node.kubernetes.io/instance-type": "m6i.large"}, cpu=1.93, memory=7 * GIB),
        *node(rendered, "ip-10-0-1-23.ec2.internal", {labels.NODE_POOL: "t4", labels.GPU_TYPE: "t4",
              "eks.amazonaws.com/capacityType": "ON_DEMAND", "node.kubernetes.io/instance-type": "g4dn.xlarge"},
              cpu=3.92, memory=15 * GIB, gpus=1),
        # Started at 600 s and 630 s, completed at 6000 s and 5970 s (promtool's clock starts at 0).
        *pod(rendered, "fraud-train-master-0", "ip-10-0-2-41.ec2.internal", gpu_pod, job, life, (10, 600), (100, 6000)),
        *pod(rendered, "fraud-train-worker-0", "ip-10-0-2-42.ec2.internal", gpu_pod, job, life, (11, 630), (100, 5970)),
        *[item for i in (1, 2) for item in [
            *pod(rendered, f"scorer-predictor-00001-deployment-7f9c-{i}", "ip-10-0-3-7.ec2.internal",
                 {"cpu": 0.5, "memory": 1 * GIB}, {labels.JOB_TYPE: "inference",
                                                   observability.INFERENCE_SERVICE_LABEL: "scorer"},
                 {"Running": ALWAYS}, (0, 0)),
            requests_counter(f"scorer-predictor-00001-deployment-7f9c-{i}", "scorer", 600)]],
        *pod(rendered, "vision-predictor-00001-deployment-5c2d-1", "ip-10-0-1-23.ec2.internal",
             {"nvidia_com_gpu": 1, "cpu": 1, "memory": 4 * GIB},
             {labels.JOB_TYPE: "inference", observability.INFERENCE_SERVICE_LABEL: "vision"}, {"Running": ALWAYS}, (0, 0)),
        requests_counter("vision-predictor-00001-deployment-5c2d-1", "vision", 300),
    ]


JOB_LABELS = {"namespace": TEAM, "training_job": "fraud-train", "mlflow_run_id": RUN_ID}
# Training job, hand-checked: first start 600 s, last completion 6000 s -> 5400 s (1.5 h); while it runs, at minute 50
# (3000 s): 3000 - 600 = 2400 s. Two pods x 1 T4 x 90 running minutes = 180 GPU-minutes = 3.0 GPU-hours; at the spot
# $0.20/GPU-hour (g4dn.xlarge: 1 GPU): 3.0 x 0.20 = $0.60 (while running: 2 GPUs x 0.20 = $0.40/hour).
DURATION_S, DURATION_RUNNING_S, GPU_HOURS, COST_USD, COST_RATE = 5400, 2400, 3.0, 0.60, 0.40
# Serving, hand-checked: a scorer pod's share of its m6i.large is its CPU share 0.5 / 1.93 = 0.2591 (memory:
# 1/7 = 0.1429); 2 pods x 0.2591 x $0.10/hour = $0.05181/hour; 20 requests/s = 72,000/hour -> $0.05181 / 72 =
# $0.000720 per 1,000 requests. vision holds its g4dn.xlarge's only GPU (share 1 > CPU 1/3.92): $0.50/hour over
# 5 requests/s = 18,000/hour -> $0.50 / 18 = $0.02778 per 1,000 requests.
SCORER_PER_HOUR = 2 * 0.5 / 1.93 * 0.10
# (computed in the rules' order: promtool 2.42 compares the floats exactly)
SCORER_PER_1K = SCORER_PER_HOUR / 20 / 3.6
VISION_PER_1K = 0.50 / 5 / 3.6


def test_hand_checked_figures_are_what_the_comments_say():
    assert (round(SCORER_PER_HOUR, 5), round(SCORER_PER_1K, 6), round(VISION_PER_1K, 5)) == (0.05181, 0.00072, 0.02778)
    assert GPU_HOURS * PRICES["g4dn.xlarge"]["spotTypical"] == pytest.approx(COST_USD)


def expectations() -> list[dict]:
    def at(minute: int, record: str, labels_: dict, value: float) -> dict:
        return {"expr": record, "eval_time": f"{minute}m", "exp_samples": [sample(record, labels_, value)]}

    return [
        at(50, "mlops:training_job_duration:seconds", JOB_LABELS, DURATION_RUNNING_S),
        at(50, "mlops:training_job_gpu_cost:usd_per_hour", JOB_LABELS, COST_RATE),
        at(120, "mlops:training_job_duration:seconds", JOB_LABELS, DURATION_S),
        at(120, "mlops:training_job_gpu_hours:sum", JOB_LABELS, GPU_HOURS),
        at(120, "mlops:training_job_cost:usd", JOB_LABELS, COST_USD),
        at(60, "mlops:inference_cost:usd_per_hour", {"namespace": TEAM, "inferenceservice": "scorer"}, SCORER_PER_HOUR)
        | {"expr": 'mlops:inference_cost:usd_per_hour{inferenceservice="scorer"}'},
        {"expr": "mlops:inference_cost_per_1k_requests:usd", "eval_time": "60m", "exp_samples": [
            sample("mlops:inference_cost_per_1k_requests:usd", {"namespace": TEAM, "inferenceservice": "scorer"},
                   SCORER_PER_1K),
            sample("mlops:inference_cost_per_1k_requests:usd", {"namespace": TEAM, "inferenceservice": "vision"},
                   VISION_PER_1K)]},
    ]


def run(promtool: str, stack: Rendered, tmp_path, rules: dict | None = None):
    test = {"interval": "1m", "input_series": scenario(stack), "promql_expr_test": expectations()}
    files = rules or {k: v for k, v in rule_files(stack).items() if k in ("mlops-gpu-cost", "mlops-workload-cost")}
    return promtool_test(promtool, None, [test], tmp_path, files)


def test_job_duration_cost_per_job_and_cost_per_1k_requests_from_exporter_shaped_series(stack, promtool, tmp_path):
    done = run(promtool, stack, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("mutation, wrong", [
    (("min by (namespace, training_job, mlflow_run_id) (max by (namespace, pod) (kube_pod_start_time)",
      "max by (namespace, training_job, mlflow_run_id) (max by (namespace, pod) (kube_pod_start_time)"),  # last start
     "mlops:training_job_duration:seconds"),
    (('"capacity_type", "$1", "label_karpenter_sh_capacity_type"', '"capacity_type", "$1", "label_capacity_type"'),
     "mlops:training_job_gpu_cost:usd_per_hour"),
    (("(mlops:inference_requests:rate5m > 0) / 3.6", "(mlops:inference_requests:rate5m > 0) / 3600"),
     "mlops:inference_cost_per_1k_requests:usd"),
    (('label_replace(mlops:pod_gpus:sum / on (node) group_left () mlops:node_gpus:count, "resource", "gpu", "", "")',
      'label_replace(mlops:pod_gpus:sum * 0, "resource", "gpu", "", "")'),       # GPU predictors priced by CPU only
     "mlops:inference_cost_per_1k_requests:usd"),
])
def test_the_figures_fail_when_a_rule_is_broken(stack, promtool, tmp_path, mutation, wrong):
    """Mutations: the job starting at its last pod's start, spot nodes without their capacity type (no price), cost
    per request instead of per 1,000, the GPU share ignored: promtool reports a wrong or missing value."""
    text = yaml.safe_dump({k: v for k, v in rule_files(stack).items() if k in ("mlops-gpu-cost", "mlops-workload-cost")},
                          width=10**6)
    assert text.count(mutation[0]) >= 1, mutation[0]
    done = run(promtool, stack, tmp_path, yaml.safe_load(text.replace(*mutation)))
    # The figure the mutation breaks is what promtool reports (a non-zero exit alone would also come from a rule
    # file it cannot load).
    out = done.stdout + done.stderr
    assert done.returncode != 0 and "FAILED:" in out and f'expr: "{wrong}"' in out, out



"""The seed's observability questions, answered on a small fixture stack (not the shipped ones): how long a training
job ran, its GPU-hours and cost at the spot price of its nodes, joined to its MLflow run; what a model costs per
1,000 requests; the scrape of the training operator and the rollout service; the dashboards' structure and that
every panel queries only series something the platform deploys produces (components/data/metrics.yaml).

The figures come from the real `promtool test rules` evaluating the rendered PrometheusRules on series shaped as
kube-state-metrics, the DCGM exporter and Knative's queue-proxy emit them (labels as in tests/test_prometheus_rules.py),
with a fixture price table of round numbers so every expected value is checked by hand in its comment.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from typing import Any

import jsonschema
import pytest
import yaml

from components import catalog, labels, model_rollout, observability, training
from components.endpoints import MLFLOW
from tests.conftest import Rendered, run_config
from tests.grafana_schema import DASHBOARD_SCHEMA, BUILTIN_VARIABLES
from tests.test_observability import dashboards, expression_problems, targets
from tests.test_prometheus_rules import KSM_TARGET, PROMTOOL_HOW, ksm_label, promtool_test, sample, series
from tests import upstream

P = "mlops-platform:"
TEAM = "alpha"
RUN_ID = "4c1e9a7f2b8d4e6a9f0c3b5d7e1a2c4f"          # an MLflow run id: 32 hex digits
CONFIG = {
    "aws:region": "us-west-2",
    P + "environment": "dev",
    P + "protectData": False,
    P + "network": {"vpcCidr": "10.40.0.0/16", "azCount": 2, "natGateways": "single"},
    P + "cluster": {
        "kubernetesVersion": "1.34", "adminRoleArns": ["arn:aws:iam::123456789012:role/platform-admins"],
        "logRetentionDays": 7,
        "systemNodes": {"instanceTypes": ["m6i.large"], "capacityType": "ON_DEMAND", "minSize": 2, "desiredSize": 2,
                        "maxSize": 3},
        "gpuNodeGroups": [{"name": "t4", "instanceTypes": ["g4dn.xlarge"], "capacityType": "ON_DEMAND", "minSize": 0,
                           "desiredSize": 0, "maxSize": 2}]},
    P + "teams": [{"name": TEAM, "gpuQuota": 2, "notebookProfiles": ["cpu"], "models": [
        {"name": "scorer", "location": "s3://alpha-models/scorer/v1", "framework": "sklearn", "peakRps": 20,
         "rollout": {"mode": "registry", "registeredModel": "scorer", "alias": "champion"}}]}],
    P + "gpu": {"nodePools": [{"name": "training", "instanceTypes": ["g4dn.xlarge"], "capacityTypes": ["spot"],
                               "gpuLimit": 2}]},
    P + "notebooks": {"auth": {"type": "dummy", "dummyUsers": {"alice": [TEAM]}}},
}
# Round $/hour figures instead of prices.yaml's, so the expected costs below are plain arithmetic.
PRICES = {"m6i.large": {"onDemand": 0.10, "spotTypical": 0.04}, "g4dn.xlarge": {"onDemand": 0.50, "spotTypical": 0.20}}
MINUTES = 130


@pytest.fixture(scope="module")
def stack() -> Rendered:
    data = copy.deepcopy(catalog.prices())
    data["instances"] = copy.deepcopy(PRICES)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(catalog, "prices", lambda: data)
        return Rendered(run_config(copy.deepcopy(CONFIG)))


@pytest.fixture(scope="module")
def promtool() -> str:
    return upstream.tool("promtool", PROMTOOL_HOW)


def rule_files(rendered: Rendered) -> dict[str, dict]:
    return {o["metadata"]["name"]: o["spec"] for o in rendered.objects("PrometheusRule")}


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


ORDER = ["mlops-gpu-catalog", "mlops-gpu-allocation", "mlops-instance-prices", "mlops-training-jobs",
         "mlops-serving-cost"]


def run(promtool: str, stack: Rendered, tmp_path, rules: dict | None = None):
    test = {"interval": "1m", "input_series": scenario(stack), "promql_expr_test": expectations()}
    files = rules or {k: v for k, v in rule_files(stack).items() if k in ("mlops-gpu-cost", "mlops-workload-cost")}
    return promtool_test(promtool, None, [test], tmp_path, files)


def test_job_duration_cost_per_job_and_cost_per_1k_requests_from_exporter_shaped_series(stack, promtool, tmp_path):
    done = run(promtool, stack, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("mutation", [
    ("min by (namespace, training_job, mlflow_run_id) (max by (namespace, pod) (kube_pod_start_time)",
     "max by (namespace, training_job, mlflow_run_id) (max by (namespace, pod) (kube_pod_start_time)"),  # last start
    ('"capacity_type", "$1", "label_karpenter_sh_capacity_type"', '"capacity_type", "$1", "label_capacity_type"'),
    ("(mlops:inference_requests:rate5m > 0) / 3.6", "(mlops:inference_requests:rate5m > 0) / 3600"),
    ('label_replace(mlops:pod_gpus:sum / on (node) group_left () mlops:node_gpus:count, "resource", "gpu", "", "")',
     'label_replace(mlops:pod_gpus:sum * 0, "resource", "gpu", "", "")'),        # GPU predictors priced by CPU only
])
def test_the_figures_fail_when_a_rule_is_broken(stack, promtool, tmp_path, mutation):
    """Mutations: the job starting at its last pod's start, spot nodes without their capacity type (no price), cost
    per request instead of per 1,000, the GPU share ignored: promtool reports a wrong or missing value."""
    text = yaml.safe_dump({k: v for k, v in rule_files(stack).items() if k in ("mlops-gpu-cost", "mlops-workload-cost")},
                          width=10**6)
    assert text.count(mutation[0]) >= 1, mutation[0]
    done = run(promtool, stack, tmp_path, yaml.safe_load(text.replace(*mutation)))
    assert done.returncode != 0, mutation


# ---- the dashboards: structure, variables, produced series ---------------------------------------------------------


def variable_problems(board: dict) -> list[str]:
    """`$name` / `${name}` in queries, legends and links that name neither a dashboard variable nor a Grafana one."""
    defined = {v["name"] for v in board["templating"]["list"]} | BUILTIN_VARIABLES
    used = re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", json.dumps(board["panels"]))
    return sorted({u for u in used if u not in defined})


def test_dashboards_validate_against_the_grafana_dashboard_schema(stack):
    boards = dashboards(stack)
    assert {"mlops-gpu", "mlops-cost", "mlops-models", "mlops-training"} <= set(boards)
    validator = jsonschema.Draft7Validator(DASHBOARD_SCHEMA)
    for uid, board in boards.items():
        assert [f"{e.json_path}: {e.message}" for e in validator.iter_errors(board)] == [], uid
        assert variable_problems(board) == [], uid
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), uid
    # Mutations: a misspelt key, a panel type Grafana does not ship, a link to an undefined variable.
    training_board = boards["mlops-training"]
    for mutate in (lambda b: b["panels"][0].update(gridpos=b["panels"][0]["gridPos"]),
                   lambda b: b["panels"][0].update(type="graph-v2"),
                   lambda b: b["panels"][0]["targets"][0].pop("refId")):
        broken = copy.deepcopy(training_board)
        mutate(broken)
        assert list(validator.iter_errors(broken)), mutate
    broken = json.loads(json.dumps(training_board).replace("${mlflow}", "${mlflow_url}"))
    assert variable_problems(broken) == ["mlflow_url"]


def test_every_panel_queries_only_series_the_platform_produces(stack):
    """Every metric a panel, variable or rule names is recorded by a platform rule or listed for an exporter in
    components/data/metrics.yaml, and every exporter listed there is scraped by a monitor this stack declares."""
    assert expression_problems(stack) == []
    exprs = " ".join(e for board in dashboards(stack).values() for _, e in targets(board))
    for produced in ("mlops:training_job_cost:usd", "mlops:training_job_duration:seconds",
                     "mlops:inference_cost_per_1k_requests:usd", "training_operator_jobs_failed_total",
                     "mlops_model_registry_metric", "mlops_model_deployed_since_timestamp_seconds"):
        assert produced in exprs, produced
    monitors = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"])
                for o in stack.objects("ServiceMonitor") + stack.objects("PodMonitor")}
    for name, exporter in catalog.exporter_metrics()["exporters"].items():
        by = exporter["scrapedBy"]
        if "helmRelease" in by:
            assert stack.helm(by["helmRelease"])["values"]["kubeStateMetrics"] == {"enabled": True}
        else:
            assert (by["kind"], by["namespace"], by["name"]) in monitors, name


@pytest.mark.parametrize("mistake", [
    ("mlops:training_job_cost:usd{", "mlops:training_job_usd{"),                      # a record nobody defines
    ("training_operator_jobs_failed_total{", "training_operator_pytorchjobs_failed_total{"),   # pre-v1.5 name
    ('job_namespace=~\\"$team\\"', 'namespace_name=~\\"$team\\"'),                      # a label it does not carry
    ("mlops_model_registry_metric{", "mlops_model_accuracy{"),                          # not what the service exports
])
def test_the_produced_series_check_finds_a_panel_naming_something_else(stack, mistake):
    rendered = Rendered(stack.run)
    hits = 0
    for cm in rendered.manifests:
        if cm["kind"] == "ConfigMap" and (cm["metadata"].get("labels") or {}).get(observability.DASHBOARD_LABEL):
            hits += sum(v.count(mistake[0]) for v in cm["data"].values())
            cm["data"] = {k: v.replace(*mistake) for k, v in cm["data"].items()}
    assert hits and expression_problems(rendered)


def test_the_training_table_links_each_job_to_its_mlflow_run(stack):
    board = dashboards(stack)["mlops-training"]
    table = next(p for p in board["panels"] if p["title"].startswith("Training jobs:"))
    exprs = [t["expr"] for t in table["targets"]]
    assert [re.search(r"mlops:\w+:\w+", e).group(0) for e in exprs] == [
        "mlops:training_job_duration:seconds", "mlops:training_job_gpu_hours:sum", "mlops:training_job_cost:usd"]
    assert all(e.startswith("max by (namespace, training_job, mlflow_run_id)") for e in exprs)
    link = next(o for o in table["fieldConfig"]["overrides"] if o["matcher"]["options"] == "mlflow_run_id")
    links = next(p["value"] for p in link["properties"] if p["id"] == "links")
    assert links[0]["url"] == "${mlflow}/#/runs/${__value.raw}"     # MLflow 3's direct run route (#/runs/:runUuid)
    assert next(v for v in board["templating"]["list"] if v["name"] == "mlflow")["type"] == "textbox"


def test_models_dashboard_puts_cost_per_1k_requests_beside_latency_and_errors_and_a_rollout_row(stack):
    panels = dashboards(stack)["mlops-models"]["panels"]
    titles = [p["title"] for p in panels]
    assert titles.index("Cost per 1,000 requests") == titles.index("Latency p50 / p95 / p99 and the p99 target") + 1
    assert "Error rate (5xx share of requests)" in titles
    row = titles.index(next(t for t in titles if t.startswith("Model rollouts")))
    assert panels[row]["type"] == "row"
    assert {"Deployed version and since when", "Registry metrics of the deployed version",
            "Rollouts over the range, by outcome"} <= set(titles[row + 1:])


# ---- what is scraped, and the run-id convention ----------------------------------------------------------------


def test_the_training_operator_and_the_rollout_service_are_scraped(stack):
    operator = stack.obj("ServiceMonitor", training.NAME, training.NAMESPACE)["spec"]
    service = stack.obj("Service", training.NAME, training.NAMESPACE)
    assert operator["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert operator["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert next(p for p in service["spec"]["ports"] if p["name"] == operator["endpoints"][0]["port"])["port"] == \
        training.METRICS_PORT
    ns = MLFLOW.namespace
    rollout = stack.obj("ServiceMonitor", model_rollout.NAME, ns)["spec"]
    svc = stack.obj("Service", model_rollout.NAME, ns)
    assert rollout["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    port = next(p for p in svc["spec"]["ports"] if p["name"] == rollout["endpoints"][0]["port"])
    # The series name the model's team namespace: the target's (MLflow's) must not overwrite it.
    assert rollout["endpoints"][0]["honorLabels"] is True
    # Prometheus is admitted to the rollout pods on the port behind that Service port, and on no other.
    ingress = stack.obj("NetworkPolicy", f"{model_rollout.NAME}-ingress", ns)["spec"]["ingress"]
    prometheus = [rule for rule in ingress if any(p.get("namespaceSelector", {}).get("matchLabels", {}).get(
        "kubernetes.io/metadata.name") == observability.NAMESPACE for p in rule["from"])]
    assert [rule["ports"] for rule in prometheus] == [[{"protocol": "TCP", "port": model_rollout.PORT}]]
    assert port["targetPort"] == "http" and model_rollout.PORT == 8080


def test_without_observability_nothing_is_scraped_or_recorded():
    config = copy.deepcopy(CONFIG)
    config[P + "teams"][0]["models"][0].pop("rollout")          # registry mode needs observability
    config[P + "observability"] = {"enabled": False}
    rendered = Rendered(run_config(config))
    assert not rendered.objects("ServiceMonitor") and not rendered.objects("PrometheusRule")


def test_training_pods_carry_the_mlflow_run_id_for_the_cost_rules(stack):
    defaults = yaml.safe_load(stack.obj("ConfigMap", training.DEFAULTS_CONFIGMAP, TEAM)["data"]["podTemplate.yaml"])
    assert labels.MLFLOW_RUN_ID in defaults["metadata"]["labels"]
    env = defaults["spec"]["containers"][0]["env"]
    assert {"name": "MLFLOW_RUN_ID", "valueFrom": {"fieldRef": {
        "fieldPath": f"metadata.labels['{labels.MLFLOW_RUN_ID}']"}}} in env
    allowlist = stack.helm(observability.RELEASE)["values"]["kube-state-metrics"]["metricLabelsAllowlist"]
    pods = next(item for item in allowlist if item.startswith("pods="))
    assert labels.MLFLOW_RUN_ID in pods and observability.TRAINING_JOB_LABEL in pods
    rule = next(r for g in rule_files(stack)["mlops-workload-cost"]["groups"] for r in g["rules"]
                if r.get("record") == "mlops:training_pod:info")
    assert ksm_label(labels.MLFLOW_RUN_ID) in rule["expr"] and ksm_label(observability.TRAINING_JOB_LABEL) in rule["expr"]


MLFLOW_SCRIPT = """
import json, os, sys
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
if sys.argv[2] == "create":
    client = mlflow.MlflowClient()
    print(client.create_run(client.create_experiment("fraud")).info.run_id)
else:                                   # the job's own code: no run id in it, only MLFLOW_RUN_ID in the environment
    with mlflow.start_run() as run:
        mlflow.log_metric("loss", 0.25)
    print(json.dumps({"run": run.info.run_id, "loss": mlflow.get_run(run.info.run_id).data.metrics.get("loss")}))
"""


def test_a_job_pod_logs_to_the_run_its_label_names_with_the_real_mlflow_client(stack, tmp_path):
    """The pod template's MLFLOW_RUN_ID, resolved as the kubelet does from the label the cost rules read, makes
    `mlflow.start_run()` (MLflow 3.9, the platform's image) log to the run created beforehand; without the label the
    variable is empty and MLflow starts a new run."""
    python = upstream.clients_python()
    uri = (tmp_path / "mlruns").as_uri()          # a file store: the same client code path, no database to migrate
    script = tmp_path / "job.py"
    script.write_text(MLFLOW_SCRIPT)

    def mlflow_(mode: str, env: dict[str, str]) -> str:
        done = subprocess.run([python, str(script), uri, mode], capture_output=True, text=True, timeout=300,
                              env={**os.environ, **env}, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip().splitlines()[-1]

    template = yaml.safe_load(stack.obj("ConfigMap", training.DEFAULTS_CONFIGMAP, TEAM)["data"]["podTemplate.yaml"])
    field = next(e for e in template["spec"]["containers"][0]["env"] if "fieldRef" in e.get("valueFrom", {}))
    key = re.fullmatch(r"metadata\.labels\['(.+)'\]", field["valueFrom"]["fieldRef"]["fieldPath"]).group(1)
    assert key == labels.MLFLOW_RUN_ID

    run_id = mlflow_("create", {})
    template["metadata"]["labels"][key] = run_id                # what the user sets on the job
    logged = json.loads(mlflow_("job", {field["name"]: template["metadata"]["labels"].get(key, "")}))
    assert logged == {"run": run_id, "loss": 0.25}
    del template["metadata"]["labels"][key]                     # a job without the label: a new run
    assert json.loads(mlflow_("job", {field["name"]: template["metadata"]["labels"].get(key, "")}))["run"] != run_id

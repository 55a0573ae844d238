"""The seed's observability questions on the fixture stack (tests/observability_fixture.py, not the shipped stacks):
the dashboards against a strict schema of Grafana's dashboard model, every panel naming only series something the
platform deploys produces (components/data/metrics.yaml), the training table's link to the MLflow run, cost per 1,000
requests beside latency and errors, the scrape of the training operator and the rollout service, and the MLflow run
id convention, shown with the real MLflow client. The figures themselves: tests/test_workload_cost_rules.py."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess

import jsonschema
import pytest
import yaml

from components import catalog, labels, model_rollout, observability, training
from components.endpoints import MLFLOW
from tests import upstream
from tests.conftest import Rendered, run_config
from tests.grafana_schema import BUILTIN_VARIABLES, DASHBOARD_SCHEMA
from tests.observability_fixture import CONFIG, P, TEAM, fixture_stack, rule_files
from tests.observability_check import dashboards, expression_problems, targets
from tests.test_prometheus_rules import ksm_label


@pytest.fixture(scope="module")
def stack() -> Rendered:
    return fixture_stack()


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

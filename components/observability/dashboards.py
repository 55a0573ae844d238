"""Grafana dashboards (JSON model, schemaVersion 39) as ConfigMaps for the Grafana sidecar: GPUs, cost, models, training
jobs."""

from __future__ import annotations

from typing import Any

from components import catalog, labels
from components.config import ObservabilityAlertsConfig, TeamConfig
from components.endpoints import MLFLOW
from components.observability.metrics import (INFERENCE_SELECTOR, INFERENCE_SERVICE_LABEL, RATE_WINDOW,
                                              RULE_INTERVAL_SECONDS, TEAM_NAMESPACES, TRAINING_COST_WINDOW, ksm_label)
from components.planning.gpu_supply import GpuPool
from components.planning.prices import gpu_hour_prices

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
            transformations: list[dict[str, Any]] | None = None,
            overrides: list[dict[str, Any]] | None = None) -> None:
        if self.x + width > 24:
            self.x, self.y = 0, self.y + self.row_height
            self.row_height = 0
        defaults: dict[str, Any] = {}
        if unit:
            defaults["unit"] = unit
        panel: dict[str, Any] = {
            "id": len(self.panels) + 1, "type": kind, "title": title, "description": description,
            "gridPos": {"x": self.x, "y": self.y, "w": width, "h": height},
            "fieldConfig": {"defaults": defaults, "overrides": overrides or []}, "options": options or {},
        }
        if targets:
            panel["datasource"] = DATASOURCE
            panel["targets"] = [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)]
        if transformations:
            panel["transformations"] = transformations
        self.panels.append(panel)
        self.x += width
        self.row_height = max(self.row_height, height)

    def row(self, title: str) -> None:
        """A full-width row header; the panels added after it belong to it."""
        if self.x:
            self.x, self.y = 0, self.y + self.row_height
        self.panels.append({"id": len(self.panels) + 1, "type": "row", "title": title, "collapsed": False,
                            "panels": [], "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1}})
        self.y, self.row_height = self.y + 1, 0

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
    layout.add("timeseries", "Cost per 1,000 requests", [
        _target(f"mlops:inference_cost_per_1k_requests:usd{sel}", "{{namespace}}/{{inferenceservice}}")],
        unit="currencyUSD", description="The model's pods' share of their nodes' $/hour (the largest of their CPU, "
                                        "memory or GPU share of the node, priced by instance type and spot/on-demand "
                                        "from prices.yaml) over its requests per hour, x 1,000. No line while the "
                                        "model gets no requests.")
    layout.add("timeseries", "Serving cost per hour (node share)", [
        _target(f"mlops:inference_cost:usd_per_hour{sel}", "{{namespace}}/{{inferenceservice}}")], unit="currencyUSD")
    layout.add("timeseries", "Replicas running", [
        _target(f'count by (namespace, {ksm_label(INFERENCE_SERVICE_LABEL)}) (kube_pod_labels{{namespace=~"$team", '
                f'{ksm_label(INFERENCE_SERVICE_LABEL)}=~"$model"}} * on (namespace, pod) group_left () '
                '(max by (namespace, pod) (kube_pod_status_phase{phase="Running"}) == 1))',
                f"{{{{namespace}}}}/{{{{{ksm_label(INFERENCE_SERVICE_LABEL)}}}}}")])
    layout.add("stat", "GPU cost over the range", [
        _target(f'sum by (namespace, workload) (sum_over_time(mlops:workload_gpu_cost:usd_per_hour{{namespace=~"$team",'
                f' workload_kind="inference", workload=~"$model"}}[$__range])) {HOURS}', "{{namespace}}/{{workload}}",
                instant=True)], unit="currencyUSD")
    layout.row("Model rollouts (registry mode: the rollout service's metrics)")
    layout.add("table", "Deployed version and since when", [
        _target(f"max by (namespace, inferenceservice, registered_model, version) "
                f"(mlops_model_deployed_since_timestamp_seconds{sel}) * 1000", instant=True)],
        unit="dateTimeAsIso", description="The registered model version each registry-mode InferenceService serves, "
                                          "as the rollout service last promoted it.")
    layout.add("table", "Registry metrics of the deployed version", [
        _target(f"max by (namespace, inferenceservice, registered_model, version, metric) "
                f"(mlops_model_registry_metric{sel})", instant=True)],
        description="The metrics MLflow's registry holds for the deployed version (e.g. accuracy), as the rollout "
                    "service read them when it promoted it.")
    layout.add("bargauge", "Rollouts over the range, by outcome", [
        _target(f"sum by (namespace, inferenceservice, outcome) (increase(mlops_model_rollouts_total{sel}"
                "[$__range]))", "{{inferenceservice}} {{outcome}}", instant=True)], width=24, height=6)
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


MLFLOW_UI_VARIABLE = {"name": "mlflow", "label": "MLflow UI", "type": "textbox", "query": "http://localhost:5000",
                      "current": {"text": "http://localhost:5000", "value": "http://localhost:5000"}, "hide": 0,
                      "description": "Where your browser reaches MLflow (kubectl -n mlflow port-forward svc/mlflow "
                                     "5000:80); the run links open <this>/#/runs/<run id>."}


def training_dashboard() -> dict[str, Any]:
    layout = _Layout()
    job = "namespace, training_job, mlflow_run_id"

    def final(record: str) -> dict[str, Any]:    # the job's last (largest) figure within the range
        return _target(f"max by ({job}) (max_over_time({record}{TEAM}[$__range]))", instant=True)

    columns = {"Value #A": ("Duration", "s"), "Value #B": ("GPU-hours", "h"), "Value #C": ("Cost", "currencyUSD")}
    overrides = [{"matcher": {"id": "byName", "options": name},
                  "properties": [{"id": "displayName", "value": title}, {"id": "unit", "value": unit}]}
                 for name, (title, unit) in columns.items()]
    overrides.append({"matcher": {"id": "byName", "options": "mlflow_run_id"}, "properties": [
        {"id": "displayName", "value": "MLflow run"},
        {"id": "links", "value": [{"title": "Open the MLflow run", "url": "${mlflow}/#/runs/${__value.raw}",
                                   "targetBlank": True}]}]})
    layout.add("table", "Training jobs: duration, GPU-hours and cost, with their MLflow run", [
        final("mlops:training_job_duration:seconds"), final("mlops:training_job_gpu_hours:sum"),
        final("mlops:training_job_cost:usd")], width=24, height=10, overrides=overrides,
        transformations=[{"id": "merge", "options": {}},
                         {"id": "organize", "options": {"excludeByName": {"Time": True}}}],
        description="Per job (the operator's training.kubeflow.org/job-name pod label) and the MLflow run its pods "
                    f"name ({labels.MLFLOW_RUN_ID}): from the first pod's start to the last pod's completion; GPU-hours "
                    f"and cost over the job's last {TRAINING_COST_WINDOW}, at the $/GPU-hour of each node's instance "
                    "type and spot/on-demand capacity (prices.yaml). Click a run to open it in MLflow.")
    layout.add("timeseries", "GPUs held per training job", [
        _target(f"mlops:training_job_gpus:sum{TEAM}", "{{namespace}}/{{training_job}}")])
    layout.add("timeseries", "GPU cost rate per training job", [
        _target(f"mlops:training_job_gpu_cost:usd_per_hour{TEAM}", "{{namespace}}/{{training_job}}")],
        unit="currencyUSD")
    layout.add("bargauge", "Jobs per team over the range (training operator)", [
        _target(f'sum by (job_namespace) (increase(training_operator_jobs_{outcome}_total{{job_namespace=~"$team"}}'
                f"[$__range]))", f"{{{{job_namespace}}}} {outcome}", instant=True)
        for outcome in ("created", "successful", "failed", "restarted")], width=24, height=6,
        description="The Kubeflow training operator's own counters (reset when the operator restarts).")
    return _dashboard("mlops-training", "MLOps / Training jobs", "Training job duration, GPU-hours and cost per job, "
                      "linked to the job's MLflow run.", layout, _variables(TEAM_VARIABLE, MLFLOW_UI_VARIABLE),
                      "now-7d")


def dashboards(teams: list[TeamConfig], pools: list[GpuPool], idle_percent: int,
               alerts: ObservabilityAlertsConfig) -> dict[str, dict[str, Any]]:
    """Dashboard uid -> Grafana dashboard JSON model."""
    return {d["uid"]: d for d in (gpu_dashboard(idle_percent), cost_dashboard(pools), models_dashboard(teams, alerts),
                                  training_dashboard())}

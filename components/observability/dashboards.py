"""Grafana dashboards (JSON model, schemaVersion 39) as ConfigMaps for the Grafana sidecar: GPUs, cost, models."""

from __future__ import annotations

from typing import Any

from components import catalog
from components.config import ObservabilityAlertsConfig, TeamConfig
from components.endpoints import MLFLOW
from components.observability.metrics import (INFERENCE_SELECTOR, INFERENCE_SERVICE_LABEL, RATE_WINDOW,
                                              RULE_INTERVAL_SECONDS, TEAM_NAMESPACES, ksm_label)
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

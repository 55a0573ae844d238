"""Observability: the pinned Prometheus/Grafana install, what it scrapes, the dashboards and rules as they end up in
the cluster, every PromQL expression against the metrics the exporters really emit (components/data/metrics.yaml),
one source of prices shared with `python -m preview cost`, and the config rules."""

from __future__ import annotations

import json
import re
from typing import Any

import pulumi
import pytest

from components import catalog, labels, observability
from components.config import gpu_pools, parse_config
from components.endpoints import PROMETHEUS, MetricsScraper, PodSource
from preview import cost, render
from preview.aws_mocks import AwsLikeMocks
from tests.conftest import Rendered, assert_config_problem, raw_config, run_config, stack_yaml
from tests.observability_check import (culler_queries, dashboards, expression_problems, promql, recorded,
                                       rule_groups, rules, selectors, targets, values_of_hub_with_culler)

PREFIX = "mlops-platform:"
RELEASE = observability.RELEASE
STACKS = ["dev", "prod"]


# ---- helpers -------------------------------------------------------------------------------------------------


def values(rendered: Rendered) -> dict[str, Any]:
    return rendered.helm(RELEASE)["values"]


def mock_password(name: str, length: int) -> str:
    args = pulumi.runtime.MockResourceArgs(typ="random:index/randomPassword:RandomPassword", name=name,
                                           inputs={"length": length, "special": False}, provider="", resource_id="")
    return AwsLikeMocks().new_resource(args)[1]["result"]


# ---- the installation ----------------------------------------------------------------------------------------


def test_a_pinned_stack_with_only_prometheus_grafana_alertmanager_kube_state_metrics_and_the_operator(dev):
    release = dev.helm(RELEASE)
    assert release["version"] == "88.2.0" and release["chart"] == "kube-prometheus-stack"
    assert release["repositoryOpts"]["repo"] == "https://prometheus-community.github.io/helm-charts"
    assert release["namespace"] == "monitoring"
    v = release["values"]
    assert v["crds"] == {"enabled": True} and v["kubeStateMetrics"] == {"enabled": True}
    assert v["grafana"]["enabled"] is True
    # Alertmanager reads its configuration from the component's Secret (tests/test_alert_routing.py), never from values.
    assert v["alertmanager"]["enabled"] is True and v["alertmanager"]["alertmanagerSpec"]["useExistingSecret"] is True
    assert "config" not in v["alertmanager"] and v["defaultRules"] == {"create": False}
    assert v["nodeExporter"] == {"enabled": False}
    for scraped_elsewhere in ("kubeApiServer", "kubelet", "kubeControllerManager", "coreDns", "kubeDns", "kubeEtcd",
                              "kubeScheduler", "kubeProxy"):
        assert v[scraped_elsewhere] == {"enabled": False}, scraped_elsewhere
    assert v["grafana"]["defaultDashboardsEnabled"] is False


@pytest.mark.parametrize("stack", STACKS)
def test_everything_runs_on_the_system_nodes(stack, request):
    v = values(request.getfixturevalue(stack))
    system = {"kubernetes.io/os": "linux", labels.NODE_ROLE: "system"}
    for placed in (v["prometheus"]["prometheusSpec"], v["grafana"], v["kube-state-metrics"], v["prometheusOperator"],
                   v["prometheusOperator"]["admissionWebhooks"]["deployment"],
                   v["prometheusOperator"]["admissionWebhooks"]["patch"], v["alertmanager"]["alertmanagerSpec"]):
        assert placed["nodeSelector"] == system


def test_prometheus_finds_every_monitor_and_rule_in_the_cluster(dev):
    spec = values(dev)["prometheus"]["prometheusSpec"]
    for kind in ("serviceMonitor", "podMonitor", "rule", "probe", "scrapeConfig"):
        assert spec[f"{kind}SelectorNilUsesHelmValues"] is False, kind


def test_retention_and_storage_come_from_config(dev, prod):
    spec = values(dev)["prometheus"]["prometheusSpec"]
    assert spec["retention"] == "15d" and spec["retentionSize"] == "42GB" and spec["replicas"] == 1
    assert spec["storageSpec"]["volumeClaimTemplate"]["spec"] == {
        "storageClassName": "gp3", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "50Gi"}}}
    assert values(prod)["prometheus"]["prometheusSpec"]["retention"] == "31d"     # a month of cost, by default
    config = stack_yaml("dev")
    config[PREFIX + "observability"] = {"retentionDays": 60, "storageGiB": 200, "storageClass": "io2",
                                        "prometheusReplicas": 2, "scrapeInterval": "15s"}
    spec = values(Rendered(run_config(config)))["prometheus"]["prometheusSpec"]
    assert (spec["retention"], spec["retentionSize"], spec["replicas"], spec["scrapeInterval"]) == \
        ("60d", "170GB", 2, "15s")
    assert spec["storageSpec"]["volumeClaimTemplate"]["spec"]["storageClassName"] == "io2"
    assert spec["storageSpec"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] == "200Gi"
    assert spec["podAntiAffinity"] == "soft"


@pytest.mark.parametrize("stack", STACKS)
def test_grafana_admin_password_is_generated_and_never_in_the_build_output(stack, request, tmp_path):
    rendered = request.getfixturevalue(stack)
    render.write(rendered.run, tmp_path, [])
    password = mock_password("observability-grafana-admin", 32)
    outputs = ["plan.json", "manifests.yaml", "summary.md", *(f"helm/{p.name}" for p in (tmp_path / "helm").iterdir())]
    for output in outputs:
        assert password not in (tmp_path / output).read_text(), output
    generator = rendered.one("random:index/randomPassword:RandomPassword", "observability-grafana-admin").inputs
    assert generator["length"] == 32
    secret = rendered.obj("Secret", observability.GRAFANA_ADMIN_SECRET, observability.NAMESPACE)
    assert secret["stringData"] == {"admin-user": "[secret]", "admin-password": "[secret]"}
    grafana = values(rendered)["grafana"]
    assert grafana["admin"] == {"existingSecret": "grafana-admin", "userKey": "admin-user",
                                "passwordKey": "admin-password"}
    assert "adminPassword" not in grafana
    assert grafana["grafana.ini"]["auth.anonymous"] == {"enabled": False}


def test_the_password_text_would_be_found_if_it_leaked(tmp_path):
    # The check above can fail: the mock's text is what the program receives from RandomPassword.
    password = mock_password("observability-grafana-admin", 32)
    assert len(password) == 32 and password != mock_password("mlflow-database", 32)


# ---- what is scraped ----------------------------------------------------------------------------------------


def test_dcgm_karpenter_and_the_queue_proxy_are_scraped(dev):
    # DCGM: the GPU operator component's ServiceMonitor (not declared twice).
    assert [m["metadata"]["name"] for m in dev.objects("ServiceMonitor") if "dcgm" in m["metadata"]["name"]] == \
        ["nvidia-dcgm-exporter"]
    karpenter = dev.obj("ServiceMonitor", "karpenter", "monitoring")["spec"]
    assert karpenter["namespaceSelector"] == {"matchNames": ["kube-system"]}
    assert karpenter["selector"]["matchLabels"]["app.kubernetes.io/instance"] == dev.helm("karpenter")["name"]
    assert karpenter["endpoints"][0]["port"] == "http-metrics"
    queue = dev.obj("PodMonitor", "knative-queue-proxy", "monitoring")["spec"]
    assert queue["selector"]["matchLabels"] == {labels.JOB_TYPE: "inference"}
    assert queue["namespaceSelector"] == {"matchNames": sorted(t["name"] for t in stack_yaml("dev")[PREFIX + "teams"])}
    port = catalog.exporter_metrics()["exporters"]["knative-queue-proxy"]["port"]
    assert queue["podMetricsEndpoints"][0]["port"] == port["name"] == "http-usermetric"
    # ... the port the team NetworkPolicies admit Prometheus on, and nothing else.
    assert PROMETHEUS.inference_ports == (port["number"],)
    relabelled = {r["targetLabel"] for r in queue["podMetricsEndpoints"][0]["relabelings"]}
    assert relabelled <= set(catalog.exporter_metrics()["exporters"]["knative-queue-proxy"]["labels"])
    patch = dev.obj("ConfigMap", "config-observability", "knative-serving")
    assert patch["data"] == {"request-metrics-protocol": "prometheus"}


def test_the_scrape_policy_names_the_prometheus_this_stack_installs(dev):
    policy = dev.obj("NetworkPolicy", "inference-metrics-ingress", "risk-lab")["spec"]
    peer = policy["ingress"][0]["from"][0]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "prometheus"
    assert policy["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 9091}]
    other = MetricsScraper(PodSource("observability", {"app": "prom"}), (9091,))
    with pytest.raises(ValueError, match="runs in 'monitoring'"):
        observability._check_scraper(other)


def test_without_observability_there_is_no_stack_and_no_scrape_policy():
    config = stack_yaml("dev")
    config[PREFIX + "observability"] = {"enabled": False}
    rendered = Rendered(run_config(config))
    assert not [r for r in render.helm_releases(rendered.run) if r.inputs.get("name") == RELEASE]
    assert not [p for p in rendered.objects("NetworkPolicy") if p["metadata"]["name"] == "inference-metrics-ingress"]
    assert rendered.run.outputs.get("grafanaUrl") is None


# ---- PromQL against the exporters' metrics --------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_every_promql_expression_names_metrics_the_installed_exporters_emit(stack, request):
    rendered = request.getfixturevalue(stack)
    assert expression_problems(rendered) == []
    assert not values_of_hub_with_culler(rendered) or set(culler_queries(rendered)) == {"gpuBusyPercent",
                                                                                        "gpuMemoryUsedMiB"}
    names = {n for r in rules(rendered) for n, _ in selectors(r["expr"])}
    assert {"DCGM_FI_DEV_GPU_UTIL", "kube_pod_container_resource_requests", "karpenter_nodepools_limit",
            "kn_serving_invocation_duration_seconds_bucket"} <= names


@pytest.mark.parametrize("mistake", [
    ("DCGM_FI_DEV_GPU_UTIL{", "DCGM_FI_DEV_GPU_UTILIZATION{"),          # not a DCGM field the exporter emits
    ("kn_serving_invocation_duration_seconds_count{", "revision_request_count{"),   # pre-1.19 Knative name
    ('{namespace=~"$team", inferenceservice', '{namespace_name=~"$team", inferenceservice'),   # no such label
    ("mlops:namespace_gpus:sum{", "mlops:team_gpus:sum{"),              # a recording rule nobody defines
    ("sum by (namespace) (mlops:pod_gpus:sum{", "sum by (namespace) (mlops:pod_gpus:sum{team=~\"x\", "),
    ("sum by (namespace) (mlops:pod_gpus:sum{", "sum by (team) (mlops:pod_gpus:sum{"),        # grouped by nothing
    ("count by (namespace, label_serving", "count by (namespace, label_serving_kserve_io_model"),   # not allowlisted
])
def test_the_check_finds_a_wrong_metric_or_label(dev, mistake):
    rendered = Rendered(dev.run)
    for cm in rendered.manifests:
        if cm["kind"] == "ConfigMap" and (cm["metadata"].get("labels") or {}).get(observability.DASHBOARD_LABEL):
            cm["data"] = {k: v.replace(*[json.dumps(x)[1:-1] for x in mistake]) for k, v in cm["data"].items()}
    assert expression_problems(rendered)


def test_dashboards_are_valid_grafana_json_provisioned_for_the_sidecar(dev):
    boards = dashboards(dev)
    assert set(boards) == {"mlops-gpu", "mlops-cost", "mlops-models", "mlops-training"}
    sidecar = values(dev)["grafana"]["sidecar"]["dashboards"]
    assert (sidecar["label"], sidecar["labelValue"], sidecar["searchNamespace"]) == \
        (observability.DASHBOARD_LABEL, "1", observability.NAMESPACE)
    for uid, board in boards.items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), uid
        assert {"uid", "title", "panels", "templating", "schemaVersion", "time"} <= set(board)
        assert board["templating"]["list"][0] == {"name": "datasource", "label": "Data source", "type": "datasource",
                                                  "query": "prometheus", "current": {}, "hide": 0}
        for p in board["panels"]:
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, (uid, p["title"])
            for t in p.get("targets", []):
                assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
                promql(t["expr"])                       # parses as PromQL


def test_gpu_dashboard_covers_team_namespace_and_pod_allocation_memory_and_idle_hours(dev):
    exprs = " ".join(e for _, e in targets(dashboards(dev)["mlops-gpu"]))
    assert "sum by (namespace) (mlops:pod_gpus:sum" in exprs                             # allocation per team
    assert "sum by (namespace, pod, node_pool, capacity_type) (mlops:pod_gpus:sum" in exprs   # ... per pod
    assert "avg by (namespace) (DCGM_FI_DEV_GPU_UTIL" in exprs and "avg by (namespace, pod) (DCGM_FI_DEV_GPU_UTIL" in exprs
    assert "DCGM_FI_DEV_FB_USED" in exprs and "DCGM_FI_DEV_FB_FREE" in exprs           # memory used vs. total
    assert "sum_over_time(mlops:namespace_idle_gpus:count" in exprs and "mlops:node_unallocated_gpus:count" in exprs
    idle = next(r for r in rules(dev) if r.get("record") == "mlops:namespace_idle_gpus:count")
    assert "< 10)" in idle["expr"]                      # the GPU waste alerts' idle threshold (gpu.alerts)


def test_models_dashboard_shows_rate_quantiles_and_errors_per_inference_service(dev):
    panels = {p["title"]: [t["expr"] for t in p.get("targets", [])] for p in dashboards(dev)["mlops-models"]["panels"]}
    assert "rate(kn_serving_invocation_duration_seconds_count" in panels["Requests per second"][0]
    latency = panels["Latency p50 / p95 / p99 and the p99 target"]
    assert [e.split(",")[0] for e in latency[:3]] == [f"histogram_quantile({q}" for q in ("0.5", "0.95", "0.99")]
    assert all("by (namespace, inferenceservice, le)" in e for e in latency[:3])
    assert latency[3].startswith("mlops:inference_latency_p99_target:seconds")
    assert 'http_response_status_code=~"5.."' in panels["Error rate (5xx share of requests)"][0]


# ---- cost: one source of prices -----------------------------------------------------------------------------


def constants(rendered: Rendered, record: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(r["labels"].items())): float(r["expr"][len("vector("):-1])
            for r in recorded(rendered)[record]}


def depends_on(rendered: Rendered, expr: str, record: str) -> bool:
    """Does the expression use `record`, directly or through other recording rules?"""
    definitions = recorded(rendered)
    todo, seen = [n for n, _ in selectors(expr)], set()
    while todo:
        name = todo.pop()
        if name == record:
            return True
        if name in seen or name not in definitions:
            continue
        seen.add(name)
        todo += [n for r in definitions[name] for n, _ in selectors(r["expr"])]
    return False


@pytest.mark.parametrize("stack", STACKS)
def test_a_teams_cost_panel_uses_the_prices_of_the_cost_command(stack, request):
    rendered = request.getfixturevalue(stack)
    board = dashboards(rendered)["mlops-cost"]
    panel = next(p for p in board["panels"] if p["title"] == "Estimated GPU cost per team")
    assert depends_on(rendered, panel["targets"][0]["expr"], "mlops:gpu_hour_price:usd")
    # Every $/GPU-hour the panel multiplies by is the cost command's own figure for that instance type.
    assert cost.gpu_hour_price is catalog.gpu_hour_price and cost.prices is catalog.prices
    prices = constants(rendered, "mlops:gpu_hour_price:usd")
    pools = gpu_pools(parse_config(raw_config(stack)))
    types = {t for p in pools for t in p.instance_types}
    assert {dict(k)["instance_type"] for k in prices} == types
    for key, price in prices.items():
        labels_ = dict(key)
        spot = labels_["capacity_type"] == "spot"
        info = catalog.instance_types()[labels_["instance_type"]]
        assert price == pytest.approx(cost.instance_price(labels_["instance_type"], spot) / info.gpus, abs=1e-6)
    # The team's ceiling line is the per-team figure `python -m preview cost <stack>` prints.
    printed = cost.markdown(cost.from_plan(render.plan(rendered.run)), stack)
    ceilings = constants(rendered, "mlops:team_gpu_quota_ceiling:usd_per_hour")
    assert ceilings
    for key, per_hour in ceilings.items():
        team = dict(key)["namespace"]
        assert re.search(rf"team {re.escape(team)}: \d+ GPUs: \${per_hour:,.2f}/hour", printed), (team, printed)
    rate = next(p for p in board["panels"] if p["title"].startswith("GPU cost rate per team"))
    assert rate["targets"][1]["expr"].startswith("mlops:team_gpu_quota_ceiling:usd_per_hour")



def test_changing_prices_yaml_changes_the_dashboards_and_the_cost_command_alike(monkeypatch, dev):
    pools = gpu_pools(parse_config(raw_config("dev")))
    before = {r["labels"]["instance_type"] + "/" + r["labels"]["capacity_type"]: r["expr"]
              for r in observability.catalog_rules([], pools) if r["record"] == "mlops:gpu_hour_price:usd"}
    data = json.loads(json.dumps(catalog.prices()))
    data["instances"]["g4dn.xlarge"]["onDemand"] = 9.0
    monkeypatch.setattr(catalog, "prices", lambda: data)
    after = {r["labels"]["instance_type"] + "/" + r["labels"]["capacity_type"]: r["expr"]
             for r in observability.catalog_rules([], pools) if r["record"] == "mlops:gpu_hour_price:usd"}
    assert before["g4dn.xlarge/on-demand"] == "vector(0.526)" and after["g4dn.xlarge/on-demand"] == "vector(9)"
    assert {k: v for k, v in after.items() if k != "g4dn.xlarge/on-demand"} == \
        {k: v for k, v in before.items() if k != "g4dn.xlarge/on-demand"}
    assert cost.instance_price("g4dn.xlarge", False) == 9.0            # the cost command sees the same change


def test_gpu_hours_count_shared_gpus_by_their_share_of_a_gpu(prod):
    shares = {(dict(k)["node_pool"], dict(k)["resource"]): v
              for k, v in constants(prod, "mlops:gpu_resource_share:ratio").items()}
    assert shares[("training", "nvidia_com_gpu")] == 1
    assert shares[("a10g-inference", "nvidia_com_gpu")] == 1
    assert shares[("inference", "nvidia_com_gpu_shared")] == 0.25                   # time-slicing, 4 replicas
    assert shares[("inference-mig", "nvidia_com_mig_3g_40gb")] == pytest.approx(3 / 7, abs=1e-6)
    assert shares[("inference-mig", "nvidia_com_mig_1g_10gb")] == pytest.approx(1 / 7, abs=1e-6)
    gpus = {dict(k)["instance_type"]: v for k, v in constants(prod, "mlops:instance_gpus:count").items()}
    assert gpus["p4d.24xlarge"] == 8 and gpus["g6.xlarge"] == 1


def test_cost_and_hours_panels_turn_per_minute_samples_into_hours(dev):
    groups = {g["name"]: g for g in rule_groups(dev)}
    assert groups["mlops-gpu-allocation"]["interval"] == groups["mlops-gpu-catalog"]["interval"] == "60s"
    exprs = [e for _, e in targets(dashboards(dev)["mlops-cost"]) if "sum_over_time" in e]
    assert exprs and all(e.endswith("[$__range])) / 60") for e in exprs)


def test_spot_and_on_demand_nodes_are_told_apart_for_karpenter_and_managed_node_groups(dev):
    info = recorded(dev)["mlops:gpu_node:info"][0]["expr"]
    assert '"capacity_type", "$1", "label_karpenter_sh_capacity_type"' in info
    assert '"capacity_type", "spot", "label_eks_amazonaws_com_capacity_type", "SPOT"' in info
    assert '"capacity_type", "on-demand", "label_eks_amazonaws_com_capacity_type", "ON_DEMAND"' in info
    allowlist = values(dev)["kube-state-metrics"]["metricLabelsAllowlist"]
    assert "nodes=[mlops.platform/node-pool,mlops.platform/gpu-type,karpenter.sh/capacity-type," \
           "eks.amazonaws.com/capacityType,node.kubernetes.io/instance-type]" in allowlist
    pie = next(p for p in dashboards(dev)["mlops-cost"]["panels"] if p["title"] == "Spot vs. on-demand GPU-hours")
    assert pie["type"] == "piechart" and "by (capacity_type)" in pie["targets"][0]["expr"]


# ---- alerts ----------------------------------------------------------------------------------------------------


def alert(rendered: Rendered, name: str) -> dict[str, Any]:
    found = [r for r in rules(rendered) if r.get("alert") == name]
    assert len(found) == 1, f"{name}: {len(found)}"
    return found[0]


@pytest.mark.parametrize("stack", STACKS)
def test_every_alert_is_declared_once_including_the_gpu_waste_alerts(stack, request):
    rendered = request.getfixturevalue(stack)
    names = [r["alert"] for r in rules(rendered) if "alert" in r]
    assert len(names) == len(set(names))
    assert {"GpuAllocatedButIdle", "GpuMemoryRightsizing", "InferenceLatencyP99AboveTarget", "InferenceErrorRateHigh",
            "GpuNodePoolAtLimitWithPendingPods"} <= set(names)
    for r in rules(rendered):
        if "alert" in r:
            assert r["labels"]["severity"] in ("info", "warning", "critical") and r["annotations"]["summary"]


def test_latency_alert_fires_above_each_models_own_target(prod):
    targets_ = constants(prod, "mlops:inference_latency_p99_target:seconds")
    assert targets_ == {(("inferenceservice", "fraud-model"), ("namespace", "risk-lab")): 0.1}
    rule = alert(prod, "InferenceLatencyP99AboveTarget")
    assert rule["expr"].startswith("histogram_quantile(0.99, sum by (namespace, inferenceservice, le)")
    assert rule["expr"].endswith("> on (namespace, inferenceservice) group_left () "
                                 "mlops:inference_latency_p99_target:seconds")
    assert rule["for"] == "10m"
    config = stack_yaml("dev")
    config[PREFIX + "teams"][0]["models"][0]["latencyP99Ms"] = 250
    config[PREFIX + "observability"] = {"alerts": {"latencyFor": "15m", "errorRatePercent": 2.5}}
    rendered = Rendered(run_config(config))
    assert list(constants(rendered, "mlops:inference_latency_p99_target:seconds").values()) == [0.25]
    assert alert(rendered, "InferenceLatencyP99AboveTarget")["for"] == "15m"
    assert alert(rendered, "InferenceErrorRateHigh")["expr"].endswith("> 2.5")


def test_error_rate_alert_is_the_5xx_share_per_inference_service(dev):
    rule = alert(dev, "InferenceErrorRateHigh")
    assert 'kn_serving_invocation_duration_seconds_count{http_response_status_code=~"5.."}' in rule["expr"]
    assert rule["expr"].endswith("> 5") and rule["for"] == "5m"


def test_capacity_alert_needs_a_pool_at_its_gpu_limit_and_pending_gpu_pods(dev):
    rule = alert(dev, "GpuNodePoolAtLimitWithPendingPods")
    usage, rest = rule["expr"].split(" >= ", 1)
    assert usage.startswith("max by (nodepool, resource_type) (karpenter_nodepools_usage{")
    assert rest.startswith("on (nodepool, resource_type) max by (nodepool, resource_type) (karpenter_nodepools_limit{")
    assert " and on () (sum(kube_pod_container_resource_requests" in rest and 'phase="Pending"' in rest
    assert rule["for"] == "10m"
    # Karpenter lower-cases resource names and turns '-' into '_': the matcher must cover nvidia.com/gpu and shares.
    regex = re.search(r'resource_type=~"([^"]+)"', usage).group(1).replace("\\\\", "\\")
    for resource in ("nvidia.com/gpu", "nvidia.com/gpu.shared", "nvidia.com/mig_1g.10gb"):
        assert re.fullmatch(regex, resource)
    assert not re.fullmatch(regex, "cpu")


# ---- config rules ----------------------------------------------------------------------------------------------



def test_scrape_interval_must_be_between_10s_and_1m():
    config = raw_config("dev")
    config["observability"] = {"scrapeInterval": "5s"}
    assert_config_problem(config, "observability.scrapeInterval: must be between 10s and 1m")
    config["observability"] = {"scrapeInterval": "2m"}
    assert_config_problem(config, "observability.scrapeInterval:")


def test_prod_keeps_a_month_of_metrics_and_its_alerts():
    config = raw_config("prod")
    config["observability"] = {"retentionDays": 14}
    assert_config_problem(config, "observability.retentionDays: must be at least 31 in prod")
    config["observability"] = {"enabled": False}
    assert_config_problem(config, "observability.enabled: must be true in prod")


def test_a_latency_target_beyond_the_histogram_is_a_config_error():
    config = raw_config("dev")
    config["teams"][0]["models"][0]["latencyP99Ms"] = 10000
    assert_config_problem(config, "teams[0].models[0].latencyP99Ms: must be below 10000 ms")
    config["observability"] = {"enabled": False}          # no alert, no rule
    parse_config(config)


def test_alert_durations_must_span_two_scrapes():
    config = raw_config("dev")
    config["observability"] = {"scrapeInterval": "1m", "alerts": {"errorRateFor": "1m"}}
    assert_config_problem(config, "observability.alerts.errorRateFor: must be at least two scrape intervals")


@pytest.mark.parametrize("key,value,path", [
    ("storageGiB", 5, "observability.storageGiB"),
    ("prometheusReplicas", 4, "observability.prometheusReplicas"),
    ("storageClass", "GP3!", "observability.storageClass"),
    ("retentionDays", 0, "observability.retentionDays"),
    ("alerts", {"errorRatePercent": 0}, "observability.alerts.errorRatePercent"),
    ("grafanaPassword", "x", "observability.grafanaPassword"),
])
def test_observability_fields_are_checked_with_their_key_path(key, value, path):
    config = raw_config("dev")
    config["observability"] = {key: value}
    assert_config_problem(config, f"{path}:")

"""The rendered PrometheusRules (GPU cost recording rules, GPU waste, model and capacity alerts) run by the real
`promtool test rules` on series shaped exactly as the exporters emit them:

- kube-state-metrics v2.19 (kube-prometheus-stack 88.2.0): `kube_node_labels` and friends carry one
  `label_<name>` per allowlisted Kubernetes label, the name converted as upstream does it (internal/store/utils.go
  `labelName`: invalid characters -> `_`, then camelCase -> snake_case, lower-cased), so EKS's
  `eks.amazonaws.com/capacityType` is `label_eks_amazonaws_com_capacity_type`; extended resources in `resource`
  sanitized (`nvidia_com_gpu`); every pod phase as its own 0/1 series. Written here from upstream's rule, not from
  the project's own label-name function, so the two can disagree.
- DCGM exporter (gpu-operator v26.7.0): device labels plus the holding pod's namespace/pod/container; a GPU no pod
  holds carries the exporter pod's own namespace and pod (honorLabels).
- Knative queue-proxy 1.21 (KServe): `kn_serving_invocation_duration_seconds` histograms with
  `http_response_status_code`, and the labels the platform's PodMonitor adds.

Scenarios come from the rendered stack itself (its GPU pools, prices, teams and models), so they follow the config.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from preview import render
from tests import upstream

PROMTOOL_HOW = "apt-get install prometheus (Debian ships promtool in it)"
MINUTES = 120                       # length of every input series, in 1-minute samples
TEAM_LABEL = "mlops.platform/team"
NODE_POOL_LABEL = "mlops.platform/node-pool"


def ksm_label(name: str) -> str:
    """kube-state-metrics' Prometheus label for an allowlisted Kubernetes label (upstream labelName)."""
    sanitized = re.sub(r"[^a-zA-Z0-9_]", "_", name)
    return "label_" + re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", sanitized).lower()


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return {"series": f"{name}{{{inner}}}", "values": values}


def sample(name: str, labels: dict[str, str], value: float) -> dict[str, Any]:
    return {"labels": series(name, labels, "")["series"], "value": value}


def minutes(duration: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([smh])", duration).groups()
    return max(1, int(number) * {"s": 1 / 60, "m": 1, "h": 60}[unit])


class Stack:
    """What the scenarios need from a rendered stack: its rules, constants, GPU pools and node label allowlist."""

    def __init__(self, rendered) -> None:
        self.rule_objects = {o["metadata"]["name"]: o["spec"] for o in rendered.objects("PrometheusRule")}
        self.rules = [r for spec in self.rule_objects.values() for g in spec["groups"] for r in g["rules"]]
        self.constants = [(r["record"], r["labels"], float(re.fullmatch(r"vector\((.+)\)", r["expr"]).group(1)))
                          for r in self.rules if "record" in r and r["expr"].startswith("vector(")]
        ksm = next(r.inputs["values"]["kube-state-metrics"] for r in render.helm_releases(rendered.run)
                   if r.inputs["chart"] == "kube-prometheus-stack")
        self.allowlist = {kind: item.split("=", 1)[1].strip("[]").split(",")
                          for item in ksm["metricLabelsAllowlist"] for kind in [item.split("=", 1)[0]]}
        self.pools = render.gpu_pool_details(rendered.run)
        self.node_pools = {o["metadata"]["name"]: o for o in rendered.objects("NodePool")}

    def constant(self, record: str, **match: str) -> float:
        found = [v for rec, labels, v in self.constants if rec == record and match.items() <= labels.items()]
        assert len(found) == 1, (record, match, found)
        return found[0]

    def alert(self, name: str) -> dict[str, Any]:
        return next(r for r in self.rules if r.get("alert") == name)

    def team(self) -> str:
        return next(labels["namespace"] for rec, labels, _ in self.constants
                    if rec == "mlops:team_gpu_quota_ceiling:usd_per_hour")

    def node_labels(self, node: str, k8s_labels: dict[str, str]) -> dict[str, str]:
        """kube_node_labels as kube-state-metrics emits it: only allowlisted labels, plus the target's labels."""
        out = {ksm_label(k): v for k, v in k8s_labels.items() if k in self.allowlist["nodes"]}
        return {**out, **KSM_TARGET, "node": node}


# The labels Prometheus adds to every kube-state-metrics series (the chart's ServiceMonitor, honorLabels: the
# series' own namespace/pod win where it has them).
KSM_TARGET = {"job": "kube-state-metrics", "instance": "10.0.3.17:8080", "endpoint": "http",
              "service": "kube-prometheus-stack-kube-state-metrics", "namespace": "monitoring",
              "pod": "kube-prometheus-stack-kube-state-metrics-7c9d8b6f4-x2k9q", "container": "kube-state-metrics"}
DCGM_TARGET = {"job": "nvidia-dcgm-exporter", "endpoint": "gpu-metrics", "service": "nvidia-dcgm-exporter"}


def pod_series(team: str, pod: str, node: str, resource: str, phase: str, pod_labels: dict[str, str]) -> list[dict]:
    uid = f"0b6c{abs(hash(pod)) % 10**8:08d}-0000-4000-8000-000000000000"
    own = {**KSM_TARGET, "namespace": team, "pod": pod, "uid": uid}
    out = [series("kube_pod_container_resource_requests",
                  {**own, "container": "main", "node": node, "resource": resource, "unit": "integer"}, f"1x{MINUTES}")]
    out += [series("kube_pod_status_phase", {**own, "phase": p}, f"{int(p == phase)}x{MINUTES}")
            for p in ("Pending", "Running", "Succeeded", "Failed", "Unknown")]
    out.append(series("kube_pod_labels", {**own, **{ksm_label(k): v for k, v in pod_labels.items()}}, f"1x{MINUTES}"))
    return out


def dcgm_series(node: str, gpu: int, util: float, holder: dict[str, str] | None) -> list[dict]:
    """A GPU's utilisation as the DCGM exporter reports it; `holder` = the holding pod's namespace/pod/container,
    else the exporter pod's own (an unallocated GPU)."""
    labels = {**DCGM_TARGET, "gpu": str(gpu), "UUID": f"GPU-5a1b2c3d-0000-4000-8000-00000000000{gpu}",
              "device": f"nvidia{gpu}", "modelName": "Tesla T4", "Hostname": node, "pci_bus_id": "00000000:00:1E.0",
              "DCGM_FI_DRIVER_VERSION": "570.172.08", "instance": "10.0.1.23:9400",
              **(holder or {"namespace": "gpu-operator", "pod": "nvidia-dcgm-exporter-8x7kq",
                            "container": "nvidia-dcgm-exporter"})}
    return [series("DCGM_FI_DEV_GPU_UTIL", labels, f"{util:g}x{MINUTES}"),
            series("DCGM_FI_PROF_GR_ENGINE_ACTIVE", labels, f"{util / 100:g}x{MINUTES}")]


def gpu_scenario(stack: Stack) -> dict[str, Any]:
    """A pod on a managed-node-group GPU node (EKS capacityType label), a pod on a Karpenter spot GPU node, a pending
    GPU pod and an unallocated GPU: the cost series, and the idle alert for the idle pod only."""
    team = stack.team()
    mng = next(p for p in stack.pools if p.kind == "node group")
    karpenter = next(p for p in stack.pools if p.kind == "NodePool")
    mng_type, mng_capacity = mng.props["instanceTypes"][0], mng.props.get("capacityType", "ON_DEMAND")
    capacity = {"SPOT": "spot", "ON_DEMAND": "on-demand"}[mng_capacity]
    mng_pool = mng.props.get("labels", {}).get(NODE_POOL_LABEL, mng.name)   # the node label the rules read
    spec = stack.node_pools[karpenter.name]["spec"]["template"]
    kp_types = next((r["values"] for r in spec["spec"]["requirements"] if r["key"] == "node.kubernetes.io/instance-type"),
                    [mng_type])
    kp_type = kp_types[0]
    kp_resource = next(labels["resource"] for rec, labels, _ in stack.constants
                       if rec == "mlops:gpu_resource_share:ratio" and labels["node_pool"] == karpenter.name)
    mng_node, kp_node = "ip-10-0-1-23.ec2.internal", "ip-10-0-2-41.ec2.internal"
    input_series = [
        series("kube_node_labels", stack.node_labels(mng_node, {
            **mng.props.get("labels", {}), "eks.amazonaws.com/capacityType": mng_capacity,
            "eks.amazonaws.com/nodegroup": mng.name, "node.kubernetes.io/instance-type": mng_type}), f"1x{MINUTES}"),
        series("kube_node_labels", stack.node_labels(kp_node, {
            **spec["metadata"]["labels"], "karpenter.sh/nodepool": karpenter.name, "karpenter.sh/capacity-type": "spot",
            "node.kubernetes.io/instance-type": kp_type}), f"1x{MINUTES}"),
        series("kube_namespace_labels", {**KSM_TARGET, "namespace": team, ksm_label(TEAM_LABEL): team}, f"1x{MINUTES}"),
        *pod_series(team, "idle-0", mng_node, "nvidia_com_gpu", "Running", {"job-type": "training"}),
        *pod_series(team, "busy-0", kp_node, kp_resource, "Running", {"job-type": "training"}),
        *pod_series(team, "waiting-0", kp_node, kp_resource, "Pending", {"job-type": "training"}),
        *dcgm_series(mng_node, 0, 2, {"namespace": team, "pod": "idle-0", "container": "main"}),
        *dcgm_series(kp_node, 0, 85, {"namespace": team, "pod": "busy-0", "container": "main"}),
        *dcgm_series(kp_node, 1, 0, None),
    ]
    mng_cost = (stack.constant("mlops:gpu_resource_share:ratio", node_pool=mng_pool, resource="nvidia_com_gpu")
                * stack.constant("mlops:gpu_hour_price:usd", instance_type=mng_type, capacity_type=capacity))
    kp_cost = (stack.constant("mlops:gpu_resource_share:ratio", node_pool=karpenter.name, resource=kp_resource)
               * stack.constant("mlops:gpu_hour_price:usd", instance_type=kp_type, capacity_type="spot"))
    cost_labels = {"namespace": team}
    idle = stack.alert("GpuAllocatedButIdle")
    threshold = float(re.search(r"< (\d+(?:\.\d+)?)\s*$", idle["expr"]).group(1))
    assert 2 < threshold < 85, "the scenario's idle (2%) and busy (85%) GPUs must sit either side of the threshold"
    fire_at = f"{minutes(idle['for']) + 15}m"
    alerts = 'ALERTS{alertname="GpuAllocatedButIdle", alertstate="firing"}'
    test = {"interval": "1m", "input_series": input_series, "promql_expr_test": [
        {"expr": "mlops:pod_gpu_cost:usd_per_hour", "eval_time": "10m", "exp_samples": [
            sample("mlops:pod_gpu_cost:usd_per_hour", {**cost_labels, "pod": "idle-0", "node": mng_node,
                   "node_pool": mng_pool, "instance_type": mng_type, "capacity_type": capacity}, mng_cost),
            sample("mlops:pod_gpu_cost:usd_per_hour", {**cost_labels, "pod": "busy-0", "node": kp_node,
                   "node_pool": karpenter.name, "instance_type": kp_type, "capacity_type": "spot"}, kp_cost)]},
        {"expr": "mlops:namespace_gpu_cost:usd_per_hour", "eval_time": "10m", "exp_samples": [
            sample("mlops:namespace_gpu_cost:usd_per_hour", cost_labels, mng_cost + kp_cost)]},
        # Only the idle pod's GPU: not the busy one, not the GPU no pod holds.
        {"expr": f"count({alerts})", "eval_time": fire_at, "exp_samples": [{"labels": "{}", "value": 1}]},
        {"expr": f'count({alerts[:-1]}, namespace="{team}", pod="idle-0"}})', "eval_time": fire_at,
         "exp_samples": [{"labels": "{}", "value": 1}]},
        # Silent before `for` has passed.
        {"expr": alerts, "eval_time": "5m", "exp_samples": []},
    ]}
    return test


def model_scenario(stack: Stack, slow: bool) -> dict[str, Any]:
    """One model's queue-proxy histogram: all requests in the bucket above its p99 target and 10% of them 5xx
    (`slow`), or all well inside the target and none failing."""
    (_, model, target), = [(r, labels, v) for r, labels, v in stack.constants
                           if r == "mlops:inference_latency_p99_target:seconds"][:1]
    buckets = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
    latency = next(b for b in buckets if b > target * 1.5) if slow else buckets[0]
    pod = f"{model['inferenceservice']}-predictor-00001-deployment-6d5f9c7b8-abcde"
    target_labels = {"job": f"{model['namespace']}/inference", "namespace": model["namespace"], "pod": pod,
                     "container": "queue-proxy", "endpoint": "http-usermetric", "instance": "10.0.4.9:9091",
                     "inferenceservice": model["inferenceservice"], "component": "predictor",
                     "revision": f"{model['inferenceservice']}-predictor-00001",
                     "otel_scope_name": "knative.dev/serving/pkg/queue", "otel_scope_version": ""}
    out = []
    for code, per_minute in (("200", 54 if slow else 60), ("500", 6 if slow else 0)):
        labels = {**target_labels, "http_response_status_code": code}
        if not per_minute:
            continue
        for le in [*buckets, "+Inf"]:
            hit = le == "+Inf" or le >= latency
            out.append(series("kn_serving_invocation_duration_seconds_bucket", {**labels, "le": str(le)},
                              f"0+{per_minute if hit else 0}x{MINUTES}"))
        out.append(series("kn_serving_invocation_duration_seconds_count", labels, f"0+{per_minute}x{MINUTES}"))
    at = f"{max(minutes(stack.alert(a)['for']) for a in ('InferenceLatencyP99AboveTarget', 'InferenceErrorRateHigh')) + 15}m"
    expected = [{"labels": "{}", "value": 1}] if slow else []
    return {"interval": "1m", "input_series": out, "promql_expr_test": [
        {"expr": f'count(ALERTS{{alertname="{name}", alertstate="firing", inferenceservice="{model["inferenceservice"]}"}})',
         "eval_time": at, "exp_samples": expected}
        for name in ("InferenceLatencyP99AboveTarget", "InferenceErrorRateHigh")]}


def promtool_test(promtool: str, stack: Stack, tests: list[dict], tmp: Path, rules: dict | None = None) -> subprocess.CompletedProcess:
    """Write the rule files (each PrometheusRule's spec, as the Prometheus operator hands it to Prometheus) and the
    unit test file, and run `promtool test rules`."""
    files = []
    for name, spec in (rules or stack.rule_objects).items():
        (tmp / f"{name}.rules.yaml").write_text(yaml.safe_dump({"groups": spec["groups"]}, sort_keys=False))
        files.append(f"{name}.rules.yaml")
    (tmp / "test.yaml").write_text(yaml.safe_dump({"rule_files": files, "evaluation_interval": "1m", "tests": tests},
                                                  sort_keys=False))
    return subprocess.run([promtool, "test", "rules", "test.yaml"], cwd=tmp, capture_output=True, text=True)


@pytest.fixture(scope="module")
def promtool() -> str:
    return upstream.tool("promtool", PROMTOOL_HOW)


@pytest.mark.parametrize("stack_name", ["dev", "prod"])
def test_rules_on_exporter_shaped_series(stack_name, request, promtool, tmp_path):
    """GPU cost series for a pod on a managed-node-group GPU node and on a Karpenter spot node; the idle-GPU alert
    for the idle pod only; the model alerts firing on a slow, failing model and silent on a healthy one."""
    stack = Stack(request.getfixturevalue(stack_name))
    tests = [gpu_scenario(stack), model_scenario(stack, slow=True), model_scenario(stack, slow=False)]
    done = promtool_test(promtool, stack, tests, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_rule_naming_a_label_the_exporter_does_not_emit_fails(dev, promtool, tmp_path):
    """Mutation: the cost rules spelling EKS's capacity-type label as kube-state-metrics never writes it (camelCase,
    as before the fix) give no cost series, and promtool fails."""
    stack = Stack(dev)
    emitted = ksm_label("eks.amazonaws.com/capacityType")
    text = yaml.safe_dump(stack.rule_objects)
    assert emitted in text, f"the cost rules do not read kube-state-metrics' {emitted}"
    broken = yaml.safe_load(text.replace(emitted, "label_eks_amazonaws_com_capacityType"))
    done = promtool_test(promtool, stack, [gpu_scenario(stack)], tmp_path, broken)
    assert done.returncode != 0 and "mlops:pod_gpu_cost:usd_per_hour" in done.stdout + done.stderr

"""The GPU-utilization culler as the cluster gets it: the JupyterHub release rendered by the real chart (helm) ships
the service's files, runs it as a managed service and grants its role, and the real JupyterHub 5.5 (the hub image's
version) accepts both at start-up; the hub's NetworkPolicy gains exactly the Prometheus peers (and nothing else, by
comparison with the same stack rendered with the culler off); Prometheus scrapes it through a ServiceMonitor; its
PromQL joins DCGM series to the notebook pod's user on exporter-shaped series (promtool).
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import gpu_culler, labels
from components.endpoints import PROMETHEUS_API
from policies import netpol
from preview import render
from tests import charts, upstream
from tests.conftest import run_config, stack_yaml
from tests.test_notebook_pods import _one, hub_dir, jupyterhub, release_policies
from tests.test_prometheus_rules import DCGM_TARGET, KSM_TARGET, PROMTOOL_HOW, series

SCRIPT = Path(__file__).parent / "clients" / "hub_services.py"
NOTEBOOKS_KEY = "mlops-platform:notebooks"


@pytest.fixture(scope="module")
def helm() -> str:
    return upstream.tool("helm", charts.HELM_HOW)


def culler_off(inputs: dict[str, Any]) -> dict[str, Any]:
    """The same stack with notebooks.culling.utilization.enabled false: the JupyterHub release inputs."""
    config = stack_yaml("dev")
    notebooks = copy.deepcopy(config.get(NOTEBOOKS_KEY) or {})
    notebooks.setdefault("culling", {}).setdefault("utilization", {})["enabled"] = False
    run = run_config({**config, NOTEBOOKS_KEY: notebooks}, stack="dev")
    return next(r.inputs for r in render.helm_releases(run) if charts.chart_name(r.inputs) == "jupyterhub")


def with_scopes(inputs: dict[str, Any], scopes: list[str]) -> dict[str, Any]:
    mutated = copy.deepcopy(inputs)
    mutated["values"]["hub"]["loadRoles"][gpu_culler.SERVICE]["scopes"] = scopes
    return mutated


@pytest.fixture(scope="module")
def hub(dev, helm, charts_dir, tmp_path_factory) -> dict[str, Any]:
    """dev's JupyterHub release rendered by helm (culler on, culler off, and a role with a misspelt scope); the
    first and last loaded by the real JupyterHub's start-up steps."""
    upstream.clients_python()
    on = jupyterhub(dev)
    variants = {"on": on, "off": culler_off(on), "bad-scope": with_scopes(on, ["list:users", "read:server"])}
    out: dict[str, Any] = {}
    for name, inputs in variants.items():
        code, stdout, stderr = charts.template(helm, charts.archive(charts_dir, inputs), inputs)
        assert code == 0, stderr
        out[name] = {"inputs": inputs, "objects": charts.objects(stdout)}
        if name == "off":
            continue
        work = tmp_path_factory.mktemp(name)
        env = hub_dir(out[name]["objects"], inputs["namespace"], work / "hub")
        done = subprocess.run([upstream.clients_python(), str(SCRIPT), str(work / "hub"), str(work / "out.json")],
                              env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        out[name].update(dir=work / "hub", hub=json.loads((work / "out.json").read_text()))
    return out


def test_the_rendered_hub_runs_the_culler_as_a_managed_service_with_its_role(hub):
    loaded = hub["on"]["hub"]
    assert "error" not in loaded, loaded
    service = loaded["services"][gpu_culler.SERVICE]
    mount = gpu_culler.MOUNT_DIR
    assert service["command"] == ["python3", f"{mount}/gpu_culler.py", f"{mount}/config.json"]
    assert service["has_token"] and service["roles"] == [gpu_culler.SERVICE]
    # the expanded scopes: exactly the role's three, and what JupyterHub derives from them (names of listed users)
    assert {s for s in service["scopes"] if not s.startswith("read:users:name")} == set(gpu_culler.SCOPES), service
    assert "jupyterhub-idle-culler" in loaded["services"]          # the chart's time-based culler stays
    # the files the chart mounts are the service as shipped, and its configuration names the stack's Prometheus
    shipped = hub["on"]["dir"] / "gpu-culler"
    assert (shipped / "gpu_culler.py").read_text() == gpu_culler.SERVICE_FILE.read_text()
    config = json.loads((shipped / "config.json").read_text())
    assert config["prometheusUrl"] == PROMETHEUS_API.url
    assert config["hubApiUrl"].startswith("http://localhost:8081/")   # same pod: no NetworkPolicy hop
    assert config["profiles"] and all(p["idleSeconds"] > 0 for p in config["profiles"].values())


def test_the_real_hub_refuses_a_role_with_an_unknown_scope(hub):
    assert "read:server" in hub["bad-scope"]["hub"].get("error", ""), hub["bad-scope"]["hub"]


def hub_policy_reach(objects: list[dict[str, Any]], direction: str) -> frozenset:
    pod = _one(objects, "Deployment", "hub")["spec"]["template"]["metadata"]["labels"]
    return netpol.allowed(release_policies(objects, "jupyterhub"), "jupyterhub", pod, direction)


def test_the_hub_may_reach_prometheus_and_be_scraped_by_it_and_nothing_more(hub):
    prometheus = netpol.Peer.pods_in(PROMETHEUS_API.namespace, PROMETHEUS_API.pod_labels)
    on, off = hub["on"]["objects"], hub["off"]["objects"]
    assert hub_policy_reach(on, netpol.EGRESS) - hub_policy_reach(off, netpol.EGRESS) == {
        netpol.Reach(prometheus, netpol.Port("TCP", PROMETHEUS_API.port))}
    assert hub_policy_reach(on, netpol.INGRESS) - hub_policy_reach(off, netpol.INGRESS) == {
        netpol.Reach(prometheus, netpol.Port("TCP", gpu_culler.METRICS_PORT))}
    assert hub_policy_reach(off, netpol.EGRESS) <= hub_policy_reach(on, netpol.EGRESS)
    assert hub_policy_reach(off, netpol.INGRESS) <= hub_policy_reach(on, netpol.INGRESS)


def test_prometheus_scrapes_the_culler_through_the_hub_service(dev, hub):
    monitor = dev.obj("ServiceMonitor", gpu_culler.SERVICE, "jupyterhub")
    service = _one(hub["on"]["objects"], "Service", "hub")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    port = next(p for p in service["spec"]["ports"] if p["name"] == monitor["spec"]["endpoints"][0]["port"])
    assert port["targetPort"] == gpu_culler.METRICS_PORT
    hub_pod = _one(hub["on"]["objects"], "Deployment", "hub")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= hub_pod.items()


# ---- the queries, on exporter-shaped series

USER = "annotation_hub_jupyter_org_username"


def gpu(pod: str, namespace: str, values: str, mig: bool = False) -> list[dict[str, str]]:
    """One GPU held by `pod`, as the DCGM exporter reports it (a MIG device reports engine activity only)."""
    device = {**DCGM_TARGET, "gpu": "0", "UUID": f"GPU-{pod}", "device": "nvidia0", "modelName": "Tesla T4",
              "Hostname": "ip-10-0-1-23", "instance": "10.0.1.23:9400", "namespace": namespace, "pod": pod,
              "container": "notebook", **({"GPU_I_PROFILE": "1g.10gb", "GPU_I_ID": "1"} if mig else {})}
    ratio = " ".join(f"{float(v) / 100:g}x{n}" for v, n in (p.split("x") for p in values.split()))
    out = [series("DCGM_FI_PROF_GR_ENGINE_ACTIVE", device, ratio), series("DCGM_FI_DEV_FB_USED", device, "7800x30")]
    return out if mig else [*out, series("DCGM_FI_DEV_GPU_UTIL", device, values)]


def annotated(pod: str, namespace: str, user: str | None) -> dict[str, str]:
    extra = {USER: user} if user else {}
    return series("kube_pod_annotations", {**KSM_TARGET, "namespace": namespace, "pod": pod, "uid": f"uid-{pod}",
                                           **extra}, "1x30")


def test_the_queries_join_dcgm_series_to_the_notebook_users(tmp_path):
    promtool = upstream.tool("promtool", PROMTOOL_HOW)
    queries = {k: v.replace("$WINDOW", "10m") for k, v in gpu_culler.queries().items()}
    assert labels.NOTEBOOK_USER == "hub.jupyter.org/username"      # what KubeSpawner annotates its pods with
    inputs = [*gpu("jupyter-alice", "vision", "90x10 0x20"),          # busy, then idle for 20 min
              *gpu("jupyter-bob", "vision", "0x20 60x10"),            # idle, then busy in the last 10 min
              *gpu("jupyter-carol", "nlp", "0x20 2x10", mig=True),    # a MIG slice, idle
              *gpu("trainer-0", "vision", "0x30"),                     # not a notebook: no user annotation
              annotated("jupyter-alice", "vision", "alice"), annotated("jupyter-bob", "vision", "bob"),
              annotated("jupyter-carol", "nlp", "carol"), annotated("trainer-0", "vision", None)]
    expected = {"gpuBusyPercent": {("vision", "alice"): 0, ("vision", "bob"): 60, ("nlp", "carol"): 2},
                "gpuMemoryUsedMiB": {("vision", "alice"): 7800, ("vision", "bob"): 7800, ("nlp", "carol"): 7800}}
    tests = [{"interval": "1m", "input_series": inputs, "promql_expr_test": [
        {"expr": queries[name], "eval_time": "29m", "exp_samples": [
            {"labels": f'{{namespace="{ns}", {USER}="{user}"}}', "value": value}
            for (ns, user), value in want.items()]} for name, want in expected.items()]}]
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({"rule_files": [], "tests": tests}, sort_keys=False))
    done = subprocess.run([promtool, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


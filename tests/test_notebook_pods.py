"""Every notebook profile's pod, as the real hub builds it: the JupyterHub chart rendered by helm (tests/charts.py),
its hub configuration (the chart's jupyterhub_config.py and z2jh.py, the hub Secret's values.yaml, hub.extraConfig)
loaded by the real JupyterHub 5.5 / KubeSpawner 7.0 in the real-clients venv (a subprocess: their pins conflict
with pulumi's), and each profile's pod built with `load_user_options` + `get_pod_manifest` for every user of the
hub's groups. The pods must land in their team's namespace with the team's service account, the profile's limits,
GPU toleration and node selector; pass the policy pack as a pod; and be treated by the team's NetworkPolicies and the
chart's hub NetworkPolicy as a notebook pod.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import labels
from components.endpoints import JUPYTERHUB_API
from policies import POLICIES, netpol
from preview import check, engine, render
from tests import charts, upstream
from tests.policy_harness import resource

SCRIPT = Path(__file__).parent / "clients" / "notebook_pods.py"
HUB_MOUNT = "/usr/local/etc/jupyterhub"      # where the chart mounts the hub's config (z2jh.py reads it there)
QUANTITY = {"cpu_limit": "cpu", "mem_limit": "memory"}


def _one(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)


def hub_dir(objs: list[dict[str, Any]], namespace: str, out: Path) -> dict[str, str]:
    """Lay out the hub container's /usr/local/etc/jupyterhub in `out` from the rendered chart (ConfigMap `hub` ->
    config/ and the two Python files, Secret `hub` -> secret/), and return the container's environment: its `env`
    (downward API namespace, Secret references) and the Service links Kubernetes injects. KubeSpawner reads a
    kubeconfig at start; it points at a local port that nothing here ever calls."""
    config, secret = _one(objs, "ConfigMap", "hub"), _one(objs, "Secret", "hub")
    (out / "config").mkdir(parents=True)
    (out / "secret").mkdir()
    for key, text in config["data"].items():
        (out / "config" / key).write_text(text)
    for key in ("jupyterhub_config.py", "z2jh.py"):
        (out / key).write_text(config["data"][key].replace(HUB_MOUNT, str(out)))
    for key, data in (secret.get("data") or {}).items():
        (out / "secret" / key).write_bytes(base64.b64decode(data))
    for key, text in (secret.get("stringData") or {}).items():
        (out / "secret" / key).write_text(text)
    hub = _one(objs, "Deployment", "hub")["spec"]["template"]["spec"]
    files = {v["name"] for v in hub.get("volumes", []) if v.get("secret", {}).get("secretName") == "hub"}
    for mount in hub["containers"][0].get("volumeMounts", []):    # hub.extraFiles: Secret keys under the config dir
        if mount["name"] in files and mount.get("subPath") and mount["mountPath"].startswith(HUB_MOUNT + "/"):
            target = out / mount["mountPath"][len(HUB_MOUNT) + 1:]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((out / "secret" / mount["subPath"]).read_bytes())
    (out / "kubeconfig").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "offline",
        "clusters": [{"name": "offline", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "contexts": [{"name": "offline", "context": {"cluster": "offline", "user": "hub"}}],
        "users": [{"name": "hub", "user": {"token": "offline"}}]}))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(out), "KUBECONFIG": str(out / "kubeconfig")}
    for svc in (o for o in objs if o["kind"] == "Service"):
        prefix = svc["metadata"]["name"].upper().replace("-", "_")
        env[f"{prefix}_SERVICE_HOST"], env[f"{prefix}_SERVICE_PORT"] = "10.100.0.10", str(svc["spec"]["ports"][0]["port"])
    for var in hub["containers"][0].get("env", []):
        source = var.get("valueFrom", {})
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "fieldRef" in source:
            env[var["name"]] = namespace
        elif "secretKeyRef" in source and source["secretKeyRef"]["name"] == secret["metadata"]["name"]:
            env[var["name"]] = (out / "secret" / source["secretKeyRef"]["key"]).read_text()
        elif "secretKeyRef" in source:      # a Secret the platform declares (OAuth client secret): not known offline
            env[var["name"]] = "offline-placeholder"
    return env


def spawn(helm: str, inputs: dict[str, Any], archive: Path, out: Path) -> dict[str, Any]:
    """Render the chart with these release inputs, load the hub config with the real clients, build the pods."""
    code, stdout, stderr = charts.template(helm, archive, inputs)
    assert code == 0, stderr
    objs = charts.objects(stdout)
    env = hub_dir(objs, inputs["namespace"], out / "hub")
    # One member of each team's JupyterHub group (as the authenticator would report it), and a user in none.
    teams = inputs["values"]["custom"]["mlops"]["namespaceGroups"]
    users = {**{f"member-of-{ns}": [group] for ns, group in teams.items()}, "outsider": []}
    done = subprocess.run([upstream.clients_python(), str(SCRIPT), str(out / "hub"), str(out / "pods.json"),
                           json.dumps(users)],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return {"objects": objs, **json.loads((out / "pods.json").read_text())}


@pytest.fixture(scope="session")
def helm() -> str:
    return upstream.tool("helm", charts.HELM_HOW)


def jupyterhub(rendered) -> dict[str, Any]:
    return next(r.inputs for r in render.helm_releases(rendered.run) if charts.chart_name(r.inputs) == "jupyterhub")


def without_gpu_toleration(inputs: dict[str, Any]) -> dict[str, Any]:
    """Mutation: every GPU profile loses its GPU toleration."""
    mutated = copy.deepcopy(inputs)
    for profile in mutated["values"]["singleuser"]["profileList"]:
        override = profile["kubespawner_override"]
        if override.get("extra_resource_limits"):
            override["tolerations"] = [t for t in override["tolerations"] if t.get("key") != labels.GPU_TAINT["key"]]
    return mutated


@pytest.fixture(scope="session")
def spawned(request, helm, charts_dir, tmp_path_factory) -> dict[str, dict[str, Any]]:
    """stack -> what the real hub builds; plus "dev-mutated" (GPU profiles without their GPU toleration)."""
    upstream.clients_python()
    jobs = {stack: jupyterhub(request.getfixturevalue(stack)) for stack in ("dev", "prod")}
    jobs["dev-mutated"] = without_gpu_toleration(jobs["dev"])
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(spawn, helm, inputs, charts.archive(charts_dir, inputs),
                                     tmp_path_factory.mktemp(name)) for name, inputs in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


def memory_bytes(value: str | int) -> int:
    """Memory as the platform means it (config memoryGB is decimal GB: planning fits memory_gb * 1e9 on nodes)."""
    units = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    unit = next((u for u in sorted(units, key=len, reverse=True) if str(value).endswith(u)), None)
    return int(float(str(value)[:-len(unit)]) * units[unit]) if unit else int(value)


def pod_problems(rendered, built: dict[str, Any]) -> dict[str, list[str]]:
    """Per (user, profile): what is wrong with the pod the real hub built, against the profile and the platform."""
    values = jupyterhub(rendered)["values"]
    profiles = {p["slug"]: p["kubespawner_override"] for p in values["singleuser"]["profileList"]}
    groups_of = values["custom"]["mlops"]["profileGroups"]
    team_namespaces = {o["metadata"]["name"]: o["metadata"].get("labels", {}) for o in rendered.objects("Namespace")
                       if labels.TEAM in o["metadata"].get("labels", {})}
    policies = rendered.objects("NetworkPolicy")
    hub_policies = release_policies(built["objects"], JUPYTERHUB_API.namespace)
    overrides = check.load_overrides(engine.PROJECT_DIR, rendered.run.stack)
    baseline = {(v.policy, v.message) for v in check.evaluate(POLICIES, rendered.resources, overrides)}
    problems: dict[str, list[str]] = {}
    for result in built["results"]:
        key = f"{result['user']} {result['profile']}"
        override, member = profiles[result["profile"]], set(result["groups"]) & set(groups_of[result["profile"]])
        found = problems.setdefault(key, [])
        if not member:
            if "error" not in result:
                found.append("a user outside the profile's team got a pod")
            continue
        if "error" in result:
            found.append(f"no pod: {result['error']}")
            continue
        pod, namespace = result["pod"], result["namespace"]
        spec, main = pod["spec"], pod["spec"]["containers"][0]
        if namespace != override["namespace"] or namespace not in team_namespaces:
            found.append(f"namespace {namespace}, not the team namespace {override['namespace']}")
        if spec.get("serviceAccountName") != values["singleuser"]["serviceAccountName"] or not any(
                sa["metadata"]["name"] == spec.get("serviceAccountName")
                for sa in rendered.objects("ServiceAccount", namespace)):
            found.append(f"service account {spec.get('serviceAccountName')} is not the team's")
        limits = main["resources"].get("limits", {})
        if float(limits.get("cpu", 0)) != float(override["cpu_limit"]) or \
                int(limits.get("memory", 0)) != memory_bytes(override["mem_limit"]):
            found.append(f"limits {limits} are not the profile's")
        for resource_name, count in (override.get("extra_resource_limits") or {}).items():
            if int(limits.get(resource_name, 0)) != int(count):
                found.append(f"limit {resource_name} is {limits.get(resource_name)}, not {count}")
        if (spec.get("nodeSelector") or {}) != override["node_selector"]:
            found.append(f"node selector {spec.get('nodeSelector')}")
        gpu = bool(override.get("extra_resource_limits"))
        tolerated = any(t.get("key") == labels.GPU_TAINT["key"] and t.get("effect") == labels.GPU_TAINT["effect"]
                        for t in spec.get("tolerations") or [])
        if gpu and not tolerated:
            found.append("a GPU pod without the GPU toleration")
        pod_obj = {**pod, "metadata": {**pod["metadata"], "namespace": namespace}}
        registration = resource("kubernetes:core/v1:Pod", pod_obj, f"notebook-{result['user']}-{result['profile']}")
        # The pod's own violations: resource policies name its urn, stack policies none, so compare with the plan's.
        found += [f"policy {v.policy}: {v.message}" for v in check.evaluate(
            POLICIES, [*rendered.resources, registration], overrides)
            if v.urn == registration.urn or (v.policy, v.message) not in baseline]
        found += notebook_network_problems(policies, hub_policies, namespace, team_namespaces[namespace],
                                           pod["metadata"]["labels"])
    return problems


def release_policies(objs: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """The chart's NetworkPolicies in the release namespace (helm leaves `metadata.namespace` to the release; a policy
    without one would select no pod, and every pod would look unrestricted)."""
    return [{**o, "metadata": {"namespace": namespace, **o["metadata"]}} for o in objs if o["kind"] == "NetworkPolicy"]


def notebook_network_problems(policies, hub_policies, namespace: str, ns_labels: dict[str, str],
                              pod_labels: dict[str, str]) -> list[str]:
    """The team's NetworkPolicies isolate the pod both ways and let it reach the hub API; the chart's hub
    NetworkPolicy admits it (a team namespace, `job-type: notebook`)."""
    found = [f"not isolated for {d}" for d in (netpol.INGRESS, netpol.EGRESS)
             if not netpol.isolated(policies, namespace, pod_labels, d)]
    hub = netpol.Reach(netpol.Peer.pods_in(JUPYTERHUB_API.namespace, JUPYTERHUB_API.pod_labels),
                       netpol.Port("TCP", JUPYTERHUB_API.port))
    egress = netpol.allowed(policies, namespace, pod_labels, netpol.EGRESS)
    if hub not in egress:
        found.append("its team's NetworkPolicies do not let it reach the hub API")
    if any(netpol.open_to_internet(r) for r in egress):
        found.append("it reaches the internet")
    ns = {**ns_labels, netpol.NAMESPACE_NAME_LABEL: namespace}
    admitted = [r for r in netpol.allowed(hub_policies, JUPYTERHUB_API.namespace, JUPYTERHUB_API.pod_labels,
                                          netpol.INGRESS)
                if r.peer.everywhere or (r.peer.namespaces is not None and r.peer.namespaces.matches(ns)
                                         and (r.peer.pods is None or r.peer.pods.matches(pod_labels)))]
    if not any(r.port is None or r.port.port in (JUPYTERHUB_API.port, "http") for r in admitted):
        found.append("the hub's NetworkPolicy does not admit it")
    return found


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_profile_builds_its_pod_with_the_real_kubespawner(stack, request, spawned):
    rendered, built = request.getfixturevalue(stack), spawned[stack]
    assert built["spawner"].endswith("TeamNamespaceSpawner")      # hub.extraConfig was loaded by the real hub
    pods = [r for r in built["results"] if "pod" in r]
    slugs = {p["slug"] for p in jupyterhub(rendered)["values"]["singleuser"]["profileList"]}
    assert {r["profile"] for r in pods} == slugs, "a profile no user of the hub can start"
    problems = {k: v for k, v in pod_problems(rendered, built).items() if v}
    assert not problems, json.dumps(problems, indent=1)


def test_a_gpu_profile_without_its_gpu_toleration_fails(dev, spawned):
    problems = pod_problems(dev, spawned["dev-mutated"])
    gpu = [k for k, v in problems.items() if any("GPU toleration" in p for p in v)]
    assert gpu, "the mutated GPU profiles built pods the checks accept"
    assert all(any(p.startswith("policy gpu-workload") for p in problems[k]) for k in gpu), problems

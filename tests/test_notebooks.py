"""JupyterHub: the rendered chart values (against the chart's own schema), GPU profiles (limit, toleration, pool,
idle timeout), culling, team namespaces and visibility, home volumes, the hub's RBAC and the client secret. The
`notebooks` config rules: tests/test_notebooks_config.py."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
import yaml

from components import labels
from components.config import ConfigError, duration_seconds, parse_config
from components.endpoints import JUPYTERHUB_API, NOTEBOOK_INGRESS, PodSource, ServiceEndpoint
from components.notebooks import (
    CPU_IMAGE,
    GPU_IMAGE,
    HUB_SERVICE_ACCOUNT,
    JUPYTERHUB_CHART,
    NAMESPACE,
    OAUTH_SECRET,
    OAUTH_SECRET_KEY,
    SPAWNER_ROLE,
    check_endpoints,
)
from policies.notebooks import SERVER_SHUTDOWN, server_arg
from preview import engine, render
from tests.conftest import fixture_stack_file, raw_config, run_config, stack_yaml

STACKS = ["dev", "prod"]
GPU_RESOURCES = ("nvidia.com/gpu", "nvidia.com/gpu.shared")


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _pool_labels(rendered) -> set[tuple[str, str, str]]:
    """(node-pool, gpu-type, sharing) of every GPU pool the stack declares: NodePools and managed node groups."""
    pools = set()
    for pool in rendered.objects("NodePool"):
        node_labels = pool["spec"]["template"]["metadata"]["labels"]
        if labels.GPU_TYPE in node_labels:
            pools.add((node_labels[labels.NODE_POOL], node_labels[labels.GPU_TYPE], node_labels[labels.GPU_SHARING]))
    for group in rendered.of_type("aws:eks/nodeGroup:NodeGroup"):
        node_labels = group.inputs.get("labels") or {}
        if labels.GPU_TYPE in node_labels:
            pools.add((node_labels[labels.NODE_POOL], node_labels[labels.GPU_TYPE], "none"))
    return pools


# ---- the chart and its values ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_values_validate_against_the_chart_schema(stack, request, schemas_dir):
    values = request.getfixturevalue(stack).helm("jupyterhub")["values"]
    schema = json.loads((schemas_dir / "values/jupyterhub/values.schema.json").read_text())
    defaults = yaml.safe_load((schemas_dir / "values/jupyterhub/values.yaml").read_text())
    validator = jsonschema.Draft7Validator(schema)
    # Helm validates the chart's defaults merged with the release's values.
    assert [e.message for e in validator.iter_errors(_deep_merge(defaults, values))] == []
    broken = _deep_merge(defaults, {**values, "cull": {**values["cull"], "timeout": "1h"}})
    assert list(validator.iter_errors(broken)), "the schema check must be able to fail"
    assert list(validator.iter_errors(_deep_merge(defaults, {"hub": {"culler": True}})))


@pytest.mark.parametrize("stack", STACKS)
def test_chart_pinned_in_its_own_namespace(stack, request):
    r = request.getfixturevalue(stack)
    release = r.helm("jupyterhub")
    assert release["version"] == JUPYTERHUB_CHART["version"] == "4.4.0"
    assert release["repositoryOpts"]["repo"] == "https://hub.jupyter.org/helm-chart/"
    assert release["namespace"] == NAMESPACE == JUPYTERHUB_API.namespace
    ns = r.obj("Namespace", NAMESPACE)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    values = release["values"]
    assert values["proxy"]["service"]["type"] == "ClusterIP"
    assert values["prePuller"]["hook"]["enabled"] is False and values["prePuller"]["continuous"]["enabled"] is False


# ---- GPU profiles ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_each_gpu_profile_has_limit_toleration_pool_and_gpu_idle_timeout(stack, request):
    r = request.getfixturevalue(stack)
    values = r.helm("jupyterhub")["values"]
    culling = parse_config(raw_config(stack)).notebooks.culling
    gpu_idle, gpu_max_age = duration_seconds(culling.gpu_idle_timeout), duration_seconds(culling.gpu_max_age)
    pools = _pool_labels(r)
    gpu = [p for p in values["singleuser"]["profileList"] if p["kubespawner_override"].get("extra_resource_limits")]
    assert len(gpu) >= 1, "the stacks offer GPU profiles"
    for profile in gpu:
        o = profile["kubespawner_override"]
        ((resource, units),) = o["extra_resource_limits"].items()
        assert resource in GPU_RESOURCES or resource.startswith(labels.MIG_RESOURCE_PREFIX)
        assert units == 1 and o["extra_resource_guarantees"] == o["extra_resource_limits"]
        assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"} \
            in o["tolerations"]
        selector = o["node_selector"]
        matching = [p for p in pools if p[0] == selector[labels.NODE_POOL] and p[1] == selector[labels.GPU_TYPE]]
        assert matching, f"{profile['slug']} selects {selector}, which no GPU pool of the stack carries"
        sharing = matching[0][2]
        assert (resource == "nvidia.com/gpu.shared") == (sharing == "time-slicing")
        assert resource.startswith(labels.MIG_RESOURCE_PREFIX) == (sharing == "mig")
        # the shorter GPU idle timeout, inside the server, and a hard maximum age
        assert server_arg(o["args"], SERVER_SHUTDOWN) == gpu_idle
        assert server_arg(o["args"], "MappingKernelManager.cull_idle_timeout") == gpu_idle
        assert "--MappingKernelManager.cull_connected=True" in o["args"]
        assert o["extra_pod_config"]["activeDeadlineSeconds"] == gpu_max_age
        assert o["image"] == ":".join(GPU_IMAGE.values())
    assert gpu_idle < duration_seconds(culling.idle_timeout)


def _profiles_of(run) -> dict[str, dict]:
    (release,) = [r for r in render.helm_releases(run) if r.inputs["name"] == "jupyterhub"]
    return {p["slug"]: p["kubespawner_override"] for p in release.inputs["values"]["singleuser"]["profileList"]}


def test_dev_offers_the_seed_profiles():
    config = stack_yaml("dev")
    config["mlops-platform:teams"][0]["notebookProfiles"] = ["cpu", "t4", "t4-shared"]
    profiles = _profiles_of(run_config(config))
    cpu, t4 = profiles["risk-lab-cpu"], profiles["risk-lab-t4"]
    assert (cpu["cpu_guarantee"], cpu["mem_guarantee"]) == (2, 4 * 10**9) and "extra_resource_limits" not in cpu
    assert cpu["image"] == ":".join(CPU_IMAGE.values()) and cpu["tolerations"] == []
    assert (t4["cpu_guarantee"], t4["mem_guarantee"], t4["extra_resource_limits"]) == (4, 16 * 10**9, {"nvidia.com/gpu": 1})
    assert t4["node_selector"] == {labels.GPU_TYPE: "t4", labels.NODE_POOL: "training"}   # fits g4dn.2xlarge only
    assert profiles["risk-lab-t4-shared"]["extra_resource_limits"] == {"nvidia.com/gpu.shared": 1}
    assert profiles["risk-lab-t4-shared"]["node_selector"][labels.NODE_POOL] == "inference"


def test_prod_offers_mig_and_time_sliced_profiles(prod):
    profile_list = prod.helm("jupyterhub")["values"]["singleuser"]["profileList"]
    profiles = {p["slug"]: p["kubespawner_override"] for p in profile_list}
    assert profiles["risk-lab-mig-1g-10gb"]["extra_resource_limits"] == {"nvidia.com/mig-1g.10gb": 1}
    assert profiles["risk-lab-mig-1g-10gb"]["node_selector"][labels.NODE_POOL] == "inference-mig"
    assert profiles["risk-lab-l4-shared"]["extra_resource_limits"] == {"nvidia.com/gpu.shared": 1}
    assert profiles["risk-lab-a10g"]["node_selector"][labels.NODE_POOL] == "a10g-inference"


# ---- culling -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_culling_is_on_with_the_config_timeouts(stack, request):
    values = request.getfixturevalue(stack).helm("jupyterhub")["values"]
    culling = parse_config(raw_config(stack)).notebooks.culling
    cull = values["cull"]
    assert cull["enabled"] is True
    assert cull["timeout"] == duration_seconds(culling.idle_timeout)
    assert cull["maxAge"] == duration_seconds(culling.max_age) > 0
    assert cull["every"] == duration_seconds(culling.every)
    for profile in values["singleuser"]["profileList"]:     # kernels are culled inside every server too
        args = profile["kubespawner_override"]["args"]
        assert 0 < server_arg(args, "MappingKernelManager.cull_idle_timeout") <= cull["timeout"]
        assert 0 < server_arg(args, SERVER_SHUTDOWN) <= cull["timeout"]


def test_culling_is_on_with_default_config():
    config = stack_yaml("dev")
    del config["mlops-platform:notebooks"]
    run = run_config(config)
    (release,) = [r for r in render.helm_releases(run) if r.inputs["name"] == "jupyterhub"]
    assert release.inputs["values"]["cull"]["enabled"] is True
    assert release.inputs["values"]["cull"]["timeout"] == 8 * 3600
    t4 = next(p for p in release.inputs["values"]["singleuser"]["profileList"] if p["slug"] == "risk-lab-t4")
    assert server_arg(t4["kubespawner_override"]["args"], SERVER_SHUTDOWN) == 3600


# ---- teams: namespaces, visibility, quotas --------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_user_pods_land_in_the_team_namespace_with_team_labels(stack, request):
    values = request.getfixturevalue(stack).helm("jupyterhub")["values"]
    assert values["singleuser"]["serviceAccountName"] == "notebook"
    assert values["singleuser"]["cloudMetadata"]["blockWithIptables"] is False    # Pod Security baseline
    for profile in values["singleuser"]["profileList"]:
        o = profile["kubespawner_override"]
        team = o["namespace"]
        assert profile["slug"].startswith(f"{team}-")
        assert o["extra_labels"][labels.JOB_TYPE] == "notebook" and o["extra_labels"][labels.TEAM] == team
        assert o["extra_pod_config"]["priorityClassName"] == "mlops-notebook"
    assert values["hub"]["config"]["KubeSpawner"]["enable_user_namespaces"] is True
    snippet = values["hub"]["extraConfig"]["00-team-profiles.py"]
    assert "c.KubeSpawner.profile_list = _team_profiles" in snippet
    assert "c.JupyterHub.spawner_class = TeamNamespaceSpawner" in snippet
    compile(snippet, "00-team-profiles.py", "exec")        # the hub would fail to start on a syntax error


@pytest.mark.parametrize("stack", STACKS)
def test_a_team_sees_only_the_profiles_its_config_allows(stack, request):
    values = request.getfixturevalue(stack).helm("jupyterhub")["values"]
    groups = values["custom"]["mlops"]["profileGroups"]
    by_team: dict[str, set[str]] = {}
    for p in values["singleuser"]["profileList"]:
        team = p["kubespawner_override"]["namespace"]
        by_team.setdefault(team, set()).add(p["slug"][len(team) + 1:])
        assert groups[p["slug"]] == [f"team:{team}"]         # only the team's group sees it
    for team in stack_yaml(stack)["mlops-platform:teams"]:
        assert by_team[team["name"]] == set(team.get("notebookProfiles", ["cpu"]))
    assert values["custom"]["mlops"]["namespaceGroups"] == {t: f"team:{t}" for t in by_team}


def test_team_group_override(dev):
    config = stack_yaml("dev")
    config["mlops-platform:notebooks"]["teamGroups"] = {"risk-lab": "acme:fraud"}
    config["mlops-platform:notebooks"]["auth"]["dummyUsers"] = {"alice": ["risk-lab"]}
    run = run_config(config)
    (release,) = [r for r in render.helm_releases(run) if r.inputs["name"] == "jupyterhub"]
    values = release.inputs["values"]
    assert values["custom"]["mlops"]["profileGroups"]["risk-lab-cpu"] == ["acme:fraud"]
    assert values["hub"]["config"]["JupyterHub"]["load_groups"]["acme:fraud"] == {"users": ["alice"]}


@pytest.mark.parametrize("stack", STACKS)
def test_hub_may_spawn_only_into_team_namespaces(stack, request):
    r = request.getfixturevalue(stack)
    teams = [t["name"] for t in stack_yaml(stack)["mlops-platform:teams"]]
    for team in teams:
        role = r.obj("Role", SPAWNER_ROLE, team)
        assert {res for rule in role["rules"] for res in rule["resources"]} == {"pods", "persistentvolumeclaims",
                                                                               "events"}
        binding = r.obj("RoleBinding", SPAWNER_ROLE, team)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": HUB_SERVICE_ACCOUNT, "namespace": NAMESPACE}]
    watch = r.obj("ClusterRole", "jupyterhub-watch")
    assert {v for rule in watch["rules"] for v in rule["verbs"]} == {"get", "list", "watch"}
    assert not [x for x in r.objects("Role") if x["metadata"]["name"] == SPAWNER_ROLE
                and x["metadata"]["namespace"] not in teams]


@pytest.mark.parametrize("stack", STACKS)
def test_home_volumes_are_dynamic_gp3(stack, request):
    r = request.getfixturevalue(stack)
    storage = r.helm("jupyterhub")["values"]["singleuser"]["storage"]
    assert storage["type"] == "dynamic" and storage["dynamic"]["storageClass"] == "gp3"
    assert storage["capacity"] == f"{parse_config(raw_config(stack)).notebooks.home_gib}Gi"
    assert r.obj("StorageClass", "gp3")["parameters"]["type"] == "gp3"


def test_team_network_policies_admit_this_hub(dev):
    check_endpoints(JUPYTERHUB_API, NOTEBOOK_INGRESS)
    with pytest.raises(ValueError, match="JUPYTERHUB_API"):
        check_endpoints(ServiceEndpoint("hub", {"app": "jupyterhub", "component": "hub"}, 8081, "http://x"),
                        NOTEBOOK_INGRESS)
    with pytest.raises(ValueError, match="NOTEBOOK_INGRESS"):
        check_endpoints(JUPYTERHUB_API, (PodSource("jupyterhub", {"app": "jupyterhub", "component": "hub"}),))
    ingress = dev.obj("NetworkPolicy", "notebook-ingress", "risk-lab")["spec"]["ingress"][0]["from"]
    assert {(p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
             p["podSelector"]["matchLabels"]["component"]) for p in ingress} == {(NAMESPACE, "hub"),
                                                                                   (NAMESPACE, "proxy")}
    hub_rule = dev.helm("jupyterhub")["values"]["hub"]["networkPolicy"]["ingress"][0]
    assert hub_rule["from"][0]["podSelector"]["matchLabels"] == {labels.JOB_TYPE: "notebook"}
    assert hub_rule["ports"] == [{"port": JUPYTERHUB_API.port, "protocol": "TCP"}]


# ---- authentication and the client secret ---------------------------------------------------------------------


def test_prod_authenticates_with_oidc_and_reads_the_secret_from_a_secret(prod):
    values = prod.helm("jupyterhub")["values"]
    assert values["hub"]["config"]["JupyterHub"]["authenticator_class"] == "generic-oauth"
    oauth = values["hub"]["config"]["GenericOAuthenticator"]
    assert "client_secret" not in oauth and oauth["manage_groups"] is True
    assert set(oauth["allowed_groups"]) >= {"team:risk-lab", "team:reco-lab", "team:forecast-lab"}
    assert values["hub"]["extraEnv"]["OAUTH_CLIENT_SECRET"] == {
        "valueFrom": {"secretKeyRef": {"name": OAUTH_SECRET, "key": "client-secret"}}}


def test_client_secret_never_appears_in_clear_in_the_build_output(prod, tmp_path):
    # The program is handed the offline placeholder for the `secure:` value (so a leak would show it) ...
    config, secret_keys = engine.read_stack_config(fixture_stack_file("prod"))
    assert json.loads(config["mlops-platform:notebooks"])["auth"]["clientSecret"] == engine.OFFLINE_SECRET
    assert "mlops-platform:notebooks" in secret_keys
    # ... and writes it nowhere.
    render.write(prod.run, tmp_path, [])
    outputs = ["plan.json", "manifests.yaml", "summary.md", *(f"helm/{p.name}" for p in (tmp_path / "helm").iterdir())]
    for output in outputs:
        assert engine.OFFLINE_SECRET not in (tmp_path / output).read_text(), output
    secret = prod.obj("Secret", OAUTH_SECRET, NAMESPACE)
    assert secret["stringData"] == {OAUTH_SECRET_KEY: "[secret]"}   # its shape stays, so it validates


def test_the_secret_is_a_secret_even_when_not_marked_secure():
    """Prod refuses a plain-text client secret (docs/config-errors.md); elsewhere it is still kept out of the plan."""
    config = stack_yaml("prod")
    config["mlops-platform:notebooks"]["auth"]["clientSecret"] = "plain-text-in-config"
    with pytest.raises(ConfigError, match=r"notebooks\.auth\.clientSecret: must be a `secure:` value in prod"):
        run_config(config)
    config["mlops-platform:environment"] = "dev"
    run = run_config(config)
    assert "plain-text-in-config" not in json.dumps(render.plan(run))


def test_dev_uses_dummy_users_with_their_teams(dev):
    config = dev.helm("jupyterhub")["values"]["hub"]["config"]
    assert config["JupyterHub"]["authenticator_class"] == "dummy"
    assert config["JupyterHub"]["load_groups"]["team:risk-lab"] == {"users": ["alice"]}
    assert not dev.objects("Secret", NAMESPACE)

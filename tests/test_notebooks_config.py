"""The `notebooks` config rules, each error at its key path: authentication per environment, profiles and the GPU
types they name, culling, home volumes and team visibility."""

from __future__ import annotations

import json

import pytest

from components.config import ConfigError, notebook_profiles, parse_config
from preview import engine, render
from tests.conftest import raw_config, run_config, stack_yaml


def _config(stack: str, **changes):
    """The fixture stack's config with top-level sections replaced, parsed."""
    return parse_config({**raw_config(stack), **changes})


# ---- config rules --------------------------------------------------------------------------------------------


def test_dummy_authenticator_is_refused_in_prod():
    with pytest.raises(ConfigError, match=r"notebooks\.auth\.type: must not be 'dummy' in prod"):
        _config("prod", notebooks={"auth": {"type": "dummy"}})


def test_profile_naming_a_gpu_type_no_pool_offers_is_an_error():
    with pytest.raises(ConfigError, match=r"notebooks\.profiles\[0\]\.gpu\.type: names GPU type 'h100-80gb'.*"
                                          r"which no GPU pool offers"):
        _config("dev", notebooks={"profiles": [{"name": "h100", "cpu": 4, "memoryGB": 16,
                                                "gpu": {"type": "h100-80gb"}}]})
    with pytest.raises(ConfigError, match=r"notebooks\.profiles\[0\]\.gpu\.type: names GPU type 't4' with sharing "
                                          r"'mig'"):
        _config("dev", notebooks={"profiles": [{"name": "x", "cpu": 1, "memoryGB": 4,
                                                "gpu": {"type": "t4", "sharing": "mig", "migProfile": "1g.10gb"}}]})
    with pytest.raises(ConfigError, match=r"notebooks\.profiles\[0\]\.gpu\.type: is not a GPU type"):
        _config("dev", notebooks={"profiles": [{"name": "x", "cpu": 1, "memoryGB": 4, "gpu": {"type": "v100"}}]})


def test_team_profile_must_exist_and_fit_the_quota():
    teams = raw_config("dev")["teams"]
    teams[1]["notebookProfiles"] = ["cpu", "t4-tiny"]
    with pytest.raises(ConfigError, match=r"teams\[1\]\.notebookProfiles\[1\]: names no notebook profile"):
        _config("dev", teams=teams)
    teams = raw_config("dev")["teams"]
    teams[1]["notebookProfiles"] = ["cpu", "t4x2"]
    profile = {"name": "t4x2", "cpu": 4, "memoryGB": 16, "gpu": {"type": "t4", "count": 2}}
    with pytest.raises(ConfigError, match=r"notebooks\.profiles\[0\]\.gpu\.count: exceeds the 1 GPUs"):
        _config("dev", teams=teams, notebooks={"profiles": [profile]})
    teams = raw_config("dev")["teams"]
    teams[1]["gpuQuota"] = 0
    teams[1]["notebookProfiles"] = ["cpu", "t4"]
    with pytest.raises(ConfigError, match=r"teams\[1\]\.notebookProfiles\[1\]: asks for 1 nvidia\.com/gpu per "
                                          r"notebook, more than the team's quota of 0"):
        _config("dev", teams=teams)


def test_profiles_must_fit_a_node_of_their_pool():
    with pytest.raises(ConfigError, match=r"notebooks\.profiles\[0\]\.cpu: 16 cores and 64 GB do not fit"):
        _config("dev", notebooks={"profiles": [{"name": "t4", "cpu": 16, "memoryGB": 64, "gpu": {"type": "t4"}}]})
    with pytest.raises(ConfigError, match=r"notebooks\.profiles\[0\]\.pool: names no GPU pool offering t4"):
        _config("dev", notebooks={"profiles": [{"name": "t4", "cpu": 2, "memoryGB": 8, "gpu": {"type": "t4"},
                                                "pool": "inference"}]})


def test_a_configured_profile_replaces_the_generated_one():
    cfg = _config("dev", notebooks={"profiles": [{"name": "t4", "displayName": "Small T4", "cpu": 2, "memoryGB": 8,
                                                  "gpu": {"type": "t4"}, "pool": "t4"}]})
    t4 = notebook_profiles(cfg)["t4"]
    assert (t4.display_name, t4.cpu, t4.pool) == ("Small T4", 2, "t4")      # the managed node group, pinned


def test_culling_timeouts_are_ordered():
    with pytest.raises(ConfigError, match=r"notebooks\.culling\.gpuIdleTimeout: gpuIdleTimeout must not exceed idleTimeout"):
        _config("dev", notebooks={"culling": {"idleTimeout": "1h", "gpuIdleTimeout": "2h"}})
    with pytest.raises(ConfigError, match=r"notebooks\.culling\.gpuIdleTimeout: must match"):
        _config("dev", notebooks={"culling": {"gpuIdleTimeout": "one hour"}})


def test_oauth_settings_are_complete():
    with pytest.raises(ConfigError, match=r"notebooks\.auth: .*type 'oidc' needs clientSecret"):
        _config("prod", notebooks={"auth": {"type": "oidc", "clientId": "x",
                                            "callbackUrl": "https://j.example/hub/oauth_callback"}})
    with pytest.raises(ConfigError, match=r"notebooks\.auth: .*type 'github' needs allowedOrganizations"):
        _config("prod", notebooks={"auth": {"type": "github", "clientId": "x", "clientSecret": "s",
                                            "callbackUrl": "https://j.example/hub/oauth_callback"}})
    with pytest.raises(ConfigError, match=r"notebooks\.auth\.callbackUrl: must be an https:// URL"):
        _config("prod", notebooks={"auth": {"type": "github", "clientId": "x", "clientSecret": "s",
                                            "callbackUrl": "http://j.example/cb", "allowedOrganizations": ["acme"]}})


def test_github_groups_come_from_teams():
    config = stack_yaml("prod")
    config["mlops-platform:notebooks"]["auth"] = {
        "type": "github", "clientId": "x", "clientSecret": engine.OFFLINE_SECRET, "allowedOrganizations": ["acme"],
        "callbackUrl": "https://j.example/hub/oauth_callback"}
    config["mlops-platform:notebooks"]["teamGroups"] = {"risk-lab": "acme:risk-lab"}
    run = run_config(config)
    (release,) = [r for r in render.helm_releases(run) if r.inputs["name"] == "jupyterhub"]
    values = release.inputs["values"]
    assert values["hub"]["config"]["GitHubOAuthenticator"]["allowed_organizations"] == ["acme"]
    assert "auth_state_groups_key = _github_teams" in values["hub"]["extraConfig"]["10-github-teams.py"]
    compile(values["hub"]["extraConfig"]["10-github-teams.py"], "10-github-teams.py", "exec")
    assert values["custom"]["mlops"]["profileGroups"]["risk-lab-cpu"] == ["acme:risk-lab"]


def test_team_groups_and_dummy_users_name_teams():
    with pytest.raises(ConfigError, match=r"notebooks\.teamGroups\.nobody: names no team"):
        _config("dev", notebooks={"teamGroups": {"nobody": "g"}})
    with pytest.raises(ConfigError, match=r"notebooks\.auth\.dummyUsers\.carol\[0\]: names no team"):
        _config("dev", notebooks={"auth": {"type": "dummy", "dummyUsers": {"carol": ["nobody"]}}})


def test_profile_images_must_be_pinned_and_allowed():
    with pytest.raises(ConfigError, match=r"notebooks\.profiles\[0\]\.image: must be pinned"):
        _config("dev", notebooks={"profiles": [{"name": "r", "cpu": 1, "memoryGB": 2,
                                                "image": "quay.io/jupyter/r-notebook:latest"}]})
    with pytest.raises(ConfigError, match=r"notebooks\.profiles\[0\]\.image: is not from a registry"):
        _config("dev", notebooks={"profiles": [{"name": "r", "cpu": 1, "memoryGB": 2,
                                                "image": "docker.io/someone/notebook:1.0"}]})


def test_notebooks_disabled_declares_no_hub():
    config = stack_yaml("dev")
    config["mlops-platform:notebooks"] = {"enabled": False}
    run = run_config(config)
    assert not [r for r in render.helm_releases(run) if r.inputs["name"] == "jupyterhub"]


def test_a_generated_profile_shrinks_to_the_only_instance_its_pool_has():
    cfg = _config("dev", gpu={"nodePools": [{"name": "inference", "instanceTypes": ["g4dn.xlarge"], "gpuLimit": 2,
                                             "sharing": {"mode": "time-slicing", "replicas": 4}}]})
    t4 = notebook_profiles(cfg)["t4"]                     # only the g4dn.xlarge node group offers whole T4s
    assert (t4.pool, t4.cpu, t4.memory_gb) == ("t4", 3, 15)


def test_real_kubespawner_builds_a_restricted_notebook_pod_with_the_teams_mlflow_credentials(dev):
    """KubeSpawner (the clients venv's, the hub image's version) turns the rendered values into the server pod:
    Pod Security `restricted` settings, and MLflow credentials from the pod's own namespace's Secret."""
    import subprocess

    from tests import upstream

    values = dev.helm("jupyterhub")["values"]
    spawner = values["hub"]["config"]["KubeSpawner"]
    script = """
import asyncio, json, sys
from kubernetes_asyncio.client import ApiClient
from kubespawner.objects import make_pod
cfg = json.load(sys.stdin)
pod = make_pod(name="jupyter-ana", cmd=["jupyterhub-singleuser"], port=8888, image="quay.io/jupyter/base-notebook:2025-01-13",
               image_pull_policy="IfNotPresent", uid=cfg["uid"], fs_gid=cfg["fsGid"],
               allow_privilege_escalation=cfg["allowPrivilegeEscalation"],
               container_security_context=cfg["csc"], pod_security_context=cfg["psc"], env=cfg["env"])
async def main():
    async with ApiClient() as client:
        print(json.dumps(client.sanitize_for_serialization(pod)))
asyncio.run(main())
"""
    given = {"env": values["singleuser"]["extraEnv"], "uid": values["singleuser"].get("uid", 1000),
             "fsGid": values["singleuser"].get("fsGid", 100),
             "allowPrivilegeEscalation": values["singleuser"]["allowPrivilegeEscalation"],
             "csc": spawner["container_security_context"], "psc": spawner["pod_security_context"]}
    done = subprocess.run([upstream.clients_python(), "-c", script], input=json.dumps(given), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    pod = json.loads(done.stdout)
    (container,) = pod["spec"]["containers"]
    sc = {**pod["spec"]["securityContext"], **container["securityContext"]}
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 1000
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert {r["name"] for r in refs.values()} == {"mlflow-credentials"}
    assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= set(refs)

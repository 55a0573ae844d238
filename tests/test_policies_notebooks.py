"""`gpu-notebook-idle-culling`: a compliant JupyterHub release passes, one-property mutations fail, the stacks pass."""

from __future__ import annotations

import pytest

from policies import POLICIES
from policies.notebooks import gpu_notebook_idle_culling as policy
from policies.notebooks import server_arg
from tests.policy_harness import mutated, resource, violations

RELEASE = "kubernetes:helm.sh/v3:Release"


def _profile(slug: str, resources: dict | None, idle: int | None) -> dict:
    override: dict = {"namespace": "team-a", "args": [] if idle is None else
                      [f"--ServerApp.shutdown_no_activity_timeout={idle}",
                       f"--MappingKernelManager.cull_idle_timeout={idle}"]}
    if resources:
        override.update({"extra_resource_limits": resources, "extra_resource_guarantees": resources,
                         "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                         "node_selector": {"mlops.platform/node-pool": "gpu"}})
    return {"display_name": slug, "slug": slug, "kubespawner_override": override}


COMPLIANT = {
    "name": "jupyterhub", "chart": "jupyterhub", "version": "4.4.0", "namespace": "jupyterhub",
    "values": {
        "cull": {"enabled": True, "timeout": 28800, "every": 600, "maxAge": 259200},
        "singleuser": {"profileList": [
            _profile("team-a-cpu", None, 28800),
            _profile("team-a-t4", {"nvidia.com/gpu": 1}, 3600),
            _profile("team-a-shared", {"nvidia.com/gpu.shared": 1}, 1800),
            _profile("team-a-mig", {"nvidia.com/mig-1g.10gb": 1}, 3600),
        ]},
    },
}


def _release(props: dict):
    return resource(RELEASE, props, name="hub")


def test_compliant_release_passes():
    assert violations(policy, _release(COMPLIANT)) == []


@pytest.mark.parametrize("index, what", [(1, "nvidia.com/gpu"), (2, "nvidia.com/gpu.shared"), (3, "MIG")])
def test_gpu_profile_without_server_timeout_and_a_long_hub_timeout_fails(index, what):
    def change(p):
        p["values"]["singleuser"]["profileList"][index]["kubespawner_override"]["args"] = []
    (found,) = violations(policy, _release(mutated(COMPLIANT, change)))
    assert "must be culled within 3600s" in found and "never stops itself" in found, what


def test_gpu_profile_with_a_server_timeout_above_the_maximum_fails():
    def change(p):
        p["values"]["singleuser"]["profileList"][1]["kubespawner_override"]["args"] = [
            "--ServerApp.shutdown_no_activity_timeout=7200"]
    (found,) = violations(policy, _release(mutated(COMPLIANT, change)))
    assert "team-a-t4" in found and "after 7200s idle" in found


def test_server_timeout_zero_means_never():
    def change(p):
        p["values"]["singleuser"]["profileList"][1]["kubespawner_override"]["args"] = [
            "--ServerApp.shutdown_no_activity_timeout=0"]
    assert len(violations(policy, _release(mutated(COMPLIANT, change)))) == 1


def test_a_short_hub_culler_covers_every_profile():
    def change(p):
        p["values"]["cull"]["timeout"] = 1800
        for profile in p["values"]["singleuser"]["profileList"]:
            profile["kubespawner_override"]["args"] = []
    assert violations(policy, _release(mutated(COMPLIANT, change))) == []


def test_hub_culler_switched_off_does_not_count():
    def change(p):
        p["values"]["cull"] = {"enabled": False, "timeout": 600}
        p["values"]["singleuser"]["profileList"][1]["kubespawner_override"]["args"] = []
    (found,) = violations(policy, _release(mutated(COMPLIANT, change)))
    assert "the hub's culler is off" in found


def test_chart_default_culler_applies_when_cull_is_not_set():
    def change(p):
        del p["values"]["cull"]                     # the chart's default: on, 3600 s
        for profile in p["values"]["singleuser"]["profileList"]:
            profile["kubespawner_override"]["args"] = []
    assert violations(policy, _release(mutated(COMPLIANT, change))) == []
    assert len(violations(policy, _release(mutated(COMPLIANT, change)), config={"maxGpuIdleSeconds": 1800})) == 3


def test_configured_maximum():
    assert len(violations(policy, _release(COMPLIANT), config={"maxGpuIdleSeconds": 1800})) == 2


def test_cpu_profiles_and_other_resources_are_not_judged():
    def change(p):
        p["values"]["singleuser"]["profileList"] = [_profile("cpu", None, None)]
        p["values"]["cull"]["enabled"] = False
    assert violations(policy, _release(mutated(COMPLIANT, change))) == []
    assert violations(policy, resource("kubernetes:core/v1:ConfigMap", {"data": {}})) == []


def test_server_arg_parsing():
    assert server_arg(["--ServerApp.shutdown_no_activity_timeout=60", "--x=1"],
                      "ServerApp.shutdown_no_activity_timeout") == 60
    assert server_arg("not a list", "ServerApp.shutdown_no_activity_timeout") is None


def test_policy_is_in_the_pack_with_a_default_maximum():
    assert policy in POLICIES
    assert policy.config_schema.properties["maxGpuIdleSeconds"]["default"] == 3600
    assert policy.remediation_steps


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stacks_pass(stack, request):
    r = request.getfixturevalue(stack)
    releases = r.of_type(RELEASE)
    assert any(x.inputs.get("name") == "jupyterhub" for x in releases)
    assert violations(policy, *releases) == []

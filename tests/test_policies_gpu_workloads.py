"""GPU workload and quota rules: a compliant example passes, each one-property mutation is caught."""

from __future__ import annotations

import copy

import pytest

from policies import POLICIES
from policies.gpu_workloads import gpu_team_quota_within_capacity as quota_policy
from policies.gpu_workloads import gpu_workload_requires_limits_toleration_and_pool as workload_policy
from tests.policy_harness import mutated, resource, violations

POD_SPEC = {
    "containers": [{"name": "trainer", "image": "123456789012.dkr.ecr.us-west-2.amazonaws.com/t:1.0",
                    "resources": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}}],
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "nodeSelector": {"mlops.platform/gpu-type": "t4"},
}
PYTORCHJOB = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "j", "namespace": "t"},
              "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "template": {"spec": copy.deepcopy(POD_SPEC)}},
                                               "Worker": {"replicas": 2, "template": {"spec": copy.deepcopy(POD_SPEC)}}}}}
DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "t"},
              "spec": {"template": {"spec": POD_SPEC}}}
ISVC = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "m", "namespace": "t"},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "pytorch"}, "storageUri": "s3://b/m",
                                         "resources": {"limits": {"nvidia.com/gpu": "1"}}},
                               "tolerations": POD_SPEC["tolerations"], "nodeSelector": POD_SPEC["nodeSelector"]}}}
HUB = {"chart": "jupyterhub", "name": "jupyterhub", "values": {"singleuser": {"profileList": [
    {"slug": "t4", "display_name": "T4", "kubespawner_override": {
        "extra_resource_limits": {"nvidia.com/gpu": "1"},
        "tolerations": POD_SPEC["tolerations"], "node_selector": POD_SPEC["nodeSelector"]}}]}}}

TYPES = {"PyTorchJob": "kubernetes:kubeflow.org/v1:PyTorchJob", "Deployment": "kubernetes:apps/v1:Deployment",
         "InferenceService": "kubernetes:serving.kserve.io/v1beta1:InferenceService",
         "Release": "kubernetes:helm.sh/v3:Release"}


def test_policy_is_in_the_pack():
    assert workload_policy in POLICIES and quota_policy in POLICIES


@pytest.mark.parametrize("kind, props", [("PyTorchJob", PYTORCHJOB), ("Deployment", DEPLOYMENT),
                                         ("InferenceService", ISVC), ("Release", HUB)])
def test_compliant_gpu_workloads_pass(kind, props):
    assert violations(workload_policy, resource(TYPES[kind], props)) == []


def _spec(props):
    return props["spec"]["template"]["spec"]


@pytest.mark.parametrize("change, expected", [
    (lambda p: _spec(p)["containers"][0]["resources"].pop("limits"), "without setting it in limits"),
    (lambda p: _spec(p).pop("tolerations"), "does not tolerate the GPU taint"),
    (lambda p: _spec(p).update(tolerations=[{"key": "other", "operator": "Exists"}]), "does not tolerate"),
    (lambda p: _spec(p).pop("nodeSelector"), "does not target a GPU pool"),
    (lambda p: _spec(p)["containers"][0]["resources"].update(
        requests={"nvidia.com/mig-1g.10gb": "1"}, limits={}), "without setting it in limits"),
])
def test_each_missing_piece_is_a_violation(change, expected):
    found = violations(workload_policy, resource(TYPES["Deployment"], mutated(DEPLOYMENT, change)))
    assert len(found) == 1 and expected in found[0], found


def test_pytorchjob_worker_without_toleration_is_reported_per_replica_spec():
    bad = mutated(PYTORCHJOB, lambda p: p["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"].pop(
        "tolerations"))
    found = violations(workload_policy, resource(TYPES["PyTorchJob"], bad))
    assert found == ["The pod template at Worker replicas asks for a GPU but it does not tolerate the GPU taint "
                     "nvidia.com/gpu=true:NoSchedule."]


def test_gpu_notebook_profile_without_pool_is_reported():
    bad = mutated(HUB, lambda p: p["values"]["singleuser"]["profileList"][0]["kubespawner_override"].pop(
        "node_selector"))
    assert violations(workload_policy, resource(TYPES["Release"], bad)) == [
        "The JupyterHub profile 't4' asks for a GPU but does not target a GPU pool."]


def test_cpu_workloads_are_not_concerned():
    cpu = mutated(DEPLOYMENT, lambda p: _spec(p).update(containers=[{"name": "c", "image": "x:1"}], tolerations=[],
                                                         nodeSelector={}))
    assert violations(workload_policy, resource(TYPES["Deployment"], cpu)) == []


NODE_GROUP = {"instanceTypes": ["g5.12xlarge"], "scalingConfig": {"minSize": 0, "maxSize": 2},
              "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]}


def quota(namespace: str, gpus: int):
    return resource("kubernetes:core/v1:ResourceQuota", {"metadata": {"name": "q", "namespace": namespace},
                                                         "spec": {"hard": {"requests.nvidia.com/gpu": str(gpus)}}},
                    name=namespace)


def test_quota_within_capacity_passes_and_above_fails():
    group = resource("aws:eks/nodeGroup:NodeGroup", NODE_GROUP)   # 2 nodes x 4 A10G = 8 GPUs
    pool = resource("kubernetes:karpenter.sh/v1:NodePool", {"metadata": {"name": "p"},
                                                            "spec": {"limits": {"nvidia.com/gpu": "4"}}})
    assert violations(quota_policy, group, pool, quota("a", 12)) == []
    assert violations(quota_policy, group, pool, quota("a", 13)) == [
        "The GPU quota of namespace 'a' (13) exceeds the 12 GPUs the declared GPU pools can supply."]


# ---- budget ------------------------------------------------------------------------------------------

from policies.gpu_workloads import cost_gpu_quota_within_budget as budget_policy  # noqa: E402


def team_namespace(name: str, budget: str | None):
    meta = {"name": name, "labels": {"mlops.platform/team": name}}
    if budget is not None:
        meta["annotations"] = {"mlops.platform/monthly-gpu-budget-usd": budget}
    return resource("kubernetes:core/v1:Namespace", {"metadata": meta}, name=f"ns-{name}")


def test_a_quota_that_could_exceed_the_teams_budget_is_reported():
    # 2 x g5.12xlarge: dearest GPU-hour $5.672 / 4 = $1.418; 4 GPUs all month = 4 x 1.418 x 730 = $4,140.56.
    group = resource("aws:eks/nodeGroup:NodeGroup", NODE_GROUP)
    assert violations(budget_policy, group, quota("a", 4), team_namespace("a", "5000")) == []
    assert violations(budget_policy, group, quota("a", 4), team_namespace("a", "4000")) == [
        "The GPU quota of team 'a' could cost $4,141 a month at full use, above its monthly GPU budget of $4,000."]
    assert violations(budget_policy, group, quota("a", 4), team_namespace("a", None)) == []


def test_the_budget_reaches_the_namespace_annotation(dev):
    ns = dev.obj("Namespace", "fraud-detection")
    assert ns["metadata"]["annotations"]["mlops.platform/monthly-gpu-budget-usd"] == "2000"

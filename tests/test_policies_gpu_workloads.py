"""GPU workload and quota rules, against pools declared the way a plan declares them (tests/plan_fixtures.py):
compliant workloads of every kind pass; the realistic mistakes (unequal requests, whole GPUs on a time-sliced pool,
a CPU pool selected, a pool picked by a label no pool carries, affinity instead of a nodeSelector) are caught."""

from __future__ import annotations

import copy

import pytest

from policies import POLICIES
from policies.gpu_workloads import gpu_team_quota_within_capacity as quota_policy
from policies.gpu_workloads import gpu_workload_requires_limits_toleration_and_pool as workload_policy
from policies.gpu_workloads import team_quota_covers_gpus
from tests import plan_fixtures as plan
from tests.policy_harness import mutated, resource, violations

WHOLE = {"nvidia.com/gpu": "1"}
POD_SPEC = {
    "containers": [{"name": "trainer", "image": "123456789012.dkr.ecr.us-west-2.amazonaws.com/t:1.0",
                    "resources": {"requests": dict(WHOLE), "limits": dict(WHOLE)}}],
    "tolerations": plan.GPU_TOLERATION,
    "nodeSelector": {"mlops.platform/node-pool": "training"},
}
PYTORCHJOB = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "j", "namespace": "t"},
              "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "template": {"spec": copy.deepcopy(POD_SPEC)}},
                                               "Worker": {"replicas": 2, "template": {"spec": copy.deepcopy(POD_SPEC)}}}}}
DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "t"},
              "spec": {"template": {"spec": POD_SPEC}}}
ISVC = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "m", "namespace": "t"},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "pytorch"}, "storageUri": "s3://b/m",
                                         "resources": {"limits": {"nvidia.com/gpu.shared": "1"}}},
                               "tolerations": plan.GPU_TOLERATION,
                               "nodeSelector": {"karpenter.sh/nodepool": "inference"}}}}
RAY = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "r", "namespace": "t"},
       "spec": {"headGroupSpec": {"template": {"spec": {"containers": [{"name": "head", "image": "x:1"}]}}},
                "workerGroupSpecs": [{"groupName": "gpu", "template": {"spec": {
                    "containers": [{"name": "w", "image": "x:1", "resources": {"limits": {
                        "nvidia.com/mig-1g.10gb": "1"}}}],
                    "tolerations": plan.GPU_TOLERATION, "nodeSelector": {"mlops.platform/node-pool": "mig"}}}}]}}
HUB = {"chart": "jupyterhub", "name": "jupyterhub", "values": {"singleuser": {"profileList": [
    {"slug": "a100", "display_name": "A100", "kubespawner_override": {
        "extra_resource_limits": dict(WHOLE), "tolerations": plan.GPU_TOLERATION,
        "node_selector": {"mlops.platform/node-pool": "training"}}}]}}}

TYPES = {"PyTorchJob": "kubernetes:kubeflow.org/v1:PyTorchJob", "Deployment": "kubernetes:apps/v1:Deployment",
         "InferenceService": "kubernetes:serving.kserve.io/v1beta1:InferenceService",
         "RayCluster": "kubernetes:ray.io/v1:RayCluster", "Release": "kubernetes:helm.sh/v3:Release",
         "CronJob": "kubernetes:batch/v1:CronJob"}


def check(kind: str, props: dict) -> list[str]:
    return violations(workload_policy, resource(TYPES[kind], props), *plan.pools())


def test_policy_is_in_the_pack():
    assert workload_policy in POLICIES and quota_policy in POLICIES and team_quota_covers_gpus in POLICIES


@pytest.mark.parametrize("kind, props", [("PyTorchJob", PYTORCHJOB), ("Deployment", DEPLOYMENT),
                                         ("InferenceService", ISVC), ("RayCluster", RAY), ("Release", HUB)])
def test_compliant_gpu_workloads_pass(kind, props):
    assert check(kind, props) == []


def _spec(props):
    return props["spec"]["template"]["spec"]


def _resources(props):
    return _spec(props)["containers"][0]["resources"]


@pytest.mark.parametrize("change, expected", [
    (lambda p: _resources(p).pop("limits"), "requests nvidia.com/gpu without setting it in limits"),
    (lambda p: _resources(p).update(requests={"nvidia.com/gpu": "1"}, limits={"nvidia.com/gpu": "2"}),
     "requests 1 nvidia.com/gpu but limits it to 2"),
    (lambda p: _spec(p).pop("tolerations"), "does not tolerate the GPU taint"),
    (lambda p: _spec(p).update(tolerations=[{"key": "other", "operator": "Exists"}]), "does not tolerate"),
    # No selector at all: the CPU pool and the system node group admit it too.
    (lambda p: _spec(p).pop("nodeSelector"), "admits the CPU pool(s) ['general', 'system']"),
    # A GPU pod pinned to the CPU pool by its node-pool label (any node-pool label used to count as "a GPU pool").
    (lambda p: _spec(p).update(nodeSelector={"mlops.platform/node-pool": "general"}), "admits the CPU pool(s)"),
    # A label spelling no declared pool carries: the pod would stay Pending forever.
    (lambda p: _spec(p).update(nodeSelector={"mlops.platform/nodepool": "training"}),
     "matches no GPU pool the plan declares"),
    (lambda p: _spec(p).update(nodeSelector={"mlops.platform/gpu-type": "h100"}), "matches no GPU pool"),
    # Whole GPUs on the time-sliced pool, by nodeSelector or by required node affinity.
    (lambda p: _spec(p).update(nodeSelector={"karpenter.sh/nodepool": "inference"}),
     "asks for whole GPUs (nvidia.com/gpu) on the time-sliced pool(s) ['inference']"),
    (lambda p: _spec(p).update(nodeSelector={}, affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["g6.xlarge"]}]}]}}}),
     "on the time-sliced pool(s) ['inference']"),
    (lambda p: (_resources(p).update(requests={}, limits={"nvidia.com/gpu.shared": "2"}),
                _spec(p).update(nodeSelector={"karpenter.sh/nodepool": "inference"})),
     "asks for 2 time-sliced replicas"),
    (lambda p: _resources(p).update(requests={}, limits={"nvidia.com/mig-1g.10gb": "1"}),
     "asks for ['nvidia.com/mig-1g.10gb'], which no pool it selects offers"),
])
def test_each_realistic_mistake_is_a_violation(change, expected):
    found = check("Deployment", mutated(DEPLOYMENT, change))
    assert len(found) == 1 and expected in found[0], found


def test_required_affinity_on_a_gpu_pool_passes():
    by_affinity = mutated(DEPLOYMENT, lambda p: _spec(p).update(nodeSelector={}, affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "karpenter.sh/nodepool", "operator": "In", "values": ["training"]}]}]}}}))
    assert check("Deployment", by_affinity) == []


def test_a_cronjob_and_a_pytorchjob_worker_are_judged_like_any_pod():
    cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": "t"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": mutated(POD_SPEC, lambda s: s.pop(
                "tolerations"))}}}}}
    assert len(check("CronJob", cron)) == 1
    bad = mutated(PYTORCHJOB, lambda p: p["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"].pop(
        "tolerations"))
    assert check("PyTorchJob", bad) == [
        "PyTorchJob 't/j' (pod template at spec.pytorchReplicaSpecs.Worker.template.spec) asks for a GPU but it does "
        "not tolerate the GPU taint nvidia.com/gpu=true:NoSchedule."]


def test_gpu_notebook_profile_without_pool_is_reported():
    bad = mutated(HUB, lambda p: p["values"]["singleuser"]["profileList"][0]["kubespawner_override"].pop(
        "node_selector"))
    (found,) = check("Release", bad)
    assert found.startswith("The JupyterHub profile 'a100' asks for a GPU but its node selection admits the CPU")


def test_cpu_workloads_are_not_concerned():
    cpu = mutated(DEPLOYMENT, lambda p: _spec(p).update(containers=[{"name": "c", "image": "x:1"}], tolerations=[],
                                                         nodeSelector={}))
    assert check("Deployment", cpu) == []


def test_a_pool_counts_as_gpu_by_what_it_can_launch_not_by_its_labels():
    """A NodePool named and labelled like a CPU pool that allows the g category is GPU capacity."""
    sneaky = plan.cpu_pool("batch")
    sneaky["spec"]["template"]["spec"]["requirements"][0]["values"] = ["c", "m", "g"]
    from components.planning.declared_pools import declared_pools
    found = {p.name: p.gpu for p in declared_pools([(plan.NODE_POOL, sneaky), (plan.NODE_POOL, plan.cpu_pool())])}
    assert found == {"batch": True, "general": False}


# ---- every team quota has its GPU lines -------------------------------------------------------------------

def test_a_team_quota_without_its_gpu_line_is_reported():
    full = {"requests.cpu": "8", "requests.nvidia.com/gpu": "4", "requests.nvidia.com/gpu.shared": "8",
            "requests.nvidia.com/mig-1g.10gb": "4"}
    world = [*plan.pools(), plan.team_namespace("team-a")]
    assert violations(team_quota_covers_gpus, *world, plan.quota("team-a", full)) == []
    no_gpu = {k: v for k, v in full.items() if k != "requests.nvidia.com/gpu"}
    (found,) = violations(team_quota_covers_gpus, *world, plan.quota("team-a", no_gpu))
    assert "no ResourceQuota line for ['nvidia.com/gpu']" in found
    # A quota scoped to some pods only (here: BestEffort) does not count; no quota at all is reported too.
    scoped = plan.quota("team-a", full, scopes=["BestEffort"])
    assert len(violations(team_quota_covers_gpus, *world, scoped)) == 1
    assert len(violations(team_quota_covers_gpus, *world)) == 1


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
    ns = dev.obj("Namespace", "risk-lab")
    assert ns["metadata"]["annotations"]["mlops.platform/monthly-gpu-budget-usd"] == "2000"

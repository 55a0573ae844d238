"""GPU capacity rules: compliant GPU pools pass, each one-property mutation is caught, the stacks pass the pack."""

from __future__ import annotations

import copy

import pytest
import yaml

from policies import POLICIES
from policies.gpu import (
    duration_seconds,
    gpu_pool_requires_limit,
    gpu_pool_requires_taint,
    gpu_pool_scales_to_zero,
    gpu_sharing_within_catalog,
)
from preview.check import evaluate
from tests.policy_harness import mutated, resource, violations

NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
GPU_POLICIES = [gpu_pool_requires_taint, gpu_pool_requires_limit, gpu_pool_scales_to_zero, gpu_sharing_within_catalog]


def node_pool(name: str, instance_types: list[str], gpu_type: str, extra_labels: dict | None = None) -> dict:
    return {
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
        "metadata": {"name": name, "annotations": {"mlops.platform/max-gpus": "8"}},
        "spec": {
            "template": {
                "metadata": {"labels": {"mlops.platform/gpu-type": gpu_type, "mlops.platform/node-pool": name,
                                        "nvidia.com/device-plugin.config": name, **(extra_labels or {})}},
                "spec": {
                    "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": name},
                    "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                                      "values": instance_types}],
                    "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}],
                }},
            "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "30s"},
            "limits": {"cpu": 64, "nvidia.com/gpu": 8},
        },
    }


SLICED = node_pool("inference", ["g6.xlarge"], "l4")
MIG = node_pool("inference-mig", ["p4de.24xlarge"], "a100-80gb", {"nvidia.com/mig.config": "inference-mig"})
NODE_GROUP_PROPS = {"nodeGroupName": "gpu-t4", "instanceTypes": ["g4dn.xlarge"], "amiType": "AL2023_x86_64_NVIDIA",
                    "scalingConfig": {"minSize": 0, "desiredSize": 0, "maxSize": 2},
                    "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]}
PLUGIN_CM = {"metadata": {"name": "mlops-device-plugin-config", "namespace": "gpu-operator"}, "data": {
    "default": yaml.safe_dump({"version": "v1", "flags": {"migStrategy": "mixed"}}),
    "inference": yaml.safe_dump({"version": "v1", "flags": {"migStrategy": "mixed"}, "sharing": {"timeSlicing": {
        "renameByDefault": True, "resources": [{"name": "nvidia.com/gpu", "replicas": 4}]}}}),
    "inference-mig": yaml.safe_dump({"version": "v1", "flags": {"migStrategy": "mixed"}}),
}}
MIG_CM = {"metadata": {"name": "mlops-mig-parted-config", "namespace": "gpu-operator"}, "data": {
    "config.yaml": yaml.safe_dump({"version": "v1", "mig-configs": {
        "all-disabled": [{"devices": "all", "mig-enabled": False}],
        "inference-mig": [{"devices": "all", "mig-enabled": True,
                           "mig-devices": {"3g.40gb": 1, "2g.20gb": 1, "1g.10gb": 2}}]}})}}


def stack(sliced=SLICED, mig=MIG, plugin=PLUGIN_CM, mig_cm=MIG_CM) -> list:
    return [resource(NODE_POOL, sliced, "sliced"), resource(NODE_POOL, mig, "mig"),
            resource(CONFIG_MAP, plugin, "plugin"), resource(CONFIG_MAP, mig_cm, "mig-cm")]


def test_policies_are_in_the_pack_with_remediation_and_config_defaults():
    for policy in GPU_POLICIES:
        assert policy in POLICIES
        assert policy.remediation_steps and policy.description and policy.enforcement_level.value == "mandatory"
    assert gpu_pool_scales_to_zero.config_schema.properties["maxConsolidateAfterSeconds"]["default"] == 300


@pytest.mark.parametrize("policy", [gpu_pool_requires_taint, gpu_pool_requires_limit, gpu_pool_scales_to_zero])
def test_compliant_pools_pass(policy):
    assert violations(policy, resource(NODE_POOL, SLICED), resource(NODE_POOL, MIG),
                      resource(NODE_GROUP, NODE_GROUP_PROPS)) == []


def test_compliant_sharing_passes():
    assert violations(gpu_sharing_within_catalog, *stack()) == []


def _tmpl(p):
    return p["spec"]["template"]["spec"]


@pytest.mark.parametrize("policy, change, expected", [
    (gpu_pool_requires_taint, lambda p: _tmpl(p).pop("taints"), "must carry the taint nvidia.com/gpu:NoSchedule"),
    (gpu_pool_requires_taint, lambda p: _tmpl(p)["taints"][0].update(effect="PreferNoSchedule"),
     "must carry the taint"),
    (gpu_pool_requires_limit, lambda p: p["spec"]["limits"].pop("nvidia.com/gpu"),
     "must set a limit on nvidia.com/gpu"),
    # Capacity is read from the spec: an annotation claiming 8 does not hide a spec limit of 512 ...
    (gpu_pool_requires_limit, lambda p: (p["spec"]["limits"].update({"nvidia.com/gpu": 512}),
                                         p["metadata"]["annotations"].update({"mlops.platform/max-gpus": "8"})),
     "may grow to 512 GPUs"),
    # ... nor stands in for a missing spec limit.
    (gpu_pool_requires_limit, lambda p: (p["spec"]["limits"].pop("nvidia.com/gpu"),
                                         p["metadata"]["annotations"].update({"mlops.platform/max-gpus": "8"})),
     "must set a limit on nvidia.com/gpu"),
    (gpu_pool_scales_to_zero, lambda p: p["spec"]["disruption"].update(budgets=[{"nodes": "0"}]),
     "lets no empty node be removed"),
    (gpu_pool_scales_to_zero, lambda p: p["spec"]["disruption"].update(budgets=[{"nodes": "0%", "reasons": ["Empty"]}]),
     "lets no empty node be removed"),
    (gpu_pool_scales_to_zero, lambda p: p["spec"]["disruption"].update(
        budgets=[{"nodes": "0", "schedule": "@daily", "duration": "24h"}]), "lets no empty node be removed"),
    (gpu_pool_scales_to_zero, lambda p: p["spec"]["disruption"].update(consolidateAfter="10m"),
     "keeps empty GPU nodes for 10m; consolidateAfter must be at most 300s"),
    (gpu_pool_scales_to_zero, lambda p: p["spec"]["disruption"].update(consolidateAfter="Never"), "for Never"),
    (gpu_pool_scales_to_zero, lambda p: p["spec"]["disruption"].pop("consolidateAfter"),
     "must set disruption.consolidateAfter"),
    (gpu_pool_scales_to_zero, lambda p: p["spec"].update(replicas=2), "is static"),
    (gpu_pool_scales_to_zero, lambda p: p["spec"]["disruption"].update(consolidationPolicy="Balanced"),
     "must consolidate with WhenEmpty"),
])
def test_each_node_pool_mutation_is_caught(policy, change, expected):
    found = violations(policy, resource(NODE_POOL, mutated(SLICED, change)))
    assert len(found) == 1 and expected in found[0], found


@pytest.mark.parametrize("policy, change, expected", [
    (gpu_pool_requires_taint, lambda p: p.pop("taints"), "The GPU node group 'gpu-t4' must carry the taint"),
    (gpu_pool_requires_limit, lambda p: p["scalingConfig"].update(maxSize=300), "may grow to 300 GPUs"),
    (gpu_pool_scales_to_zero, lambda p: p["scalingConfig"].update(minSize=1), "keeps 1 nodes running"),
])
def test_each_node_group_mutation_is_caught(policy, change, expected):
    found = violations(policy, resource(NODE_GROUP, mutated(NODE_GROUP_PROPS, change)))
    assert len(found) == 1 and expected in found[0], found


def test_a_gpu_pool_is_recognised_by_its_instances_even_without_labels_or_limits():
    bare = mutated(SLICED, lambda p: (p["spec"]["template"]["metadata"].pop("labels"), _tmpl(p).pop("taints")))
    assert violations(gpu_pool_requires_taint, resource(NODE_POOL, bare))
    families = mutated(bare, lambda p: _tmpl(p).update(requirements=[
        {"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["p5"]}]))
    assert violations(gpu_pool_requires_taint, resource(NODE_POOL, families))
    cpu = mutated(families, lambda p: _tmpl(p).update(requirements=[
        {"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["c", "m"]}]))
    cpu["spec"]["limits"].pop("nvidia.com/gpu")
    assert violations(gpu_pool_requires_taint, resource(NODE_POOL, cpu)) == []


def test_policy_config_loosens_the_rule():
    ten_minutes = resource(NODE_POOL, mutated(SLICED, lambda p: p["spec"]["disruption"].update(consolidateAfter="10m")))
    assert violations(gpu_pool_scales_to_zero, ten_minutes, config={"maxConsolidateAfterSeconds": 900}) == []
    warm = resource(NODE_GROUP, mutated(NODE_GROUP_PROPS, lambda p: p["scalingConfig"].update(minSize=1)))
    assert violations(gpu_pool_scales_to_zero, warm, config={"maxIdleNodes": 1}) == []


def _plugin(data_key: str, doc: dict) -> dict:
    return mutated(PLUGIN_CM, lambda c: c["data"].update({data_key: yaml.safe_dump(doc)}))


def _mig(layout: dict) -> dict:
    return mutated(MIG_CM, lambda c: c["data"].update({"config.yaml": yaml.safe_dump({"version": "v1", "mig-configs": {
        "all-disabled": [{"devices": "all", "mig-enabled": False}],
        "inference-mig": [{"devices": "all", "mig-enabled": True, "mig-devices": layout}]}})}))


SLICED_20 = {"version": "v1", "sharing": {"timeSlicing": {"resources": [{"name": "nvidia.com/gpu", "replicas": 20}]}}}


@pytest.mark.parametrize("kwargs, expected", [
    ({"plugin": _plugin("inference", SLICED_20)},
     "The GPU NodePool 'inference' time-slices each l4 GPU into 20 replicas; it must be between 2 and 12."),
    ({"mig_cm": _mig({"3g.40gb": 2, "1g.10gb": 1})}, "uses 9 memory slices; A100-80GB has 8"),
    ({"mig_cm": _mig({"1g.5gb": 7})}, "A100-80GB has no MIG profile 1g.5gb"),
    ({"sliced": mutated(SLICED, lambda p: p["spec"]["template"]["metadata"]["labels"].update(
        {"nvidia.com/mig.config": "inference-mig"}))}, "NVIDIA L4 (l4) does not support MIG"),
    ({"sliced": mutated(SLICED, lambda p: p["spec"]["template"]["metadata"]["labels"].update(
        {"nvidia.com/device-plugin.config": "missing"}))}, "selects device-plugin config 'missing', which no"),
    ({"mig": mutated(MIG, lambda p: p["spec"]["template"]["metadata"]["labels"].update(
        {"nvidia.com/mig.config": "all-balanced"}))}, "selects MIG config 'all-balanced', which no mig-parted"),
])
def test_each_sharing_mutation_is_caught(kwargs, expected):
    found = violations(gpu_sharing_within_catalog, *stack(**kwargs))
    assert len(found) == 1 and expected in found[0], found


def test_sharing_policy_config_can_be_stricter_than_the_catalog():
    assert violations(gpu_sharing_within_catalog, *stack(), config={"maxTimeSlicingReplicas": 3}) == [
        "The GPU NodePool 'inference' time-slices each l4 GPU into 4 replicas; it must be between 2 and 3."]


def test_durations():
    assert duration_seconds("30s") == 30 and duration_seconds("1h30m") == 5400
    assert duration_seconds("Never") is None and duration_seconds(None) is None


@pytest.mark.parametrize("stack_name", ["dev", "prod"])
def test_rendered_stacks_pass_the_gpu_capacity_rules(stack_name, request):
    rendered = request.getfixturevalue(stack_name)
    assert evaluate(GPU_POLICIES, rendered.resources) == []
    # ... and the rules really looked at them: dropping one pool's taint is caught.
    pools = [r for r in rendered.resources if r.type == NODE_POOL and "nvidia.com/gpu" in r.inputs["spec"]["limits"]]
    broken = copy.deepcopy(pools[0])
    broken.inputs["spec"]["template"]["spec"].pop("taints")
    assert len(evaluate([gpu_pool_requires_taint], [broken])) == 1

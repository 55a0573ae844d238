"""Hand-written plan pieces for policy tests: node pools, device-plugin configs, team namespaces, subnets, quotas.

They are written the way an engineer (or another stack) would declare them, independent of what the shipped stacks
contain, so a policy test states its whole world.
"""

from __future__ import annotations

from typing import Any

import yaml

from tests.policy_harness import resource

NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
NAMESPACE = "kubernetes:core/v1:Namespace"
QUOTA = "kubernetes:core/v1:ResourceQuota"
SUBNET = "aws:ec2/subnet:Subnet"
GPU_TOLERATION = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def gpu_pool(name: str, instance_types: list[str], plugin_config: str | None = None, mig_config: str | None = None,
             labels: dict[str, str] | None = None, gpu_limit: int | None = 8) -> dict[str, Any]:
    node_labels = {"mlops.platform/node-pool": name, **(labels or {})}
    if plugin_config:
        node_labels["nvidia.com/device-plugin.config"] = plugin_config
    if mig_config:
        node_labels["nvidia.com/mig.config"] = mig_config
    spec: dict[str, Any] = {
        "template": {"metadata": {"labels": node_labels}, "spec": {
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": name},
            "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": instance_types}],
            "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]}},
        "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "30s"},
        "limits": {"cpu": 64}}
    if gpu_limit is not None:
        spec["limits"]["nvidia.com/gpu"] = gpu_limit
    return {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": name}, "spec": spec}


def cpu_pool(name: str = "general") -> dict[str, Any]:
    return {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": name}, "spec": {
        "template": {"metadata": {"labels": {"mlops.platform/node-pool": name}}, "spec": {
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": name},
            "requirements": [{"key": "karpenter.k8s.aws/instance-category", "operator": "In",
                              "values": ["c", "m", "r"]}]}},
        "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "1m"},
        "limits": {"cpu": 256}}}


def device_configs() -> list:
    """A device-plugin ConfigMap (one whole-GPU, one time-sliced config) and a mig-parted ConfigMap."""
    plugin = {"metadata": {"name": "plugin", "namespace": "gpu-operator"}, "data": {
        "whole": yaml.safe_dump({"version": "v1", "flags": {"migStrategy": "mixed"}}),
        "sliced": yaml.safe_dump({"version": "v1", "flags": {"migStrategy": "mixed"}, "sharing": {"timeSlicing": {
            "renameByDefault": True, "resources": [{"name": "nvidia.com/gpu", "replicas": 4}]}}})}}
    mig = {"metadata": {"name": "mig", "namespace": "gpu-operator"}, "data": {"config.yaml": yaml.safe_dump({
        "version": "v1", "mig-configs": {"sliced-a100": [{"devices": "all", "mig-enabled": True,
                                                          "mig-devices": {"1g.10gb": 7}}]}})}}
    return [resource(CONFIG_MAP, plugin, name="plugin"), resource(CONFIG_MAP, mig, name="mig")]


def pools() -> list:
    """A whole-GPU A100 pool, a time-sliced L4 pool, a MIG pool, a CPU pool and a CPU system node group."""
    return [resource(NODE_POOL, gpu_pool("training", ["p4d.24xlarge"], "whole"), name="training"),
            resource(NODE_POOL, gpu_pool("inference", ["g6.xlarge"], "sliced"), name="inference"),
            resource(NODE_POOL, gpu_pool("mig", ["p4de.24xlarge"], "whole", "sliced-a100"), name="mig"),
            resource(NODE_POOL, cpu_pool(), name="general"),
            resource(NODE_GROUP, {"nodeGroupName": "system", "instanceTypes": ["m6i.xlarge"],
                                  "labels": {"mlops.platform/node-role": "system"},
                                  "scalingConfig": {"minSize": 2, "maxSize": 4}}, name="system"),
            *device_configs()]


def team_namespace(name: str = "team-a", level: str | None = "baseline", **extra_labels: str):
    ns_labels = {"mlops.platform/team": name, **extra_labels}
    if level:
        ns_labels["pod-security.kubernetes.io/enforce"] = level
    return resource(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace",
                                "metadata": {"name": name, "labels": ns_labels}}, name=f"ns-{name}")


def subnets(vpc: str = "10.40") -> list:
    """Three private /19 subnets and one public /24, as a VPC of `vpc`.0.0/16 has them."""
    private = [resource(SUBNET, {"cidrBlock": f"{vpc}.{i * 32}.0/19", "tags": {"kubernetes.io/role/internal-elb": "1"}},
                        name=f"private-{i}") for i in range(3)]
    public = resource(SUBNET, {"cidrBlock": f"{vpc}.224.0/24", "mapPublicIpOnLaunch": True,
                               "tags": {"kubernetes.io/role/elb": "1"}}, name="public-0")
    return [*private, public]


def quota(namespace: str, hard: dict[str, str], name: str = "team-quota", **spec: Any):
    return resource(QUOTA, {"apiVersion": "v1", "kind": "ResourceQuota",
                            "metadata": {"name": name, "namespace": namespace}, "spec": {"hard": hard, **spec}},
                    name=f"{namespace}-{name}")

"""The Kubernetes cluster-autoscaler for the managed GPU node groups (`cluster.gpuNodeGroups`).

EKS managed node groups are Auto Scaling groups; nothing starts a node in a group at zero unless something sets
its desired capacity. This component installs the upstream cluster-autoscaler (chart, and an image matching the
control plane's minor, pinned in components/data/versions.yaml) with an IRSA role, and puts on each GPU node
group's Auto Scaling group:

- the discovery tags. EKS tags *every* managed node group's ASG with `k8s.io/cluster-autoscaler/enabled` and
  `k8s.io/cluster-autoscaler/<cluster>` (the system group too), so those two alone would let the autoscaler resize
  the system nodes. Discovery and the IAM conditions also require `mlops.platform/cluster-autoscaler=<cluster>`,
  which only the GPU groups' ASGs get (here);
- the scale-from-zero node templates: a group at zero has no node to copy, so the autoscaler reads the labels,
  taints and extended resources a node *would* have from `k8s.io/cluster-autoscaler/node-template/...` tags.
  EKS does not copy node group labels or taints to the ASG, hence `aws.autoscaling.Tag` per fact.

Karpenter never manages these nodes: its nodes are in no ASG (the autoscaler ignores nodes outside the groups it
discovered), and every Karpenter NodePool requires `eks.amazonaws.com/nodegroup` to be absent, which managed node
group nodes always carry (components/karpenter.py). docs/capacity.md explains the choice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components import catalog, labels
from components.endpoints import ClusterAccess
from components.iam import irsa_role

PINNED = catalog.chart("cluster-autoscaler")
CHART, CHART_VERSION, CHART_REPO = PINNED["chart"], PINNED["version"], PINNED["repo"]
# The autoscaler's minor must match the control plane's: one image per Kubernetes minor (versions.yaml says why).
IMAGE_PREFIX = "cluster-autoscaler-"
IMAGES = {name.removeprefix(IMAGE_PREFIX): ref for name, ref in catalog.versions()["images"].items()
          if name.startswith(IMAGE_PREFIX)}
NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "cluster-autoscaler"

ENABLED_TAG = "k8s.io/cluster-autoscaler/enabled"
OWNER_TAG = "k8s.io/cluster-autoscaler/{cluster}"
# Only the GPU node groups' ASGs carry this one (EKS puts the two above on every managed node group's ASG).
SCOPE_TAG = f"{labels.PREFIX}/cluster-autoscaler"
TEMPLATE_PREFIX = "k8s.io/cluster-autoscaler/node-template/"
EFA_RESOURCE = "vpc.amazonaws.com/efa"

RESOURCES = {"requests": {"cpu": "100m", "memory": "300Mi"}, "limits": {"memory": "600Mi"}}


@dataclass(frozen=True)
class ScaledNodeGroup:
    """A managed node group the autoscaler may resize, with what its nodes carry (for scale from zero)."""

    name: str                                   # node group name in config (the node-pool label value)
    autoscaling_group: pulumi.Input[str]        # the ASG EKS created for it
    node_labels: dict[str, str]
    taints: tuple[dict[str, str], ...]          # Kubernetes form: key, value, effect
    resources: dict[str, int]                   # extended resources per node, e.g. nvidia.com/gpu: 4


@dataclass(frozen=True)
class ClusterAutoscalerArgs:
    access: ClusterAccess
    kubernetes_version: str
    node_groups: list[ScaledNodeGroup]


class ClusterAutoscaler(pulumi.ComponentResource):
    role_arn: pulumi.Output[str]
    node_groups: list[str]
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: ClusterAutoscalerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:autoscaler:ClusterAutoscaler", name, None, opts)
        access = args.access
        if args.kubernetes_version not in IMAGES:
            raise ValueError(f"no cluster-autoscaler image pinned for Kubernetes {args.kubernetes_version}; "
                             f"pinned: {', '.join(IMAGES)}")
        if not args.node_groups:
            raise ValueError("the cluster-autoscaler needs at least one node group to scale")
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        partition = aws.get_partition_output(opts=invoke).partition
        region = aws.get_region_output(opts=invoke).region
        account = aws.get_caller_identity_output(opts=invoke).account_id

        tags: list[aws.autoscaling.Tag] = []
        for group in args.node_groups:
            # Resource names must be known before the cluster name is: one per tag role (`slug`).
            by_slug = pulumi.Output.from_input(access.cluster_name).apply(lambda c, g=group: asg_tags(g, c))
            for slug in asg_tags(group, "cluster"):
                tags.append(aws.autoscaling.Tag(
                    f"{name}-{group.name}-{slug}",
                    autoscaling_group_name=group.autoscaling_group,
                    tag=aws.autoscaling.TagTagArgs(
                        key=by_slug.apply(lambda t, s=slug: t[s][0]),
                        value=by_slug.apply(lambda t, s=slug: t[s][1]),
                        # They describe the group (and its would-be nodes), not the instances.
                        propagate_at_launch=False),
                    opts=child))

        role = irsa_role(f"{name}-controller", access.oidc, NAMESPACE, SERVICE_ACCOUNT, self)
        aws.iam.RolePolicy(
            f"{name}-controller",
            role=role.id,
            policy=pulumi.Output.all(partition, region, account, access.cluster_name).apply(
                lambda a: json.dumps(controller_policy(*a))),
            opts=child)

        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name=CHART,
            chart=CHART,
            version=CHART_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPO),
            namespace=NAMESPACE,
            values=helm_values(access.cluster_name, region, role.arn, args.kubernetes_version),
            opts=pulumi.ResourceOptions(parent=self, provider=access.provider,
                                        depends_on=[*tags, *access.depends_on]))

        self.role_arn = role.arn
        self.node_groups = [g.name for g in args.node_groups]
        self.register_outputs({"role_arn": self.role_arn, "node_groups": self.node_groups})


# ---------------------------------------------------------------------------------------------------
# Pure builders (tests and the policy pack read the same shapes)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


def discovery_tags(cluster: str) -> dict[str, str]:
    """The tags the autoscaler discovers groups by and its IAM policy requires on a group it resizes."""
    return {ENABLED_TAG: "true", OWNER_TAG.format(cluster=cluster): "owned", SCOPE_TAG: cluster}


def node_template_tags(group: ScaledNodeGroup) -> dict[str, str]:
    """Scale-from-zero templates: the labels, taints and extended resources a node of the group will have."""
    tags = {f"{TEMPLATE_PREFIX}label/{k}": v for k, v in sorted(group.node_labels.items())}
    tags.update({f"{TEMPLATE_PREFIX}taint/{t['key']}": f"{t['value']}:{t['effect']}" for t in group.taints})
    tags.update({f"{TEMPLATE_PREFIX}resources/{r}": str(n) for r, n in sorted(group.resources.items())})
    return tags


def asg_tags(group: ScaledNodeGroup, cluster: str) -> dict[str, tuple[str, str]]:
    """slug -> (key, value) of every tag the component puts on the group's ASG."""
    found = {**discovery_tags(cluster), **node_template_tags(group)}
    slugs = {ENABLED_TAG: "discovery-enabled", OWNER_TAG.format(cluster=cluster): "discovery-owner",
             SCOPE_TAG: "discovery-scope"}
    return {slugs.get(k) or _slug(k.removeprefix(TEMPLATE_PREFIX)): (k, v) for k, v in found.items()}


def node_group_resources(instance_types: list[str], efa: bool) -> dict[str, int]:
    """Extended resources a node of the group advertises: its GPUs (the smallest type's, so a template never
    promises more), and its EFA interfaces where the EFA device plugin runs."""
    table = catalog.instance_types()
    resources = {labels.GPU_RESOURCE: min(table[t].gpus for t in instance_types)}
    if efa and catalog.efa_interfaces(instance_types):
        resources[EFA_RESOURCE] = catalog.efa_interfaces(instance_types)
    return resources


def helm_values(cluster_name: pulumi.Input[str], region: pulumi.Input[str], role_arn: pulumi.Input[str],
                kubernetes_version: str) -> dict:
    return {
        "cloudProvider": "aws",
        "awsRegion": region,
        "autoDiscovery": {
            "clusterName": cluster_name,
            # All three must be on an ASG: the scope tag keeps the system node group (EKS tags it with the two
            # standard ones) out of the autoscaler's hands.
            "tags": [ENABLED_TAG, OWNER_TAG.format(cluster="{{ .Values.autoDiscovery.clusterName }}"),
                     f"{SCOPE_TAG}={{{{ .Values.autoDiscovery.clusterName }}}}"],
        },
        "image": dict(zip(("repository", "tag"), IMAGES[kubernetes_version].rsplit(":", 1))),
        "rbac": {"serviceAccount": {"create": True, "name": SERVICE_ACCOUNT,
                                    "annotations": {"eks.amazonaws.com/role-arn": role_arn}}},
        # On the system node group: never on a node it might remove.
        "nodeSelector": {"kubernetes.io/os": "linux", labels.NODE_ROLE: "system"},
        "resources": RESOURCES,
        "extraArgs": {
            "logtostderr": True,
            "stderrthreshold": "info",
            "v": 2,
            "expander": "least-waste",
            "balance-similar-node-groups": True,
            # GPU nodes are expensive: an unneeded one goes after 10 minutes (the default), and only if its
            # GPUs are idle; system pods do not pin a GPU node.
            "scale-down-unneeded-time": "10m",
            "skip-nodes-with-system-pods": False,
        },
        "podDisruptionBudget": {"maxUnavailable": 1},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containerSecurityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                     "capabilities": {"drop": ["ALL"]}},
    }


def controller_policy(partition: str, region: str, account: str, cluster: str) -> dict:
    """Least privilege, after the autoscaler's AWS README: reads are region-wide (those APIs take no resource),
    resizing and terminating only on ASGs carrying all three discovery tags of this cluster."""
    conditions = {f"aws:ResourceTag/{k}": v for k, v in discovery_tags(cluster).items()}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "DescribeScalingAndInstanceTypes", "Effect": "Allow", "Resource": "*",
             "Action": ["autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
                        "autoscaling:DescribeLaunchConfigurations", "autoscaling:DescribeScalingActivities",
                        "autoscaling:DescribeTags", "ec2:DescribeImages", "ec2:DescribeInstanceTypes",
                        "ec2:DescribeLaunchTemplateVersions", "ec2:GetInstanceTypesFromInstanceRequirements"],
             "Condition": {"StringEquals": {"aws:RequestedRegion": region}}},
            {"Sid": "DescribeOwnNodeGroups", "Effect": "Allow", "Action": "eks:DescribeNodegroup",
             "Resource": f"arn:{partition}:eks:{region}:{account}:nodegroup/{cluster}/*/*"},
            {"Sid": "ResizeOnlyTaggedGpuGroups", "Effect": "Allow",
             "Action": ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
             "Resource": f"arn:{partition}:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/*",
             "Condition": {"StringEquals": conditions}},
        ],
    }

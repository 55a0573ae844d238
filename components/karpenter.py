"""Karpenter: the controller (IRSA, interruption queue), its node role, and the EC2NodeClasses and NodePools.

GPU NodePools come from `gpu.nodePools`, CPU NodePools from `karpenter.cpuNodePools`. Each GPU pool is tainted
`nvidia.com/gpu`, labelled with its GPU type and sharing mode, selects its NVIDIA device-plugin and MIG config
by node label (components/gpu_operator.py writes those configs), is limited in GPUs and vCPUs, and lets
empty nodes go after `consolidateAfter`. Pools whose GPUs are shared get NodeOverlays, so Karpenter's
scheduling simulation knows a node's replicas or MIG devices before the node exists.

The IAM policies, the SQS queue and its EventBridge rules follow Karpenter's own getting-started
CloudFormation template for v1.14 (website/content/en/v1.14/getting-started/getting-started-with-karpenter/
cloudformation.yaml in aws/karpenter-provider-aws), scoped to this cluster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components import catalog, labels
from components.config import CpuNodePoolConfig, GpuConfig, GpuNodePoolConfig, KarpenterConfig, NodePoolConfig
from components.endpoints import ClusterAccess
from components.gpu_operator import gpu_node_labels
from components.iam import irsa_role, service_trust_policy

# Chart and controller image are one version (the chart pins the image by digest): components/data/versions.yaml.
KARPENTER_VERSION = catalog.chart("karpenter")["version"]
KARPENTER_CHART = catalog.chart("karpenter")["chart"]
NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "karpenter"
MANAGED_POLICY = "arn:aws:iam::aws:policy/"
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly", "AmazonSSMManagedInstanceCore")

# EventBridge events Karpenter handles from its queue (its CloudFormation template, v1.14).
INTERRUPTION_EVENTS = {
    "scheduled-change": ("aws.health", "AWS Health Event"),
    "spot-interruption": ("aws.ec2", "EC2 Spot Instance Interruption Warning"),
    "rebalance": ("aws.ec2", "EC2 Instance Rebalance Recommendation"),
    "instance-state-change": ("aws.ec2", "EC2 Instance State-change Notification"),
    "capacity-reservation-interruption": ("aws.ec2", "EC2 Capacity Reservation Instance Interruption Warning"),
}

CONTROLLER_RESOURCES = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}
NODE_CLASS_REF = {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass"}


@dataclass(frozen=True)
class KarpenterArgs:
    access: ClusterAccess
    config: KarpenterConfig
    gpu: GpuConfig


class Karpenter(pulumi.ComponentResource):
    controller_role_arn: pulumi.Output[str]
    node_role_name: pulumi.Output[str]
    interruption_queue_name: pulumi.Output[str]
    gpu_node_pools: list[str]
    cpu_node_pools: list[str]
    node_overlays: list[str]
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: KarpenterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:karpenter:Karpenter", name, None, opts)
        access, cfg = args.access, args.config
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        partition = aws.get_partition_output(opts=invoke).partition
        region = aws.get_region_output(opts=invoke).region
        account = aws.get_caller_identity_output(opts=invoke).account_id

        # ---- nodes: role, EKS access entry ------------------------------------------------------------
        node_role = aws.iam.Role(f"{name}-node", assume_role_policy=service_trust_policy("ec2.amazonaws.com"),
                                 description="Nodes launched by Karpenter", opts=child)
        for policy in NODE_POLICIES:
            aws.iam.RolePolicyAttachment(f"{name}-node-{policy}", role=node_role.name,
                                         policy_arn=MANAGED_POLICY + policy, opts=child)
        access_entry = aws.eks.AccessEntry(f"{name}-node", cluster_name=access.cluster_name,
                                           principal_arn=node_role.arn, type="EC2_LINUX", opts=child)
        # Karpenter finds the security group by the discovery tag (the private subnets carry it already).
        sg_tag = aws.ec2.Tag(f"{name}-discovery", resource_id=access.cluster_security_group_id,
                             key=labels.DISCOVERY_TAG, value=access.cluster_name, opts=child)

        # ---- interruption queue and the events that feed it --------------------------------------------
        queue = aws.sqs.Queue(f"{name}-interruption", name=access.cluster_name.apply(lambda n: f"{n}-karpenter"),
                              message_retention_seconds=300, sqs_managed_sse_enabled=True, opts=child)
        aws.sqs.QueuePolicy(f"{name}-interruption", queue_url=queue.url,
                            policy=queue.arn.apply(lambda arn: json.dumps(queue_policy(arn))), opts=child)
        for rule_name, (source, detail_type) in INTERRUPTION_EVENTS.items():
            rule = aws.cloudwatch.EventRule(
                f"{name}-{rule_name}", description=f"Karpenter interruption handling: {detail_type}",
                event_pattern=json.dumps({"source": [source], "detail-type": [detail_type]}),
                opts=child)
            aws.cloudwatch.EventTarget(f"{name}-{rule_name}", rule=rule.name, arn=queue.arn,
                                       target_id="KarpenterInterruptionQueueTarget", opts=child)

        # ---- controller: IRSA role with the policies Karpenter documents, scoped to this cluster ---------
        controller_role = irsa_role(f"{name}-controller", access.oidc, NAMESPACE, SERVICE_ACCOUNT, self)
        documents = pulumi.Output.all(partition, region, account, access.cluster_name, node_role.arn, queue.arn).apply(
            lambda a: controller_policies(*a))
        for policy_name in CONTROLLER_POLICY_NAMES:
            policy = aws.iam.Policy(f"{name}-controller-{policy_name}",
                                    description=f"Karpenter controller: {policy_name}",
                                    policy=documents.apply(lambda d, p=policy_name: json.dumps(d[p])), opts=child)
            aws.iam.RolePolicyAttachment(f"{name}-controller-{policy_name}", role=controller_role.name,
                                         policy_arn=policy.arn, opts=child)

        overlays_needed = any(node_overlays(p, args.gpu.mig_strategy) for p in args.gpu.node_pools)
        self.release = k8s.helm.v3.Release(
            f"{name}-controller",
            name="karpenter",
            chart=KARPENTER_CHART,
            version=KARPENTER_VERSION,
            namespace=NAMESPACE,
            values=controller_values(cfg, access.cluster_name, queue.name, controller_role.arn, overlays_needed),
            opts=pulumi.ResourceOptions(parent=self, provider=access.provider,
                                        depends_on=[access_entry, *access.depends_on]),
        )

        # ---- node classes, pools, overlays ------------------------------------------------------------
        crd_opts = pulumi.ResourceOptions(parent=self, provider=access.provider, depends_on=[self.release])
        pools: list[NodePoolConfig] = [*args.gpu.node_pools, *cfg.cpu_node_pools]
        for pool in pools:
            self._node_class(name, pool, cfg, access, node_role, [self.release, sg_tag, access_entry])
        for pool in args.gpu.node_pools:
            spec = gpu_node_pool(pool, cfg, args.gpu.mig_strategy)
            k8s.apiextensions.CustomResource(
                f"{name}-pool-{pool.name}", api_version="karpenter.sh/v1", kind="NodePool",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=pool.name,
                    labels={labels.GPU_TYPE: pool.gpu_type, labels.GPU_SHARING: pool.sharing.mode},
                    annotations={labels.MAX_GPUS: str(pool.gpu_limit)}),
                spec=spec, opts=crd_opts)
            for overlay_name, overlay in node_overlays(pool, args.gpu.mig_strategy).items():
                k8s.apiextensions.CustomResource(
                    f"{name}-overlay-{overlay_name}", api_version="karpenter.sh/v1alpha1", kind="NodeOverlay",
                    metadata=k8s.meta.v1.ObjectMetaArgs(name=overlay_name), spec=overlay, opts=crd_opts)
        for pool in cfg.cpu_node_pools:
            k8s.apiextensions.CustomResource(
                f"{name}-pool-{pool.name}", api_version="karpenter.sh/v1", kind="NodePool",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=pool.name), spec=cpu_node_pool(pool), opts=crd_opts)

        self.controller_role_arn = controller_role.arn
        self.node_role_name = node_role.name
        self.interruption_queue_name = queue.name
        self.gpu_node_pools = [p.name for p in args.gpu.node_pools]
        self.cpu_node_pools = [p.name for p in cfg.cpu_node_pools]
        self.node_overlays = [o for p in args.gpu.node_pools for o in node_overlays(p, args.gpu.mig_strategy)]
        self.register_outputs({
            "controller_role_arn": self.controller_role_arn,
            "node_role_name": self.node_role_name,
            "interruption_queue_name": self.interruption_queue_name,
            "gpu_node_pools": self.gpu_node_pools,
            "cpu_node_pools": self.cpu_node_pools,
            "node_overlays": self.node_overlays,
        })

    def _node_class(self, name: str, pool: NodePoolConfig, cfg: KarpenterConfig, access: ClusterAccess,
                    node_role: aws.iam.Role, depends_on: list[pulumi.Resource]) -> k8s.apiextensions.CustomResource:
        spec = pulumi.Output.all(access.cluster_name, node_role.name).apply(
            lambda a: node_class_spec(pool, cfg, cluster_name=a[0], role=a[1]))
        return k8s.apiextensions.CustomResource(
            f"{name}-class-{pool.name}", api_version="karpenter.k8s.aws/v1", kind="EC2NodeClass",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=pool.name), spec=spec,
            opts=pulumi.ResourceOptions(parent=self, provider=access.provider, depends_on=depends_on))


# ---------------------------------------------------------------------------------------------------
# Pure builders (tests and the policy pack read the same shapes)


def controller_values(cfg: KarpenterConfig, cluster_name: pulumi.Input[str], queue_name: pulumi.Input[str],
                      role_arn: pulumi.Input[str], node_overlay: bool) -> dict:
    return {
        "settings": {
            "clusterName": cluster_name,
            "interruptionQueue": queue_name,
            # NodeOverlay is alpha in v1.14 and off by default; the shared-GPU pools need it.
            "featureGates": {"nodeOverlay": node_overlay},
        },
        "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT,
                           "annotations": {"eks.amazonaws.com/role-arn": role_arn}},
        "replicas": cfg.controller_replicas,
        # On the system node group: never on a node Karpenter itself manages.
        "nodeSelector": {"kubernetes.io/os": "linux", labels.NODE_ROLE: "system"},
        "controller": {"resources": CONTROLLER_RESOURCES},
        "logLevel": "info",
    }


def _ami_terms(pool: NodePoolConfig, cfg: KarpenterConfig) -> tuple[list[dict], str]:
    ami = pool.ami
    if ami is None:
        return [{"alias": cfg.ami_alias}], "Bottlerocket" if cfg.ami_alias.startswith("bottlerocket@") else "AL2023"
    if ami.alias is not None:
        return [{"alias": ami.alias}], ami.family_name
    return [{"id": ami.id}], ami.family_name


def node_class_spec(pool: NodePoolConfig, cfg: KarpenterConfig, cluster_name: str, role: str) -> dict:
    terms, family = _ami_terms(pool, cfg)
    volume = {"volumeSize": f"{pool.disk_gib}Gi", "volumeType": "gp3", "encrypted": True, "deleteOnTermination": True}
    if family == "Bottlerocket":   # a small OS volume, and the data volume holding images and pods
        devices = [{"deviceName": "/dev/xvda", "ebs": {**volume, "volumeSize": "4Gi"}},
                   {"deviceName": "/dev/xvdb", "ebs": volume}]
    else:
        devices = [{"deviceName": "/dev/xvda", "rootVolume": True, "ebs": volume}]
    spec = {
        "role": role,
        "amiSelectorTerms": terms,
        "subnetSelectorTerms": [{"tags": {labels.DISCOVERY_TAG: cluster_name}}],
        "securityGroupSelectorTerms": [{"tags": {labels.DISCOVERY_TAG: cluster_name}}],
        # IMDSv2 only, one hop: pods (which use IRSA) cannot reach the node's credentials.
        "metadataOptions": {"httpEndpoint": "enabled", "httpProtocolIPv6": "disabled",
                            "httpPutResponseHopLimit": 1, "httpTokens": "required"},
        "blockDeviceMappings": devices,
        "tags": {labels.NODE_POOL: pool.name},
    }
    if "id" in terms[0]:
        spec["amiFamily"] = family
    return spec


def _disruption(pool: NodePoolConfig) -> dict:
    return {
        "consolidationPolicy": pool.consolidation_policy,
        "consolidateAfter": pool.consolidate_after,
        "budgets": [{k: v for k, v in b.model_dump(by_alias=True).items() if v not in (None, [])}
                    for b in pool.budgets],
    }


def _template_spec(pool: NodePoolConfig, requirements: list[dict]) -> dict:
    spec = {
        "nodeClassRef": {**NODE_CLASS_REF, "name": pool.name},
        "requirements": [
            *requirements,
            {"key": labels.CAPACITY_TYPE, "operator": "In", "values": list(pool.capacity_types)},
            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
            {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
            # Never a managed node group's node: the cluster-autoscaler owns those (components/autoscaler.py).
            {"key": labels.EKS_NODEGROUP, "operator": "DoesNotExist"},
        ],
        "expireAfter": pool.expire_after,
    }
    if pool.termination_grace_period is not None:
        spec["terminationGracePeriod"] = pool.termination_grace_period
    return spec


def gpu_node_pool(pool: GpuNodePoolConfig, cfg: KarpenterConfig, mig_strategy: str) -> dict:
    driver = pool.ami is None or pool.ami.nvidia_driver == "preinstalled"
    bottlerocket = _ami_terms(pool, cfg)[1] == "Bottlerocket"
    template = _template_spec(pool, [
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": list(pool.instance_types)}])
    template["taints"] = [dict(labels.GPU_TAINT)]
    return {
        "template": {"metadata": {"labels": gpu_node_labels(pool, driver, bottlerocket)}, "spec": template},
        "disruption": _disruption(pool),
        "limits": pool.limits(mig_strategy),
    }


def cpu_node_pool(pool: CpuNodePoolConfig) -> dict:
    template = _template_spec(pool, [
        {"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": list(pool.instance_categories)},
        {"key": "karpenter.k8s.aws/instance-generation", "operator": "Gt", "values": [str(pool.min_generation - 1)]},
    ])
    return {
        "template": {"metadata": {"labels": {labels.NODE_POOL: pool.name}}, "spec": template},
        "disruption": _disruption(pool),
        "limits": {"cpu": pool.cpu_limit, "memory": f"{pool.memory_limit_gib}Gi"},
    }


def node_overlays(pool: GpuNodePoolConfig, mig_strategy: str) -> dict[str, dict]:
    """NodeOverlays telling Karpenter what a shared pool's node advertises (one per GPUs-per-node count)."""
    resources = pool.gpu_resources(mig_strategy)
    if resources == {labels.GPU_RESOURCE: 1}:
        return {}
    return {
        f"{pool.name}-{n}gpu": {
            "weight": 10,
            "requirements": [
                {"key": labels.KARPENTER_NODEPOOL, "operator": "In", "values": [pool.name]},
                {"key": "karpenter.k8s.aws/instance-gpu-count", "operator": "In", "values": [str(n)]},
            ],
            "capacity": {res: n * units for res, units in resources.items()},
        }
        for n in pool.gpus_per_node
    }


def queue_policy(queue_arn: str) -> dict:
    return {
        "Version": "2012-10-17",
        "Id": "EC2InterruptionPolicy",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]},
             "Action": "sqs:SendMessage", "Resource": queue_arn},
            {"Sid": "DenyHTTP", "Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": queue_arn,
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        ],
    }


CREATE_ACTIONS = ["RunInstances", "CreateFleet", "CreateLaunchTemplate"]
CONTROLLER_POLICY_NAMES = ("node-lifecycle", "iam-integration", "eks-integration", "interruption",
                           "resource-discovery")


def controller_policies(partition: str, region: str, account: str, cluster: str, node_role_arn: str,
                        queue_arn: str) -> dict[str, dict]:
    """The controller's IAM policy documents, as Karpenter's v1.14 CloudFormation template writes them."""
    ec2 = f"arn:{partition}:ec2:{region}"
    owned = {f"aws:ResourceTag/kubernetes.io/cluster/{cluster}": "owned"}
    request_owned = {f"aws:RequestTag/kubernetes.io/cluster/{cluster}": "owned",
                     "aws:RequestTag/eks:eks-cluster-name": cluster}
    tagged_kinds = [f"{ec2}:*:{kind}/*" for kind in ("fleet", "instance", "volume", "network-interface",
                                                      "launch-template", "spot-instances-request")]
    profile = f"arn:{partition}:iam::{account}:instance-profile/*"
    region_tags = {"aws:ResourceTag/topology.kubernetes.io/region": region}

    def doc(*statements: dict) -> dict:
        return {"Version": "2012-10-17", "Statement": list(statements)}

    return {
        "node-lifecycle": doc(
            {"Sid": "AllowScopedEC2InstanceAccessActions", "Effect": "Allow",
             "Resource": [f"{ec2}::image/*", f"{ec2}::snapshot/*", f"{ec2}:*:security-group/*", f"{ec2}:*:subnet/*",
                          f"{ec2}:*:capacity-reservation/*", f"{ec2}:*:placement-group/*"],
             "Action": ["ec2:RunInstances", "ec2:CreateFleet"]},
            {"Sid": "AllowScopedEC2LaunchTemplateAccessActions", "Effect": "Allow",
             "Resource": f"{ec2}:*:launch-template/*", "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
             "Condition": {"StringEquals": owned, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}}},
            {"Sid": "AllowScopedEC2InstanceActionsWithTags", "Effect": "Allow", "Resource": tagged_kinds,
             "Action": ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
             "Condition": {"StringEquals": request_owned,
                           "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}}},
            {"Sid": "AllowScopedResourceCreationTagging", "Effect": "Allow", "Resource": tagged_kinds,
             "Action": "ec2:CreateTags",
             "Condition": {"StringEquals": {**request_owned, "ec2:CreateAction": CREATE_ACTIONS},
                           "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}}},
            {"Sid": "AllowScopedResourceTagging", "Effect": "Allow", "Resource": f"{ec2}:*:instance/*",
             "Action": "ec2:CreateTags",
             "Condition": {"StringEquals": owned, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                           "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": cluster},
                           "ForAllValues:StringEquals": {
                               "aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]}}},
            {"Sid": "AllowScopedDeletion", "Effect": "Allow",
             "Resource": [f"{ec2}:*:instance/*", f"{ec2}:*:launch-template/*"],
             "Action": ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
             "Condition": {"StringEquals": owned, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}}},
        ),
        "iam-integration": doc(
            {"Sid": "AllowPassingInstanceRole", "Effect": "Allow", "Resource": node_role_arn, "Action": "iam:PassRole",
             "Condition": {"StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com", "ec2.amazonaws.com.cn"]}}},
            {"Sid": "AllowScopedInstanceProfileCreationActions", "Effect": "Allow", "Resource": profile,
             "Action": ["iam:CreateInstanceProfile"],
             "Condition": {"StringEquals": {**request_owned, "aws:RequestTag/topology.kubernetes.io/region": region},
                           "StringLike": {"aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"}}},
            {"Sid": "AllowScopedInstanceProfileTagActions", "Effect": "Allow", "Resource": profile,
             "Action": ["iam:TagInstanceProfile"],
             "Condition": {"StringEquals": {**owned, **region_tags, **request_owned,
                                            "aws:RequestTag/topology.kubernetes.io/region": region},
                           "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*",
                                          "aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"}}},
            {"Sid": "AllowScopedInstanceProfileActions", "Effect": "Allow", "Resource": profile,
             "Action": ["iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile",
                        "iam:DeleteInstanceProfile"],
             "Condition": {"StringEquals": {**owned, **region_tags},
                           "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*"}}},
        ),
        "eks-integration": doc(
            {"Sid": "AllowAPIServerEndpointDiscovery", "Effect": "Allow",
             "Resource": f"arn:{partition}:eks:{region}:{account}:cluster/{cluster}", "Action": "eks:DescribeCluster"},
        ),
        "interruption": doc(
            {"Sid": "AllowInterruptionQueueActions", "Effect": "Allow", "Resource": queue_arn,
             "Action": ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"]},
        ),
        "resource-discovery": doc(
            {"Sid": "AllowRegionalReadActions", "Effect": "Allow", "Resource": "*",
             "Action": ["ec2:DescribeCapacityReservations", "ec2:DescribeImages", "ec2:DescribeInstances",
                        "ec2:DescribeInstanceStatus", "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeInstanceTypes",
                        "ec2:DescribeLaunchTemplates", "ec2:DescribePlacementGroups", "ec2:DescribeSecurityGroups",
                        "ec2:DescribeSpotPriceHistory", "ec2:DescribeSubnets"],
             "Condition": {"StringEquals": {"aws:RequestedRegion": region}}},
            {"Sid": "AllowSSMReadActions", "Effect": "Allow",
             "Resource": f"arn:{partition}:ssm:{region}::parameter/aws/service/*", "Action": "ssm:GetParameter"},
            {"Sid": "AllowPricingReadActions", "Effect": "Allow", "Resource": "*", "Action": "pricing:GetProducts"},
            {"Sid": "AllowUnscopedInstanceProfileListAction", "Effect": "Allow", "Resource": "*",
             "Action": "iam:ListInstanceProfiles"},
            {"Sid": "AllowInstanceProfileReadActions", "Effect": "Allow", "Resource": profile,
             "Action": "iam:GetInstanceProfile"},
        ),
    }

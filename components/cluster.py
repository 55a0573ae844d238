"""The EKS cluster: control plane, IRSA, add-ons, system and GPU managed node groups, Kubernetes provider."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components import labels
from components.config import ClusterConfig, GpuNodeGroupConfig
from components.endpoints import ClusterAccess
from components.iam import Oidc, customer_key, encrypted_log_group, irsa_role, service_trust_policy

MANAGED_POLICY = "arn:aws:iam::aws:policy/"
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"

# Instance metadata: one hop reaches the node itself, not its pods (IRSA gives pods their AWS identity).
IMDS_HOP_LIMIT = 1
ROOT_DEVICE = "/dev/xvda"                       # the EKS AL2023 AMIs' root device

# vpc-cni enforces Kubernetes NetworkPolicies only with this switch; tenancy's isolation depends on it.
VPC_CNI_CONFIGURATION = {"enableNetworkPolicy": "true"}


@dataclass(frozen=True)
class ClusterArgs:
    config: ClusterConfig
    cluster_name: str
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[list[str]]
    protect_data: bool


class Cluster(pulumi.ComponentResource):
    cluster_name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer_url: pulumi.Output[str]
    cluster_security_group_id: pulumi.Output[str]
    node_role_arn: pulumi.Output[str]
    node_role_name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    gpu_node_group_names: list[str]
    gpu_autoscaling_groups: dict[str, pulumi.Output[str]]
    oidc: Oidc
    provider: k8s.Provider
    access: ClusterAccess

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:cluster:Cluster", name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)
        data = pulumi.ResourceOptions(parent=self, protect=args.protect_data)

        secrets_key = customer_key(
            f"{name}-secrets", f"Envelope encryption of Kubernetes secrets in EKS cluster {args.cluster_name}", data)
        # Created before the cluster so EKS writes into a group whose retention and key we own (audit logs name
        # every caller and object: encrypted with a key of their own).
        log_group = encrypted_log_group(
            f"{name}-control-plane", f"/aws/eks/{args.cluster_name}/cluster", cfg.log_retention_days,
            f"Control-plane logs of EKS cluster {args.cluster_name}", self)
        cluster_role = aws.iam.Role(f"{name}-control-plane", assume_role_policy=service_trust_policy("eks.amazonaws.com"),
                                    opts=child)
        aws.iam.RolePolicyAttachment(f"{name}-control-plane", role=cluster_role.name,
                                     policy_arn=MANAGED_POLICY + "AmazonEKSClusterPolicy", opts=child)

        cluster = aws.eks.Cluster(
            f"{name}-eks",
            name=args.cluster_name,
            version=cfg.kubernetes_version,
            role_arn=cluster_role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=args.private_subnet_ids,
                endpoint_private_access=True,
                # Private unless the stack lists the networks allowed in (config rules, `eks-endpoint-restricted`).
                endpoint_public_access=cfg.endpoint_public_access,
                public_access_cidrs=list(cfg.public_access_cidrs) if cfg.endpoint_public_access else None,
            ),
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API",
                # No implicit, invisible cluster-admin for whoever created the cluster: administrators (the role
                # running `pulumi up` among them) are the explicit access entries of `cluster.adminRoleArns` below.
                bootstrap_cluster_creator_admin_permissions=False,
            ),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=secrets_key.arn),
                resources=["secrets"],
            ),
            enabled_cluster_log_types=list(cfg.log_types),
            # The add-ons are declared below with our settings; EKS's unmanaged defaults would shadow them.
            bootstrap_self_managed_addons=False,
            deletion_protection=args.protect_data,
            tags={labels.DISCOVERY_TAG: args.cluster_name},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_group]),
        )
        issuer = cluster.identities.apply(lambda ids: ids[0].oidcs[0].issuer)
        oidc_provider = aws.iam.OpenIdConnectProvider(
            f"{name}-oidc", url=issuer, client_id_lists=["sts.amazonaws.com"], opts=child,
        )
        oidc = Oidc(provider_arn=oidc_provider.arn, issuer_url=issuer)

        access = [(f"{name}-admin-{i}", principal) for i, principal in enumerate(cfg.admin_role_arns)]
        # The CI roles (bootstrap/): deploy applies every object. Preview needs the same rights: the Kubernetes
        # provider previews a create or update with a server-side dry-run apply, and Kubernetes authorizes a dry run
        # exactly as the write (create/patch on every kind the platform manages, cluster-scoped ones included, and
        # bind/escalate for its RBAC objects); no RBAC verb means "dry-run only", and only the cluster-admin access
        # policy covers cluster-scoped writes. The preview role's trust (this repository's pull requests only, never
        # forks) is what keeps it narrow; see docs/first-deploy.md.
        access += [(f"{name}-ci-{kind}", arn) for kind, arn in (("preview", cfg.ci_roles.preview),
                                                                ("deploy", cfg.ci_roles.deploy)) if arn]
        access_policies = []
        for entry_name, principal in access:
            entry = aws.eks.AccessEntry(entry_name, cluster_name=cluster.name, principal_arn=principal,
                                        type="STANDARD", opts=child)
            access_policies.append(aws.eks.AccessPolicyAssociation(
                entry_name,
                cluster_name=cluster.name,
                principal_arn=entry.principal_arn,
                policy_arn=CLUSTER_ADMIN_POLICY,
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=child,
            ))

        node_role = aws.iam.Role(f"{name}-node", assume_role_policy=service_trust_policy("ec2.amazonaws.com"),
                                 opts=child)
        for policy in ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly",
                       "AmazonSSMManagedInstanceCore"):
            aws.iam.RolePolicyAttachment(f"{name}-node-{policy}", role=node_role.name,
                                         policy_arn=MANAGED_POLICY + policy, opts=child)

        # vpc-cni first: nodes only become Ready once the CNI runs.
        vpc_cni_role = irsa_role(f"{name}-vpc-cni", oidc, "kube-system", "aws-node", self,
                                 [MANAGED_POLICY + "AmazonEKS_CNI_Policy"])
        vpc_cni = self._addon(name, cluster, cfg, "vpc-cni", VPC_CNI_CONFIGURATION, vpc_cni_role.arn)
        kube_proxy = self._addon(name, cluster, cfg, "kube-proxy")

        system_nodes = aws.eks.NodeGroup(
            f"{name}-system",
            cluster_name=cluster.name,
            node_group_name="system",
            node_role_arn=node_role.arn,
            subnet_ids=args.private_subnet_ids,
            instance_types=list(cfg.system_nodes.instance_types),
            capacity_type=cfg.system_nodes.capacity_type,
            ami_type="AL2023_x86_64_STANDARD",
            launch_template=self._launch_template(f"{name}-system", cfg.system_nodes.disk_gib),
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=cfg.system_nodes.min_size,
                desired_size=cfg.system_nodes.desired_size,
                max_size=cfg.system_nodes.max_size,
            ),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            labels={labels.NODE_ROLE: "system"},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[vpc_cni, kube_proxy],
                                        ignore_changes=["scalingConfig.desiredSize"]),
        )
        # The Auto Scaling group EKS creates for each GPU node group (the cluster-autoscaler tags and resizes it).
        self.gpu_autoscaling_groups = {
            group.name: self._gpu_node_group(name, cluster, node_role, args, group, [vpc_cni, kube_proxy])
            .resources.apply(lambda r: r[0].autoscaling_groups[0].name)
            for group in cfg.gpu_node_groups}
        self.gpu_node_group_names = [g.name for g in cfg.gpu_node_groups]

        needs_nodes = pulumi.ResourceOptions(parent=self, depends_on=[system_nodes])
        self._addon(name, cluster, cfg, "coredns", opts=needs_nodes)
        ebs_role = irsa_role(f"{name}-ebs-csi", oidc, "kube-system", "ebs-csi-controller-sa", self,
                             [MANAGED_POLICY + "service-role/AmazonEBSCSIDriverPolicy"])
        ebs_csi = self._addon(name, cluster, cfg, "aws-ebs-csi-driver", None, ebs_role.arn, opts=needs_nodes)

        self.cluster_name = cluster.name
        self.endpoint = cluster.endpoint
        self.oidc_provider_arn = oidc_provider.arn
        self.oidc_issuer_url = issuer
        self.cluster_security_group_id = cluster.vpc_config.cluster_security_group_id
        self.node_role_arn = node_role.arn
        self.node_role_name = node_role.name
        self.kubeconfig = pulumi.Output.all(cluster.name, cluster.endpoint, cluster.certificate_authority.data).apply(
            lambda a: kubeconfig(*a, region=aws.config.region))
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            enable_server_side_apply=True,
            # The identity running `pulumi up` may hold its cluster access through one of these entries only.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[system_nodes, ebs_csi, *access_policies]),
        )
        k8s.storage.v1.StorageClass(
            f"{name}-gp3",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="gp3", annotations={"storageclass.kubernetes.io/is-default-class": "true"}),
            provisioner="ebs.csi.aws.com",
            parameters={"type": "gp3", "encrypted": "true", "fsType": "ext4"},
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            reclaim_policy="Retain" if args.protect_data else "Delete",
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider),
        )
        self.oidc = oidc
        self.access = ClusterAccess(
            cluster_name=self.cluster_name,
            provider=self.provider,
            oidc=oidc,
            node_role_name=self.node_role_name,
            cluster_security_group_id=self.cluster_security_group_id,
            vpc_id=pulumi.Output.from_input(args.vpc_id),
            private_subnet_ids=pulumi.Output.from_input(args.private_subnet_ids),
        )
        self.register_outputs({
            "cluster_name": self.cluster_name,
            "endpoint": self.endpoint,
            "oidc_provider_arn": self.oidc_provider_arn,
            "oidc_issuer_url": self.oidc_issuer_url,
            "cluster_security_group_id": self.cluster_security_group_id,
            "node_role_arn": self.node_role_arn,
            "node_role_name": self.node_role_name,
            "kubeconfig": pulumi.Output.secret(self.kubeconfig),
            "gpu_node_group_names": self.gpu_node_group_names,
            "gpu_autoscaling_groups": self.gpu_autoscaling_groups,
        })

    def _addon(self, name: str, cluster: aws.eks.Cluster, cfg: ClusterConfig, addon: str,
               configuration: dict | None = None, role_arn: pulumi.Input[str] | None = None,
               opts: pulumi.ResourceOptions | None = None) -> aws.eks.Addon:
        # Pinned in config where set; otherwise the version EKS names as default for this Kubernetes version,
        # which only changes with `kubernetesVersion` (a preview shows it).
        version = cfg.addon_versions.get(addon) or aws.eks.get_addon_version_output(
            addon_name=addon, kubernetes_version=cfg.kubernetes_version, most_recent=False,
            opts=pulumi.InvokeOutputOptions(parent=self),
        ).version
        return aws.eks.Addon(
            f"{name}-{addon}",
            cluster_name=cluster.name,
            addon_name=addon,
            addon_version=version,
            configuration_values=json.dumps(configuration) if configuration else None,
            service_account_role_arn=role_arn,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            opts=opts or pulumi.ResourceOptions(parent=self),
        )

    def _launch_template(self, name: str, disk_gib: int) -> aws.eks.NodeGroupLaunchTemplateArgs:
        """What a managed node group's instances get beyond EKS's defaults: IMDSv2 only, with a hop limit of 1 so
        pods (one network hop further) cannot read the node role's credentials from the metadata service (pods get
        AWS access through IRSA); an encrypted gp3 root volume (the disk size moves here from the node group)."""
        template = aws.ec2.LaunchTemplate(
            name,
            description="EKS managed nodes: IMDSv2 with hop limit 1, encrypted gp3 root volume",
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=IMDS_HOP_LIMIT),
            block_device_mappings=[aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name=ROOT_DEVICE, ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_size=disk_gib, volume_type="gp3", encrypted="true", delete_on_termination="true"))],
            update_default_version=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return aws.eks.NodeGroupLaunchTemplateArgs(id=template.id, version=template.latest_version.apply(str))

    def _gpu_node_group(self, name: str, cluster: aws.eks.Cluster, node_role: aws.iam.Role, args: ClusterArgs,
                        group: GpuNodeGroupConfig, depends_on: list[pulumi.Resource]) -> aws.eks.NodeGroup:
        return aws.eks.NodeGroup(
            f"{name}-gpu-{group.name}",
            cluster_name=cluster.name,
            node_group_name=f"gpu-{group.name}",
            node_role_arn=node_role.arn,
            subnet_ids=args.private_subnet_ids,
            instance_types=list(group.instance_types),
            capacity_type=group.capacity_type,
            # The EKS NVIDIA AMI ships the driver and container toolkit.
            ami_type="AL2023_x86_64_NVIDIA",
            launch_template=self._launch_template(f"{name}-gpu-{group.name}", group.disk_gib),
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=group.min_size, desired_size=group.desired_size, max_size=group.max_size),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            labels=gpu_node_labels(group),
            taints=[aws.eks.NodeGroupTaintArgs(
                key=labels.GPU_TAINT["key"], value=labels.GPU_TAINT["value"],
                effect=labels.EKS_TAINT_EFFECT[labels.GPU_TAINT["effect"]])],
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on,
                                        ignore_changes=["scalingConfig.desiredSize"]),
        )


def gpu_node_labels(group: GpuNodeGroupConfig) -> dict[str, str]:
    return {labels.GPU_TYPE: group.gpu_type, labels.NODE_POOL: group.name}


def kubeconfig(cluster_name: str, endpoint: str, ca_data: str, region: str | None) -> str:
    """A kubeconfig that authenticates with the caller's AWS identity (`aws eks get-token`), no static token."""
    region_args = ["--region", region] if region else []
    return json.dumps({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
        "current-context": cluster_name,
        "users": [{"name": cluster_name, "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", cluster_name, *region_args],
        }}}],
    })

"""`cluster`: the EKS control plane, its system nodes and its managed GPU node groups."""

from __future__ import annotations

import datetime
import ipaddress
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from components import catalog
from components.config.problems import FieldError, Problem
from components.config.types import CapacityType, Cidr, DnsLabel, GpuInstanceType, IamRoleArn, Model

if TYPE_CHECKING:
    from components.config.platform import PlatformConfig

CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")


class SystemNodesConfig(Model):
    instance_types: Annotated[list[str], Field(min_length=1)] = Field(["m6i.large"], description=(
        "EC2 instance types of the system node group (the platform's controllers)."))
    capacity_type: CapacityType = Field("ON_DEMAND", description=(
        "ON_DEMAND or SPOT; prod requires ON_DEMAND so spot reclaims cannot evict the controllers."))
    min_size: Annotated[int, Field(ge=1)] = Field(2, description="Fewest system nodes.")
    desired_size: Annotated[int, Field(ge=1)] = Field(2, description=(
        "System nodes at creation (minSize <= desiredSize <= maxSize)."))
    max_size: Annotated[int, Field(ge=1)] = Field(4, description="Most system nodes.")
    disk_gib: Annotated[int, Field(ge=20)] = Field(50, description="Root volume of each system node, in GiB.")

    @model_validator(mode="after")
    def _sizes_ordered(self) -> SystemNodesConfig:
        if not self.min_size <= self.desired_size <= self.max_size:
            raise FieldError("desiredSize", "minSize <= desiredSize <= maxSize must hold")
        return self


class GpuNodeGroupConfig(Model):
    """An EKS managed node group of GPU instances: steady GPU capacity (Karpenter adds the elastic rest)."""

    name: DnsLabel = Field(description=(
        "Node group name (the EKS node group is `gpu-<name>`); its nodes carry it as the node-pool label."))
    instance_types: Annotated[list[GpuInstanceType], Field(min_length=1)] = Field(description=(
        "GPU instance types of the catalog (components/data/gpus.yaml), all of one GPU type."))
    capacity_type: CapacityType = Field("ON_DEMAND", description="ON_DEMAND or SPOT.")
    min_size: Annotated[int, Field(ge=0)] = Field(0, description="Fewest nodes (0 lets the group sit empty).")
    desired_size: Annotated[int, Field(ge=0)] = Field(0, description=(
        "Nodes at creation (minSize <= desiredSize <= maxSize)."))
    max_size: Annotated[int, Field(ge=1)] = Field(2, description=(
        "Most nodes; times the GPUs per instance, this counts towards the GPU capacity teams' quotas must fit."))
    disk_gib: Annotated[int, Field(ge=100)] = Field(200, description=(
        "Root volume of each node, in GiB (CUDA images are large)."))

    @model_validator(mode="after")
    def _one_gpu_type(self) -> GpuNodeGroupConfig:
        kinds = {catalog.instance_types()[t].gpu_type for t in self.instance_types}
        if len(kinds) > 1:
            raise FieldError(
                "instanceTypes", f"instanceTypes mix GPU types {sorted(kinds)}; a node group holds one GPU type so its "
                "label names it"
            )
        if not self.min_size <= self.desired_size <= self.max_size:
            raise FieldError("desiredSize", "minSize <= desiredSize <= maxSize must hold")
        return self

    @property
    def gpu_type(self) -> str:
        return catalog.instance_types()[self.instance_types[0]].gpu_type

    @property
    def max_gpus(self) -> int:
        return self.max_size * catalog.max_gpus_per_instance(self.instance_types)


class CiRolesConfig(Model):
    """The CI roles of the bootstrap (bootstrap/, output platformConfig): EKS access entries so the workflows'
    `pulumi preview` and `pulumi up` reach the Kubernetes API (components/cluster.py says which rights and why)."""

    preview: IamRoleArn | None = Field(default=None, description=(
        "Role of the pull-request workflow (bootstrap output previewRoleArn): cluster admin, because the Kubernetes "
        "provider previews with server-side dry-run applies, which Kubernetes authorizes as writes"))
    deploy: IamRoleArn | None = Field(default=None, description=(
        "Role of the deploy workflow (bootstrap output deployRoleArn): cluster admin, it applies every object"))


class AutoscalerConfig(Model):
    """The cluster-autoscaler that starts (and removes) nodes of the managed GPU node groups (components/autoscaler.py)."""

    enabled: bool = Field(True, description="Install the cluster-autoscaler for `gpuNodeGroups` (upstream chart, IRSA, "
                                            "ASG discovery and scale-from-zero tags). Off: a node group with minSize 0 "
                                            "that a workload targets is a config error (docs/capacity.md).")


class ClusterConfig(Model):
    name: DnsLabel | None = Field(None, description="EKS cluster name; default `mlops-<stack>`.")
    kubernetes_version: Annotated[str, Field(pattern=r"^1\.\d{2}$")] = Field(
        catalog.versions()["kubernetes"], description="Kubernetes minor version of the control plane, for example '1.34'.")
    admin_role_arns: list[IamRoleArn] = Field([], description=(
        "IAM roles that administer the cluster (EKS access entries with the cluster-admin access policy). The "
        "cluster creator gets no implicit admin access: the role running `pulumi up` is one of these or "
        "`ciRoles.deploy`."))
    endpoint_public_access: bool = Field(False, description=(
        "Whether the Kubernetes API also has a public endpoint. Off by default: the API is reached from inside the "
        "VPC (VPN, bastion, a self-hosted runner). Turning it on requires `publicAccessCidrs`."))
    public_access_cidrs: list[Cidr] = Field([], description=(
        "The networks allowed to reach the public API endpoint (e.g. the office and the CI runners' egress); "
        "required when `endpointPublicAccess` is true. In prod none wider than /16 (never 0.0.0.0/0)."))
    log_types: list[Literal[CONTROL_PLANE_LOG_TYPES]] = Field(list(CONTROL_PLANE_LOG_TYPES), description=(  # type: ignore[valid-type]
        "Control-plane log types sent to CloudWatch."))
    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653] = Field(30, description=(
        "Days CloudWatch keeps the control-plane logs (a value CloudWatch accepts)."))
    addon_versions: dict[Literal["vpc-cni", "coredns", "kube-proxy", "aws-ebs-csi-driver", "aws-fsx-csi-driver"],
                          str] = Field({}, description=(
        "EKS add-on versions by add-on name; unset: the version EKS recommends for kubernetesVersion."))
    system_nodes: SystemNodesConfig = Field(SystemNodesConfig(), description=(
        "The managed node group for the platform's controllers."))
    gpu_node_groups: list[GpuNodeGroupConfig] = Field([], description=(
        "Managed node groups of GPU instances: steady GPU capacity (Karpenter adds the elastic rest)."))
    ci_roles: CiRolesConfig = Field(default=CiRolesConfig(), description=(
        "The CI roles that get EKS access entries besides adminRoleArns (`cluster.ciRoles.preview`/`deploy`)"))
    autoscaler: AutoscalerConfig = Field(AutoscalerConfig(), description="The cluster-autoscaler for the GPU node groups.")

    @model_validator(mode="after")
    def _unique_node_groups(self) -> ClusterConfig:
        names = [g.name for g in self.gpu_node_groups]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise FieldError("gpuNodeGroups", f"names must be unique; repeated: {dupes}")
        return self

    @model_validator(mode="after")
    def _one_access_entry_per_role(self) -> ClusterConfig:
        # EKS holds one access entry per principal: a role listed twice would fail the second entry at deploy time.
        roles = [*self.admin_role_arns, *(r for r in (self.ci_roles.preview, self.ci_roles.deploy) if r)]
        dupes = sorted({r for r in roles if roles.count(r) > 1})
        if dupes:
            raise ValueError(f"a role may appear once among adminRoleArns and ciRoles (one EKS access entry each); "
                             f"repeated: {dupes}")
        return self



# The widest public CIDR a prod API endpoint may admit (the policy eks-endpoint-restricted says the same of the plan).
PROD_MAX_PUBLIC_PREFIX = 16


def version_problems(version: str, today: datetime.date | None = None) -> list[Problem]:
    """The Kubernetes version is one EKS offers (components/data/kubernetes-versions.yaml) and still supported."""
    versions = catalog.kubernetes_versions()
    today = today or datetime.date.today()
    if version not in versions:
        offered = [v for v, info in versions.items() if info.end_of_extended_support >= today]
        return [Problem("cluster.kubernetesVersion", f"is not a Kubernetes version EKS supports (supported: "
                        f"{', '.join(offered)}; components/data/kubernetes-versions.yaml)", version)]
    info = versions[version]
    if info.end_of_extended_support < today:
        return [Problem("cluster.kubernetesVersion", f"reached the end of EKS extended support on "
                        f"{info.end_of_extended_support}; AWS upgrades such clusters itself. Move to a newer version",
                        version)]
    return []


def endpoint_problems(cfg: PlatformConfig) -> list[Problem]:
    """The API endpoint is private unless the stack lists the networks allowed in (EKS would otherwise open a public
    endpoint to 0.0.0.0/0); in prod those networks are explicit, narrow ranges."""
    cluster = cfg.cluster
    if cluster.public_access_cidrs and not cluster.endpoint_public_access:
        return [Problem("cluster.publicAccessCidrs", "has no effect while endpointPublicAccess is false; set "
                        "endpointPublicAccess: true to open the public endpoint to these networks, or remove it",
                        cluster.public_access_cidrs)]
    if not cluster.endpoint_public_access:
        return []
    if not cluster.public_access_cidrs:
        return [Problem("cluster.publicAccessCidrs", "must list the networks allowed to reach the public API "
                        "endpoint when endpointPublicAccess is true (EKS would otherwise open it to 0.0.0.0/0), "
                        "e.g. [203.0.113.0/24]", [])]
    if not cfg.is_prod:
        return []
    return [Problem(f"cluster.publicAccessCidrs[{i}]", f"is wider than /{PROD_MAX_PUBLIC_PREFIX}: a prod API endpoint "
                    "is public only to explicit ranges (or set endpointPublicAccess: false)", cidr)
            for i, cidr in enumerate(cluster.public_access_cidrs)
            if ipaddress.ip_network(cidr).prefixlen < PROD_MAX_PUBLIC_PREFIX]


def problems(cfg: PlatformConfig, today: datetime.date | None = None) -> list[Problem]:
    """Prod's system nodes (the platform's controllers) are on-demand; supported version; prod endpoint; the
    cluster-autoscaler has an image for the version."""
    from components.autoscaler import IMAGES
    found = version_problems(cfg.cluster.kubernetes_version, today) + endpoint_problems(cfg)
    nodes = cfg.cluster.system_nodes
    if cfg.is_prod and nodes.capacity_type != "ON_DEMAND":
        found.append(Problem("cluster.systemNodes.capacityType",
                             "must be 'ON_DEMAND' in prod: spot reclaims would evict the platform's controllers",
                             nodes.capacity_type))
    if cfg.cluster.gpu_node_groups and cfg.cluster.autoscaler.enabled and \
            cfg.cluster.kubernetes_version not in IMAGES:
        found.append(Problem("cluster.kubernetesVersion", "has no cluster-autoscaler image pinned (its minor must match "
                             f"the control plane's); pinned: {', '.join(IMAGES)} in components/data/versions.yaml",
                             cfg.cluster.kubernetes_version))
    return found

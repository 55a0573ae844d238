"""`cluster`: the EKS control plane, its system nodes and its managed GPU node groups."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from components import catalog
from components.config.problems import Problem
from components.config.types import CapacityType, Cidr, DnsLabel, GpuInstanceType, IamRoleArn, Model

if TYPE_CHECKING:
    from components.config.platform import PlatformConfig

CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")


class SystemNodesConfig(Model):
    instance_types: Annotated[list[str], Field(min_length=1)] = ["m6i.large"]
    capacity_type: CapacityType = "ON_DEMAND"
    min_size: Annotated[int, Field(ge=1)] = 2
    desired_size: Annotated[int, Field(ge=1)] = 2
    max_size: Annotated[int, Field(ge=1)] = 4
    disk_gib: Annotated[int, Field(ge=20)] = 50

    @model_validator(mode="after")
    def _sizes_ordered(self) -> SystemNodesConfig:
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError("minSize <= desiredSize <= maxSize must hold")
        return self


class GpuNodeGroupConfig(Model):
    """An EKS managed node group of GPU instances: steady GPU capacity (Karpenter adds the elastic rest)."""

    name: DnsLabel
    instance_types: Annotated[list[GpuInstanceType], Field(min_length=1)]
    capacity_type: CapacityType = "ON_DEMAND"
    min_size: Annotated[int, Field(ge=0)] = 0
    desired_size: Annotated[int, Field(ge=0)] = 0
    max_size: Annotated[int, Field(ge=1)] = 2
    disk_gib: Annotated[int, Field(ge=100)] = 200

    @model_validator(mode="after")
    def _one_gpu_type(self) -> GpuNodeGroupConfig:
        kinds = {catalog.instance_types()[t].gpu_type for t in self.instance_types}
        if len(kinds) > 1:
            raise ValueError(
                f"instanceTypes mix GPU types {sorted(kinds)}; a node group holds one GPU type so its "
                "label names it"
            )
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError("minSize <= desiredSize <= maxSize must hold")
        return self

    @property
    def gpu_type(self) -> str:
        return catalog.instance_types()[self.instance_types[0]].gpu_type

    @property
    def max_gpus(self) -> int:
        return self.max_size * catalog.max_gpus_per_instance(self.instance_types)


class ClusterConfig(Model):
    name: DnsLabel | None = None
    kubernetes_version: Annotated[str, Field(pattern=r"^1\.\d{2}$")] = "1.34"
    admin_role_arns: Annotated[list[IamRoleArn], Field(description=(
        "IAM roles that administer the cluster (EKS access entries with the cluster-admin access policy). The role "
        "that runs `pulumi up` must be one of them: the cluster creator gets no implicit admin access."))] = []
    endpoint_public_access: Annotated[bool, Field(description=(
        "Whether the Kubernetes API also has a public endpoint. Off by default: the API is reached from inside the "
        "VPC (VPN, bastion, a self-hosted runner). Turning it on requires `publicAccessCidrs`."))] = False
    public_access_cidrs: Annotated[list[Cidr], Field(description=(
        "The networks allowed to reach the public API endpoint (e.g. the office and the CI runners' egress); "
        "required when `endpointPublicAccess` is true. 0.0.0.0/0 is refused in prod."))] = []
    log_types: list[Literal[CONTROL_PLANE_LOG_TYPES]] = list(CONTROL_PLANE_LOG_TYPES)  # type: ignore[valid-type]
    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653] = 30
    addon_versions: dict[Literal["vpc-cni", "coredns", "kube-proxy", "aws-ebs-csi-driver", "aws-fsx-csi-driver"],
                          str] = {}
    system_nodes: SystemNodesConfig = SystemNodesConfig()
    gpu_node_groups: list[GpuNodeGroupConfig] = []

    @model_validator(mode="after")
    def _unique_node_groups(self) -> ClusterConfig:
        names = [g.name for g in self.gpu_node_groups]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"gpuNodeGroups names must be unique; repeated: {dupes}")
        return self



def open_cidrs(cidrs: list[str]) -> list[str]:
    """The CIDRs that admit the whole internet (a /0, IPv4 or IPv6); shared with the policy pack."""
    return [c for c in cidrs if str(c).strip().endswith("/0")]


def problems(cfg: PlatformConfig) -> list[Problem]:
    """Prod's system nodes (the platform's controllers) are on-demand; the API endpoint is public only for
    explicitly listed networks, never the whole internet in prod."""
    found: list[Problem] = []
    c = cfg.cluster
    nodes = c.system_nodes
    if cfg.is_prod and nodes.capacity_type != "ON_DEMAND":
        found.append(Problem("cluster.systemNodes.capacityType",
                             "must be 'ON_DEMAND' in prod: spot reclaims would evict the platform's controllers",
                             nodes.capacity_type))
    if c.endpoint_public_access and not c.public_access_cidrs:
        found.append(Problem("cluster.publicAccessCidrs", "must list the networks allowed to reach the public API "
                             "endpoint when endpointPublicAccess is true (EKS would otherwise open it to 0.0.0.0/0), "
                             "e.g. [203.0.113.0/24]", c.public_access_cidrs))
    if c.public_access_cidrs and not c.endpoint_public_access:
        found.append(Problem("cluster.publicAccessCidrs", "has no effect while endpointPublicAccess is false; set "
                             "endpointPublicAccess: true to open the public endpoint to these networks, or remove it",
                             c.public_access_cidrs))
    if cfg.is_prod and c.endpoint_public_access and open_cidrs(c.public_access_cidrs):
        found.append(Problem("cluster.publicAccessCidrs", "must not contain 0.0.0.0/0 or ::/0 in prod: list the "
                             "networks that administer the cluster (office, VPN, CI runners' egress)",
                             open_cidrs(c.public_access_cidrs)))
    return found

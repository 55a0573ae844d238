"""`karpenter`: the Karpenter controller and the CPU NodePools (GPU NodePools are under `gpu.nodePools`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from components import catalog
from components.config.nodepools import AmiAlias, KarpenterCapacityType, NodePoolConfig
from components.config.types import Model

class CpuNodePoolConfig(NodePoolConfig):
    """A Karpenter NodePool of general-purpose instances for CPU work (no taint)."""

    instance_categories: Annotated[list[Literal["c", "m", "r"]], Field(min_length=1)] = Field(["c", "m", "r"], description=(
        "EC2 instance categories: c (compute), m (general), r (memory)."))
    min_generation: Annotated[int, Field(ge=5, le=9)] = Field(6, description=(
        "Oldest instance generation allowed, for example 6 (m6i, c6i, ...)."))
    capacity_types: Annotated[list[KarpenterCapacityType], Field(min_length=1)] = Field(["spot", "on-demand"], description=(
        "Karpenter capacity types: spot, on-demand or both."))
    cpu_limit: Annotated[int, Field(ge=1)] = Field(64, description="vCPUs the pool may hold at once.")
    memory_limit_gib: Annotated[int, Field(alias="memoryLimitGiB", ge=1)] = Field(256, description=(
        "Memory the pool may hold at once, in GiB."))


class KarpenterConfig(Model):
    """The Karpenter controller and the CPU NodePools (GPU NodePools are under `gpu.nodePools`)."""

    ami_alias: AmiAlias = Field(catalog.versions()["amis"]["karpenter"], description=(
        "Default node image of every NodePool, an EKS-optimized AMI alias pinned to a release; move it forward "
        "deliberately (a preview shows the drift)."))
    controller_replicas: Annotated[int, Field(ge=1, le=3)] = Field(2, description="Karpenter controller replicas.")
    cpu_node_pools: list[CpuNodePoolConfig] = Field([CpuNodePoolConfig(name="general")], description=(
        "Karpenter NodePools for CPU work (no taint)."))

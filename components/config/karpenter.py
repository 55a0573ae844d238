"""`karpenter`: the Karpenter controller and the CPU NodePools (GPU NodePools are under `gpu.nodePools`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from components.config.nodepools import AmiAlias, KarpenterCapacityType, NodePoolConfig
from components.config.types import Model

class CpuNodePoolConfig(NodePoolConfig):
    """A Karpenter NodePool of general-purpose instances for CPU work (no taint)."""

    instance_categories: Annotated[list[Literal["c", "m", "r"]], Field(min_length=1)] = ["c", "m", "r"]
    min_generation: Annotated[int, Field(ge=5, le=9)] = 6
    capacity_types: Annotated[list[KarpenterCapacityType], Field(min_length=1)] = ["spot", "on-demand"]
    cpu_limit: Annotated[int, Field(ge=1)] = 64
    memory_limit_gib: Annotated[int, Field(alias="memoryLimitGiB", ge=1)] = 256


class KarpenterConfig(Model):
    """The Karpenter controller and the CPU NodePools (GPU NodePools are under `gpu.nodePools`)."""

    # EKS AMI release v20260512 ships Kubernetes 1.34 nodes; move it forward deliberately (a preview shows drift).
    ami_alias: AmiAlias = "al2023@v20260512"
    controller_replicas: Annotated[int, Field(ge=1, le=3)] = 2
    cpu_node_pools: list[CpuNodePoolConfig] = [CpuNodePoolConfig(name="general")]

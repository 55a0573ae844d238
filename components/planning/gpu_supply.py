"""What the GPU pools of a stack config supply: capacity, shared resources, each team's quota, and the pools as
notebook profiles and training jobs select them."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from components import labels

if TYPE_CHECKING:
    from components.config.platform import PlatformConfig
    from components.config.teams import TeamConfig


def gpu_capacity(cfg: PlatformConfig) -> int:
    """The most GPUs the stack's GPU pools can supply at once: the sum of every declared GPU pool's maximum.

    Managed GPU node groups count `maxSize` x GPUs per instance; every other GPU pool the config declares
    (Karpenter GPU NodePools) counts its `nvidia.com/gpu` limit. A team's `gpuQuota` may not exceed it.
    """
    return sum(g.max_gpus for g in cfg.cluster.gpu_node_groups) + \
        sum(p.limits(cfg.gpu.mig_strategy)[labels.GPU_RESOURCE] for p in cfg.gpu.node_pools)


def gpu_resource_supply(cfg: PlatformConfig) -> dict[str, int]:
    """Every GPU extended resource the stack's GPU pools advertise, with the most units they can supply at once:
    `nvidia.com/gpu`, and where pools share GPUs `nvidia.com/gpu.shared` and `nvidia.com/mig-<profile>`."""
    supply = {labels.GPU_RESOURCE: sum(g.max_gpus for g in cfg.cluster.gpu_node_groups)}
    for pool in cfg.gpu.node_pools:
        for resource, units in pool.limits(cfg.gpu.mig_strategy).items():
            if resource != "cpu":
                supply[resource] = supply.get(resource, 0) + units
    return supply


def team_gpu_quota(cfg: PlatformConfig, team: TeamConfig) -> dict[str, int]:
    """The team's quota for every GPU resource the stack offers. Shared resources the team's config does not set
    default to what `gpuQuota` whole GPUs would give (GPUs x replicas or MIG instances per GPU), at most the supply."""
    supply = gpu_resource_supply(cfg)
    per_gpu: dict[str, int] = {}
    for pool in cfg.gpu.node_pools:
        for resource, units in pool.gpu_resources(cfg.gpu.mig_strategy).items():
            per_gpu[resource] = max(per_gpu.get(resource, 0), units)
    explicit = {labels.MIG_RESOURCE_PREFIX + p: n for p, n in team.mig_quota.items()}
    if team.shared_gpu_quota is not None:
        explicit[labels.GPU_SHARED_RESOURCE] = team.shared_gpu_quota
    quota = {r: min(team.gpu_quota * per_gpu.get(r, 1), n) for r, n in supply.items() if r != labels.GPU_RESOURCE}
    return {**quota, **explicit, labels.GPU_RESOURCE: team.gpu_quota}


class GpuPool(NamedTuple):
    """A GPU pool (managed node group or Karpenter NodePool) as notebook profiles and training jobs select it: nodes
    carry `mlops.platform/node-pool: <name>` and `mlops.platform/gpu-type: <gpu_type>`."""

    name: str
    gpu_type: str
    sharing: str                          # none | time-slicing | mig
    capacity_types: tuple[str, ...]       # spot / on-demand
    instance_types: tuple[str, ...]
    resources: dict[str, int]             # extended resource -> units per physical GPU
    mig_layout: dict[str, int]
    karpenter: bool


def gpu_pools(cfg: PlatformConfig) -> list[GpuPool]:
    """Every GPU pool of the stack: node groups (whole GPUs) first, then GPU NodePools, in config order."""
    pools = [GpuPool(g.name, g.gpu_type, "none", (g.capacity_type.lower().replace("_", "-"),),
                     tuple(g.instance_types), {labels.GPU_RESOURCE: 1}, {}, False)
             for g in cfg.cluster.gpu_node_groups]
    pools += [GpuPool(p.name, p.gpu_type, p.sharing.mode, tuple(p.capacity_types), tuple(p.instance_types),
                      p.gpu_resources(cfg.gpu.mig_strategy), dict(p.sharing.mig_layout), True)
              for p in cfg.gpu.node_pools]
    return pools


def training_pool(cfg: PlatformConfig) -> GpuPool | None:
    """The GPU pool training jobs select: `training.pool`, else the first spot-capable pool of whole GPUs
    (Karpenter NodePools before managed node groups)."""
    pools = [p for p in gpu_pools(cfg) if p.sharing == "none"]
    if cfg.training.pool is not None:
        return next((p for p in pools if p.name == cfg.training.pool), None)
    spot = sorted((p for p in pools if "spot" in p.capacity_types), key=lambda p: not p.karpenter)
    return spot[0] if spot else None


def fallback_pool(cfg: PlatformConfig) -> GpuPool | None:
    """The named on-demand pool a training job may opt into (`training.fallbackPool`), if any."""
    return next((p for p in gpu_pools(cfg) if p.name == cfg.training.fallback_pool), None)

"""Notebook profiles resolved against the GPU pools: the generated ones (CPU, one per GPU offering) and
`notebooks.profiles`, each with the pool its pods select and the GPU resource they request."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

from components import catalog, labels
from components.config.problems import Problem
from components.planning.gpu_supply import GpuPool, gpu_pools

if TYPE_CHECKING:
    from components.config.notebooks import NotebookGpuConfig
    from components.config.platform import PlatformConfig
    from components.config.teams import TeamConfig


class NotebookProfile(NamedTuple):
    """A notebook profile resolved against the GPU pools: what its pods request and where they run."""

    name: str
    display_name: str
    description: str
    cpu: float
    memory_gb: int
    image: str | None                     # None: the component's default CPU or CUDA image
    gpu_type: str | None                  # None: a CPU profile
    sharing: str
    pool: str | None                      # the GPU pool (node-pool label value) its pods select
    resource: str | None                  # extended resource requested, e.g. nvidia.com/gpu, nvidia.com/mig-1g.10gb
    units: int


# Sizes of the generated profiles (cores, GB): the seed's CPU and T4 profiles; shared GPUs get a slice of a node.
NOTEBOOK_SIZES = {"cpu": (2, 4), "none": (4, 16), "time-slicing": (1, 4), "mig": (2, 16)}
# What a node keeps for the kubelet, system daemons and DaemonSets (approximate; EKS reserves by instance size).
NODE_RESERVED_CPU = 0.25
NODE_RESERVED_GIB = 1.5


def _fits(pool: GpuPool, cpu: float, memory_gb: int) -> bool:
    table = catalog.instance_types()
    return any(cpu <= table[t].vcpu - NODE_RESERVED_CPU and memory_gb * 1e9 <= (table[t].memory_gib - NODE_RESERVED_GIB)
               * 2 ** 30 for t in pool.instance_types)


def _gpu_candidates(pools: list[GpuPool], gpu: NotebookGpuConfig) -> list[GpuPool]:
    return [p for p in pools if p.gpu_type == gpu.type and p.sharing == gpu.sharing
            and (gpu.sharing != "mig" or gpu.mig_profile in p.mig_layout)]


def _generated_profiles(cfg: PlatformConfig, pools: list[GpuPool]) -> list[NotebookProfileConfig]:
    """CPU, plus one profile per GPU type offered whole, per time-sliced GPU type and per MIG pool's smallest slice."""
    # Imported here: the config's notebook rules import this module while components.config.notebooks loads.
    from components.config.notebooks import NotebookGpuConfig, NotebookProfileConfig

    def make(name: str, display: str, sharing: str, gpu: NotebookGpuConfig | None) -> NotebookProfileConfig:
        cores, gb = NOTEBOOK_SIZES["cpu" if gpu is None else sharing]
        size = f"{cores} core{'s' if cores != 1 else ''}, {gb} GB"
        return NotebookProfileConfig(name=name, display_name=f"{display}, {size}" if gpu else f"CPU only: {size}",
                                     cpu=cores, memory_gb=gb, gpu=gpu)

    profiles, seen = [make("cpu", "CPU", "cpu", None)], {"cpu"}
    for pool in pools:
        product = catalog.gpu_types()[pool.gpu_type].product
        if pool.sharing == "none":
            name, display, gpu = pool.gpu_type, f"{product}: 1 GPU", NotebookGpuConfig(type=pool.gpu_type)
        elif pool.sharing == "time-slicing":
            name, display = f"{pool.gpu_type}-shared", f"{product}: a time-sliced share of 1 GPU"
            gpu = NotebookGpuConfig(type=pool.gpu_type, sharing="time-slicing")
        else:
            model = catalog.mig_model(pool.gpu_type)
            if model is None or not pool.mig_layout:
                continue
            smallest = min(pool.mig_layout, key=lambda p: (model.profiles[p].compute_slices,
                                                           model.profiles[p].memory_slices) if p in model.profiles
                           else (99, 99))
            name, display = f"mig-{smallest.replace('.', '-').replace('+', '-')}", f"{product}: MIG slice {smallest}"
            gpu = NotebookGpuConfig(type=pool.gpu_type, sharing="mig", mig_profile=smallest)
        if name in seen:
            continue
        profile = make(name, display, gpu.sharing, gpu)
        candidates = _gpu_candidates(pools, gpu)
        if not any(_fits(p, profile.cpu, profile.memory_gb) for p in candidates):
            # Smaller instances only (e.g. a g4dn.xlarge node group): the largest size that fits one of them.
            table = catalog.instance_types()
            largest = max((table[t] for p in candidates for t in p.instance_types),
                          key=lambda i: (i.vcpu, i.memory_gib))
            cores = min(profile.cpu, math.floor(largest.vcpu - NODE_RESERVED_CPU))
            gb = min(profile.memory_gb, math.floor((largest.memory_gib - NODE_RESERVED_GIB) * 2 ** 30 / 1e9))
            if cores < 1 or gb < 1:
                continue
            profile = make(name, display, gpu.sharing, gpu).model_copy(update={
                "cpu": cores, "memory_gb": gb,
                "display_name": f"{display}, {cores} core{'s' if cores != 1 else ''}, {gb} GB"})
        profiles.append(profile)
        seen.add(name)
    return profiles


def resolve_notebook_profiles(cfg: PlatformConfig) -> tuple[dict[str, NotebookProfile], list[Problem]]:
    pools = gpu_pools(cfg)
    errors: list[Problem] = []
    declared = [(None, p) for p in _generated_profiles(cfg, pools)]
    names = [p.name for p in cfg.notebooks.profiles]
    for i, p in enumerate(cfg.notebooks.profiles):
        if names.index(p.name) != i:
            errors.append(Problem(f"notebooks.profiles[{i}].name", "must be unique among notebooks.profiles", p.name))
        declared = [(j, q) for j, q in declared if q.name != p.name] + [(i, p)]
    resolved: dict[str, NotebookProfile] = {}
    for i, p in declared:
        path = f"notebooks.profiles[{i}]"
        display = p.display_name or p.name
        if p.gpu is None:
            if p.pool is not None and i is not None:
                errors.append(Problem(f"{path}.pool", "only applies to GPU profiles (CPU profiles run on the CPU "
                                                      "NodePools)",
                                      p.pool))
            resolved[p.name] = NotebookProfile(p.name, display, p.description or "", p.cpu, p.memory_gb, p.image,
                                               None, "none", None, None, 0)
            continue
        candidates = _gpu_candidates(pools, p.gpu)
        if not candidates:
            offered = ", ".join(sorted({f"{q.gpu_type} ({q.sharing})" for q in pools})) or "none"
            errors.append(Problem(f"{path}.gpu.type", f"names GPU type '{p.gpu.type}' with sharing '{p.gpu.sharing}'"
                                  + (f" and MIG profile {p.gpu.mig_profile}" if p.gpu.mig_profile else "")
                                  + f", which no GPU pool offers (pools offer: {offered}); pick one of those or add a pool "
                                  "under gpu.nodePools", p.gpu.type))
            continue
        if p.pool is not None:
            candidates = [q for q in candidates if q.name == p.pool]
            if not candidates:
                errors.append(Problem(f"{path}.pool", f"names no GPU pool offering {p.gpu.type} ({p.gpu.sharing})", p.pool))
                continue
        fitting = [q for q in candidates if _fits(q, p.cpu, p.memory_gb)]
        if not fitting:
            errors.append(Problem(f"{path}.cpu", f"{p.cpu:g} cores and {p.memory_gb} GB do not fit any instance type "
                                                 f"of the pools offering {p.gpu.type} "
                                                 f"({', '.join(q.name for q in candidates)}), after what a node keeps "
                                                 "for itself; ask for less or add a larger instance type", p.cpu))
            continue
        # Interactive work: on-demand capacity first (a spot reclaim loses the kernel's state), then config order.
        pool = sorted(fitting, key=lambda q: "on-demand" not in q.capacity_types)[0]
        per_node = catalog.max_gpus_per_instance(list(pool.instance_types))
        if p.gpu.count > per_node:
            errors.append(Problem(f"{path}.gpu.count", f"exceeds the {per_node} GPUs the largest instance of pool "
                                  f"'{pool.name}' carries", p.gpu.count))
            continue
        if p.gpu.sharing == "none":
            resource, units = labels.GPU_RESOURCE, p.gpu.count
        elif p.gpu.sharing == "mig" and labels.MIG_RESOURCE_PREFIX + p.gpu.mig_profile in pool.resources:
            resource, units = labels.MIG_RESOURCE_PREFIX + p.gpu.mig_profile, 1
        else:       # time-sliced replicas, or MIG with strategy single: one unit of the pool's only resource
            resource, units = next(iter(pool.resources)), 1
        resolved[p.name] = NotebookProfile(p.name, display, p.description or "", p.cpu, p.memory_gb, p.image,
                                           p.gpu.type, p.gpu.sharing, pool.name, resource, units)
    return resolved, errors


def notebook_profiles(cfg: PlatformConfig) -> dict[str, NotebookProfile]:
    """Every notebook profile of the stack by name: the generated ones and `notebooks.profiles`, resolved."""
    return resolve_notebook_profiles(cfg)[0]


def team_notebook_group(cfg: PlatformConfig, team: TeamConfig) -> str:
    """The JupyterHub group whose members see the team's profiles: `notebooks.teamGroups`, else the team's group."""
    return cfg.notebooks.team_groups.get(team.name, team.kubernetes_group)

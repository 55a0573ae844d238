"""What a pod using little of its GPU's memory could run on instead: the GPU units the stack's pools offer (MIG
profiles, whole GPUs, time-sliced shares), with the memory each gives (GPU facts from components/data/gpus.yaml and
mig-profiles.yaml). The GPU memory rightsizing alert names the smallest that fits (components/observability/rules.py)."""

from __future__ import annotations

from typing import NamedTuple

from components import catalog, labels
from components.planning.gpu_supply import GpuPool

# A suggestion must leave room for the pod to grow: what it used at most, times this, fits the offer's memory.
HEADROOM = 1.25
_RANK = {"mig": 0, "none": 1, "time-slicing": 2}   # equal memory: an isolated MIG slice, then a GPU, then a share


class GpuOffer(NamedTuple):
    memory_gib: float      # memory one unit gives (a time-sliced share: its fair part of the GPU's memory)
    offer: str             # "the 1g.10gb MIG profile"
    resource: str          # the extended resource a pod asks for, e.g. nvidia.com/mig-1g.10gb
    pool: str


def _pool_offers(pool: GpuPool) -> list[tuple[int, GpuOffer]]:
    gpu = catalog.gpu_types()[pool.gpu_type]
    model = catalog.mig_model(pool.gpu_type)
    found = []
    for resource, units in sorted(pool.resources.items()):
        if pool.sharing == "mig" and model is not None:
            # Mixed strategy: one resource per profile. Single: nvidia.com/gpu, every slice of the one profile.
            names = ([resource[len(labels.MIG_RESOURCE_PREFIX):]] if resource.startswith(labels.MIG_RESOURCE_PREFIX)
                     else sorted(pool.mig_layout))
            for name in names:
                found.append((_RANK["mig"], GpuOffer(model.profiles[name].memory_gib, f"the {name} MIG profile",
                                                     resource, pool.name)))
        elif pool.sharing == "time-slicing":
            found.append((_RANK["time-slicing"], GpuOffer(round(gpu.memory_gib / units, 1),
                                                          f"a time-sliced share of an {gpu.product}", resource,
                                                          pool.name)))
        else:
            found.append((_RANK["none"], GpuOffer(gpu.memory_gib, f"a whole {gpu.product}", resource, pool.name)))
    return found


def gpu_offers(pools: list[GpuPool]) -> list[GpuOffer]:
    """One offer per memory size (the first pool's, by rank), smallest first."""
    ranked = sorted((o.memory_gib, rank, i, o) for i, p in enumerate(pools) for rank, o in _pool_offers(p))
    by_memory: dict[float, GpuOffer] = {}
    for memory, _, _, offer in ranked:
        by_memory.setdefault(memory, offer)
    return list(by_memory.values())

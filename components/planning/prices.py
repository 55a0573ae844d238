"""GPU-hour prices and GPU shares of the stack's GPU pools, from components/data/prices.yaml and the GPU catalog
through the same functions `python -m preview cost` uses, so the cost dashboards and the cost command agree."""

from __future__ import annotations

from components import catalog, labels
from components.planning.gpu_supply import GpuPool


def gpu_hour_prices(pools: list[GpuPool]) -> dict[tuple[str, str], float]:
    """(instance type, capacity type) -> $/GPU-hour for every GPU instance type of the stack's pools, spot and
    on-demand alike (a pool's nodes carry whichever capacity type Karpenter or EKS gave them)."""
    table = {}
    for instance_type in sorted({t for p in pools for t in p.instance_types}):
        for capacity in ("on-demand", "spot"):
            price, _ = catalog.gpu_hour_price([instance_type], spot=capacity == "spot")
            if price is not None:
                table[(instance_type, capacity)] = price
    return table


def gpu_hour_ceiling(pools: list[GpuPool]) -> float:
    """The dearest $/GPU-hour among the pools, each priced as `preview cost` prices it (spot only for spot-only pools):
    a team's whole GPU quota at this price is the cost command's per-team upper bound."""
    tops = [catalog.gpu_hour_price(p.instance_types, spot=tuple(p.capacity_types) == ("spot",))[0] for p in pools]
    return max((t for t in tops if t is not None), default=0.0)


def gpu_resource_shares(pool: GpuPool) -> dict[str, float]:
    """GPU extended resource -> the share of one physical GPU that one unit of it is, on this pool's nodes."""
    model = catalog.mig_model(pool.gpu_type)
    shares = {}
    for resource, units in pool.resources.items():
        if resource.startswith(labels.MIG_RESOURCE_PREFIX) and model is not None:
            profile = model.profiles[resource[len(labels.MIG_RESOURCE_PREFIX):]]
            shares[resource] = profile.compute_slices / model.compute_slices
        else:
            shares[resource] = 1 / units
    return shares


def instance_hour_prices() -> dict[tuple[str, str], float]:
    """(instance type, capacity type) -> $/hour of one instance, for every instance type in prices.yaml: a CPU node
    (a Karpenter pool may launch any type of its categories) is priced like a GPU node, by what it runs as."""
    return {(t, capacity): price for t in sorted(catalog.prices()["instances"]) for capacity in ("on-demand", "spot")
            if (price := catalog.instance_price(t, spot=capacity == "spot")) is not None}

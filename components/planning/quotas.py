"""The EC2 vCPU service quotas the GPU pools need at their limits (quota codes: components/data/quotas.yaml).

A new AWS account cannot launch one GPU instance until these are raised, and Karpenter then fails at run time with
an opaque error. Quotas count vCPUs per Region, per instance family group (G and VT, P) and purchase option
(on-demand, spot). A pool needs, in every quota its capacity types may draw on, the vCPUs it may run at its limit:
- managed node group: maxSize x the largest vCPU count among its instance types;
- Karpenter NodePool: enough of its instance types to hold its GPU limit (the worst case over its types:
  ceil(gpuLimit / GPUs per instance) x vCPUs), capped by its `cpu` limit.
A pool allowed spot and on-demand may run entirely on either, so it counts fully in both. Pools add up.

Read from the config (`from_config`, for the bootstrap's quota requests) or from what a plan declares
(`from_declared`, for `preview cost`, the summary and the policy pack): tests check both readings agree.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple

import yaml

from components import catalog
from components.planning import declared_pools

if TYPE_CHECKING:
    from components.config.platform import PlatformConfig

QUOTAS_FILE = catalog.DATA_DIR / "quotas.yaml"
CAPACITY_KEYS = {"on-demand": "onDemand", "spot": "spot"}


class PoolLimit(NamedTuple):
    name: str
    instance_types: tuple[str, ...]
    capacity_types: tuple[str, ...]        # "on-demand" | "spot"
    max_nodes: int | None = None           # managed node group: maxSize
    max_gpus: int | None = None            # NodePool: physical GPUs at its limit
    cpu_limit: int | None = None           # NodePool: its `cpu` limit


class QuotaNeed(NamedTuple):
    code: str
    name: str
    family: str
    capacity_type: str
    vcpus: int
    pools: tuple[str, ...]


@functools.cache
def quota_families() -> tuple[dict[str, Any], ...]:
    return tuple(yaml.safe_load(QUOTAS_FILE.read_text())["ec2VcpuQuotas"])


def family_of(instance_type: str) -> dict[str, Any] | None:
    """The quota family of `g5.xlarge` (G and VT) or `p4d.24xlarge` (P), by the letters before the generation
    digit (`g`, `p`, `vt`); None for families without a GPU quota here."""
    letters = re.match(r"[a-z]*", instance_type)[0]
    return next((f for f in quota_families() if letters in f["instanceFamilyPrefixes"]), None)


def pool_vcpus(pool: PoolLimit, instance_types: Iterable[str]) -> int:
    """The vCPUs `pool` may run at its limit using only `instance_types` (one quota family of its types)."""
    table = catalog.instance_types()
    types = [table[t] for t in instance_types if t in table]
    if not types:
        return 0
    if pool.max_nodes is not None:
        vcpus = pool.max_nodes * max(t.vcpu for t in types)
    else:
        vcpus = max(-(-(pool.max_gpus or 0) // t.gpus) * t.vcpu for t in types)
    return min(vcpus, pool.cpu_limit) if pool.cpu_limit else vcpus


def needs(pools: Iterable[PoolLimit]) -> list[QuotaNeed]:
    """Every quota some pool draws on, with the vCPUs all pools together may need (data-file order)."""
    totals: dict[tuple[str, str], tuple[int, list[str]]] = {}
    for pool in pools:
        by_family: dict[str, list[str]] = {}
        for t in pool.instance_types:
            family = family_of(t)
            if family is not None:
                by_family.setdefault(family["family"], []).append(t)
        for family_name, types in by_family.items():
            vcpus = pool_vcpus(pool, types)
            for capacity in pool.capacity_types:
                total, names = totals.get((family_name, capacity), (0, []))
                totals[(family_name, capacity)] = (total + vcpus, names + [pool.name])
    out = []
    for family in quota_families():
        for capacity, key in CAPACITY_KEYS.items():
            if (family["family"], capacity) in totals:
                vcpus, names = totals[(family["family"], capacity)]
                out.append(QuotaNeed(family[key]["code"], family[key]["name"], family["family"], capacity, vcpus,
                                     tuple(names)))
    return out


def _capacity(value: str) -> str:
    return value.lower().replace("_", "-")


def from_config(cfg: PlatformConfig) -> list[PoolLimit]:
    pools = [PoolLimit(g.name, tuple(g.instance_types), (_capacity(g.capacity_type),), max_nodes=g.max_size)
             for g in cfg.cluster.gpu_node_groups]
    pools += [PoolLimit(p.name, tuple(p.instance_types), tuple(_capacity(c) for c in p.capacity_types),
                        max_gpus=p.gpu_limit, cpu_limit=p.cpu_limit or p.default_cpu_limit)
              for p in cfg.gpu.node_pools]
    return pools


def _cpu(value: Any) -> int | None:
    if value is None:
        return None
    text = str(value)
    return -(-int(text[:-1]) // 1000) if text.endswith("m") else int(float(text))


def from_declared(resources: Iterable[tuple[str, dict[str, Any]]]) -> list[PoolLimit]:
    pools = []
    for pool in declared_pools.declared_gpu_pools(resources):
        props = pool.props
        if pool.kind == "node group":
            pools.append(PoolLimit(pool.name, tuple(props.get("instanceTypes") or ()),
                                   (_capacity(props.get("capacityType") or "ON_DEMAND"),),
                                   max_nodes=int((props.get("scalingConfig") or {}).get("maxSize") or 0)))
        else:
            pools.append(PoolLimit(pool.name, tuple(declared_pools.launchable_gpu_instances(props)),
                                   tuple(declared_pools.node_pool_capacity_types(props)), max_gpus=pool.max_gpus,
                                   cpu_limit=_cpu(((props.get("spec") or {}).get("limits") or {}).get("cpu"))))
    return pools


def markdown(quota_needs: list[QuotaNeed]) -> str:
    lines = ["### EC2 vCPU quotas the GPU pools need at their limits", ""]
    if not quota_needs:
        return "\n".join(lines + ["- (no GPU pools)"]) + "\n"
    lines += ["| quota | code | capacity | vCPUs | pools |", "|---|---|---|---:|---|"]
    lines += [f"| {q.name} | `{q.code}` | {q.capacity_type} | {q.vcpus} | {', '.join(q.pools)} |"
              for q in quota_needs]
    lines += ["", "A new account starts at 0 for most of these: request them before the first GPU job "
              "(`bootstrap/`, `gpuQuotas.platformStacks`; docs/first-deploy.md)."]
    return "\n".join(lines) + "\n"

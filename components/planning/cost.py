"""Cost from what a plan declares, priced with `components/data/prices.yaml` (one source of prices).

- idle baseline per month: what runs with zero jobs (control plane, node groups at their desired size, NAT
  gateways, FSx storage, RDS);
- maximum burn per hour: every GPU pool at its limit (node groups at maxSize, NodePools at their GPU limit);
- per team: its GPU quota at the most expensive GPU-hour among the pools (an upper bound).

The offline preview's `cost` command (preview/cost.py) and the budget policy (policies/gpu_workloads.py) both use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from components import catalog, labels
from components.catalog import gpu_hour_price, instance_price, prices
from components.planning import declared_pools as capacity

INSTANCE_TYPE_KEY = "node.kubernetes.io/instance-type"
INSTANCE_FAMILY_KEY = "karpenter.k8s.aws/instance-family"
CAPACITY_TYPE_KEY = "karpenter.sh/capacity-type"


@dataclass
class Line:
    item: str
    amount: float          # USD per month (baseline) or per hour (burn)


@dataclass
class Cost:
    baseline: list[Line] = field(default_factory=list)        # USD / month
    burn: list[Line] = field(default_factory=list)            # USD / hour, GPU pools at their limits
    teams: list[Line] = field(default_factory=list)           # USD / hour, each team's quota in use
    unpriced: list[str] = field(default_factory=list)
    team_hourly: dict[str, float] = field(default_factory=dict)   # namespace -> USD / hour at full quota

    @property
    def baseline_total(self) -> float:
        return sum(line.amount for line in self.baseline)

    @property
    def burn_total(self) -> float:
        return sum(line.amount for line in self.burn)


def _node_pool_instance_types(spec: dict[str, Any]) -> tuple[list[str], bool]:
    """Instance types a Karpenter NodePool may launch, and whether it may only use spot."""
    requirements = (((spec.get("template") or {}).get("spec") or {}).get("requirements")) or []
    types: list[str] = []
    capacity = ["on-demand"]
    for req in requirements:
        values = req.get("values") or []
        if req.get("operator") != "In":
            continue
        if req.get("key") == INSTANCE_TYPE_KEY:
            types += values
        elif req.get("key") == INSTANCE_FAMILY_KEY:
            types += [t for t in catalog.instance_types() if t.split(".")[0] in values]
        elif req.get("key") == CAPACITY_TYPE_KEY:
            capacity = values
    return types, capacity == ["spot"]


def estimate(resources: Iterable[tuple[str, dict[str, Any]]]) -> Cost:
    p = prices()
    hours = p["hoursPerMonth"]
    cost = Cost()
    gpu_hour_prices: list[float] = []
    quotas: list[tuple[str, int]] = []
    for typ, props in resources:
        if typ == "aws:eks/cluster:Cluster":
            cost.baseline.append(Line(f"EKS control plane {props.get('name')}", p["eksControlPlanePerHour"] * hours))
        elif typ == "aws:ec2/natGateway:NatGateway":
            cost.baseline.append(Line("NAT gateway", (p["natGatewayPerHour"] + p["publicIpv4PerHour"]) * hours))
        elif typ == "aws:eks/nodeGroup:NodeGroup":
            scaling = props.get("scalingConfig") or {}
            spot = props.get("capacityType") == "SPOT"
            first = (props.get("instanceTypes") or ["?"])[0]
            price = instance_price(first, spot)
            name = props.get("nodeGroupName")
            if price is None:
                cost.unpriced.append(first)
                continue
            desired = int(scaling.get("desiredSize") or 0)
            disk = int(props.get("diskSize") or 20) * p["ebsGp3PerGiBMonth"]
            if desired:
                cost.baseline.append(Line(f"node group {name}: {desired} x {first}{' spot' if spot else ''}",
                                          desired * (price * hours + disk)))
            if any(t.get("key") == labels.GPU_RESOURCE for t in props.get("taints") or []):
                top, missing = gpu_hour_price(props.get("instanceTypes") or [], spot)
                cost.unpriced += missing
                if top is not None:
                    gpu_hour_prices.append(top)
                    cost.burn.append(Line(f"node group {name} at maxSize {scaling.get('maxSize')}",
                                          int(scaling.get("maxSize") or 0) * price))
        elif typ == capacity.NODE_POOL:
            pool = next(iter(capacity.gpu_pools([(typ, props)])), None)
            if pool is None:
                continue
            types, spot_only = _node_pool_instance_types(props.get("spec") or {})
            top, missing = gpu_hour_price(types, spot_only)
            cost.unpriced += missing
            if top is not None:
                gpu_hour_prices.append(top)
                # Physical GPUs: a shared pool's nvidia.com/gpu limit counts replicas or MIG devices.
                cost.burn.append(Line(f"NodePool {pool.name} at {pool.max_gpus} GPUs"
                                      f"{' (spot)' if spot_only else ''}", pool.max_gpus * top))
        elif typ == "aws:fsx/lustreFileSystem:LustreFileSystem":
            kind = props.get("deploymentType", "SCRATCH_2")
            tiers = p["fsxLustrePerGiBMonth"].get(kind, {})
            per_gib = tiers.get(str(props.get("perUnitStorageThroughput", "")), next(iter(tiers.values()), None))
            if per_gib is None:
                cost.unpriced.append(f"FSx {kind}")
                continue
            size = int(props.get("storageCapacity") or 0)
            cost.baseline.append(Line(f"FSx for Lustre {kind} {size} GiB", size * per_gib))
        elif typ == "aws:rds/instance:Instance":
            klass = props.get("instanceClass")
            per_hour = p["rdsPostgresPerHour"].get(klass)
            if per_hour is None:
                cost.unpriced.append(str(klass))
                continue
            factor = 2 if props.get("multiAz") else 1
            storage = int(props.get("allocatedStorage") or 0) * p["rdsGp3PerGiBMonth"] * factor
            cost.baseline.append(Line(f"RDS {klass}{' Multi-AZ' if factor == 2 else ''}",
                                      per_hour * factor * hours + storage))
        elif typ == "kubernetes:core/v1:ResourceQuota":
            hard = ((props.get("spec") or {}).get("hard")) or {}
            gpus = hard.get(f"requests.{labels.GPU_RESOURCE}")
            if gpus is not None:
                quotas.append(((props.get("metadata") or {}).get("namespace"), int(gpus)))
    top_gpu_hour = max(gpu_hour_prices, default=0.0)
    cost.teams = [Line(f"team {ns}: {gpus} GPUs", gpus * top_gpu_hour) for ns, gpus in quotas]
    cost.team_hourly = {ns: gpus * top_gpu_hour for ns, gpus in quotas}
    cost.unpriced = sorted(set(cost.unpriced))
    cost.baseline = _grouped(cost.baseline)
    return cost


def _grouped(lines: list[Line]) -> list[Line]:
    """Identical items (three NAT gateways) as one line with a count."""
    totals: dict[str, list[float]] = {}
    for line in lines:
        totals.setdefault(line.item, []).append(line.amount)
    return [Line(item if len(a) == 1 else f"{len(a)} x {item}", sum(a)) for item, a in totals.items()]


def from_plan(plan: dict[str, Any]) -> Cost:
    return estimate((r["type"], r["inputs"]) for r in plan["resources"] if r.get("custom"))

"""Cost from what a plan declares, priced with `components/data/prices.yaml` (one source of prices).

- idle baseline per month: what runs with zero jobs: control plane, node groups at their desired size, NAT
  gateways with their IPs, interface VPC endpoints per AZ, load balancers, KMS keys, log ingestion and storage (at the
  assumed volume in prices.yaml), FSx storage, RDS, Prometheus volumes, JupyterHub home volumes of the listed users;
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
    source: str = ""       # the prices.yaml `sources` entry the price comes from ("+assumption": an assumed volume)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def gib(quantity: Any) -> float:
    """A Kubernetes quantity ("50Gi", "1Ti", "500M") in GiB."""
    text = str(quantity)
    for suffix, factor in (("Ti", 1024), ("Gi", 1), ("Mi", 1 / 1024), ("T", 1000**4 / 1024**3),
                           ("G", 1000**3 / 1024**3), ("M", 1000**2 / 1024**3)):
        if text.endswith(suffix):
            return float(text[:-len(suffix)]) * factor
    return float(text) / 1024**3


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
            cost.baseline.append(Line(f"EKS control plane {props.get('name')}", p["eksControlPlanePerHour"] * hours,
                                      "eks"))
        elif typ == "aws:ec2/natGateway:NatGateway":
            cost.baseline.append(Line("NAT gateway with its public IPv4 address",
                                      (p["natGatewayPerHour"] + p["publicIpv4PerHour"]) * hours, "vpc"))
        elif typ in ALWAYS_ON:
            cost.baseline += ALWAYS_ON[typ](props, p)
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
                cost.baseline.append(Line(f"node group {name}: {desired} x {first}{' spot' if spot else ''}"
                                          f" with {props.get('diskSize') or 20} GiB gp3 each",
                                          desired * (price * hours + disk), "ec2Spot+ebs" if spot else "ec2+ebs"))
            if any(t.get("key") == labels.GPU_RESOURCE for t in props.get("taints") or []):
                top, missing = gpu_hour_price(props.get("instanceTypes") or [], spot)
                cost.unpriced += missing
                if top is not None:
                    gpu_hour_prices.append(top)
                    cost.burn.append(Line(f"node group {name} at maxSize {scaling.get('maxSize')}",
                                          int(scaling.get("maxSize") or 0) * price, "ec2Spot" if spot else "ec2"))
        elif typ == capacity.NODE_POOL:
            pool = next(iter(capacity.declared_gpu_pools([(typ, props)])), None)
            if pool is None:
                continue
            types, spot_only = _node_pool_instance_types(props.get("spec") or {})
            top, missing = gpu_hour_price(types, spot_only)
            cost.unpriced += missing
            if top is not None:
                gpu_hour_prices.append(top)
                # Physical GPUs: a shared pool's nvidia.com/gpu limit counts replicas or MIG devices.
                cost.burn.append(Line(f"NodePool {pool.name} at {plural(pool.max_gpus, 'GPU')}"
                                      f"{' (spot)' if spot_only else ''}", pool.max_gpus * top,
                                      "ec2Spot" if spot_only else "ec2"))
        elif typ == "aws:fsx/lustreFileSystem:LustreFileSystem":
            kind = props.get("deploymentType", "SCRATCH_2")
            tiers = p["fsxLustrePerGiBMonth"].get(kind, {})
            per_gib = tiers.get(str(props.get("perUnitStorageThroughput", "")), next(iter(tiers.values()), None))
            if per_gib is None:
                cost.unpriced.append(f"FSx {kind}")
                continue
            size = int(props.get("storageCapacity") or 0)
            cost.baseline.append(Line(f"FSx for Lustre {kind} {size} GiB", size * per_gib, "fsx"))
        elif typ == "aws:rds/instance:Instance":
            klass = props.get("instanceClass")
            per_hour = p["rdsPostgresPerHour"].get(klass)
            if per_hour is None:
                cost.unpriced.append(str(klass))
                continue
            factor = 2 if props.get("multiAz") else 1
            storage = int(props.get("allocatedStorage") or 0) * p["rdsGp3PerGiBMonth"] * factor
            cost.baseline.append(Line(f"RDS {klass}{' Multi-AZ' if factor == 2 else ''} with "
                                      f"{props.get('allocatedStorage') or 0} GiB gp3",
                                      per_hour * factor * hours + storage, "rds"))
        elif typ == "kubernetes:core/v1:ResourceQuota":
            hard = ((props.get("spec") or {}).get("hard")) or {}
            gpus = hard.get(f"requests.{labels.GPU_RESOURCE}")
            if gpus is not None:
                quotas.append(((props.get("metadata") or {}).get("namespace"), int(gpus)))
    top_gpu_hour = max(gpu_hour_prices, default=0.0)
    cost.teams = [Line(f"team {ns}: {plural(gpus, 'GPU')}", gpus * top_gpu_hour, "ec2") for ns, gpus in quotas]
    cost.team_hourly = {ns: gpus * top_gpu_hour for ns, gpus in quotas}
    cost.unpriced = sorted(set(cost.unpriced))
    cost.baseline = _grouped(cost.baseline)
    return cost


def _grouped(lines: list[Line]) -> list[Line]:
    """Identical items (three NAT gateways) as one line with a count."""
    totals: dict[str, list[float]] = {}
    for line in lines:
        totals.setdefault(line.item, []).append(line.amount)
    sources = {line.item: line.source for line in lines}
    return [Line(item if len(a) == 1 else f"{len(a)} x {item}", sum(a), sources[item]) for item, a in totals.items()]


# ---- always-on items beyond compute: one function per resource type, each returning its baseline lines ----------

def _vpc_endpoint(props: dict, p: dict) -> list[Line]:
    service = str(props.get("serviceName", "")).rsplit(".", 1)[-1]
    if props.get("vpcEndpointType") != "Interface":
        return [Line(f"VPC gateway endpoint {service} (no charge)", 0.0, "vpc")]
    azs = len(props.get("subnetIds") or [])
    return [Line(f"VPC interface endpoint {service} in {plural(azs, 'AZ')}",
                 azs * p["vpcInterfaceEndpointPerAzHour"] * p["hoursPerMonth"], "vpc")]


def _kms_key(props: dict, p: dict) -> list[Line]:
    return [Line("KMS customer managed key", p["kmsKeyPerMonth"], "kms")]


def _log_group(props: dict, p: dict) -> list[Line]:
    name = str(props.get("name", ""))
    if not name.startswith("/aws/eks/"):
        return [Line(f"CloudWatch log group {name} (usage-based, volume unknown)", 0.0, "cloudwatch")]
    volume = p["assumptions"]["eksControlPlaneLogGiBPerMonth"]
    days = int(props.get("retentionInDays") or 0)
    stored = volume * (days / 30 if days else 12)     # steady state; kept forever: a year's worth
    return [Line(f"CloudWatch Logs {name}: {volume} GiB/month ingested (assumed), kept "
                 f"{plural(days, 'day') if days else 'forever (a year shown)'}",
                 volume * p["cloudwatchLogsIngestionPerGiB"] + stored * p["cloudwatchLogsStoragePerGiBMonth"],
                 "cloudwatch+assumption")]


LB_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-"


def _load_balancer(props: dict, p: dict) -> list[Line]:
    meta = props.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if (props.get("spec") or {}).get("type") != "LoadBalancer" and not any(k.startswith(LB_ANNOTATION)
                                                                           for k in annotations):
        return []
    nlb = annotations.get(LB_ANNOTATION + "type") in ("nlb", "external", "nlb-ip")
    internal = annotations.get(LB_ANNOTATION + "internal") == "true" or \
        annotations.get(LB_ANNOTATION + "scheme") == "internal"
    per_hour = p["networkLoadBalancerPerHour" if nlb else "classicLoadBalancerPerHour"]
    return [Line(f"{'internal ' if internal else ''}{'Network' if nlb else 'Classic'} load balancer of service "
                 f"{meta.get('namespace')}/{meta.get('name')}", per_hour * p["hoursPerMonth"], "elb")]


def _volume_claims(value: Any, where: str = "") -> Iterable[tuple[str, float, int]]:
    """(where, GiB, replicas) of every `volumeClaimTemplate` in Helm values (Prometheus, Alertmanager storage)."""
    if isinstance(value, dict):
        template = value.get("volumeClaimTemplate")
        if isinstance(template, dict):
            size = (((template.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
            if size:
                yield where, gib(size), 1
        for key, sub in value.items():
            if key == "storageSpec" or key == "storage":
                for w, size, _ in _volume_claims(sub, where):
                    yield w, size, int(value.get("replicas") or 1)
            elif isinstance(sub, dict):
                yield from _volume_claims(sub, key if not where else where)


def _helm_release(props: dict, p: dict) -> list[Line]:
    values = props.get("values") or {}
    release = props.get("name")
    lines = [Line(f"{release}: {where} volume{'s' if n > 1 else ''} {n} x {size:g} GiB gp3",
                  n * size * p["ebsGp3PerGiBMonth"], "ebs") for where, size, n in _volume_claims(values)]
    storage = ((values.get("singleuser") or {}).get("storage")) or {}
    if storage.get("type") == "dynamic" and storage.get("capacity"):
        config = ((values.get("hub") or {}).get("config")) or {}
        users = set((config.get("Authenticator") or {}).get("allowed_users") or [])
        for group in ((config.get("JupyterHub") or {}).get("load_groups") or {}).values():
            users |= set((group or {}).get("users") or [])
        size = gib(storage["capacity"])
        each = size * p["ebsGp3PerGiBMonth"]
        lines.append(Line(f"{release}: home volumes, {plural(len(users), 'listed user')} x {size:g} GiB gp3 "
                          f"(${each:,.2f}/month each; every further user adds one)", len(users) * each, "ebs"))
    return lines


def _persistent_volume_claim(props: dict, p: dict) -> list[Line]:
    spec = props.get("spec") or {}
    if spec.get("storageClassName") == "" or spec.get("volumeName"):
        return []       # bound to a static volume (FSx): priced with the file system
    size = gib(((spec.get("resources") or {}).get("requests") or {}).get("storage") or 0)
    meta = props.get("metadata") or {}
    return [Line(f"volume {meta.get('namespace')}/{meta.get('name')} {size:g} GiB gp3",
                 size * p["ebsGp3PerGiBMonth"], "ebs")]


ALWAYS_ON = {
    "aws:ec2/vpcEndpoint:VpcEndpoint": _vpc_endpoint,
    "aws:kms/key:Key": _kms_key,
    "aws:cloudwatch/logGroup:LogGroup": _log_group,
    "kubernetes:core/v1:Service": _load_balancer,
    "kubernetes:core/v1:ServicePatch": _load_balancer,
    "kubernetes:helm.sh/v3:Release": _helm_release,
    "kubernetes:core/v1:PersistentVolumeClaim": _persistent_volume_claim,
}

# Charged by use, so not in the idle baseline: named so the reader knows they were not forgotten.
USAGE_BASED = ("NAT gateway data processed ($/GB)", "interface endpoint data processed ($/GB)",
               "load balancer capacity units", "S3 and ECR storage and requests", "KMS requests",
               "log ingestion above the assumed volume", "data transfer between AZs and out to the internet")


def from_plan(plan: dict[str, Any]) -> Cost:
    return estimate((r["type"], r["inputs"]) for r in plan["resources"] if r.get("custom"))

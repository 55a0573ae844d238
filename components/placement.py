"""No stranded workload: can a pod template land on capacity the platform declares, and can its team admit it?

One judgement, used by the config check (components/config: workloads the config implies), the stack policy
(policies/placement.py: workloads the program declares) and the tests. Plain records in, reasons out:

- a `Pool` is capacity that can run pods: the labels every node carries (and the values a label may take on
  some node, e.g. `karpenter.sh/capacity-type` in [spot, on-demand]), its taints, its instance types, how far it
  can grow (node group maxSize, NodePool limits) and whether anything can start a node at all;
- a `Workload` is a pod template (node selector, required node affinity, tolerations, requests per pod) and how
  many such pods must run at once (a training job's replicas);
- `placement_problems` says why the workload fits no pool (empty: it fits one), `admission_problems` why its
  team's quota or queue could never admit it whole.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

from components import catalog

# What a node keeps for the kubelet, system daemons and DaemonSets (approximate; EKS reserves by instance size).
NODE_RESERVED_CPU = 0.25
NODE_RESERVED_GIB = 1.5
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
EFA_RESOURCE = "vpc.amazonaws.com/efa"
GIB = 2 ** 30


class Taint(NamedTuple):
    key: str
    value: str
    effect: str                        # NoSchedule | PreferNoSchedule | NoExecute


class Pool(NamedTuple):
    name: str
    kind: str                          # "node group" | "NodePool" | "system"
    labels: dict[str, tuple[str, ...]]  # label -> values a node may carry (one value: every node has it)
    taints: tuple[Taint, ...]
    instance_types: tuple[str, ...]    # GPU pools: catalog types; CPU pools: empty (any size, see max_cpu)
    resources_per_gpu: dict[str, int]  # extended resource -> units per physical GPU (sharing)
    limits: dict[str, float]           # NodePool limits (cpu cores, nvidia.com/gpu units); {} when none
    max_nodes: int | None              # node group maxSize; None for NodePools
    scalable: bool                     # something can start a node when none runs (Karpenter, an autoscaler)
    running_nodes: int = 0             # nodes that always run (node group minSize)
    efa: bool = False                  # the EFA device plugin advertises vpc.amazonaws.com/efa on its nodes
    max_cpu: float = 0                 # CPU pools without instance types: the largest node's cores
    max_memory_gib: float = 0


class Workload(NamedTuple):
    name: str                          # how reports name it: a config key path or "PyTorchJob ns/name"
    node_selector: dict[str, str]
    required_terms: tuple[tuple[dict, ...], ...]   # nodeAffinity required terms: OR of (AND of matchExpressions)
    tolerations: tuple[dict, ...]
    requests: dict[str, float]         # per pod: cpu (cores), memory (bytes), extended resources (units)
    pods: int = 1                      # pods that must run at the same time (a job's replicas)


class Node(NamedTuple):
    cpu: float
    memory: float                      # bytes
    resources: dict[str, float]


def node_capacity(pool: Pool, instance_type: str | None) -> Node:
    """Allocatable of one node of the pool (of that instance type), after what the node keeps for itself."""
    if instance_type is None:
        return Node(pool.max_cpu - NODE_RESERVED_CPU, (pool.max_memory_gib - NODE_RESERVED_GIB) * GIB, {})
    t = catalog.instance_types()[instance_type]
    resources = {r: float(t.gpus * n) for r, n in pool.resources_per_gpu.items()}
    if pool.efa and t.efa_interfaces:
        resources[EFA_RESOURCE] = float(t.efa_interfaces)
    return Node(t.vcpu - NODE_RESERVED_CPU, (t.memory_gib - NODE_RESERVED_GIB) * GIB, resources)


def _label_space(pool: Pool, instance_type: str | None) -> dict[str, set[str]]:
    space = {k: set(v) for k, v in pool.labels.items()}
    if instance_type is not None:
        space[INSTANCE_TYPE_LABEL] = {instance_type}
    return space


def _expression_ok(expr: dict, space: dict[str, set[str]]) -> bool:
    key, op, values = expr.get("key"), expr.get("operator"), set(expr.get("values") or [])
    have = space.get(key)
    if op == "In":
        return have is not None and bool(have & values)
    if op == "NotIn":
        return have is None or bool(have - values)
    if op == "Exists":
        return have is not None
    if op == "DoesNotExist":
        return have is None
    if op in ("Gt", "Lt"):
        try:
            bound = int(next(iter(values)))
            return have is not None and any(v.isdigit() and (int(v) > bound if op == "Gt" else int(v) < bound)
                                            for v in have)
        except (StopIteration, ValueError):
            return False
    return False


def selector_problems(workload: Workload, pool: Pool, instance_type: str | None) -> list[str]:
    space = _label_space(pool, instance_type)
    problems = [f"its nodeSelector {k}={v} matches no node of the pool (nodes carry {k}="
                f"{'|'.join(sorted(space[k])) if k in space else '(none)'})"
                for k, v in workload.node_selector.items() if v not in space.get(k, set())]
    if workload.required_terms and not any(all(_expression_ok(e, space) for e in term)
                                           for term in workload.required_terms):
        problems.append("its required node affinity matches no node of the pool")
    return problems


def tolerates(tolerations: Iterable[dict], taint: Taint) -> bool:
    for t in tolerations:
        if t.get("effect") not in (None, "", taint.effect):
            continue
        if t.get("operator") == "Exists" and t.get("key") in (None, "", taint.key):
            return True
        if t.get("key") == taint.key and t.get("operator", "Equal") == "Equal" and t.get("value", "") == taint.value:
            return True
    return False


def taint_problems(workload: Workload, pool: Pool) -> list[str]:
    return [f"it does not tolerate the pool's taint {t.key}={t.value}:{t.effect}" for t in pool.taints
            if t.effect in ("NoSchedule", "NoExecute") and not tolerates(workload.tolerations, t)]


def _short(resource: str, amount: float) -> str:
    if resource == "memory":
        return f"{amount / GIB:g}Gi memory"
    return f"{amount:g} {resource}"


def size_problems(workload: Workload, node: Node) -> list[str]:
    have = {"cpu": node.cpu, "memory": node.memory, **node.resources}
    return [f"it asks for {_short(r, n)} per pod, one node offers {_short(r, have.get(r, 0))}"
            for r, n in workload.requests.items() if n > have.get(r, 0) + 1e-9]


def reach_problems(workload: Workload, pool: Pool, node: Node) -> list[str]:
    """Can the pool grow to hold all the workload's pods at once (limits, maxSize), and start a node at all?"""
    problems = []
    if not pool.scalable and pool.running_nodes == 0:
        problems.append("no node runs (minSize 0) and nothing starts one (no cluster-autoscaler manages it)")
    need = {r: n * workload.pods for r, n in workload.requests.items()}
    for resource, limit in pool.limits.items():
        if need.get(resource, 0) > limit + 1e-9:
            problems.append(f"its {workload.pods} pod(s) need {_short(resource, need[resource])}, above the pool's "
                            f"limit of {_short(resource, limit)}")
    if pool.max_nodes is not None:
        # Pods per node by the tightest requested resource; the pool holds max_nodes such nodes.
        have = {"cpu": node.cpu, "memory": node.memory, **node.resources}
        per_node = min((int(have.get(r, 0) // n) for r, n in workload.requests.items() if n > 0), default=1)
        if per_node > 0 and -(-workload.pods // per_node) > pool.max_nodes:
            problems.append(f"its {workload.pods} pod(s) need {-(-workload.pods // per_node)} nodes, above the "
                            f"{pool.kind}'s maxSize of {pool.max_nodes}")
    return problems


def pool_problems(workload: Workload, pool: Pool) -> list[str]:
    """Why the workload cannot run on this pool (empty: it can), judged per instance type; the closest miss wins."""
    best: list[str] | None = None
    for instance_type in pool.instance_types or (None,):
        node = node_capacity(pool, instance_type)
        problems = selector_problems(workload, pool, instance_type) + taint_problems(workload, pool)
        problems += size_problems(workload, node)
        if not problems:
            problems = reach_problems(workload, pool, node)
        if not problems:
            return []
        if best is None or len(problems) < len(best):
            best = problems
    return best or []


def placement_problems(workload: Workload, pools: Iterable[Pool]) -> list[str]:
    """Empty when the workload fits some pool; else one line per pool saying why not (pools whose labels the
    workload does not select are summarised in one line)."""
    pools = list(pools)
    reasons: list[str] = []
    unselected = []
    for pool in pools:
        problems = pool_problems(workload, pool)
        if not problems:
            return []
        if any("nodeSelector" in p or "node affinity" in p for p in problems):
            unselected.append(pool.name)
        else:
            reasons.append(f"{pool.kind} '{pool.name}': {'; '.join(problems)}")
    if unselected:
        wanted = ", ".join(f"{k}={v}" for k, v in workload.node_selector.items()) or "its node affinity"
        reasons.append(f"no other pool matches {wanted} ({', '.join(unselected)})")
    return reasons or ["no pool is declared"]


def admission_problems(workload: Workload, quota: dict[str, float], what: str = "quota") -> list[str]:
    """Why a team's quota (resource -> most it may hold at once, e.g. Kueue nominal + borrowing limit, or the namespace
    ResourceQuota) can never admit the whole workload. Resources the quota does not name are not limited by it."""
    return [f"its {workload.pods} pod(s) need {_short(r, n * workload.pods)} at once, above the team's {what} of "
            f"{_short(r, quota[r])}" for r, n in workload.requests.items() if r in quota and n * workload.pods > quota[r]]


def quantity(value: object) -> float:
    """A Kubernetes quantity ("3", "500m", "12Gi", 2) as a number (cores, bytes, units)."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    suffixes = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "k": 1e3, "K": 1e3,
                "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "m": 1e-3}
    for suffix in sorted(suffixes, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * suffixes[suffix]
    return float(text)


def pod_workload(name: str, spec: dict, pods: int = 1) -> Workload:
    """A Workload from a Kubernetes pod spec (camelCase, as rendered): requests of all containers (a limit counts
    where no request is set, as Kubernetes defaults it), init containers' largest request where larger."""
    totals: dict[str, float] = {}
    for c in spec.get("containers") or []:
        res = (c or {}).get("resources") or {}
        asked = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        for r, v in asked.items():
            try:
                totals[r] = totals.get(r, 0) + quantity(v)
            except (TypeError, ValueError):
                continue
    for c in spec.get("initContainers") or []:
        res = (c or {}).get("resources") or {}
        for r, v in {**(res.get("limits") or {}), **(res.get("requests") or {})}.items():
            try:
                totals[r] = max(totals.get(r, 0), quantity(v))
            except (TypeError, ValueError):
                continue
    affinity = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = tuple(tuple(t.get("matchExpressions") or []) for t in affinity.get("nodeSelectorTerms") or [])
    return Workload(name, dict(spec.get("nodeSelector") or {}), terms, tuple(spec.get("tolerations") or []),
                    totals, pods)


def kubespawner_workload(name: str, override: dict) -> Workload:
    """A Workload from a z2jh profile's `kubespawner_override` (KubeSpawner's names for the pod's fields)."""
    requests: dict[str, float] = {}
    for key, resource in (("cpu_guarantee", "cpu"), ("mem_guarantee", "memory")):
        value = override.get(key) if override.get(key) is not None else override.get(key.replace("guarantee", "limit"))
        if value is not None:
            requests[resource] = quantity(value)
    for r, v in {**(override.get("extra_resource_limits") or {}),
                 **(override.get("extra_resource_guarantees") or {})}.items():
        requests[r] = quantity(v)
    terms = tuple(tuple(t.get("matchExpressions") or []) for t in override.get("node_affinity_required") or [])
    return Workload(name, dict(override.get("node_selector") or {}), terms, tuple(override.get("tolerations") or []),
                    requests, 1)

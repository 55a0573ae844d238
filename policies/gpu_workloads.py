"""GPU rules for workloads: whoever asks for a GPU sets it in limits, tolerates the GPU taint and targets a
GPU pool; and no team's GPU quota exceeds what the pools can supply."""

from __future__ import annotations

from typing import Any

from pulumi_policy import EnforcementLevel

from components import catalog, labels
from components.planning import cost  # the cost command's own arithmetic and prices: one source
from components.planning.declared_pools import Pool, declared_gpu_pools, declared_pools
from policies.declare import stack_policy
from policies.pod_security import team_namespaces
from policies.workloads import as_dict, as_list, containers, pod_templates

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
MIG_PREFIX = "nvidia.com/mig-"
QUOTA = "kubernetes:core/v1:ResourceQuota"


def is_gpu_resource(name: str) -> bool:
    return name == labels.GPU_RESOURCE or name.startswith(MIG_PREFIX) or name == labels.GPU_SHARED_RESOURCE


def gpu_resources(resources: dict[str, Any] | None) -> set[str]:
    return {k for k in as_dict(resources) if is_gpu_resource(k)}


def tolerates_gpu_taint(tolerations: list[dict[str, Any]] | None) -> bool:
    taint = labels.GPU_TAINT
    for t in map(as_dict, as_list(tolerations)):
        key_ok = t.get("key") == taint["key"] or (t.get("key") in (None, "") and t.get("operator") == "Exists")
        value_ok = t.get("operator") == "Exists" or t.get("value") == taint["value"]
        effect_ok = t.get("effect") in (None, "", taint["effect"])
        if key_ok and value_ok and effect_ok:
            return True
    return False


def _term_may_match(pool: Pool, expressions: list[dict[str, Any]]) -> bool:
    for e in map(as_dict, expressions):
        key, op, values = str(e.get("key")), e.get("operator"), [str(v) for v in as_list(e.get("values"))]
        known = pool.may_carry(key, values if op == "In" else None)
        if op == "In" and known is not True:
            return False
        if op == "Exists" and known is not True:
            return False
        if op == "NotIn" and key in pool.node_labels and not (pool.node_labels[key] - set(values)):
            return False
        if op == "DoesNotExist" and key in pool.node_labels:
            return False
    return True


def pools_selected(spec: dict[str, Any], pools: list[Pool]) -> list[Pool]:
    """The declared pools whose nodes a pod with this nodeSelector and required node affinity may land on."""
    selector = as_dict(spec.get("nodeSelector"))
    terms = as_list(as_dict(as_dict(as_dict(spec.get("affinity")).get("nodeAffinity")).get(
        "requiredDuringSchedulingIgnoredDuringExecution")).get("nodeSelectorTerms"))
    chosen = []
    for pool in pools:
        if not all(pool.may_carry(str(k), [str(v)]) is True for k, v in selector.items()):
            continue
        if terms and not any(_term_may_match(pool, as_list(as_dict(t).get("matchExpressions"))) for t in terms):
            continue
        chosen.append(pool)
    return chosen


def _quantity(value: Any) -> float | None:
    try:
        return float(str(value))
    except ValueError:
        return None


def pod_gpu_problems(spec: dict[str, Any], pools: list[Pool]) -> list[str]:
    """What a pod spec asking for GPUs gets wrong (empty when it asks for none, or gets everything right)."""
    problems = []
    asked: set[str] = set()
    for c in containers(spec):
        res = as_dict(c.get("resources"))
        requests, limits = as_dict(res.get("requests")), as_dict(res.get("limits"))
        requested = gpu_resources(requests) | gpu_resources(limits)
        asked |= requested
        for name in sorted(requested):
            if name not in limits:
                problems.append(f"container '{c.get('name')}' requests {name} without setting it in limits")
            elif name in requests and _quantity(requests[name]) != _quantity(limits[name]):
                problems.append(f"container '{c.get('name')}' requests {requests[name]} {name} but limits it to "
                                f"{limits[name]} (GPUs are not overcommitted: requests must equal limits)")
            elif name == labels.GPU_SHARED_RESOURCE and (_quantity(limits[name]) or 0) > 1:
                problems.append(f"container '{c.get('name')}' asks for {limits[name]} time-sliced replicas; a "
                                "replica is a share of one GPU, so more than one buys nothing (and is refused)")
    if not asked:
        return []
    if not tolerates_gpu_taint(spec.get("tolerations")):
        problems.append(f"it does not tolerate the GPU taint {labels.GPU_TAINT['key']}={labels.GPU_TAINT['value']}"
                        f":{labels.GPU_TAINT['effect']}")
    chosen = pools_selected(spec, pools)
    cpu = [p.name for p in chosen if not p.gpu]
    gpu = [p for p in chosen if p.gpu]
    if cpu:
        problems.append(f"its node selection admits the CPU pool(s) {cpu}; select a GPU pool the plan declares")
    elif not gpu:
        problems.append("its node selection matches no GPU pool the plan declares")
    elif not any(asked <= pool.offers for pool in gpu):
        sliced = [p.name for p in gpu if p.sharing == "time-slicing"]
        offers = {p.name: sorted(p.offers) for p in gpu}
        if labels.GPU_RESOURCE in asked and sliced:
            problems.append(f"it asks for whole GPUs ({labels.GPU_RESOURCE}) on the time-sliced pool(s) {sliced}, "
                            f"which offer {labels.GPU_SHARED_RESOURCE}: 1 per replica; pools it selects offer {offers}")
        else:
            problems.append(f"it asks for {sorted(asked)}, which no pool it selects offers ({offers})")
    return problems


def notebook_profile_problems(values: dict[str, Any], pools: list[Pool]) -> list[tuple[str, str]]:
    """(profile, problem) for JupyterHub profiles (z2jh `singleuser.profileList`) that ask for GPUs."""
    found = []
    for profile in map(as_dict, as_list(as_dict(values.get("singleuser")).get("profileList"))):
        override = as_dict(profile.get("kubespawner_override"))
        limits = as_dict(override.get("extra_resource_limits"))
        if not (gpu_resources(limits) | gpu_resources(override.get("extra_resource_guarantees"))):
            continue
        affinity = as_list(override.get("node_affinity_required"))
        spec = {"containers": [{"name": "notebook", "resources": {
                    "limits": limits, "requests": as_dict(override.get("extra_resource_guarantees"))}}],
                "tolerations": override.get("tolerations"), "nodeSelector": override.get("node_selector"),
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": affinity}}} if affinity else None}
        name = profile.get("slug") or profile.get("display_name")
        found += [(name, problem) for problem in pod_gpu_problems(spec, pools)]
    return found


def gpu_workload_problems(resources: list[tuple[str, dict[str, Any]]]) -> list[str]:
    pools = declared_pools(resources)
    problems = []
    for typ, props in resources:
        if typ == HELM_RELEASE:
            problems += [f"The JupyterHub profile '{profile}' asks for a GPU but {problem}."
                         for profile, problem in notebook_profile_problems(as_dict(props.get("values")), pools)]
            continue
        for t in pod_templates(typ, props):
            name = f"{t.namespace}/{as_dict(props.get('metadata')).get('name')}"
            problems += [f"{t.kind} '{name}' (pod template at {t.where}) asks for a GPU but {problem}."
                         for problem in pod_gpu_problems(t.spec, pools)]
    return problems


@stack_policy(
    "gpu-workload-requires-limit-toleration-and-pool",
    "Every pod template (any kind) or notebook profile asking for nvidia.com/gpu, a time-sliced replica or a MIG "
    "slice sets requests equal to limits, tolerates the GPU taint, and selects only GPU pools the plan declares that "
    "offer that resource (no whole GPUs on a time-sliced pool, no CPU pool).",
    remediation="Put the GPU count in resources.limits (requests, if set, equal), add the toleration {key: "
                "nvidia.com/gpu, operator: Exists, effect: NoSchedule}, and select the pool by "
                f"{labels.NODE_POOL} or karpenter.sh/nodepool: ask a time-sliced pool for "
                f"{labels.GPU_SHARED_RESOURCE}: 1, a MIG pool for its nvidia.com/mig-<profile>.",
)
def gpu_workload_requires_limits_toleration_and_pool(resources, config):
    return gpu_workload_problems(resources)


# ---- quota vs. capacity (stack) ----------------------------------------------------------------------

def gpu_capacity(resources: list[tuple[str, dict[str, Any]]]) -> int:
    """The most physical GPUs the declared pools can supply: managed GPU node groups and Karpenter NodePools."""
    return sum(pool.max_gpus for pool in declared_gpu_pools(resources))


def quota_problems(resources: list[tuple[str, dict[str, Any]]]) -> list[str]:
    capacity = gpu_capacity(resources)
    problems = []
    for typ, props in resources:
        if typ != QUOTA:
            continue
        quota = as_dict(as_dict(props.get("spec")).get("hard")).get(f"requests.{labels.GPU_RESOURCE}")
        value = _quantity(quota)
        if value is not None and value > capacity:
            problems.append(f"The GPU quota of namespace '{as_dict(props.get('metadata')).get('namespace')}' "
                            f"({quota}) exceeds the {capacity} GPUs the declared GPU pools can supply.")
    return problems


def quota_coverage_problems(resources: list[tuple[str, dict[str, Any]]], team_label: str = labels.TEAM) -> list[str]:
    """Team namespaces whose unscoped ResourceQuotas leave a GPU resource the pools offer without a line."""
    offered = {r for p in declared_pools(resources) if p.gpu for r in p.offers}
    if not offered:
        return []
    covered: dict[str, set[str]] = {}
    for typ, props in resources:
        spec = as_dict(props.get("spec"))
        if typ == QUOTA and not spec.get("scopes") and not spec.get("scopeSelector"):
            ns = as_dict(props.get("metadata")).get("namespace")
            covered.setdefault(ns, set()).update(k.removeprefix("requests.").removeprefix("limits.")
                                                 for k in as_dict(spec.get("hard")))
    return [f"Team namespace '{ns}' has no ResourceQuota line for {sorted(offered - covered.get(ns, set()))} "
            f"(requests.<resource>); its pods could take every such GPU the pools offer."
            for ns in sorted(team_namespaces(resources, team_label)) if offered - covered.get(ns, set())]


@stack_policy(
    "gpu-team-quota-within-capacity",
    "No team's GPU quota exceeds what the GPU pools (node groups and NodePools) can supply.",
    remediation="Lower the team's gpuQuota, or raise a GPU pool's maximum (node group maxSize or NodePool GPU "
                "limit).",
)
def gpu_team_quota_within_capacity(resources, config):
    return quota_problems(resources)


@stack_policy(
    "team-quota-covers-gpus",
    "Every team namespace has an unscoped ResourceQuota with a requests.<resource> line for each GPU resource the "
    "declared pools offer (nvidia.com/gpu, nvidia.com/gpu.shared, nvidia.com/mig-*).",
    config={"teamLabel": {"type": "string", "default": labels.TEAM}},
    remediation="Declare the team through the tenancy component, which writes every GPU line from the team's "
                "gpuQuota; a hand-written quota lists requests.nvidia.com/gpu (and the shared and MIG resources the "
                "pools offer).",
)
def team_quota_covers_gpus(resources, config):
    return quota_coverage_problems(resources, config.get("teamLabel") or labels.TEAM)


# ---- quota vs. budget (stack) ------------------------------------------------------------------------

def budget_problems(resources: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Teams whose whole GPU quota, in use all month at the dearest GPU-hour of the pools, exceeds their budget."""
    estimate = cost.estimate(resources)
    hours = catalog.prices()["hoursPerMonth"]
    problems = []
    for typ, props in resources:
        if typ != "kubernetes:core/v1:Namespace":
            continue
        meta = props.get("metadata") or {}
        budget = (meta.get("annotations") or {}).get(labels.GPU_BUDGET_ANNOTATION)
        monthly = estimate.team_hourly.get(meta.get("name"), 0.0) * hours
        if budget is not None and monthly > float(budget):
            problems.append(f"The GPU quota of team '{meta.get('name')}' could cost ${monthly:,.0f} a month at full "
                            f"use, above its monthly GPU budget of ${float(budget):,.0f}.")
    return problems


@stack_policy(
    "cost-gpu-quota-within-budget",
    "A team's GPU quota, fully used for a month at the dearest GPU-hour of the pools, stays within the team's "
    "monthlyGpuBudgetUsd (teams without a budget are not checked).",
    level=EnforcementLevel.ADVISORY,
    remediation="Lower the team's gpuQuota, raise monthlyGpuBudgetUsd, or make the check mandatory for the stack in "
                "policies/config.<stack>.json to block such changes. `python -m preview cost` shows each team's "
                "ceiling.",
)
def cost_gpu_quota_within_budget(resources, config):
    return budget_problems(resources)


POLICIES = [gpu_workload_requires_limits_toleration_and_pool, gpu_team_quota_within_capacity, team_quota_covers_gpus,
            cost_gpu_quota_within_budget]

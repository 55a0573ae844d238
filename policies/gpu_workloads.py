"""GPU rules for workloads: whoever asks for a GPU sets it in limits, tolerates the GPU taint and targets a
GPU pool; and no team's GPU quota exceeds what the pools can supply."""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from components import catalog, labels
from components.planning import cost  # the cost command's own arithmetic and prices: one source
from components.planning.declared_pools import gpu_pools
from policies.workloads import containers, pod_specs

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
MIG_PREFIX = "nvidia.com/mig-"
# Node labels that pin a pod to GPU capacity the platform declares.
GPU_POOL_LABELS = (labels.GPU_TYPE, labels.NODE_POOL, "karpenter.sh/nodepool", "nvidia.com/gpu.product",
                   "node.kubernetes.io/instance-type")


def is_gpu_resource(name: str) -> bool:
    return name == labels.GPU_RESOURCE or name.startswith(MIG_PREFIX) or name == labels.GPU_RESOURCE + ".shared"


def gpu_resources(resources: dict[str, Any] | None) -> set[str]:
    return {k for k in (resources or {}) if is_gpu_resource(k)}


def tolerates_gpu_taint(tolerations: list[dict[str, Any]] | None) -> bool:
    taint = labels.GPU_TAINT
    for t in tolerations or []:
        key_ok = t.get("key") == taint["key"] or (t.get("key") in (None, "") and t.get("operator") == "Exists")
        value_ok = t.get("operator") == "Exists" or t.get("value") == taint["value"]
        effect_ok = t.get("effect") in (None, "", taint["effect"])
        if key_ok and value_ok and effect_ok:
            return True
    return False


def targets_gpu_pool(node_selector: dict[str, str] | None, affinity: dict[str, Any] | None) -> bool:
    if any(k in GPU_POOL_LABELS for k in (node_selector or {})):
        return True
    required = (((affinity or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or []
    return bool(terms) and all(
        any(e.get("key") in GPU_POOL_LABELS for e in term.get("matchExpressions") or []) for term in terms)


def pod_gpu_problems(spec: dict[str, Any]) -> list[str]:
    """What a pod spec asking for GPUs gets wrong (empty when it asks for none, or gets everything right)."""
    problems = []
    asks = False
    for c in containers(spec):
        res = c.get("resources") or {}
        requested = gpu_resources(res.get("requests")) | gpu_resources(res.get("limits"))
        if not requested:
            continue
        asks = True
        missing = requested - gpu_resources(res.get("limits"))
        if missing:
            problems.append(f"container '{c.get('name')}' requests {sorted(missing)} without setting it in limits")
    if asks and not tolerates_gpu_taint(spec.get("tolerations")):
        problems.append(f"it does not tolerate the GPU taint {labels.GPU_TAINT['key']}={labels.GPU_TAINT['value']}"
                        f":{labels.GPU_TAINT['effect']}")
    if asks and not targets_gpu_pool(spec.get("nodeSelector"), spec.get("affinity")):
        problems.append(f"it does not target a GPU pool (nodeSelector or required node affinity on one of "
                        f"{', '.join(GPU_POOL_LABELS)})")
    return problems


def notebook_profile_problems(values: dict[str, Any]) -> list[tuple[str, str]]:
    """(profile, problem) for JupyterHub profiles (z2jh `singleuser.profileList`) that ask for GPUs."""
    found = []
    for profile in ((values.get("singleuser") or {}).get("profileList") or []):
        override = profile.get("kubespawner_override") or {}
        limits = gpu_resources(override.get("extra_resource_limits"))
        guarantees = gpu_resources(override.get("extra_resource_guarantees"))
        if not (limits | guarantees):
            continue
        name = profile.get("slug") or profile.get("display_name")
        if guarantees - limits:
            found.append((name, f"requests {sorted(guarantees - limits)} without setting it in extra_resource_limits"))
        if not tolerates_gpu_taint(override.get("tolerations")):
            found.append((name, "does not tolerate the GPU taint"))
        affinity = override.get("node_affinity_required")
        selector_ok = targets_gpu_pool(override.get("node_selector"), None) or (
            bool(affinity) and targets_gpu_pool(None, {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": affinity}}}))
        if not selector_ok:
            found.append((name, "does not target a GPU pool"))
    return found


def _validate_gpu_workload(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type == HELM_RELEASE:
        for profile, problem in notebook_profile_problems(args.props.get("values") or {}):
            report_violation(f"The JupyterHub profile '{profile}' asks for a GPU but {problem}.")
        return
    for where, spec in pod_specs(args.resource_type, args.props):
        for problem in pod_gpu_problems(spec):
            report_violation(f"The pod template at {where} asks for a GPU but {problem}.")


gpu_workload_requires_limits_toleration_and_pool = ResourceValidationPolicy(
    name="gpu-workload-requires-limit-toleration-and-pool",
    description="Workloads that request nvidia.com/gpu or a MIG resource set it in limits, tolerate the GPU "
                "taint and target a GPU pool.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_validate_gpu_workload,
    remediation_steps="Put the GPU count in resources.limits (Kubernetes requires extended resources there), "
                      "add the toleration {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}, and "
                      f"select the pool with a nodeSelector on {labels.GPU_TYPE} or {labels.NODE_POOL}.",
)


# ---- quota vs. capacity (stack) ----------------------------------------------------------------------

def gpu_capacity(resources: list[tuple[str, dict[str, Any]]]) -> int:
    """The most physical GPUs the declared pools can supply: managed GPU node groups and Karpenter NodePools."""
    return sum(pool.max_gpus for pool in gpu_pools(resources))


def quota_problems(resources: list[tuple[str, dict[str, Any]]]) -> list[str]:
    capacity = gpu_capacity(resources)
    problems = []
    for typ, props in resources:
        if typ != "kubernetes:core/v1:ResourceQuota":
            continue
        hard = (props.get("spec") or {}).get("hard") or {}
        quota = hard.get(f"requests.{labels.GPU_RESOURCE}")
        if quota is not None and int(quota) > capacity:
            meta = props.get("metadata") or {}
            problems.append(f"The GPU quota of namespace '{meta.get('namespace')}' ({quota}) exceeds the "
                            f"{capacity} GPUs the declared GPU pools can supply.")
    return problems


def _validate_quota(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for problem in quota_problems([(r.resource_type, r.props) for r in args.resources]):
        report_violation(problem)


gpu_team_quota_within_capacity = StackValidationPolicy(
    name="gpu-team-quota-within-capacity",
    description="No team's GPU quota exceeds what the GPU pools (node groups and NodePools) can supply.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_validate_quota,
    remediation_steps="Lower the team's gpuQuota, or raise a GPU pool's maximum (node group maxSize or "
                      "NodePool GPU limit).",
)


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


def _validate_budget(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for problem in budget_problems([(r.resource_type, r.props) for r in args.resources]):
        report_violation(problem)


cost_gpu_quota_within_budget = StackValidationPolicy(
    name="cost-gpu-quota-within-budget",
    description="A team's GPU quota, fully used for a month at the dearest GPU-hour of the pools, stays within "
                "the team's monthlyGpuBudgetUsd (teams without a budget are not checked).",
    enforcement_level=EnforcementLevel.ADVISORY,
    validate=_validate_budget,
    remediation_steps="Lower the team's gpuQuota, raise monthlyGpuBudgetUsd, or make the check mandatory for the "
                      "stack in policies/config.<stack>.json to block such changes. `python -m preview cost` shows "
                      "each team's ceiling.",
)

POLICIES = [gpu_workload_requires_limits_toleration_and_pool, gpu_team_quota_within_capacity,
            cost_gpu_quota_within_budget]

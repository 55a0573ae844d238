"""What a stack config implies for capacity: the pools workloads can land on, the workloads the platform offers
(notebook profiles, models, training job defaults), the teams' Kueue queues, and which offered workload would
be stranded (fits no pool, or no team quota could admit it).

The workloads are built with the components' own pure builders (the z2jh profile entry, the InferenceService, the
training pod template), so the config check judges exactly what the program renders; the judgement itself is
components/placement.py, which the stack policy (policies/placement.py) applies to the rendered plan.
"""

from __future__ import annotations

from typing import Any

from components import catalog, labels, placement
from components.config.problems import Problem
from components.kueue import Flavor, TeamQueue, borrowing_limit
from components.planning import gpu_supply, notebook_profiles, prices

EKS_CAPACITY_TYPE = "eks.amazonaws.com/capacityType"


def autoscaled(cfg: Any) -> bool:
    """Whether the stack installs the cluster-autoscaler for its GPU node groups (`cluster.autoscaler.enabled`)."""
    return bool(cfg.cluster.gpu_node_groups) and cfg.cluster.autoscaler.enabled


def node_group_labels(group: Any) -> dict[str, str]:
    """Labels a GPU node group's nodes carry (EKS adds the node group and capacity type ones)."""
    from components.cluster import gpu_node_labels   # the component's own labels (one source)
    return {**gpu_node_labels(group), labels.EKS_NODEGROUP: f"gpu-{group.name}", EKS_CAPACITY_TYPE: group.capacity_type}


def config_pools(cfg: Any) -> list[placement.Pool]:
    """Every pool team workloads can land on: GPU node groups, GPU NodePools and CPU NodePools."""
    scaled, efa = autoscaled(cfg), cfg.gpu.efa
    taint = (placement.Taint(labels.GPU_TAINT["key"], labels.GPU_TAINT["value"], labels.GPU_TAINT["effect"]),)
    pools = [placement.Pool(
        g.name, "node group", {k: (v,) for k, v in node_group_labels(g).items()}, taint, tuple(g.instance_types),
        {labels.GPU_RESOURCE: 1}, {}, g.max_size, scaled, g.min_size, efa)
        for g in cfg.cluster.gpu_node_groups]
    for p in cfg.gpu.node_pools:
        node_labels = {labels.NODE_POOL: (p.name,), labels.GPU_TYPE: (p.gpu_type,), labels.GPU_SHARING: (p.sharing.mode,),
                       labels.KARPENTER_NODEPOOL: (p.name,), labels.CAPACITY_TYPE: tuple(p.capacity_types)}
        pools.append(placement.Pool(p.name, "NodePool", node_labels, taint, tuple(p.instance_types),
                                    p.gpu_resources(cfg.gpu.mig_strategy),
                                    {k: float(v) for k, v in p.limits(cfg.gpu.mig_strategy).items()}, None, True,
                                    0, efa))
    for p in cfg.karpenter.cpu_node_pools:
        vcpu, memory = catalog.largest_cpu_instance(tuple(p.instance_categories))
        pools.append(placement.Pool(
            p.name, "NodePool", {labels.NODE_POOL: (p.name,), labels.KARPENTER_NODEPOOL: (p.name,),
                                 labels.CAPACITY_TYPE: tuple(p.capacity_types)}, (), (), {},
            {"cpu": float(p.cpu_limit), "memory": float(p.memory_limit_gib) * placement.GIB}, None, True,
            max_cpu=min(vcpu, p.cpu_limit), max_memory_gib=min(memory, p.memory_limit_gib)))
    return pools


# ---- training: flavors and queues ------------------------------------------------------------------------


def training_flavors(cfg: Any) -> list[Flavor]:
    """The GPU pools training jobs use, as Kueue ResourceFlavors: the default (spot) pool first, then the named
    on-demand fallback. Each flavor's node labels say the pool and, where the pool has one, its capacity type."""
    default = gpu_supply.training_pool(cfg)
    pools = [default] if default else []
    fallback = gpu_supply.fallback_pool(cfg)
    pools += [fallback] if fallback is not None and fallback not in pools else []
    flavors = []
    for p in pools:
        node_labels = {labels.NODE_POOL: p.name}
        if len(p.capacity_types) == 1:
            key = labels.CAPACITY_TYPE if p.karpenter else EKS_CAPACITY_TYPE
            value = p.capacity_types[0] if p.karpenter else p.capacity_types[0].upper().replace("-", "_")
            node_labels[key] = value
        flavors.append(Flavor(p.name, node_labels))
    return flavors


def team_queues(cfg: Any) -> list[TeamQueue]:
    """Per team: nominal GPUs = `gpuQuota`, borrowing up to `training.borrowingLimitPercent` of it (default 100),
    never beyond what the GPU pools supply nor what the team's GPU budget pays for."""
    # Kueue itself never lends more than the other queues leave unused, so the limit need not depend on the other
    # teams: adding a team changes no other team's queue or namespace quota.
    percent = cfg.training.borrowing_limit_percent
    capacity = gpu_supply.gpu_capacity(cfg)
    queues = []
    for t in cfg.teams:
        borrow = borrowing_limit(t.gpu_quota, max(0, capacity - t.gpu_quota), percent)
        ceiling = budget_gpu_ceiling(cfg, t.monthly_gpu_budget_usd)
        if ceiling is not None:
            borrow = min(borrow, max(0, ceiling - t.gpu_quota))
        queues.append(TeamQueue(t.name, t.name, t.gpu_quota, borrow, t.cpu_quota, t.memory_quota_gib))
    return queues


def budget_gpu_ceiling(cfg: Any, monthly_usd: float | None) -> int | None:
    """GPUs a team can hold all month within its GPU budget at the dearest GPU-hour of the stack's pools (the
    arithmetic of `preview cost` and the cost-gpu-quota-within-budget policy); None without a budget."""
    if monthly_usd is None:
        return None
    top = prices.gpu_hour_ceiling(gpu_supply.gpu_pools(cfg))
    return None if top <= 0 else int(monthly_usd / (top * catalog.prices()["hoursPerMonth"]))


def namespace_gpu_quota(cfg: Any, team: Any) -> dict[str, int]:
    """The team namespace's ResourceQuota lines for GPU resources: the team's quota (team_gpu_quota), with whole
    GPUs raised to what its queue may hold when borrowing, so Kueue-admitted borrowed GPUs are not refused by the
    namespace quota (which keeps capping notebooks and inference, outside the queue)."""
    quota = dict(gpu_supply.team_gpu_quota(cfg, team))
    if cfg.training.enabled and training_flavors(cfg):
        queue = next(q for q in team_queues(cfg) if q.team == team.name)
        quota[labels.GPU_RESOURCE] = queue.gpus + queue.gpu_borrowing_limit
    return quota


def queue_ceiling(queue: TeamQueue) -> dict[str, float]:
    """The most a team's queue can ever hold at once (nominal + borrowing limit): a job needing more is never
    admitted. CPU and memory borrow without limit (the namespace ResourceQuota caps them)."""
    return {labels.GPU_RESOURCE: float(queue.gpus + queue.gpu_borrowing_limit)}


# ---- the workloads the platform offers -------------------------------------------------------------------


def _team_access(name: str) -> Any:
    from components.endpoints import TeamAccess
    return TeamAccess(name=name, namespace=name, notebook_service_account="notebook",
                      training_service_account="training", serving_service_account="serving", namespace_resource=None)


def offered_workloads(cfg: Any) -> list[tuple[placement.Workload, str | None]]:
    """(workload named by its config key path, team) for every notebook profile a team may start, every model and
    every team's training job defaults."""
    from components.endpoints import PRIORITY_CLASSES
    found: list[tuple[placement.Workload, str | None]] = []
    if cfg.notebooks.enabled:
        from components.notebooks import profile_entry
        profiles = notebook_profiles.notebook_profiles(cfg)
        cpu_pools = [p.name for p in cfg.karpenter.cpu_node_pools]
        for i, team in enumerate(cfg.teams):
            for j, name in enumerate(team.notebook_profiles):
                if name in profiles:
                    entry = profile_entry(team.name, profiles[name], cfg.notebooks, cpu_pools,
                                          PRIORITY_CLASSES.notebook)
                    found.append((placement.kubespawner_workload(f"teams[{i}].notebookProfiles[{j}]",
                                                                 entry["kubespawner_override"]), team.name))
    from components.serving import inference_service
    for i, team in enumerate(cfg.teams):
        for j, model in enumerate(team.models):
            spec = inference_service(model, _team_access(team.name), cfg.is_prod,
                                     PRIORITY_CLASSES.inference)["spec"]["predictor"]
            pod = {**spec, "containers": [spec["model"]]}
            found.append((placement.pod_workload(f"teams[{i}].models[{j}]", pod), team.name))
    pool = gpu_supply.training_pool(cfg) if cfg.training.enabled else None
    if pool is not None:
        from components.training_jobs import job_pod_template
        template = job_pod_template(_team_access("defaults"), pool, PRIORITY_CLASSES.training, "image:1", ["run"])
        found.append((placement.pod_workload("training.pool", template["spec"]), None))
    return found


def stranded_problems(cfg: Any) -> list[Problem]:
    """Config rule: every offered workload fits some declared pool (reported at the workload's key path)."""
    pools = config_pools(cfg)
    found = []
    for workload, _team in offered_workloads(cfg):
        reasons = placement.placement_problems(workload, pools)
        if reasons:
            hint = "" if autoscaled(cfg) or not any("no cluster-autoscaler" in r for r in reasons) else \
                " (set cluster.autoscaler.enabled: true, or a minSize above 0)"
            found.append(Problem(workload.name, "would never be scheduled: " + "; ".join(reasons) + hint))
    return found

"""GPU capacity rules: GPU node groups and GPU NodePools are tainted, limited and scale to zero; GPU sharing
(time-slicing replicas, MIG layouts) stays within the hardware catalog (components/data/, via catalog.py).

Props are camelCase wire-form dicts; any value may be unknown during a real preview, so helpers skip what they
cannot read. Workload rules (requests, tolerations, quotas) are in policies/gpu_workloads.py.
"""

from __future__ import annotations

import re
from typing import Any

from components import catalog, labels
from components.planning.declared_pools import (
    _config_documents,
    _template,
    is_gpu_node_group,
    is_gpu_node_pool,
    node_pool_gpu_type,
)
from policies.declare import resource_policy, stack_policy
from policies.workloads import as_dict, as_list

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
EKS_GPU_TAINT = {"key": labels.GPU_TAINT["key"], "effect": labels.EKS_TAINT_EFFECT[labels.GPU_TAINT["effect"]]}


def duration_seconds(value: Any) -> int | None:
    """Seconds of a Karpenter duration ("30s", "1h30m"); None for "Never" or what cannot be read."""
    if not isinstance(value, str) or not re.fullmatch(r"([0-9]+[smh])+", value):
        return None
    return sum(int(n) * {"s": 1, "m": 60, "h": 3600}[u] for n, u in re.findall(r"([0-9]+)([smh])", value))


# ---- what is a GPU pool: components/planning/declared_pools.py (one reading for policies, preview, cost) ----

# ---- taint ----------------------------------------------------------------------------------------------

def taint_problems(resource_type: str, props: dict) -> list[str]:
    if resource_type == NODE_GROUP and is_gpu_node_group(props):
        if not any(as_dict(t).get("key") == EKS_GPU_TAINT["key"] and as_dict(t).get("effect") == EKS_GPU_TAINT["effect"]
                   for t in as_list(props.get("taints"))):
            return [f"The GPU node group '{props.get('nodeGroupName')}' must carry the taint "
                    f"{labels.GPU_RESOURCE}:{EKS_GPU_TAINT['effect']}, so only pods that ask for GPUs land on it."]
    if resource_type == NODE_POOL and is_gpu_node_pool(props):
        taints = as_list(as_dict(_template(props).get("spec")).get("taints"))
        taint = labels.GPU_TAINT
        if not any(as_dict(t).get("key") == taint["key"] and as_dict(t).get("effect") == taint["effect"] for t in taints):
            return [f"The GPU NodePool '{as_dict(props.get('metadata')).get('name')}' must carry the taint "
                    f"{labels.GPU_RESOURCE}:{labels.GPU_TAINT['effect']}, so only pods that ask for GPUs land on it."]
    return []


# ---- limit ----------------------------------------------------------------------------------------------

def limit_problems(resource_type: str, props: dict, max_gpus: int) -> list[str]:
    if resource_type == NODE_GROUP and is_gpu_node_group(props):
        size = as_dict(props.get("scalingConfig")).get("maxSize")
        per_node = catalog.max_gpus_per_instance(as_list(props.get("instanceTypes")))
        if isinstance(size, (int, float)) and per_node and size * per_node > max_gpus:
            return [f"The GPU node group '{props.get('nodeGroupName')}' may grow to {int(size) * per_node} GPUs; "
                    f"at most {max_gpus} are allowed per pool."]
    if resource_type == NODE_POOL and is_gpu_node_pool(props):
        name = as_dict(props.get("metadata")).get("name")
        limit = as_dict(as_dict(props.get("spec")).get("limits")).get(labels.GPU_RESOURCE)
        if limit is None:
            return [f"The GPU NodePool '{name}' must set a limit on {labels.GPU_RESOURCE}."]
        try:
            gpus = int(str(limit))
        except ValueError:
            return []      # unknown during preview
        # Capacity is what the spec says (Karpenter enforces it); an annotation is only a note.
        if gpus < 1:
            return [f"The GPU NodePool '{name}' must allow at least one GPU (limit {limit})."]
        if gpus > max_gpus:
            return [f"The GPU NodePool '{name}' may grow to {gpus} GPUs; at most {max_gpus} are allowed per pool."]
    return []


# ---- scale to zero --------------------------------------------------------------------------------------

def scale_to_zero_problems(resource_type: str, props: dict, max_consolidate_after: int,
                           max_min_size: int) -> list[str]:
    if resource_type == NODE_GROUP and is_gpu_node_group(props):
        low = as_dict(props.get("scalingConfig")).get("minSize")
        if isinstance(low, (int, float)) and low > max_min_size:
            return [f"The GPU node group '{props.get('nodeGroupName')}' keeps {int(low)} nodes running "
                    f"(minSize); at most {max_min_size} may stay up with no GPU work."]
    if resource_type == NODE_POOL and is_gpu_node_pool(props):
        name = as_dict(props.get("metadata")).get("name")
        spec = as_dict(props.get("spec"))
        if spec.get("replicas") is not None:
            return [f"The GPU NodePool '{name}' is static (spec.replicas); a GPU pool must scale to zero."]
        disruption = as_dict(spec.get("disruption"))
        after = disruption.get("consolidateAfter")
        if after is None:
            return [f"The GPU NodePool '{name}' must set disruption.consolidateAfter so empty GPU nodes go away."]
        seconds = duration_seconds(after)
        if after == "Never" or (seconds is not None and seconds > max_consolidate_after):
            return [f"The GPU NodePool '{name}' keeps empty GPU nodes for {after}; consolidateAfter must be at "
                    f"most {max_consolidate_after}s."]
        if disruption.get("consolidationPolicy") not in (None, "WhenEmpty", "WhenEmptyOrUnderutilized"):
            return [f"The GPU NodePool '{name}' must consolidate with WhenEmpty or WhenEmptyOrUnderutilized."]
        blocking = [b for b in map(as_dict, as_list(disruption.get("budgets"))) if _blocks_empty(b)]
        if blocking:
            return [f"The GPU NodePool '{name}' has a disruption budget {blocking[0]} that lets no empty node be "
                    "removed; empty GPU nodes would run (and bill) forever."]
    return []


def _blocks_empty(budget: dict) -> bool:
    """Does this budget, whenever it is active, allow removing no node for the Empty reason?"""
    reasons = as_list(budget.get("reasons"))
    if reasons and "Empty" not in reasons:
        return False
    if str(budget.get("nodes", "10%")).strip() not in ("0", "0%"):
        return False
    # A scheduled budget blocks only during its window; one lasting a day or more from a daily or more frequent
    # schedule is always on.
    if budget.get("schedule") is None:
        return True
    seconds = duration_seconds(budget.get("duration"))
    return seconds is not None and seconds >= 24 * 3600


# ---- sharing (stack) ------------------------------------------------------------------------------------

def sharing_problems(resources: list[tuple[str, dict]], max_replicas: int | None = None) -> list[str]:
    """Each GPU NodePool's selected device-plugin and MIG configs exist and fit its GPU type's catalog limits."""
    plugin, mig = _config_documents(resources)
    problems = []
    for typ, props in resources:
        if typ != NODE_POOL or not is_gpu_node_pool(props):
            continue
        name = as_dict(props.get("metadata")).get("name")
        gpu = node_pool_gpu_type(props)
        node_labels = as_dict(as_dict(_template(props).get("metadata")).get("labels"))
        if gpu not in catalog.gpu_types():
            continue
        plugin_key = node_labels.get(labels.DEVICE_PLUGIN_CONFIG)
        if isinstance(plugin_key, str):
            if plugin_key not in plugin:
                problems.append(f"The GPU NodePool '{name}' selects device-plugin config '{plugin_key}', which no "
                                "ConfigMap declares.")
            else:
                low, high = catalog.time_slicing_replicas_range(gpu)
                high = min(high, max_replicas) if max_replicas else high
                sliced = as_dict(as_dict(plugin[plugin_key].get("sharing")).get("timeSlicing"))
                for res in as_list(sliced.get("resources")):
                    replicas = as_dict(res).get("replicas")
                    if isinstance(replicas, int) and not low <= replicas <= high:
                        problems.append(f"The GPU NodePool '{name}' time-slices each {gpu} GPU into {replicas} "
                                        f"replicas; it must be between {low} and {high}.")
        mig_key = node_labels.get(labels.MIG_CONFIG)
        if isinstance(mig_key, str):
            if mig_key not in mig:
                problems.append(f"The GPU NodePool '{name}' selects MIG config '{mig_key}', which no mig-parted "
                                "ConfigMap declares.")
                continue
            for entry in mig[mig_key]:
                entry = as_dict(entry)
                if not entry.get("mig-enabled"):
                    continue
                layout = {k: v for k, v in as_dict(entry.get("mig-devices")).items() if isinstance(v, int)}
                for problem in catalog.mig_layout_problems(gpu, layout):
                    problems.append(f"The GPU NodePool '{name}' applies MIG config '{mig_key}' on {gpu}: {problem}.")
    return problems


# ---- the policies -------------------------------------------------------------------------------------------

@resource_policy(
    "gpu-pool-requires-taint",
    "GPU node groups and GPU NodePools carry the nvidia.com/gpu NoSchedule taint.",
    types=(NODE_GROUP, NODE_POOL),
    remediation="Add the taint {key: nvidia.com/gpu, value: 'true', effect: NoSchedule} (NO_SCHEDULE on an EKS node "
                "group); components/karpenter.py and components/cluster.py set it for every GPU pool.",
)
def gpu_pool_requires_taint(r, config):
    return taint_problems(r.resource_type, r.props)


@resource_policy(
    "gpu-pool-requires-limit",
    "Every GPU NodePool sets a limit on nvidia.com/gpu, and no GPU pool may grow past maxGpusPerPool.",
    types=(NODE_GROUP, NODE_POOL),
    config={"maxGpusPerPool": {"type": "integer", "minimum": 1, "default": 256}},
    remediation="Set gpu.nodePools[].gpuLimit (NodePool spec.limits[\"nvidia.com/gpu\"]) or lower the node group's "
                "maxSize.",
)
def gpu_pool_requires_limit(r, config):
    return limit_problems(r.resource_type, r.props, int(config.get("maxGpusPerPool", 256)))


@resource_policy(
    "gpu-pool-scales-to-zero",
    "GPU pools scale to zero: node groups keep at most maxIdleNodes nodes; NodePools are not static and consolidate "
    "empty nodes within maxConsolidateAfterSeconds.",
    types=(NODE_GROUP, NODE_POOL),
    config={"maxConsolidateAfterSeconds": {"type": "integer", "minimum": 0, "default": 300},
            "maxIdleNodes": {"type": "integer", "minimum": 0, "default": 0}},
    remediation="Set the node group's minSize to 0, or the NodePool's consolidateAfter (gpu.nodePools[]."
                "consolidateAfter, default 30s) and consolidationPolicy WhenEmpty.",
)
def gpu_pool_scales_to_zero(r, config):
    return scale_to_zero_problems(r.resource_type, r.props, int(config.get("maxConsolidateAfterSeconds", 300)),
                                  int(config.get("maxIdleNodes", 0)))


@stack_policy(
    "gpu-sharing-within-catalog",
    "Each GPU NodePool's time-slicing replicas and MIG layout exist and fit its GPU type "
    "(components/data/time-slicing.yaml, mig-profiles.yaml); MIG only on GPUs that have it.",
    config={"maxTimeSlicingReplicas": {"type": ["integer", "null"], "minimum": 2, "default": None}},
    remediation="Change gpu.nodePools[].sharing: replicas within the GPU type's range, a MIG layout whose profiles "
                "exist on the GPU and fit its 7 compute and 8 memory slices, or mode 'none'.",
)
def gpu_sharing_within_catalog(resources, config):
    limit = config.get("maxTimeSlicingReplicas")
    return sharing_problems(resources, int(limit) if limit else None)


POLICIES = [gpu_pool_requires_taint, gpu_pool_requires_limit, gpu_pool_scales_to_zero, gpu_sharing_within_catalog]

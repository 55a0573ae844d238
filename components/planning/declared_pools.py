"""The GPU pools a plan declares, read from resource properties: one reading for the preview summary, the cost
estimate and the quota policy."""

from __future__ import annotations

from typing import Any, Iterable, NamedTuple

from components import catalog, labels

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"


class GpuPool(NamedTuple):
    kind: str            # "node group" | "NodePool"
    name: str
    gpu_type: str        # a gpuTypes key of components/data/gpus.yaml ("?" when not labelled)
    sharing: str         # "none" | "time-slicing" | "mig"
    max_gpus: int        # physical GPUs at the pool's maximum
    props: dict[str, Any]


def gpu_pools(resources: Iterable[tuple[str, dict[str, Any]]]) -> list[GpuPool]:
    """Every GPU managed node group (tainted nvidia.com/gpu) and GPU Karpenter NodePool (a nvidia.com/gpu limit).

    A NodePool's physical maximum is its `mlops.platform/max-gpus` annotation where set: when sharing keeps the
    resource name `nvidia.com/gpu`, the `nvidia.com/gpu` limit counts replicas or MIG devices, not GPUs.
    """
    pools = []
    for typ, props in resources:
        if typ == NODE_GROUP and any(t.get("key") == labels.GPU_RESOURCE for t in props.get("taints") or []):
            types = props.get("instanceTypes") or []
            per_node = catalog.max_gpus_per_instance(types)
            gpu_type = (props.get("labels") or {}).get(labels.GPU_TYPE) or next(
                (catalog.instance_types()[t].gpu_type for t in types if t in catalog.instance_types()), "?")
            pools.append(GpuPool("node group", props.get("nodeGroupName", "?"), gpu_type, "none",
                                 per_node * int((props.get("scalingConfig") or {}).get("maxSize") or 0), props))
        elif typ == NODE_POOL:
            spec = props.get("spec") or {}
            meta = props.get("metadata") or {}
            limit = (spec.get("limits") or {}).get(labels.GPU_RESOURCE)
            if limit is None:
                continue
            node_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            physical = (meta.get("annotations") or {}).get(labels.MAX_GPUS, limit)
            pools.append(GpuPool("NodePool", meta.get("name", "?"), node_labels.get(labels.GPU_TYPE, "?"),
                                 node_labels.get(labels.GPU_SHARING, "none"), int(physical), props))
    return pools

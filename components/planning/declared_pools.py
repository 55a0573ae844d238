"""The node pools a plan declares, read from their specs: one reading for the preview summary, the cost estimate
and the GPU policies.

A pool is GPU capacity when it can launch GPU instances (its instance types, families, categories or GPU
requirements; an NVIDIA AMI for a node group), whatever its labels are called. Its maximum GPUs come from its spec
(NodePool `spec.limits["nvidia.com/gpu"]`, node group `maxSize` x GPUs per instance), never from an annotation;
what GPU resources its nodes offer comes from the device-plugin and MIG configs its node labels select.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple

import yaml

from components import catalog, labels

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
CAPACITY_TYPE_KEY = "karpenter.sh/capacity-type"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
# Labels every node carries whatever its pool (a selector on them does not pick a pool).
NODE_WIDE = ("kubernetes.io/arch", "kubernetes.io/os", "topology.kubernetes.io/zone", "topology.kubernetes.io/region",
             "karpenter.sh/capacity-type", "eks.amazonaws.com/capacityType", "kubernetes.io/hostname")
# Labels GPU feature discovery puts on every GPU node.
GPU_DISCOVERY = ("nvidia.com/gpu.present", "nvidia.com/gpu.product", "nvidia.com/gpu.count", "nvidia.com/gpu.memory",
                 "nvidia.com/mig.strategy", "nvidia.com/gpu.family")


def as_dict(value: Any) -> dict:
    """`value` if it is a mapping, else {} (an unknown or missing prop during a real preview)."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


# ---- what is a GPU pool ---------------------------------------------------------------------------------

def _template(props: dict) -> dict:
    return as_dict(as_dict(as_dict(props.get("spec")).get("template")))


def node_pool_gpu_type(props: dict) -> str | None:
    """The GPU type a NodePool's nodes carry (its label, else its instance types), if it names one."""
    template = _template(props)
    label = as_dict(as_dict(template.get("metadata")).get("labels")).get(labels.GPU_TYPE)
    if isinstance(label, str):
        return label
    for req in as_list(as_dict(template.get("spec")).get("requirements")):
        if as_dict(req).get("key") == "node.kubernetes.io/instance-type":
            kinds = {catalog.instance_types()[t].gpu_type for t in as_list(req.get("values"))
                     if t in catalog.instance_types()}
            if len(kinds) == 1:
                return kinds.pop()
    return None


def _instance_facts(name: str) -> dict[str, str]:
    """The well-known labels a node of this catalog GPU instance type carries (what requirements select on)."""
    family, _, _ = name.partition(".")
    info = catalog.instance_types()[name]
    generation = "".join(ch for ch in family[1:] if ch.isdigit())
    return {"node.kubernetes.io/instance-type": name, "karpenter.k8s.aws/instance-family": family,
            "karpenter.k8s.aws/instance-category": family[:1], "karpenter.k8s.aws/instance-generation": generation,
            "karpenter.k8s.aws/instance-gpu-count": str(info.gpus),
            "karpenter.k8s.aws/instance-gpu-manufacturer": "nvidia",
            "karpenter.k8s.aws/instance-gpu-name": info.gpu_type.split("-")[0]}


def _requirement_allows(req: dict, facts: dict[str, str]) -> bool:
    key, op, values = req.get("key"), req.get("operator"), [str(v) for v in as_list(req.get("values"))]
    if key not in facts:
        return True                      # a requirement on something else (arch, zone, capacity type)
    value = facts[key]
    if op == "In":
        return value in values
    if op == "NotIn":
        return value not in values
    if op == "DoesNotExist":
        return False
    if op in ("Gt", "Lt") and values and value.isdigit() and values[0].lstrip("-").isdigit():
        return int(value) > int(values[0]) if op == "Gt" else int(value) < int(values[0])
    return True


def launchable_gpu_instances(props: dict) -> list[str]:
    """The catalog's GPU instance types a NodePool's requirements let Karpenter launch (no requirement: all)."""
    reqs = [as_dict(r) for r in as_list(as_dict(_template(props).get("spec")).get("requirements"))]
    return [name for name in catalog.instance_types()
            if all(_requirement_allows(r, _instance_facts(name)) for r in reqs)]


def is_gpu_node_pool(props: dict) -> bool:
    """Can this NodePool launch GPU capacity? A GPU limit, or requirements some GPU instance type satisfies."""
    spec = as_dict(props.get("spec"))
    return labels.GPU_RESOURCE in as_dict(spec.get("limits")) or bool(launchable_gpu_instances(props))


def is_gpu_node_group(props: dict) -> bool:
    types = as_list(props.get("instanceTypes"))
    return bool(set(types) & set(catalog.instance_types())) or "NVIDIA" in str(props.get("amiType") or "") or any(
        as_dict(t).get("key") == labels.GPU_RESOURCE for t in as_list(props.get("taints")))


# libyaml's parser where PyYAML has it (the same YAML 1.1 rules and safe constructors, ~7x faster): every ConfigMap
# value is parsed here, and the summary, cost and policy checks ask for the pools ~10 times per render.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _config_documents(resources: list[tuple[str, dict]]) -> tuple[dict[str, dict], dict[str, list]]:
    """Device-plugin configs by key, and mig-parted configs by name, from every ConfigMap declared."""
    plugin, mig = {}, {}
    for typ, props in resources:
        if typ != CONFIG_MAP:
            continue
        for key, text in as_dict(props.get("data")).items():
            if not isinstance(text, str):
                continue
            try:
                doc = yaml.load(text, Loader=_LOADER)
            except yaml.YAMLError:
                continue
            if not isinstance(doc, dict) or doc.get("version") != "v1":
                continue
            if "mig-configs" in doc:
                mig.update({k: as_list(v) for k, v in as_dict(doc["mig-configs"]).items()})
            elif set(doc) <= {"version", "flags", "sharing", "resources", "imex"}:
                plugin[key] = doc
    return plugin, mig



class DeclaredGpuPool(NamedTuple):
    """A GPU pool as the plan declares it (read from its spec), unlike planning.gpu_supply.GpuPool (from config)."""

    kind: str            # "node group" | "NodePool"
    name: str
    gpu_type: str        # a gpuTypes key of components/data/gpus.yaml ("?" when unknown)
    sharing: str         # "none" | "time-slicing" | "mig"
    max_gpus: int        # physical GPUs at the pool's maximum
    props: dict[str, Any]


@dataclass
class Pool:
    """Any node pool of the plan: what its nodes are labelled with and, for GPU pools, what they offer."""

    kind: str
    name: str
    gpu: bool
    node_labels: dict[str, set[str]] = field(default_factory=dict)    # key -> values its nodes may carry
    offers: set[str] = field(default_factory=set)                     # GPU resource names
    sharing: str = "none"
    replicas: int = 1

    def may_carry(self, key: str, values: Iterable[str] | None = None) -> bool | None:
        """True/False when the pool's labels decide; None for a key it says nothing about."""
        if key not in self.node_labels:
            if key in NODE_WIDE or (self.gpu and key in GPU_DISCOVERY):
                return True if values is None else None
            return None
        return values is None or bool(self.node_labels[key] & set(values))


def _sharing(node_labels: dict[str, Any], plugin: dict[str, dict], mig: dict[str, list]) -> tuple[str, set[str], int]:
    """(sharing mode, GPU resources offered, time-slicing replicas) from the configs the node labels select."""
    plugin_doc = plugin.get(str(node_labels.get(labels.DEVICE_PLUGIN_CONFIG)), {})
    sliced = as_dict(as_dict(plugin_doc.get("sharing")).get("timeSlicing"))
    for res in as_list(sliced.get("resources")):
        if as_dict(res).get("name") == labels.GPU_RESOURCE:
            replicas = as_dict(res).get("replicas")
            name = labels.GPU_SHARED_RESOURCE if sliced.get("renameByDefault") is True else labels.GPU_RESOURCE
            return "time-slicing", {name}, replicas if isinstance(replicas, int) and replicas > 0 else 1
    profiles = {f"{labels.MIG_RESOURCE_PREFIX}{p}" for entry in mig.get(str(node_labels.get(labels.MIG_CONFIG)), [])
                if as_dict(entry).get("mig-enabled") for p in as_dict(as_dict(entry).get("mig-devices"))}
    if profiles:
        return "mig", profiles, 1
    return "none", {labels.GPU_RESOURCE}, 1


def declared_pools(resources: Iterable[tuple[str, dict[str, Any]]]) -> list[Pool]:
    """Every managed node group and Karpenter NodePool of the plan, GPU or not."""
    resources = list(resources)
    plugin, mig = _config_documents(resources)
    pools = []
    for typ, props in resources:
        if typ == NODE_GROUP:
            name = str(props.get("nodeGroupName") or "?")
            node_labels = {k: {str(v)} for k, v in as_dict(props.get("labels")).items()}
            node_labels[labels.EKS_NODEGROUP] = {name}
            node_labels[INSTANCE_TYPE] = {str(t) for t in as_list(props.get("instanceTypes"))}
            gpu = is_gpu_node_group(props)
            pools.append(Pool("node group", name, gpu, node_labels, {labels.GPU_RESOURCE} if gpu else set()))
        elif typ == NODE_POOL:
            name = str(as_dict(props.get("metadata")).get("name") or "?")
            template = _template(props)
            node_labels = {str(r.get("key")): {str(v) for v in as_list(r.get("values"))}
                           for r in map(as_dict, as_list(as_dict(template.get("spec")).get("requirements")))
                           if r.get("operator") == "In"}
            written = as_dict(as_dict(template.get("metadata")).get("labels"))
            node_labels.update({k: {str(v)} for k, v in written.items()})
            node_labels[labels.KARPENTER_NODEPOOL] = {name}
            gpu = is_gpu_node_pool(props)
            sharing, offers, replicas = _sharing(written, plugin, mig) if gpu else ("none", set(), 1)
            pools.append(Pool("NodePool", name, gpu, node_labels, offers, sharing, replicas))
    return pools


def declared_gpu_pools(resources: Iterable[tuple[str, dict[str, Any]]]) -> list[DeclaredGpuPool]:
    """Every GPU managed node group and GPU Karpenter NodePool, with its physical maximum from its spec."""
    resources = list(resources)
    by_name = {(p.kind, p.name): p for p in declared_pools(resources)}
    found = []
    for typ, props in resources:
        if typ == NODE_GROUP and is_gpu_node_group(props):
            types = as_list(props.get("instanceTypes"))
            gpu_type = as_dict(props.get("labels")).get(labels.GPU_TYPE) or next(
                (catalog.instance_types()[t].gpu_type for t in types if t in catalog.instance_types()), "?")
            size = as_dict(props.get("scalingConfig")).get("maxSize")
            found.append(DeclaredGpuPool("node group", str(props.get("nodeGroupName") or "?"), gpu_type, "none",
                                 catalog.max_gpus_per_instance(types) * (int(size) if isinstance(size, int) else 0),
                                 props))
        elif typ == NODE_POOL and is_gpu_node_pool(props):
            name = str(as_dict(props.get("metadata")).get("name") or "?")
            limit = as_dict(as_dict(props.get("spec")).get("limits")).get(labels.GPU_RESOURCE)
            pool = by_name[("NodePool", name)]
            physical = gpu_limit(limit)
            if physical is None:
                continue                    # no GPU limit: reported by gpu-pool-requires-limit
            if pool.sharing == "time-slicing" and labels.GPU_RESOURCE in pool.offers:
                physical //= pool.replicas  # the limit counts replicas when sharing keeps the resource name
            found.append(DeclaredGpuPool("NodePool", name, node_pool_gpu_type(props) or "?", pool.sharing, physical, props))
    return found


def gpu_limit(value: Any) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def node_pool_capacity_types(props: dict) -> list[str]:
    """The capacity types (`spot`, `on-demand`) a NodePool may launch; Karpenter's default is on-demand."""
    for req in as_list(as_dict(_template(props).get("spec")).get("requirements")):
        req = as_dict(req)
        if req.get("key") == CAPACITY_TYPE_KEY and req.get("operator") == "In":
            return [str(v) for v in as_list(req.get("values"))]
    return ["on-demand"]

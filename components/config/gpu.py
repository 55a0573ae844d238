"""`gpu`: GPU NodePools, GPU sharing through the NVIDIA GPU operator, and the GPU waste alerts' thresholds.

Hardware limits (MIG profiles, time-slicing replicas) come from components/data/ through components/catalog.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from components import catalog, labels
from components.config.nodepools import DisruptionBudgetConfig, NodePoolConfig
from components.config.problems import FieldError, Problem
from components.config.types import Duration, GpuInstanceType, Model

if TYPE_CHECKING:
    from components.config.platform import PlatformConfig

SharingMode = Literal["none", "time-slicing", "mig"]



class SharingConfig(Model):
    """How a pool's GPUs are shared: whole GPUs, time-sliced replicas, or MIG instances."""

    mode: SharingMode = Field("none", description=(
        "none (whole GPUs), time-slicing (replicas per GPU) or mig (MIG instances)."))
    replicas: Annotated[int, Field(ge=2)] | None = Field(None, description=(
        "time-slicing: pods per GPU (the range per GPU type is in components/data/time-slicing.yaml)."))
    rename_by_default: bool = Field(True, description=(
        "time-slicing: advertise replicas as nvidia.com/gpu.shared instead of nvidia.com/gpu."))
    fail_requests_greater_than_one: bool = Field(True, description="time-slicing: a pod gets one replica at most.")
    mig_layout: dict[str, Annotated[int, Field(ge=1)]] = Field({}, description=(
        "mig: MIG profile -> instances on every GPU, for example {1g.10gb: 7}."))



GPU_POOL_BUDGETS = [
    DisruptionBudgetConfig(nodes="100%", reasons=["Empty"]),        # empty GPU nodes go at once
    DisruptionBudgetConfig(nodes="1", reasons=["Drifted", "Underutilized"]),
]


class GpuNodePoolConfig(NodePoolConfig):
    """A Karpenter NodePool of one GPU type, tainted `nvidia.com/gpu`, scaling to zero."""

    instance_types: Annotated[list[GpuInstanceType], Field(min_length=1)] = Field(description=(
        "GPU instance types of the catalog (components/data/gpus.yaml), all of one GPU type."))
    gpu_limit: Annotated[int, Field(ge=1)] = Field(description=(
        "Physical GPUs the pool may hold at once (counts towards the GPU capacity teams' quotas must fit)."))
    cpu_limit: Annotated[int, Field(ge=1)] | None = Field(None, description=(
        "vCPU limit of the pool; default: the vCPUs that come with gpuLimit GPUs."))
    consolidation_policy: Literal["WhenEmpty", "WhenEmptyOrUnderutilized"] = Field("WhenEmpty", description=(
        "When Karpenter consolidates GPU nodes: WhenEmpty (default) or WhenEmptyOrUnderutilized."))
    consolidate_after: Duration = Field("30s", description=(
        "How long an empty GPU node stays before it goes, for example '30s'."))
    budgets: list[DisruptionBudgetConfig] = Field(GPU_POOL_BUDGETS, description=(
        "Disruption budgets; default: empty GPU nodes go at once, one node at a time otherwise."))
    disk_gib: Annotated[int, Field(alias="diskGiB", ge=100, le=16000)] = Field(200, description=(
        "Root volume of each GPU node, in GiB (CUDA images are large)."))
    sharing: SharingConfig = Field(SharingConfig(), description=(
        "How the pool's GPUs are shared: whole, time-sliced or MIG."))

    @model_validator(mode="after")
    def _one_gpu_type(self) -> GpuNodePoolConfig:
        kinds = {catalog.instance_types()[t].gpu_type for t in self.instance_types}
        if len(kinds) > 1:
            raise FieldError("instanceTypes", f"instanceTypes mix GPU types {sorted(kinds)}; a NodePool holds one GPU type so its "
                             "labels, sharing config and MIG layout fit every node")
        if len(set(self.instance_types)) != len(self.instance_types):
            raise FieldError("instanceTypes", "lists a type twice")
        return self

    @property
    def gpu_type(self) -> str:
        return catalog.instance_types()[self.instance_types[0]].gpu_type

    @property
    def gpus_per_node(self) -> list[int]:
        return sorted({catalog.instance_types()[t].gpus for t in self.instance_types})

    @property
    def default_cpu_limit(self) -> int:
        """vCPUs of gpuLimit GPUs' worth of the pool's most CPU-rich instance type (so it never binds first)."""
        table = catalog.instance_types()
        return max(-(-self.gpu_limit * table[t].vcpu // table[t].gpus) for t in self.instance_types)

    def gpu_resources(self, mig_strategy: str) -> dict[str, int]:
        """Extended resource -> units each physical GPU advertises on this pool's nodes (device plugin)."""
        s = self.sharing
        if s.mode == "time-slicing" and s.replicas:
            return {labels.GPU_SHARED_RESOURCE if s.rename_by_default else labels.GPU_RESOURCE: s.replicas}
        if s.mode == "mig" and s.mig_layout:
            if mig_strategy == "single":
                return {labels.GPU_RESOURCE: sum(s.mig_layout.values())}
            return {labels.MIG_RESOURCE_PREFIX + p: n for p, n in s.mig_layout.items()}
        return {labels.GPU_RESOURCE: 1}

    def limits(self, mig_strategy: str) -> dict[str, int]:
        """The NodePool's `limits`: vCPUs, physical GPUs (`nvidia.com/gpu`), and every shared resource at the
        GPU limit. Where sharing keeps the name `nvidia.com/gpu` (time-slicing without rename, MIG single), a
        node advertises one unit per replica or MIG device, so that limit counts those units."""
        limits = {"cpu": self.cpu_limit or self.default_cpu_limit, labels.GPU_RESOURCE: self.gpu_limit}
        limits.update({res: self.gpu_limit * units for res, units in self.gpu_resources(mig_strategy).items()})
        return limits


class GpuAlertsConfig(Model):
    """Thresholds of the waste alerts on DCGM exporter metrics (PrometheusRules)."""

    idle_utilization_percent: Annotated[int, Field(ge=1, le=100)] = Field(10, description=(
        "A GPU held by a pod and busy below this percentage ..."))
    idle_for: Duration = Field("30m", description="... for this long is idle (alert GpuAllocatedButIdle).")
    memory_used_percent: Annotated[int, Field(ge=1, le=100)] = Field(25, description=(
        "A pod never using more of its GPU's memory than this percentage ..."))
    rightsizing_for: Duration = Field("6h", description=(
        "... for this long fits a smaller GPU (alert GpuMemoryRightsizing)."))


class GpuConfig(Model):
    """GPU NodePools, GPU sharing and the GPU waste alerts."""

    node_pools: list[GpuNodePoolConfig] = Field([
        GpuNodePoolConfig(name="training", instance_types=["g5.xlarge", "g5.2xlarge"], capacity_types=["spot"],
                          gpu_limit=4),
        GpuNodePoolConfig(name="inference", instance_types=["g6.xlarge", "g6.2xlarge"],
                          capacity_types=["on-demand"], gpu_limit=2),
    ], description=(
        "Karpenter NodePools of GPU instances, one GPU type each, tainted nvidia.com/gpu, scaling to zero."))
    mig_strategy: Literal["single", "mixed"] = Field("mixed", description=(
        "The GPU operator's MIG strategy: mixed (resources per profile) or single (every MIG pool one profile per GPU)."))
    alerts: GpuAlertsConfig = Field(GpuAlertsConfig(), description="Thresholds of the GPU waste alerts.")
    efa: bool = Field(True, description="EFA (Elastic Fabric Adapter) on GPU pools whose every instance type supports "
                                        "it (components/data/gpus.yaml `efa`): the EFA device plugin, the node security "
                                        "group's self-referencing rules and `vpc.amazonaws.com/efa` in job templates.")


def problems(cfg: PlatformConfig) -> list[Problem]:
    """GPU and CPU NodePools: unique names, GPU limits that fit a node, sharing within the catalog's limits."""
    errors: list[Problem] = []
    seen: dict[str, str] = {f"gpu-{g.name}": "cluster.gpuNodeGroups" for g in cfg.cluster.gpu_node_groups}
    seen.update({g.name: "cluster.gpuNodeGroups" for g in cfg.cluster.gpu_node_groups})
    pools = [(f"gpu.nodePools[{i}]", p) for i, p in enumerate(cfg.gpu.node_pools)] + \
            [(f"karpenter.cpuNodePools[{i}]", p) for i, p in enumerate(cfg.karpenter.cpu_node_pools)]
    for path, pool in pools:
        if pool.name in seen:
            errors.append(Problem(f"{path}.name", f"must be unique; {seen[pool.name]} already uses this name "
                                                  f"(NodePools, node groups and the {labels.NODE_POOL} label share "
                                                  "one name space)", pool.name))
        seen.setdefault(pool.name, path)
    for i, pool in enumerate(cfg.gpu.node_pools):
        path, s = f"gpu.nodePools[{i}]", pool.sharing
        smallest = pool.gpus_per_node[0]
        if pool.gpu_limit < smallest:
            errors.append(Problem(f"{path}.gpuLimit", f"must be at least {smallest}: the pool's smallest instance type "
                                  f"carries {smallest} GPUs, so no node could ever start", pool.gpu_limit))
        family = pool.ami.family_name if pool.ami else (
            "Bottlerocket" if cfg.karpenter.ami_alias.startswith("bottlerocket@") else "AL2023")
        if family == "Bottlerocket" and s.mode != "none":
            errors.append(Problem(f"{path}.sharing.mode", "must be 'none' on Bottlerocket nodes: Bottlerocket runs "
                                                          "its own NVIDIA device plugin, which the GPU operator's "
                                                          "sharing configs do not reach; use an AL2023 AMI for shared "
                                                          "GPUs", s.mode))
        if s.mode != "time-slicing" and s.replicas is not None:
            errors.append(Problem(f"{path}.sharing.replicas", "only applies to mode 'time-slicing' (mode is "
                                                              f"'{s.mode}')",
                                  s.replicas))
        if s.mode != "mig" and s.mig_layout:
            errors.append(Problem(f"{path}.sharing.migLayout", f"only applies to mode 'mig' (mode is '{s.mode}')", None))
        if s.mode == "time-slicing":
            low, high = catalog.time_slicing_replicas_range(pool.gpu_type)
            if s.replicas is None:
                errors.append(Problem(f"{path}.sharing.replicas", f"is required with mode 'time-slicing' ({low} to {high} "
                                      f"for {pool.gpu_type} GPUs)", None))
            elif not low <= s.replicas <= high:
                errors.append(Problem(f"{path}.sharing.replicas", f"must be between {low} and {high} for {pool.gpu_type} "
                                      f"GPUs ({catalog.gpu_types()[pool.gpu_type].memory_gib} GiB, shared by every "
                                      "replica; see components/data/time-slicing.yaml)", s.replicas))
        if s.mode == "mig":
            if catalog.mig_model(pool.gpu_type) is None:
                errors.append(Problem(f"{path}.sharing.mode", catalog.mig_layout_problems(pool.gpu_type, {})[0], s.mode))
            elif not s.mig_layout:
                profiles = ", ".join(catalog.mig_model(pool.gpu_type).profiles)
                errors.append(Problem(f"{path}.sharing.migLayout", f"is required with mode 'mig': profile -> instances per "
                                      f"GPU, from {profiles}", None))
            else:
                for problem in catalog.mig_layout_problems(pool.gpu_type, s.mig_layout, cfg.gpu.mig_strategy):
                    errors.append(Problem(f"{path}.sharing.migLayout", f"impossible on {pool.gpu_type}: {problem}", None))
    return errors

"""Hardware facts (GPU models, instance types) loaded from `components/data/`.

Components and config validation ask this module; no GPU fact is hard-coded elsewhere.
"""

from __future__ import annotations

import datetime
import functools
from pathlib import Path
from typing import Iterable, NamedTuple

import yaml

DATA_DIR = Path(__file__).parent / "data"


class GpuType(NamedTuple):
    name: str
    product: str
    memory_gib: int
    mig_model: str | None
    compute_capability: str


class InstanceType(NamedTuple):
    name: str
    gpu_type: str
    gpus: int
    vcpu: int
    memory_gib: int
    efa_interfaces: int = 0          # network cards carrying an EFA interface; 0: the type has no EFA


@functools.cache
def _gpu_data() -> dict:
    return yaml.safe_load((DATA_DIR / "gpus.yaml").read_text())


@functools.cache
def gpu_types() -> dict[str, GpuType]:
    return {
        name: GpuType(name, g["product"], g["memoryGiB"], g["migModel"], g["computeCapability"])
        for name, g in _gpu_data()["gpuTypes"].items()
    }


@functools.cache
def instance_types() -> dict[str, InstanceType]:
    return {
        name: InstanceType(name, i["gpuType"], i["gpus"], i["vcpu"], i["memoryGiB"], i.get("efa", 0))
        for name, i in _gpu_data()["instanceTypes"].items()
    }


@functools.cache
def largest_cpu_instance(categories: tuple[str, ...]) -> tuple[int, int]:
    """(vCPUs, memory GiB) of the largest instance of these categories (components/data/cpu-instances.yaml)."""
    data = yaml.safe_load((DATA_DIR / "cpu-instances.yaml").read_text())["largestByCategory"]
    sizes = [data[c] for c in categories if c in data]
    return (max((s["vcpu"] for s in sizes), default=0), max((s["memoryGiB"] for s in sizes), default=0))


def efa_interfaces(instance_type_names: Iterable[str]) -> int:
    """EFA interfaces every one of these instance types carries (0 when any lacks EFA: a pool mixing them cannot
    promise `vpc.amazonaws.com/efa` to a job)."""
    table = instance_types()
    counts = [table[n].efa_interfaces if n in table else 0 for n in instance_type_names]
    return min(counts, default=0)


def max_gpus_per_instance(instance_type_names: list[str]) -> int:
    table = instance_types()
    return max((table[n].gpus for n in instance_type_names if n in table), default=0)


# ---------------------------------------------------------------------------------------------------
# FSx for Lustre rules (components/data/fsx.yaml, with the AWS documentation each figure comes from)


class FsxDeploymentType(NamedTuple):
    name: str
    persistent: bool
    first_capacities_gib: tuple[int, ...]   # the sizes below the first step, e.g. (1200,)
    capacity_step_gib: int                   # then every multiple of this, e.g. 2400
    throughput_tiers: tuple[int, ...]        # MBps/TiB; empty where the type has no setting
    default_throughput: int | None
    backups: bool
    s3_link: str                             # "importPath" or "dataRepositoryAssociation"
    lustre_version: str


@functools.cache
def fsx() -> dict:
    return yaml.safe_load((DATA_DIR / "fsx.yaml").read_text())


@functools.cache
def fsx_deployment_types() -> dict[str, FsxDeploymentType]:
    return {
        name: FsxDeploymentType(
            name, t["persistent"], tuple(t["capacityGiB"]["first"]), t["capacityGiB"]["step"],
            tuple(t["perUnitStorageThroughput"] or ()), t.get("defaultThroughput"), t["backups"], t["s3Link"],
            t["lustreVersion"])
        for name, t in fsx()["deploymentTypes"].items()
    }


def fsx_capacity_valid(deployment_type: str, size_gib: int) -> bool:
    t = fsx_deployment_types()[deployment_type]
    return size_gib in t.first_capacities_gib or (size_gib > 0 and size_gib % t.capacity_step_gib == 0)


def fsx_capacity_error(deployment_type: str, size_gib: int) -> str | None:
    """None if FSx accepts this storage capacity for the deployment type, else a message naming the nearest sizes."""
    if fsx_capacity_valid(deployment_type, size_gib):
        return None
    t = fsx_deployment_types()[deployment_type]
    valid = sorted({*t.first_capacities_gib, *range(t.capacity_step_gib, size_gib + 2 * t.capacity_step_gib,
                                                     t.capacity_step_gib)})
    below = [v for v in valid if v < size_gib][-1:]
    above = [v for v in valid if v > size_gib][:1]
    nearest = " or ".join(str(v) for v in below + above)
    first = ", ".join(str(v) for v in t.first_capacities_gib)
    return (f"FSx for Lustre {deployment_type} takes {first} GiB or a multiple of {t.capacity_step_gib} GiB; "
            f"use {nearest}")


# ---------------------------------------------------------------------------------------------------
# GPU sharing: MIG profiles (components/data/mig-profiles.yaml) and time-slicing limits (time-slicing.yaml).
# Config validation and the policy pack both judge layouts and replica counts with these functions.


class MigProfile(NamedTuple):
    name: str
    compute_slices: int
    memory_slices: int
    memory_gib: int
    max_instances: int
    media_extensions: bool


class MigModel(NamedTuple):
    name: str
    compute_slices: int
    memory_slices: int
    max_instances: int
    profiles: dict[str, MigProfile]


@functools.cache
def mig_models() -> dict[str, MigModel]:
    data = yaml.safe_load((DATA_DIR / "mig-profiles.yaml").read_text())["models"]
    return {
        name: MigModel(name, m["computeSlices"], m["memorySlices"], m["maxInstances"], {
            p: MigProfile(p, v["computeSlices"], v["memorySlices"], v["memoryGiB"], v["maxInstances"],
                          bool(v.get("mediaExtensions", False)))
            for p, v in m["profiles"].items()})
        for name, m in data.items()
    }


def mig_model(gpu_type: str) -> MigModel | None:
    """The MIG profile table of a GPU type (a gpuTypes key), or None when the GPU has no MIG."""
    gpu = gpu_types().get(gpu_type)
    return mig_models().get(gpu.mig_model) if gpu and gpu.mig_model else None


def mig_layout_problems(gpu_type: str, layout: dict[str, int], strategy: str = "mixed") -> list[str]:
    """Why a MIG layout (profile -> instances on each GPU) cannot be made on this GPU type; empty when it can."""
    gpu = gpu_types().get(gpu_type)
    model = mig_model(gpu_type)
    if model is None:
        capable = sorted(t for t in gpu_types() if mig_model(t))
        product = gpu.product if gpu else gpu_type
        return [f"{product} ({gpu_type}) does not support MIG; MIG needs one of {', '.join(capable)}"]
    if not layout:
        return ["a MIG layout needs at least one profile"]
    unknown = sorted(p for p in layout if p not in model.profiles)
    if unknown:
        return [f"{model.name} has no MIG profile {', '.join(unknown)}; its profiles are "
                f"{', '.join(model.profiles)}"]
    problems = []
    for name, count in layout.items():
        if count < 1:
            problems.append(f"{name}: count must be at least 1 (got {count})")
        elif count > model.profiles[name].max_instances:
            problems.append(f"{name}: {model.name} fits at most {model.profiles[name].max_instances} of it "
                            f"(got {count})")
    compute = sum(model.profiles[p].compute_slices * n for p, n in layout.items())
    memory = sum(model.profiles[p].memory_slices * n for p, n in layout.items())
    if compute > model.compute_slices:
        problems.append(f"uses {compute} compute slices; {model.name} has {model.compute_slices}")
    if memory > model.memory_slices:
        problems.append(f"uses {memory} memory slices; {model.name} has {model.memory_slices}")
    if sum(layout.values()) > model.max_instances:
        problems.append(f"makes {sum(layout.values())} GPU instances; {model.name} allows {model.max_instances}")
    if sum(n for p, n in layout.items() if model.profiles[p].media_extensions) > 1:
        problems.append("more than one '+me' instance; only one instance per GPU can carry the media extensions")
    if strategy == "single" and len(layout) > 1:
        problems.append(f"MIG strategy 'single' needs one profile per GPU (got {', '.join(layout)}); "
                        "use gpu.migStrategy 'mixed' or a single profile")
    return problems


@functools.cache
def _time_slicing() -> dict:
    return yaml.safe_load((DATA_DIR / "time-slicing.yaml").read_text())


def time_slicing_replicas_range(gpu_type: str) -> tuple[int, int]:
    """(fewest, most) time-slicing replicas per GPU of this type (most: see time-slicing.yaml)."""
    ts = _time_slicing()
    memory = gpu_types()[gpu_type].memory_gib
    return ts["minReplicas"], max(ts["minReplicas"], min(ts["maxReplicas"], memory // ts["minMemoryGiBPerReplica"]))


# ---------------------------------------------------------------------------------------------------
# Model serving (components/data/serving.yaml): runtime and per-replica capacity of each model framework


class ServingFramework(NamedTuple):
    name: str
    model_format: str
    runtime: str                        # a ClusterServingRuntime of the kserve-runtime-configs chart
    cpu: str
    memory_gib: int
    rps_per_replica: float              # at 100% of the CPU request, p99 <= reference_p99_ms
    gpu_rps_per_replica: float | None   # None: the runtime has no GPU path
    reference_p99_ms: int
    min_p99_ms: int


class ServingAutoscaling(NamedTuple):
    metric: str
    target_utilization_percent: int
    min_replicas_dev: int
    min_replicas_prod: int


@functools.cache
def _serving_data() -> dict:
    return yaml.safe_load((DATA_DIR / "serving.yaml").read_text())


@functools.cache
def serving_autoscaling() -> ServingAutoscaling:
    a = _serving_data()["autoscaling"]
    return ServingAutoscaling(a["metric"], a["targetUtilizationPercent"], a["minReplicas"]["dev"],
                              a["minReplicas"]["prod"])


@functools.cache
def serving_frameworks() -> dict[str, ServingFramework]:
    data = _serving_data()["frameworks"]
    return {
        name: ServingFramework(name, f["modelFormat"], f["runtime"], str(f["cpu"]), f["memoryGiB"],
                               float(f["rpsPerReplica"]), f.get("gpuRpsPerReplica"), f["referenceP99Ms"],
                               f["minP99Ms"])
        for name, f in data.items()
    }


# ---------------------------------------------------------------------------------------------------
# Prices (components/data/prices.yaml): one source of prices. The cost command (preview/cost.py) and the cost
# dashboards and GPU price recording rules (components/observability/) both price with these functions.

PRICES_FILE = DATA_DIR / "prices.yaml"


@functools.cache
def prices() -> dict:
    return yaml.safe_load(PRICES_FILE.read_text())


def instance_price(instance_type: str, spot: bool) -> float | None:
    """$/hour of one instance (on-demand list price, or the typical spot price), None when not in the price list."""
    entry = prices()["instances"].get(instance_type)
    if entry is None:
        return None
    return entry["spotTypical" if spot else "onDemand"]


def gpu_hour_price(type_names: Iterable[str], spot: bool) -> tuple[float | None, list[str]]:
    """The most expensive $/GPU-hour among instance types (an upper bound), and the types without a price."""
    best, missing = None, []
    for t in type_names:
        info = instance_types().get(t)
        price = instance_price(t, spot)
        if info is None or price is None:
            missing.append(t)
            continue
        per_gpu = price / info.gpus
        best = per_gpu if best is None else max(best, per_gpu)
    return best, missing


# ---------------------------------------------------------------------------------------------------
# Exporter metrics (components/data/metrics.yaml): what the installed exporters emit, each list with its source.


@functools.cache
def exporter_metrics() -> dict:
    return yaml.safe_load((DATA_DIR / "metrics.yaml").read_text())


def inference_latency_buckets_seconds() -> tuple[float, ...]:
    """The bucket bounds of Knative's queue-proxy request-duration histogram: a p99 computed from it is never above
    the largest one."""
    return tuple(float(b) for b in exporter_metrics()["exporters"]["knative-queue-proxy"]["latencyBucketsSeconds"])


@functools.cache
def s3_prefix_lists() -> dict[str, tuple[str, list[str]]]:
    """Region -> (prefix-list id, CIDRs) of S3's managed prefix list (components/data/s3-prefix-lists.yaml)."""
    data = yaml.safe_load((DATA_DIR / "s3-prefix-lists.yaml").read_text())
    return {region: (entry["id"], list(entry["cidrs"])) for region, entry in data.items()}


class KubernetesVersion(NamedTuple):
    version: str
    released: datetime.date
    end_of_standard_support: datetime.date
    end_of_extended_support: datetime.date


@functools.cache
def kubernetes_versions() -> dict[str, KubernetesVersion]:
    """EKS's Kubernetes minor versions and their support dates (components/data/kubernetes-versions.yaml)."""
    data = yaml.safe_load((DATA_DIR / "kubernetes-versions.yaml").read_text())
    return {v: KubernetesVersion(v, d["released"], d["endOfStandardSupport"], d["endOfExtendedSupport"])
            for v, d in data.items()}


VERSIONS_FILE = DATA_DIR / "versions.yaml"


@functools.cache
def versions() -> dict:
    """Every pinned version (charts, manifests, images, node images, Kubernetes): components/data/versions.yaml."""
    return yaml.safe_load(VERSIONS_FILE.read_text())


def chart(name: str) -> dict[str, str]:
    """A pinned Helm chart: `chart`, `version` and, for HTTP repositories, `repo`."""
    return dict(versions()["charts"][name])


def image(name: str) -> str:
    """A pinned container image reference."""
    return versions()["images"][name]

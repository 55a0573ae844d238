"""Hardware facts (GPU models, instance types) loaded from `components/data/`.

Components and config validation ask this module; no GPU fact is hard-coded elsewhere.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple

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
        name: InstanceType(name, i["gpuType"], i["gpus"], i["vcpu"], i["memoryGiB"])
        for name, i in _gpu_data()["instanceTypes"].items()
    }


def max_gpus_per_instance(instance_type_names: list[str]) -> int:
    table = instance_types()
    return max((table[n].gpus for n in instance_type_names if n in table), default=0)

"""Serving sizing: replicas and autoscaling of a model deployment from its peak traffic and latency target
(capacity figures per framework in components/data/serving.yaml)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

from components import catalog

if TYPE_CHECKING:
    from components.config.teams import ModelDeploymentConfig


class ModelSizing(NamedTuple):
    min_replicas: int
    max_replicas: int
    scale_metric: str
    scale_target: int                  # percent of the CPU request
    rps_per_replica: float             # capacity of one replica at 100% of its CPU request
    usable_rps_per_replica: float      # what the autoscaler lets one replica take before adding another


def model_sizing(model: ModelDeploymentConfig, is_prod: bool) -> ModelSizing:
    """The sizing rule (docs/serving-and-tracking.md): enough replicas at the CPU target for the peak traffic.

    usable rps per replica = capacity x target utilisation x min(1, latencyP99Ms / reference p99)
    maxReplicas = max(minReplicas, ceil(peakRps / usable rps per replica)); minReplicas 2 in prod, 1 in dev.
    """
    fw = catalog.serving_frameworks()[model.framework]
    scaling = catalog.serving_autoscaling()
    capacity = model.capacity_rps_per_replica or (fw.gpu_rps_per_replica if model.gpu else None) \
        or fw.rps_per_replica
    latency_factor = min(1.0, model.latency_p99_ms / fw.reference_p99_ms)
    usable = capacity * scaling.target_utilization_percent / 100 * latency_factor
    min_replicas = scaling.min_replicas_prod if is_prod else scaling.min_replicas_dev
    # round() first: 2000 / 40.000000001 must not become 51 replicas
    needed = math.ceil(round(model.peak_rps / usable, 6))
    return ModelSizing(min_replicas, max(min_replicas, needed), scaling.metric,
                       scaling.target_utilization_percent, capacity, usable)

"""`training`: the Kubeflow training operator and where teams' training jobs run (components/training.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from components import catalog
from components.config.problems import Problem
from components.config.types import DnsLabel, Model, PinnedImage
from components.images import registry_allowed
from components.planning import gpu_supply

if TYPE_CHECKING:
    from components.config.platform import PlatformConfig


class TrainingConfig(Model):
    """The Kubeflow training operator (PyTorchJob, TFJob, MPIJob) and where teams' training jobs run."""

    enabled: bool = Field(True, description="Install the Kubeflow training operator (PyTorchJob, TFJob, MPIJob).")
    pool: DnsLabel | None = Field(None, description=(
        "GPU pool for training jobs; default: the first spot pool of whole GPUs."))
    fallback_pool: DnsLabel | None = Field(None, description=(
        "An on-demand GPU pool of whole GPUs a job opts into with `nodeSelector: {mlops.platform/node-pool: <it>}` "
        "when spot capacity is short; never used unless a job names it (a second Kueue flavor of the team queue)."))
    borrowing_limit_percent: Annotated[int, Field(ge=0, le=1000, description=(
        "How many GPUs a team's Kueue queue may borrow from idle quota of the other teams, in percent of its own "
        "gpuQuota (also capped by the GPU supply and the team's monthly GPU budget)."))] = 100
    controller_replicas: Annotated[int, Field(ge=1, le=3)] = Field(1, description="Training operator replicas.")
    init_container_image: PinnedImage = Field(catalog.image("training-init"), description=(
        "Pinned image the operator injects as init container into team pods (must pass image admission)."))
    mpi_kubectl_delivery_image: PinnedImage = Field(catalog.image("mpi-kubectl-delivery"), description=(
        "Pinned kubectl-delivery image the operator puts into MPIJob launchers (must pass image admission)."))


def problems(cfg: PlatformConfig) -> list[Problem]:
    """A pool for the jobs; the images the operator injects pass image admission."""
    tr = cfg.training
    if not tr.enabled:
        return []
    errors: list[Problem] = []
    if gpu_supply.training_pool(cfg) is None:
        whole = ", ".join(p.name for p in gpu_supply.gpu_pools(cfg) if p.sharing == "none") or "none"
        if tr.pool is not None:
            errors.append(Problem("training.pool", f"names no GPU pool of whole GPUs; pools of whole GPUs: {whole}", tr.pool))
        else:
            errors.append(Problem("training.pool", f"is required: no GPU pool offers spot capacity of whole GPUs; name one "
                                  f"of: {whole}", None))
    pool = gpu_supply.training_pool(cfg)
    if pool is not None and len(set(pool.capacity_types)) > 1:
        errors.append(Problem("training.pool", f"pool '{pool.name}' mixes {' and '.join(pool.capacity_types)}: jobs "
                              "would silently run at on-demand prices when spot is short; make the training pool "
                              "spot-only and name an on-demand pool in training.fallbackPool for jobs that opt in",
                              pool.name))
    if tr.fallback_pool is not None:
        whole = {p.name: p for p in gpu_supply.gpu_pools(cfg) if p.sharing == "none"}
        fallback = whole.get(tr.fallback_pool)
        if fallback is None:
            errors.append(Problem("training.fallbackPool", f"names no GPU pool of whole GPUs; pools of whole GPUs: "
                                  f"{', '.join(whole) or 'none'}", tr.fallback_pool))
        elif tuple(fallback.capacity_types) != ("on-demand",):
            errors.append(Problem("training.fallbackPool", "must be an on-demand-only pool (capacityTypes "
                                  f"[on-demand]); '{fallback.name}' has {list(fallback.capacity_types)}",
                                  tr.fallback_pool))
        elif pool is not None and fallback.name == pool.name:
            errors.append(Problem("training.fallbackPool", "must differ from the training pool", tr.fallback_pool))
    allowed = list(cfg.supply_chain.allowed_registries)
    for key, image in (("initContainerImage", tr.init_container_image),
                       ("mpiKubectlDeliveryImage", tr.mpi_kubectl_delivery_image)):
        if not registry_allowed(image, allowed):
            errors.append(Problem(f"training.{key}", "is not from a registry in supplyChain.allowedRegistries; the operator "
                                  "puts it into team pods, which the image admission policy would refuse", image))
    return errors

"""What every Karpenter NodePool shares (GPU pools under `gpu.nodePools`, CPU pools under `karpenter`): capacity
types, disruption budgets, expiry, node image and disk."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from components.config.problems import FieldError
from components.config.types import DnsLabel, Duration, Model

# An EKS-optimized AMI selected by Karpenter alias, pinned to a release (never `latest`): Karpenter picks the
# NVIDIA (accelerated) variant of the release for GPU instance types.
AmiAlias = Annotated[str, Field(pattern=r"^(al2023|bottlerocket)@v[0-9][0-9.]*$")]
KarpenterCapacityType = Literal["spot", "on-demand"]



class DisruptionBudgetConfig(Model):
    """At most `nodes` (a count or a percentage) disrupted at once, for the given reasons (all when empty)."""

    nodes: Annotated[str, Field(pattern=r"^((100|[0-9]{1,2})%|[0-9]+)$")]
    reasons: list[Literal["Empty", "Underutilized", "Drifted"]] = []
    schedule: str | None = None        # cron, e.g. "0 9 * * mon-fri"; with `duration`
    duration: Annotated[str, Field(pattern=r"^((([0-9]+(h|m))|([0-9]+h[0-9]+m))(0s)?)$")] | None = None

    @model_validator(mode="after")
    def _schedule_with_duration(self) -> DisruptionBudgetConfig:
        if (self.schedule is None) != (self.duration is None):
            raise FieldError("schedule", "schedule and duration go together: set both (a window) or neither (always)")
        return self


class AmiConfig(Model):
    """The image of a pool's nodes: an EKS-optimized alias (driver preinstalled), or your own AMI by id."""

    alias: AmiAlias | None = None
    id: Annotated[str, Field(pattern=r"^ami-[0-9a-f]{8,17}$")] | None = None
    family: Literal["AL2023", "Bottlerocket"] | None = None   # with `id`: how Karpenter writes the user data
    nvidia_driver: Literal["preinstalled", "operator"] = "preinstalled"

    @model_validator(mode="after")
    def _one_source(self) -> AmiConfig:
        if (self.alias is None) == (self.id is None):
            raise FieldError("alias", "set either alias (e.g. 'al2023@v20260512') or id (your own AMI), not both")
        if self.id is not None and self.family is None:
            raise FieldError("family", "family is required with id: 'AL2023' or 'Bottlerocket'")
        if self.alias is not None and self.nvidia_driver != "preinstalled":
            raise FieldError("nvidiaDriver", "EKS-optimized AMIs ship the NVIDIA driver and toolkit; nvidiaDriver 'operator' is "
                             "only for your own AMI (id) without them")
        if self.nvidia_driver == "operator" and self.family == "Bottlerocket":
            raise FieldError("nvidiaDriver", "the GPU operator cannot install a driver on Bottlerocket; use an AL2023 AMI")
        return self

    @property
    def family_name(self) -> str:
        if self.alias is not None:
            return "Bottlerocket" if self.alias.startswith("bottlerocket@") else "AL2023"
        return self.family or "AL2023"



class NodePoolConfig(Model):
    """What GPU and CPU NodePools share: capacity types, disruption, expiry, node image and disk."""

    name: DnsLabel
    capacity_types: Annotated[list[KarpenterCapacityType], Field(min_length=1)] = ["on-demand"]
    consolidation_policy: Literal["WhenEmpty", "WhenEmptyOrUnderutilized"] = "WhenEmptyOrUnderutilized"
    consolidate_after: Duration = "1m"
    expire_after: Duration | Literal["Never"] = "720h"
    # How long a draining node waits for pods (including `karpenter.sh/do-not-disrupt` ones) before it is
    # terminated anyway; unset: such pods are waited for indefinitely.
    termination_grace_period: Duration | None = None
    budgets: list[DisruptionBudgetConfig] = [DisruptionBudgetConfig(nodes="10%")]
    disk_gib: Annotated[int, Field(alias="diskGiB", ge=20, le=16000)] = 50
    ami: AmiConfig | None = None       # default: karpenter.amiAlias

    @model_validator(mode="after")
    def _unique_capacity_types(self) -> NodePoolConfig:
        if len(set(self.capacity_types)) != len(self.capacity_types):
            raise FieldError("capacityTypes", "lists a type twice")
        return self

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

    nodes: Annotated[str, Field(pattern=r"^((100|[0-9]{1,2})%|[0-9]+)$")] = Field(description=(
        "At most this many nodes disrupted at once: a count or a percentage, for example '10%'."))
    reasons: list[Literal["Empty", "Underutilized", "Drifted"]] = Field([], description=(
        "Disruption reasons the budget applies to (Empty, Underutilized, Drifted); all when empty."))
    schedule: str | None = Field(None, description=(
        "Cron schedule of the window the budget applies in, for example '0 9 * * mon-fri'; with duration."))
    duration: Annotated[str, Field(pattern=r"^((([0-9]+(h|m))|([0-9]+h[0-9]+m))(0s)?)$")] | None = Field(None, description=(
        "Length of the scheduled window, for example '8h'; with schedule."))

    @model_validator(mode="after")
    def _schedule_with_duration(self) -> DisruptionBudgetConfig:
        if (self.schedule is None) != (self.duration is None):
            raise FieldError("schedule", "schedule and duration go together: set both (a window) or neither (always)")
        return self


class AmiConfig(Model):
    """The image of a pool's nodes: an EKS-optimized alias (driver preinstalled), or your own AMI by id."""

    alias: AmiAlias | None = Field(None, description=(
        "EKS-optimized AMI alias pinned to a release, for example 'al2023@v20260512' (never latest)."))
    id: Annotated[str, Field(pattern=r"^ami-[0-9a-f]{8,17}$")] | None = Field(None, description=(
        "Your own AMI by id, for example 'ami-0123456789abcdef0'; set family with it."))
    family: Literal["AL2023", "Bottlerocket"] | None = Field(None, description=(
        "With id: how Karpenter writes the user data (AL2023 or Bottlerocket)."))
    nvidia_driver: Literal["preinstalled", "operator"] = Field("preinstalled", description=(
        "preinstalled (EKS-optimized AMIs) or operator (the GPU operator installs driver and toolkit; own AL2023 AMIs "
        "only)."))

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

    name: DnsLabel = Field(description=(
        "NodePool name; nodes carry it as the node-pool label. Unique across NodePools and node groups."))
    capacity_types: Annotated[list[KarpenterCapacityType], Field(min_length=1)] = Field(["on-demand"], description=(
        "Karpenter capacity types: spot, on-demand or both."))
    consolidation_policy: Literal["WhenEmpty", "WhenEmptyOrUnderutilized"] = Field("WhenEmptyOrUnderutilized", description=(
        "When Karpenter consolidates nodes: WhenEmpty or WhenEmptyOrUnderutilized."))
    consolidate_after: Duration = Field("1m", description=(
        "How long a node must be consolidatable before Karpenter acts, for example '1m'."))
    expire_after: Duration | Literal["Never"] = Field("720h", description=(
        "Node lifetime before replacement, for example '720h', or 'Never'."))
    termination_grace_period: Duration | None = Field(None, description=(
        "How long a draining node waits for pods (including karpenter.sh/do-not-disrupt ones) before it is terminated "
        "anyway; unset: such pods are waited for indefinitely."))
    budgets: list[DisruptionBudgetConfig] = Field([DisruptionBudgetConfig(nodes="10%")], description=(
        "Disruption budgets: how many nodes Karpenter may disrupt at once, and when."))
    disk_gib: Annotated[int, Field(alias="diskGiB", ge=20, le=16000)] = Field(50, description=(
        "Root volume of each node, in GiB."))
    ami: AmiConfig | None = Field(None, description="The node image; default: karpenter.amiAlias.")

    @model_validator(mode="after")
    def _unique_capacity_types(self) -> NodePoolConfig:
        if len(set(self.capacity_types)) != len(self.capacity_types):
            raise FieldError("capacityTypes", "lists a type twice")
        return self

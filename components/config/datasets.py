"""`datasets`: training data in S3, served read-only through FSx for Lustre to the teams that may read it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from components import catalog
from components.config.problems import Problem, known
from components.config.types import DnsLabel, Model, S3Uri

if TYPE_CHECKING:
    from components.config.platform import PlatformConfig


FsxDeploymentType = Literal["SCRATCH_2", "PERSISTENT_2"]


class DatasetConfig(Model):
    """A training data set in S3, served read-only from its own FSx for Lustre file system to the teams that may
    read it. A data scientist writes `name`, `location` and `sizeGiB`; the rest has defaults.

    FSx's own rules (storage steps, throughput tiers, backups) come from components/data/fsx.yaml, with sources.
    """

    name: DnsLabel = Field(description=(
        "Dataset name; the PersistentVolumeClaim in each reading team's namespace is `dataset-<name>`."))
    location: S3Uri = Field(description="s3://bucket/prefix the file system shows at its root.")
    deployment_type: FsxDeploymentType = Field("SCRATCH_2", description=(
        "SCRATCH_2: a cheap cache of S3; PERSISTENT_2: replicated, backed up."))
    per_unit_storage_throughput: int | None = Field(None, description=(
        "MBps per TiB, PERSISTENT_2 only; default in components/data/fsx.yaml."))
    size_gib: Annotated[int, Field(alias="sizeGiB", gt=0)] = Field(description=(
        "File system capacity in GiB, in the steps FSx allows; must hold the data (LZ4-compressed)."))
    teams: list[DnsLabel] = Field([], description=(
        "Teams that may read it (a team may also name it in teams[].datasets)."))
    auto_import: bool = Field(True, description="New, changed and deleted S3 objects appear on the file system.")
    subnet_index: Annotated[int, Field(ge=0)] = Field(0, description=(
        "Which private subnet (AZ) the file system lives in: put it where the GPUs run."))
    backup_retention_days: Annotated[int, Field(ge=0, le=90)] | None = Field(None, description=(
        "Days of daily backups, PERSISTENT_2 only; default 7 in prod, 0 in dev."))

    @field_validator("per_unit_storage_throughput")
    @classmethod
    def _throughput_tier(cls, value: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("deployment_type")
        if value is None or kind is None:
            return value
        tiers = catalog.fsx_deployment_types()[kind].throughput_tiers
        if not tiers:
            raise ValueError(f"cannot be set for {kind} (fixed throughput); remove it or use PERSISTENT_2")
        if value not in tiers:
            raise ValueError(f"must be one of {', '.join(map(str, tiers))} MBps/TiB for {kind}")
        return value

    @field_validator("size_gib")
    @classmethod
    def _capacity_step(cls, value: int, info: ValidationInfo) -> int:
        kind = info.data.get("deployment_type")
        problem = kind and catalog.fsx_capacity_error(kind, value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("backup_retention_days")
    @classmethod
    def _backups_supported(cls, value: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("deployment_type")
        if value and kind and not catalog.fsx_deployment_types()[kind].backups:
            raise ValueError(f"{kind} file systems cannot be backed up; use PERSISTENT_2 or remove it")
        return value

    @property
    def fsx(self) -> catalog.FsxDeploymentType:
        return catalog.fsx_deployment_types()[self.deployment_type]

    @property
    def throughput(self) -> int | None:
        return self.per_unit_storage_throughput or self.fsx.default_throughput

    def backup_days(self, is_prod: bool) -> int:
        """Automatic daily backups kept, in days: only for persistent types; on by default in prod only."""
        if not self.fsx.backups:
            return 0
        if self.backup_retention_days is not None:
            return self.backup_retention_days
        return catalog.fsx()["backupRetentionDays"]["prodDefault"] if is_prod else 0


def problems(cfg: PlatformConfig) -> list[Problem]:
    """Datasets against teams and the network: references exist, names unique, subnet exists, prod backups."""
    errors: list[Problem] = []
    team_names = [t.name for t in cfg.teams]
    dataset_names = [d.name for d in cfg.datasets]
    subnets = len(cfg.network.existing.private_subnet_ids) if cfg.network.existing else cfg.network.az_count
    for i, d in enumerate(cfg.datasets):
        if dataset_names.index(d.name) != i:
            errors.append(Problem(f"datasets[{i}].name", "must be unique; another dataset already has this name", d.name))
        for j, team in enumerate(d.teams):
            if team not in team_names:
                errors.append(Problem(f"datasets[{i}].teams[{j}]",
                                      f"names no team in `teams`; known: {known(team_names, team)}", team))
        if d.subnet_index >= subnets:
            errors.append(Problem(f"datasets[{i}].subnetIndex",
                                  f"must be less than {subnets}, the number of private subnets (FSx for Lustre lives in "
                                  "one subnet, one AZ)", d.subnet_index))
        if cfg.is_prod and d.fsx.backups and d.backup_days(is_prod=True) < 1:
            errors.append(Problem(f"datasets[{i}].backupRetentionDays",
                                  f"must be at least 1 in prod for {d.deployment_type}: persistent file systems are backed "
                                  "up daily", d.backup_retention_days))
    for i, team in enumerate(cfg.teams):
        for j, name in enumerate(team.datasets):
            if name not in dataset_names:
                errors.append(Problem(f"teams[{i}].datasets[{j}]",
                                      f"names no dataset in `datasets`; known: {known(dataset_names, name)}", name))
    return errors

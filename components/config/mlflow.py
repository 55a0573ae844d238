"""`mlflow`: the tracking server and model registry (components/mlflow.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field, model_validator

from components.config.problems import FieldError, Problem
from components.config.types import Model

if TYPE_CHECKING:
    from components.config.platform import PlatformConfig


class MlflowDatabaseConfig(Model):
    """The RDS PostgreSQL instance behind MLflow's tracking store and model registry."""

    instance_class: Annotated[str, Field(pattern=r"^db\.[a-z0-9]+\.[a-z0-9]+$")] = Field("db.t4g.medium", description=(
        "RDS instance class, for example 'db.t4g.medium'."))
    allocated_storage_gib: Annotated[int, Field(ge=20, le=65536)] = Field(20, description=(
        "Storage allocated at creation, in GiB."))
    max_allocated_storage_gib: Annotated[int, Field(ge=20, le=65536)] = Field(100, description=(
        "Storage autoscaling ceiling, in GiB (at least allocatedStorageGib)."))
    multi_az: bool | None = Field(None, description=(
        "A standby in a second AZ; default: true in prod only (prod refuses false)."))
    backup_retention_days: Annotated[int, Field(ge=1, le=35)] = Field(7, description=(
        "Days of automated backups (at least 7 in prod)."))

    @model_validator(mode="after")
    def _storage_ordered(self) -> MlflowDatabaseConfig:
        if self.max_allocated_storage_gib < self.allocated_storage_gib:
            raise FieldError("maxAllocatedStorageGib", "must be at least allocatedStorageGib")
        return self


class MlflowConfig(Model):
    replicas: Annotated[int, Field(ge=1, le=10)] | None = Field(None, description=(
        "Tracking server replicas; default 2 in prod, 1 in dev (prod requires at least 2)."))
    database: MlflowDatabaseConfig = Field(MlflowDatabaseConfig(), description=(
        "The RDS PostgreSQL instance behind the tracking store and model registry."))


def problems(cfg: PlatformConfig) -> list[Problem]:
    """MLflow's availability and recoverability in prod."""
    if not cfg.is_prod:
        return []
    ml = cfg.mlflow
    rules = [
        ("mlflow.replicas", ml.replicas is not None and ml.replicas < 2,
         "must be at least 2 in prod, so a node drain or crash does not take the tracking server down", ml.replicas),
        ("mlflow.database.multiAz", ml.database.multi_az is False,
         "must not be false in prod: a single-AZ database is the model registry's single point of failure",
         ml.database.multi_az),
        ("mlflow.database.backupRetentionDays", ml.database.backup_retention_days < 7,
         "must be at least 7 in prod, so a bad migration or deletion found after a weekend can be undone",
         ml.database.backup_retention_days),
    ]
    return [Problem(path, msg, value) for path, broken, msg, value in rules if broken]

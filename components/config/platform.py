"""The whole stack config: one field per top-level key of `Pulumi.<stack>.yaml` (under `mlops-platform:`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from components.config.cluster import ClusterConfig
from components.config.datasets import DatasetConfig
from components.config.gpu import GpuConfig
from components.config.karpenter import KarpenterConfig
from components.config.mlflow import MlflowConfig
from components.config.network import NetworkConfig
from components.config.notebooks import NotebooksConfig
from components.config.observability import ObservabilityConfig
from components.config.supply_chain import SupplyChainConfig
from components.config.teams import TeamConfig
from components.config.training import TrainingConfig
from components.config.types import Model


class PlatformConfig(Model):
    environment: Literal["dev", "prod"] = Field(description="dev or prod; prod enforces availability and safety rules.")
    protect_data: bool = Field(False, description=(
        "Protect data stores and keys from deletion by `pulumi up` (required in prod)."))
    network: NetworkConfig = Field(NetworkConfig(), description="The VPC: new, or an existing one.")
    cluster: ClusterConfig = Field(ClusterConfig(), description=(
        "The EKS cluster, its system nodes and managed GPU node groups."))
    teams: list[TeamConfig] = Field([], description=(
        "The tenants: a namespace each with quotas, identities, RBAC and NetworkPolicies."))
    datasets: list[DatasetConfig] = Field([], description=(
        "Training data in S3, served read-only through FSx for Lustre."))
    mlflow: MlflowConfig = Field(MlflowConfig(), description="The MLflow tracking server and model registry.")
    gpu: GpuConfig = Field(GpuConfig(), description="GPU NodePools, GPU sharing and the GPU waste alerts.")
    karpenter: KarpenterConfig = Field(KarpenterConfig(), description="The Karpenter controller and the CPU NodePools.")
    supply_chain: SupplyChainConfig = Field(SupplyChainConfig(), description=(
        "Team image repositories, CI push roles and image admission."))
    notebooks: NotebooksConfig = Field(NotebooksConfig(), description="JupyterHub.")
    training: TrainingConfig = Field(TrainingConfig(), description="The Kubeflow training operator.")
    observability: ObservabilityConfig = Field(ObservabilityConfig(), description=(
        "Prometheus, Grafana, dashboards and alerts."))

    @property
    def is_prod(self) -> bool:
        return self.environment == "prod"

    def dataset_readers(self) -> dict[str, list[str]]:
        """Dataset name -> the teams that may read it: named in `datasets[].teams` or in `teams[].datasets`."""
        return {d.name: [t.name for t in self.teams if t.name in d.teams or d.name in t.datasets]
                for d in self.datasets}

"""The whole stack config: one field per top-level key of `Pulumi.<stack>.yaml` (under `mlops-platform:`)."""

from __future__ import annotations

from typing import Literal

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
    environment: Literal["dev", "prod"]
    protect_data: bool = False
    network: NetworkConfig = NetworkConfig()
    cluster: ClusterConfig = ClusterConfig()
    teams: list[TeamConfig] = []
    datasets: list[DatasetConfig] = []
    mlflow: MlflowConfig = MlflowConfig()
    gpu: GpuConfig = GpuConfig()
    karpenter: KarpenterConfig = KarpenterConfig()
    supply_chain: SupplyChainConfig = SupplyChainConfig()
    notebooks: NotebooksConfig = NotebooksConfig()
    training: TrainingConfig = TrainingConfig()
    observability: ObservabilityConfig = ObservabilityConfig()

    @property
    def is_prod(self) -> bool:
        return self.environment == "prod"

    def dataset_readers(self) -> dict[str, list[str]]:
        """Dataset name -> the teams that may read it: named in `datasets[].teams` or in `teams[].datasets`."""
        return {d.name: [t.name for t in self.teams if t.name in d.teams or d.name in t.datasets]
                for d in self.datasets}

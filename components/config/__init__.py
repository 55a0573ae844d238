"""The stack config: one typed model of everything a `Pulumi.<stack>.yaml` may say.

Users write camelCase keys under the `mlops-platform:` namespace; each top-level key is one field of
`PlatformConfig` and one module here (its model and its own rules). `types` holds the domain types, `rules` the
rules across sections, `problems` the one problem type, `loading` the loading and error reporting. The whole config
is validated before any resource is declared, and every problem is reported at once with its key path
(`teams[1].gpuQuota: ...`).

What a config implies (GPU supply, quotas, notebook profiles, serving sizing) is planning, in components/planning/;
its names are re-exported here lazily for existing callers (`from components.config import gpu_pools`).
"""

from __future__ import annotations

import importlib
from typing import Any

from components.config.cluster import CONTROL_PLANE_LOG_TYPES, ClusterConfig, GpuNodeGroupConfig, SystemNodesConfig
from components.config.datasets import DatasetConfig, FsxDeploymentType
from components.config.gpu import (GPU_POOL_BUDGETS, GpuAlertsConfig, GpuConfig, GpuNodePoolConfig, SharingConfig,
                                   SharingMode)
from components.config.karpenter import CpuNodePoolConfig, KarpenterConfig
from components.config.loading import ConfigError, load_config, parse_config
from components.config.mlflow import MlflowConfig, MlflowDatabaseConfig
from components.config.network import ExistingNetworkConfig, NetworkConfig
from components.config.nodepools import (AmiAlias, AmiConfig, DisruptionBudgetConfig, KarpenterCapacityType,
                                         NodePoolConfig)
from components.config.notebooks import (NotebookAuthConfig, NotebookCullingConfig, NotebookGpuConfig,
                                         NotebookGpuSharing, NotebookProfileConfig, NotebooksConfig)
from components.config.observability import ObservabilityAlertsConfig, ObservabilityConfig
from components.config.platform import PlatformConfig
from components.config.problems import Problem, known
from components.config.supply_chain import DEFAULT_ALLOWED_REGISTRIES, SupplyChainConfig
from components.config.teams import (CanaryConfig, ModelDeploymentConfig, PackageIndexConfig, PackageProxyConfig,
                                     TeamConfig)
from components.config.training import TrainingConfig
from components.config.types import (MULTI_TENANT_REGISTRIES, OPEN_INTERNET, PROJECT, CapacityType, Cidr, DnsLabel,
                                     Duration, GitBranch, GithubRepository, GpuInstanceType, HttpsUrl, IamRoleArn,
                                     Model, PackageCidr, PinnedImage, Port, RegistryPrefix, S3Uri, duration_seconds)

# Planning names callers imported from here before planning had its own package: resolved on first use, so that
# importing the config never imports planning first (planning imports the config's models).
_PLANNING = {
    "gpu_capacity": "gpu_supply", "gpu_resource_supply": "gpu_supply", "team_gpu_quota": "gpu_supply",
    "GpuPool": "gpu_supply", "gpu_pools": "gpu_supply", "training_pool": "gpu_supply",
    "NotebookProfile": "notebook_profiles", "notebook_profiles": "notebook_profiles",
    "team_notebook_group": "notebook_profiles", "NOTEBOOK_SIZES": "notebook_profiles",
    "NODE_RESERVED_CPU": "notebook_profiles", "NODE_RESERVED_GIB": "notebook_profiles",
    "ModelSizing": "serving", "model_sizing": "serving",
}


def __getattr__(name: str) -> Any:
    if name in _PLANNING:
        return getattr(importlib.import_module(f"components.planning.{_PLANNING[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AmiAlias", "AmiConfig", "CONTROL_PLANE_LOG_TYPES", "CanaryConfig", "CapacityType", "Cidr", "ClusterConfig",
    "ConfigError", "CpuNodePoolConfig", "DEFAULT_ALLOWED_REGISTRIES", "DatasetConfig", "DisruptionBudgetConfig",
    "DnsLabel", "Duration", "ExistingNetworkConfig", "FsxDeploymentType", "GPU_POOL_BUDGETS", "GitBranch",
    "GithubRepository", "GpuAlertsConfig", "GpuConfig", "GpuInstanceType", "GpuNodeGroupConfig", "GpuNodePoolConfig",
    "HttpsUrl", "IamRoleArn", "KarpenterCapacityType", "KarpenterConfig", "MULTI_TENANT_REGISTRIES", "MlflowConfig",
    "MlflowDatabaseConfig", "Model", "ModelDeploymentConfig", "NetworkConfig", "NodePoolConfig", "NotebookAuthConfig",
    "NotebookCullingConfig", "NotebookGpuConfig", "NotebookGpuSharing", "NotebookProfileConfig", "NotebooksConfig",
    "OPEN_INTERNET", "ObservabilityAlertsConfig", "ObservabilityConfig", "PROJECT", "PackageCidr",
    "PackageIndexConfig", "PackageProxyConfig", "PinnedImage", "PlatformConfig", "Port", "Problem", "RegistryPrefix",
    "S3Uri", "SharingConfig", "SharingMode", "SupplyChainConfig", "SystemNodesConfig", "TeamConfig", "TrainingConfig",
    "duration_seconds", "known", "load_config", "parse_config", *_PLANNING,
]

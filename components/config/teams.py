"""`teams`: the tenants, their quotas, identities, package indexes and the models they serve."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from components.config.problems import FieldError, Problem
from components.config.types import (DnsLabel, GitBranch, GithubRepository, IamRoleArn, KubernetesGroup, MigProfile,
                                     Model, PackageCidr, Port, RegistryPrefix, S3Uri)
from components.planning.serving import ModelSizing, model_sizing

if TYPE_CHECKING:
    from components.config.platform import PlatformConfig


class CanaryConfig(Model):
    """A new model version rolled out to a share of the traffic; the version at `location` keeps the rest."""

    location: S3Uri
    traffic_percent: Annotated[int, Field(ge=1, le=99)] = 5


class ModelDeploymentConfig(Model):
    """A model a team serves: where it is and the traffic it must take; the platform sizes the rest
    (components/serving.py, capacity figures per framework in components/data/serving.yaml)."""

    name: DnsLabel
    location: S3Uri
    framework: Literal["sklearn", "xgboost", "lightgbm", "pytorch", "tensorflow", "onnx", "huggingface", "triton"]
    peak_rps: Annotated[float, Field(gt=0)]
    latency_p99_ms: Annotated[int, Field(gt=0)] = 100
    gpu: bool = False
    runtime: DnsLabel | None = None                                       # a ClusterServingRuntime name
    capacity_rps_per_replica: Annotated[float, Field(gt=0)] | None = None  # measured; overrides the data file
    canary: CanaryConfig | None = None

    def sizing(self, is_prod: bool) -> ModelSizing:
        """Replicas and autoscaling for the peak traffic (components/planning/serving.py)."""
        return model_sizing(self, is_prod)


class PackageProxyConfig(Model):
    """A proxy the notebooks reach package indexes through: pods in the cluster, or an address in the VPC."""

    namespace: DnsLabel | None = None
    pod_labels: dict[str, str] = {}
    cidr: PackageCidr | None = None
    port: Port

    @model_validator(mode="after")
    def _one_target(self) -> PackageProxyConfig:
        if (self.namespace is None) == (self.cidr is None):
            raise FieldError("cidr" if self.cidr is not None else "namespace",
                             "set either namespace (with podLabels) for a proxy in the cluster, or cidr for one "
                             "outside it, not both")
        if self.namespace is not None and not self.pod_labels:
            raise ValueError("podLabels is required with namespace, so only the proxy's pods are reachable")
        return self


class PackageIndexConfig(Model):
    """Where a team's notebooks may `pip install` from: an allowlist of CIDRs (HTTPS), or a proxy."""

    cidrs: list[PackageCidr] = []
    port: Port = 443
    proxy: PackageProxyConfig | None = None

    @model_validator(mode="after")
    def _cidrs_or_proxy(self) -> PackageIndexConfig:
        if bool(self.cidrs) == (self.proxy is not None):
            raise FieldError("cidrs" if self.cidrs else "proxy",
                             "set either cidrs (the package index's addresses) or proxy, not both and not neither")
        return self


class TeamConfig(Model):
    """A tenant: a namespace with quotas, identities, RBAC and NetworkPolicies. Only name and gpuQuota are needed."""

    name: DnsLabel
    gpu_quota: Annotated[int, Field(ge=0)]
    notebook_profiles: list[str] = ["cpu"]
    datasets: list[DnsLabel] = []
    models: list[ModelDeploymentConfig] = []
    # Kubernetes group bound to the team's role in its namespace (default `team:<name>`); `memberRoleArns`
    # are IAM roles mapped into that group through EKS access entries.
    group: KubernetesGroup | None = None
    member_role_arns: list[IamRoleArn] = []
    cpu_quota: Annotated[int, Field(ge=1)] = 64               # cores requested at once
    memory_quota_gib: Annotated[int, Field(ge=1)] = 256
    storage_quota_gib: Annotated[int, Field(ge=1)] = 1000     # PVC storage (home volumes, scratch), datasets on top
    # Shared GPU units the team may request at once, where GPU pools offer them: MIG instances by profile
    # (`nvidia.com/mig-<profile>`) and time-sliced replicas (`nvidia.com/gpu.shared`). Unset: what gpuQuota whole
    # GPUs would give (GPUs x instances or replicas per GPU), at most what the pools supply.
    mig_quota: dict[MigProfile, Annotated[int, Field(ge=0)]] = {}
    shared_gpu_quota: Annotated[int, Field(ge=0)] | None = None
    package_index: PackageIndexConfig | None = None          # none: notebooks cannot reach any package index
    # USD per month the team's GPUs may cost; the pack flags a quota that could exceed it (cost-gpu-quota-within-budget)
    monthly_gpu_budget_usd: Annotated[float, Field(gt=0)] | None = None
    # Supply chain (components/supply_chain.py): the GitHub repository and branch whose workflow, calling the
    # platform's team-image workflow, may push to the team's ECR repository; none: no CI role, nobody pushes.
    ci_repository: GithubRepository | None = None
    ci_branch: GitBranch = "main"
    # The team's admission exception: image prefixes allowed in its namespace on top of supplyChain's.
    image_registries: list[RegistryPrefix] = []

    @property
    def kubernetes_group(self) -> str:
        return self.group or f"team:{self.name}"


# A team's name is its namespace: not Kubernetes' own, not one the platform installs into.
RESERVED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease", "cert-manager", "gpu-operator",
                       "jupyterhub", "karpenter", "knative-serving", "kourier-system", "kserve", "kubeflow", "mlflow",
                       "monitoring", "amazon-cloudwatch", "kueue-system")
# Addresses inside the cluster a package index must not cover: the Kubernetes Service ranges EKS picks from, link-local
# (instance metadata, node-local DNS) and loopback; the VPC itself (nodes and pods) is added per stack.
CLUSTER_INTERNAL = ("10.100.0.0/16", "172.20.0.0/16", "169.254.0.0/16", "127.0.0.0/8")
# A proxy inside the VPC is an address or a small load-balancer range, never a subnet of workloads.
PROXY_MAX_PREFIX = 24


def package_index_problems(cfg: PlatformConfig, i: int, team: TeamConfig) -> list[Problem]:
    index = team.package_index
    if index is None:
        return []
    vpc = ipaddress.ip_network(cfg.network.vpc_cidr) if cfg.network.existing is None else None
    internal = [ipaddress.ip_network(c) for c in CLUSTER_INTERNAL] + ([vpc] if vpc else [])
    found = []
    for j, cidr in enumerate(index.cidrs):
        net = ipaddress.ip_network(cidr)
        covered = [str(r) for r in internal if r.version == net.version and net.overlaps(r)]
        if covered:
            found.append(Problem(f"teams[{i}].packageIndex.cidrs[{j}]", f"covers cluster-internal addresses "
                                 f"({', '.join(covered)}); list the package index's own addresses, or use a proxy",
                                 cidr))
    proxy = index.proxy
    if proxy is not None and proxy.cidr is not None:
        net = ipaddress.ip_network(proxy.cidr)
        if net.prefixlen < PROXY_MAX_PREFIX or (vpc is not None and not (net.version == vpc.version
                                                                          and net.subnet_of(vpc))):
            found.append(Problem(f"teams[{i}].packageIndex.proxy.cidr", f"must be the proxy's address (at most a /"
                                 f"{PROXY_MAX_PREFIX}) inside the VPC{f' {vpc}' if vpc else ''}", proxy.cidr))
    return found


def problems(cfg: PlatformConfig) -> list[Problem]:
    """Names: teams unique and not reserved, models unique within their team; package indexes outside the cluster."""
    errors: list[Problem] = []
    names = [t.name for t in cfg.teams]
    for i, team in enumerate(cfg.teams):
        if team.name in RESERVED_NAMESPACES or team.name.startswith("kube-"):
            errors.append(Problem(f"teams[{i}].name", "is a namespace Kubernetes or the platform already uses "
                                  f"(reserved: {', '.join(RESERVED_NAMESPACES)}, kube-*); pick another name", team.name))
        errors += package_index_problems(cfg, i, team)
        if names.index(team.name) != i:
            errors.append(Problem(f"teams[{i}].name", "must be unique; another team already has this name", team.name))
        model_names = [m.name for m in team.models]
        for j, m in enumerate(team.models):
            if model_names.index(m.name) != j:
                errors.append(Problem(f"teams[{i}].models[{j}].name", "must be unique within the team", m.name))
    return errors

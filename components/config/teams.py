"""`teams`: the tenants, their quotas, identities, package indexes and the models they serve."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from components.config.alerting import AlertReceiverConfig
from components.config.problems import FieldError, Problem
from components.config.types import (DnsLabel, Duration, GitBranch, GithubRepository, IamRoleArn, KubernetesGroup, MigProfile,
                                     Model, PackageCidr, Port, RegistryPrefix, S3Uri, duration_seconds)
from components.planning.serving import ModelSizing, model_sizing

if TYPE_CHECKING:
    from components.config.platform import PlatformConfig


class CanaryConfig(Model):
    """A new model version rolled out to a share of the traffic; the version at `location` keeps the rest."""

    location: S3Uri = Field(description="s3:// location of the new model version.")
    traffic_percent: Annotated[int, Field(ge=1, le=99)] = Field(5, description=(
        "Share of the traffic the canary takes, 1 to 99."))


class RolloutConfig(Model):
    """How new versions of a model reach production (docs/model-promotion.md)."""

    mode: Literal["manual", "registry"] = Field(
        "manual", description="`manual`: the stack file says what runs (`location`, optional `canary`). `registry`: "
        "setting `alias` on a version of `registeredModel` in MLflow starts a canary of it, analysed and then "
        "promoted or rolled back by the platform's rollout service.")
    registered_model: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        None, description="The MLflow registered model whose alias drives this model (registry mode).")
    alias: DnsLabel = Field("champion", description="The registry alias that means \"deploy this version\".")
    canary_percent: Annotated[int, Field(ge=1, le=50)] = Field(
        5, description="Share of the traffic the new version gets during the analysis.")
    analysis_window: Duration = Field(
        "10m", description="How long the canary must stay healthy before it is promoted.")
    max_error_rate_percent: Annotated[float, Field(gt=0, le=100)] = Field(
        1.0, description="Highest share of the canary's requests answered 5xx; above it the canary is rolled back.")
    max_latency_p99_ms: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Highest p99 latency of the canary; above it the canary is rolled back. Default: the "
        "model's `latencyP99Ms`.")
    min_requests: Annotated[int, Field(ge=1)] = Field(
        100, description="Requests the canary must have served before any verdict (no verdict on missing evidence).")

    @model_validator(mode="after")
    def _registry_needs_a_model(self) -> RolloutConfig:
        if self.mode == "registry" and not self.registered_model:
            raise ValueError("registeredModel is required with mode: registry (the MLflow registered model name)")
        if self.mode == "manual" and self.registered_model:
            raise ValueError("registeredModel is only used with mode: registry")
        return self


class ModelDeploymentConfig(Model):
    """A model a team serves: where it is and the traffic it must take; the platform sizes the rest
    (components/serving.py, capacity figures per framework in components/data/serving.yaml)."""

    name: DnsLabel = Field(description="InferenceService name, unique within the team.")
    location: S3Uri = Field(description="s3:// location of the model.")
    framework: Literal["sklearn", "xgboost", "lightgbm", "pytorch", "tensorflow", "onnx", "huggingface", "triton"] = Field(description=(
        "Model framework; picks the serving runtime and its capacity figures (components/data/serving.yaml)."))
    peak_rps: Annotated[float, Field(gt=0)] = Field(description=(
        "Peak requests per second the model must take; sizes maxReplicas."))
    latency_p99_ms: Annotated[int, Field(gt=0)] = Field(100, description=(
        "p99 latency target in milliseconds (alerted on)."))
    gpu: bool = Field(False, description="Serve on a GPU (frameworks with a GPU path only).")
    runtime: DnsLabel | None = Field(None, description=(
        "A ClusterServingRuntime name; default: the framework's runtime."))
    capacity_rps_per_replica: Annotated[float, Field(gt=0)] | None = Field(None, description=(
        "Measured requests per second one replica takes; overrides the data file."))
    canary: CanaryConfig | None = Field(None, description="A new model version rolled out to a share of the traffic.")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="How new versions reach production: "
                                   "`manual` (default) or `registry` (MLflow alias -> canary -> promotion/rollback).")

    @model_validator(mode="after")
    def _one_source_of_versions(self) -> ModelDeploymentConfig:
        if self.canary is not None and self.rollout.mode == "registry":
            raise ValueError("canary is set by the rollout service in rollout mode registry; remove the canary block "
                             "(or use rollout mode manual)")
        return self

    @property
    def registry_driven(self) -> bool:
        return self.rollout.mode == "registry"

    def sizing(self, is_prod: bool) -> ModelSizing:
        """Replicas and autoscaling for the peak traffic (components/planning/serving.py)."""
        return model_sizing(self, is_prod)


class PackageProxyConfig(Model):
    """A proxy the notebooks reach package indexes through: pods in the cluster, or an address in the VPC."""

    namespace: DnsLabel | None = Field(None, description=(
        "Namespace of a proxy running in the cluster (with podLabels)."))
    pod_labels: dict[str, str] = Field({}, description="Labels of the proxy's pods (required with namespace).")
    cidr: PackageCidr | None = Field(None, description="CIDR of a proxy outside the cluster (not 0.0.0.0/0).")
    port: Port = Field(description="The proxy's port.")

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

    cidrs: list[PackageCidr] = Field([], description="CIDRs of the package index (HTTPS), not 0.0.0.0/0.")
    port: Port = Field(443, description="Port of the package index.")
    proxy: PackageProxyConfig | None = Field(None, description=(
        "A proxy the notebooks reach package indexes through (instead of cidrs)."))

    @model_validator(mode="after")
    def _cidrs_or_proxy(self) -> PackageIndexConfig:
        if bool(self.cidrs) == (self.proxy is not None):
            raise FieldError("cidrs" if self.cidrs else "proxy",
                             "set either cidrs (the package index's addresses) or proxy, not both and not neither")
        return self


WEEK_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WeeklyTime = Annotated[str, Field(pattern=r"^(mon|tue|wed|thu|fri|sat|sun) ([01][0-9]|2[0-3]):[0-5][0-9]$")]


class OffHoursWindow(Model):
    """A weekly window, from `start` to `end` in the team's time zone (it may wrap over the week's end)."""

    start: WeeklyTime = Field(description="Day and time the window opens, for example 'fri 18:00'.")
    end: WeeklyTime = Field(description="Day and time the window closes, for example 'mon 07:00'.")

    @model_validator(mode="after")
    def _not_empty(self) -> OffHoursWindow:
        if self.start == self.end:
            raise FieldError("end", "must differ from start (an empty window; for all week, use two windows)")
        return self


class NotebookOffHoursConfig(Model):
    """Off-hours for the team's GPU notebooks: during these windows the GPU-utilization culler stops the team's idle
    GPU servers after `gpuIdleTimeout` instead of the profile's timeout (docs/gpu-waste.md)."""

    time_zone: str = Field(description="IANA time zone the windows are read in, for example 'Europe/Berlin'.")
    windows: Annotated[list[OffHoursWindow], Field(min_length=1)] = Field(description=(
        "Weekly windows, for example [{start: 'fri 18:00', end: 'mon 07:00'}]."))
    gpu_idle_timeout: Duration = Field("15m", description=(
        "During the windows, GPU servers idle this long are stopped (at most notebooks.culling.gpuIdleTimeout)."))

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("is not an IANA time zone, for example 'Europe/Berlin' or 'America/New_York'") from None
        return value

    @field_validator("gpu_idle_timeout")
    @classmethod
    def _at_least_a_minute(cls, value: str) -> str:
        if duration_seconds(value) < 60:
            raise ValueError("must be at least 1m: a shorter timeout would stop servers while they start")
        return value


class TeamConfig(Model):
    """A tenant: a namespace with quotas, identities, RBAC and NetworkPolicies. Only name and gpuQuota are needed."""

    name: DnsLabel = Field(description="Team name: the namespace, and part of its IAM role and repository names.")
    gpu_quota: Annotated[int, Field(ge=0)] = Field(description=(
        "Whole GPUs the team may request at once (at most what the GPU pools supply)."))
    notebook_profiles: list[str] = Field(["cpu"], description=(
        "Notebook profiles the team may use (generated from the GPU pools, plus notebooks.profiles)."))
    datasets: list[DnsLabel] = Field([], description=(
        "Datasets the team may read (or name the team in datasets[].teams)."))
    models: list[ModelDeploymentConfig] = Field([], description="Models the team serves (KServe InferenceServices).")
    group: KubernetesGroup | None = Field(None, description=(
        "Kubernetes group bound to the team's role in its namespace; default `team:<name>`."))
    member_role_arns: list[IamRoleArn] = Field([], description=(
        "IAM roles mapped into the team's group through EKS access entries (one team per role)."))
    cpu_quota: Annotated[int, Field(ge=1)] = Field(64, description="CPU cores the team may request at once.")
    memory_quota_gib: Annotated[int, Field(ge=1)] = Field(256, description=(
        "Memory the team may request at once, in GiB."))
    storage_quota_gib: Annotated[int, Field(ge=1)] = Field(1000, description=(
        "PVC storage (home volumes, scratch) in GiB; datasets come on top."))
    mig_quota: dict[MigProfile, Annotated[int, Field(ge=0)]] = Field({}, description=(
        "MIG instances by profile the team may request at once (nvidia.com/mig-<profile>); unset: what gpuQuota whole "
        "GPUs would give, at most what the pools supply."))
    shared_gpu_quota: Annotated[int, Field(ge=0)] | None = Field(None, description=(
        "Time-sliced replicas the team may request at once (nvidia.com/gpu.shared); unset: what gpuQuota whole GPUs "
        "would give, at most what the pools supply."))
    package_index: PackageIndexConfig | None = Field(None, description=(
        "Where the team's notebooks may pip install from; unset: no package index is reachable."))
    monthly_gpu_budget_usd: Annotated[float, Field(gt=0)] | None = Field(None, description=(
        "USD per month the team's GPUs may cost; the policy cost-gpu-quota-within-budget flags a quota that could "
        "exceed it."))
    ci_repository: GithubRepository | None = Field(None, description=(
        "GitHub repository (owner/name) whose workflow, calling the platform's team-image workflow, may push to the "
        "team's ECR repository; unset: no CI role."))
    ci_branch: GitBranch = Field("main", description="Branch of ciRepository allowed to push.")
    image_registries: list[RegistryPrefix] = Field([], description=(
        "Image prefixes allowed in the team's namespace on top of supplyChain.allowedRegistries."))
    alert_receiver: AlertReceiverConfig | None = Field(None, description=(
        "Where the team's alerts (GPU waste, rightsizing, its models) go: slackWebhookUrl and/or emailTo; unset: "
        "to observability.alertmanager.platformReceiver (docs/alerts.md)."))
    notebook_off_hours: NotebookOffHoursConfig | None = Field(None, description=(
        "Weekly off-hours when the team's idle GPU notebooks are stopped sooner; unset: none."))

    @property
    def kubernetes_group(self) -> str:
        return self.group or f"team:{self.name}"


# A team's name is its namespace: not Kubernetes' own, not one the platform installs into.
RESERVED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease", "cert-manager", "gpu-operator",
                       "jupyterhub", "karpenter", "knative-serving", "kourier-system", "kserve", "kubeflow", "mlflow",
                       "monitoring", "amazon-cloudwatch")
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

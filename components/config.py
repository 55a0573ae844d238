"""The stack config: one typed model of everything a `Pulumi.<stack>.yaml` may say.

Users write camelCase keys under the `mlops-platform:` namespace; each top-level key is one field of
`PlatformConfig`. The whole config is validated before any resource is declared, and every problem is
reported at once with its key path (`teams[1].gpuQuota: ...`).
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import re
from typing import Annotated, Any, Literal, NamedTuple

import pulumi
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from components import catalog, labels

PROJECT = "mlops-platform"

# ---------------------------------------------------------------------------------------------------
# Domain types


def _dns_label(value: str) -> str:
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?", value):
        raise ValueError(
            "must be a lower-case DNS label of at most 40 characters, starting with a letter, "
            "for example 'fraud-detection'"
        )
    return value


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        raise ValueError("must be a CIDR block, for example '10.0.0.0/16'") from None


def _iam_role_arn(value: str) -> str:
    if not re.fullmatch(r"arn:aws[-a-z]*:iam::\d{12}:role/[\w+=,.@/-]+", value):
        raise ValueError("must be an IAM role ARN, for example 'arn:aws:iam::123456789012:role/platform-admins'")
    return value


def _s3_uri(value: str) -> str:
    if not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?", value):
        raise ValueError("must be an S3 location, for example 's3://ml-models/fraud/v3'")
    return value


def _gpu_instance_type(value: str) -> str:
    if value not in catalog.instance_types():
        raise ValueError("is not a GPU instance type in the catalog (components/data/gpus.yaml); known: "
                         f"{known(sorted(catalog.instance_types()), value)}")
    return value



def known(names, value: object = None, limit: int = 12) -> str:
    """`a, b, c` for a "known: ..." hint: the closest names to `value` first, at most `limit` of them."""
    names = list(dict.fromkeys(str(n) for n in names))
    if not names:
        return "(none)"
    close = difflib.get_close_matches(str(value), names, n=limit, cutoff=0.5) if value is not None else []
    ordered = close + [n for n in names if n not in close]
    shown = ", ".join(ordered[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")

DnsLabel = Annotated[str, AfterValidator(_dns_label)]
Cidr = Annotated[str, AfterValidator(_cidr)]
IamRoleArn = Annotated[str, AfterValidator(_iam_role_arn)]
S3Uri = Annotated[str, AfterValidator(_s3_uri)]
GpuInstanceType = Annotated[str, AfterValidator(_gpu_instance_type)]
CapacityType = Literal["ON_DEMAND", "SPOT"]

# Registries where anyone can publish: a prefix there must name the namespace (owner) it trusts.
MULTI_TENANT_REGISTRIES = ("docker.io", "index.docker.io", "registry-1.docker.io", "public.ecr.aws", "ghcr.io",
                           "quay.io", "gcr.io", "registry.gitlab.com", "nvcr.io")


def _registry_prefix(value: str) -> str:
    """An image-reference prefix the admission policy allows: a registry host, a path, and a trailing '/'."""
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+(:\d+)?/([a-z0-9._-]+/)*",
                        value):
        raise ValueError("must be a registry host with a dot and an optional path, ending in '/', for example "
                         "'nvcr.io/nvidia/' (images are matched by prefix, so the '/' keeps 'nvcr.io.evil.com' out)")
    if value.rstrip("/") in MULTI_TENANT_REGISTRIES:
        raise ValueError(f"would allow every image anyone publishes on {value.rstrip('/')}; name the namespace you "
                         f"trust, for example '{value}library/' or '{value}nvidia/'")
    return value


def _github_repository(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9](-?[A-Za-z0-9]){0,38}/[A-Za-z0-9._-]{1,100}", value):
        raise ValueError("must be a GitHub repository as owner/name, for example 'acme/fraud-models'")
    return value


def _git_branch(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*", value) or ".." in value:
        raise ValueError("must be a branch name without wildcards, for example 'main' or 'release/v2'")
    return value


RegistryPrefix = Annotated[str, AfterValidator(_registry_prefix)]
GithubRepository = Annotated[str, AfterValidator(_github_repository)]
GitBranch = Annotated[str, AfterValidator(_git_branch)]


class Model(BaseModel):
    """Base for every config model: frozen, camelCase keys as users write them, no unknown keys."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True, strict=False
    )


# ---------------------------------------------------------------------------------------------------
# Network


class ExistingNetworkConfig(Model):
    vpc_id: Annotated[str, Field(pattern=r"^vpc-[0-9a-f]{8,17}$")]
    private_subnet_ids: Annotated[list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]], Field(min_length=2)]
    public_subnet_ids: list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]] = []


class NetworkConfig(Model):
    vpc_cidr: Cidr = "10.0.0.0/16"
    az_count: Annotated[int, Field(ge=2, le=6)] = 2
    nat_gateways: Literal["single", "perAz"] = "single"
    existing: ExistingNetworkConfig | None = None


# ---------------------------------------------------------------------------------------------------
# Cluster

CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")


class SystemNodesConfig(Model):
    instance_types: Annotated[list[str], Field(min_length=1)] = ["m6i.large"]
    capacity_type: CapacityType = "ON_DEMAND"
    min_size: Annotated[int, Field(ge=1)] = 2
    desired_size: Annotated[int, Field(ge=1)] = 2
    max_size: Annotated[int, Field(ge=1)] = 4
    disk_gib: Annotated[int, Field(ge=20)] = 50

    @model_validator(mode="after")
    def _sizes_ordered(self) -> SystemNodesConfig:
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError("minSize <= desiredSize <= maxSize must hold")
        return self


class GpuNodeGroupConfig(Model):
    """An EKS managed node group of GPU instances: steady GPU capacity (Karpenter adds the elastic rest)."""

    name: DnsLabel
    instance_types: Annotated[list[GpuInstanceType], Field(min_length=1)]
    capacity_type: CapacityType = "ON_DEMAND"
    min_size: Annotated[int, Field(ge=0)] = 0
    desired_size: Annotated[int, Field(ge=0)] = 0
    max_size: Annotated[int, Field(ge=1)] = 2
    disk_gib: Annotated[int, Field(ge=100)] = 200

    @model_validator(mode="after")
    def _one_gpu_type(self) -> GpuNodeGroupConfig:
        kinds = {catalog.instance_types()[t].gpu_type for t in self.instance_types}
        if len(kinds) > 1:
            raise ValueError(
                f"instanceTypes mix GPU types {sorted(kinds)}; a node group holds one GPU type so its "
                "label names it"
            )
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError("minSize <= desiredSize <= maxSize must hold")
        return self

    @property
    def gpu_type(self) -> str:
        return catalog.instance_types()[self.instance_types[0]].gpu_type

    @property
    def max_gpus(self) -> int:
        return self.max_size * catalog.max_gpus_per_instance(self.instance_types)


class ClusterConfig(Model):
    name: DnsLabel | None = None
    kubernetes_version: Annotated[str, Field(pattern=r"^1\.\d{2}$")] = "1.34"
    admin_role_arns: list[IamRoleArn] = []
    endpoint_public_access: bool = True
    public_access_cidrs: list[Cidr] = ["0.0.0.0/0"]
    log_types: list[Literal[CONTROL_PLANE_LOG_TYPES]] = list(CONTROL_PLANE_LOG_TYPES)  # type: ignore[valid-type]
    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653] = 30
    addon_versions: dict[Literal["vpc-cni", "coredns", "kube-proxy", "aws-ebs-csi-driver", "aws-fsx-csi-driver"],
                          str] = {}
    system_nodes: SystemNodesConfig = SystemNodesConfig()
    gpu_node_groups: list[GpuNodeGroupConfig] = []

    @model_validator(mode="after")
    def _unique_node_groups(self) -> ClusterConfig:
        names = [g.name for g in self.gpu_node_groups]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"gpuNodeGroups names must be unique; repeated: {dupes}")
        return self


# ---------------------------------------------------------------------------------------------------
# Teams


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
        """The sizing rule (README, "Model serving"): enough replicas at the CPU target for the peak traffic.

        usable rps per replica = capacity x target utilisation x min(1, latencyP99Ms / reference p99)
        maxReplicas = max(minReplicas, ceil(peakRps / usable rps per replica)); minReplicas 2 in prod, 1 in dev.
        """
        fw = catalog.serving_frameworks()[self.framework]
        scaling = catalog.serving_autoscaling()
        capacity = self.capacity_rps_per_replica or (fw.gpu_rps_per_replica if self.gpu else None) \
            or fw.rps_per_replica
        latency_factor = min(1.0, self.latency_p99_ms / fw.reference_p99_ms)
        usable = capacity * scaling.target_utilization_percent / 100 * latency_factor
        min_replicas = scaling.min_replicas_prod if is_prod else scaling.min_replicas_dev
        # round() first: 2000 / 40.000000001 must not become 51 replicas
        needed = math.ceil(round(self.peak_rps / usable, 6))
        return ModelSizing(min_replicas, max(min_replicas, needed), scaling.metric,
                           scaling.target_utilization_percent, capacity, usable)


class ModelSizing(NamedTuple):
    min_replicas: int
    max_replicas: int
    scale_metric: str
    scale_target: int                  # percent of the CPU request
    rps_per_replica: float             # capacity of one replica at 100% of its CPU request
    usable_rps_per_replica: float      # what the autoscaler lets one replica take before adding another


OPEN_INTERNET = ("0.0.0.0/0", "::/0")


def _not_open_internet(value: str) -> str:
    if value in OPEN_INTERNET:
        raise ValueError("would open the pods to the whole internet; list the package index's own CIDRs or use a proxy")
    return value


def _kubernetes_group(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][-A-Za-z0-9_.:@/]{0,99}", value) or value.startswith("system:"):
        raise ValueError("must be a Kubernetes group name not starting with 'system:', for example 'team:fraud-detection'")
    return value


def _mig_profile(value: str) -> str:
    if not re.fullmatch(r"(\d+c\.)?\d+g\.\d+gb([+-][a-z][a-z.,]*)?", value):
        raise ValueError("must be a MIG profile name, for example '1g.10gb' (the resource becomes nvidia.com/mig-1g.10gb)")
    return value


PackageCidr = Annotated[str, AfterValidator(_cidr), AfterValidator(_not_open_internet)]
Port = Annotated[int, Field(ge=1, le=65535)]


class PackageProxyConfig(Model):
    """A proxy the notebooks reach package indexes through: pods in the cluster, or an address in the VPC."""

    namespace: DnsLabel | None = None
    pod_labels: dict[str, str] = {}
    cidr: PackageCidr | None = None
    port: Port

    @model_validator(mode="after")
    def _one_target(self) -> PackageProxyConfig:
        if (self.namespace is None) == (self.cidr is None):
            raise ValueError("set either namespace (with podLabels) for a proxy in the cluster, or cidr for one "
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
            raise ValueError("set either cidrs (the package index's addresses) or proxy, not both and not neither")
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
    group: Annotated[str, AfterValidator(_kubernetes_group)] | None = None
    member_role_arns: list[IamRoleArn] = []
    cpu_quota: Annotated[int, Field(ge=1)] = 64               # cores requested at once
    memory_quota_gib: Annotated[int, Field(ge=1)] = 256
    storage_quota_gib: Annotated[int, Field(ge=1)] = 1000     # PVC storage (home volumes, scratch), datasets on top
    # Shared GPU units the team may request at once, where GPU pools offer them: MIG instances by profile
    # (`nvidia.com/mig-<profile>`) and time-sliced replicas (`nvidia.com/gpu.shared`). Unset: what gpuQuota whole
    # GPUs would give (GPUs x instances or replicas per GPU), at most what the pools supply.
    mig_quota: dict[Annotated[str, AfterValidator(_mig_profile)], Annotated[int, Field(ge=0)]] = {}
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


# ---------------------------------------------------------------------------------------------------
# Datasets


FsxDeploymentType = Literal["SCRATCH_2", "PERSISTENT_2"]


class DatasetConfig(Model):
    """A training data set in S3, served read-only from its own FSx for Lustre file system to the teams that may
    read it. A data scientist writes `name`, `location` and `sizeGiB`; the rest has defaults.

    FSx's own rules (storage steps, throughput tiers, backups) come from components/data/fsx.yaml, with sources.
    """

    name: DnsLabel
    location: S3Uri                                           # s3://bucket/prefix the file system shows at its root
    deployment_type: FsxDeploymentType = "SCRATCH_2"          # SCRATCH_2: cheap cache of S3; PERSISTENT_2: replicated
    per_unit_storage_throughput: int | None = None            # MBps/TiB, PERSISTENT_2 only (default in fsx.yaml)
    size_gib: Annotated[int, Field(alias="sizeGiB", gt=0)]   # file system capacity; must hold the data (LZ4-compressed)
    teams: list[DnsLabel] = []                                # teams that may read it (or name it in teams[].datasets)
    auto_import: bool = True                                  # new/changed/deleted S3 objects appear on the file system
    subnet_index: Annotated[int, Field(ge=0)] = 0             # which private subnet (AZ): put it where the GPUs run
    backup_retention_days: Annotated[int, Field(ge=0, le=90)] | None = None  # PERSISTENT_2; default 7 in prod, 0 in dev

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


# ---------------------------------------------------------------------------------------------------
# GPU capacity: Karpenter NodePools (GPU pools under `gpu`, CPU pools under `karpenter`) and GPU sharing
# through the NVIDIA GPU operator. Hardware limits (MIG profiles, time-slicing replicas) come from
# components/data/ through components/catalog.py; rules needing the GPU type are in _gpu_rule_errors.

Duration = Annotated[str, Field(pattern=r"^([0-9]+(s|m|h))+$")]
# An EKS-optimized AMI selected by Karpenter alias, pinned to a release (never `latest`): Karpenter picks the
# NVIDIA (accelerated) variant of the release for GPU instance types.
AmiAlias = Annotated[str, Field(pattern=r"^(al2023|bottlerocket)@v[0-9][0-9.]*$")]
KarpenterCapacityType = Literal["spot", "on-demand"]
SharingMode = Literal["none", "time-slicing", "mig"]


class DisruptionBudgetConfig(Model):
    """At most `nodes` (a count or a percentage) disrupted at once, for the given reasons (all when empty)."""

    nodes: Annotated[str, Field(pattern=r"^((100|[0-9]{1,2})%|[0-9]+)$")]
    reasons: list[Literal["Empty", "Underutilized", "Drifted"]] = []
    schedule: str | None = None        # cron, e.g. "0 9 * * mon-fri"; with `duration`
    duration: Annotated[str, Field(pattern=r"^((([0-9]+(h|m))|([0-9]+h[0-9]+m))(0s)?)$")] | None = None

    @model_validator(mode="after")
    def _schedule_with_duration(self) -> DisruptionBudgetConfig:
        if (self.schedule is None) != (self.duration is None):
            raise ValueError("schedule and duration go together: set both (a window) or neither (always)")
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
            raise ValueError("set either alias (e.g. 'al2023@v20260512') or id (your own AMI), not both")
        if self.id is not None and self.family is None:
            raise ValueError("family is required with id: 'AL2023' or 'Bottlerocket'")
        if self.alias is not None and self.nvidia_driver != "preinstalled":
            raise ValueError("EKS-optimized AMIs ship the NVIDIA driver and toolkit; nvidiaDriver 'operator' is "
                             "only for your own AMI (id) without them")
        if self.nvidia_driver == "operator" and self.family == "Bottlerocket":
            raise ValueError("the GPU operator cannot install a driver on Bottlerocket; use an AL2023 AMI")
        return self

    @property
    def family_name(self) -> str:
        if self.alias is not None:
            return "Bottlerocket" if self.alias.startswith("bottlerocket@") else "AL2023"
        return self.family or "AL2023"


class SharingConfig(Model):
    """How a pool's GPUs are shared: whole GPUs, time-sliced replicas, or MIG instances."""

    mode: SharingMode = "none"
    replicas: Annotated[int, Field(ge=2)] | None = None       # time-slicing: pods per GPU (range per GPU type)
    rename_by_default: bool = True                            # time-slicing: advertise nvidia.com/gpu.shared
    fail_requests_greater_than_one: bool = True               # time-slicing: a pod gets one replica at most
    mig_layout: dict[str, Annotated[int, Field(ge=1)]] = {}   # mig: profile -> instances on every GPU


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
            raise ValueError("capacityTypes lists a type twice")
        return self


GPU_POOL_BUDGETS = [
    DisruptionBudgetConfig(nodes="100%", reasons=["Empty"]),        # empty GPU nodes go at once
    DisruptionBudgetConfig(nodes="1", reasons=["Drifted", "Underutilized"]),
]


class GpuNodePoolConfig(NodePoolConfig):
    """A Karpenter NodePool of one GPU type, tainted `nvidia.com/gpu`, scaling to zero."""

    instance_types: Annotated[list[GpuInstanceType], Field(min_length=1)]
    gpu_limit: Annotated[int, Field(ge=1)]                    # physical GPUs the pool may hold at once
    cpu_limit: Annotated[int, Field(ge=1)] | None = None      # default: the vCPUs that come with gpuLimit GPUs
    consolidation_policy: Literal["WhenEmpty", "WhenEmptyOrUnderutilized"] = "WhenEmpty"
    consolidate_after: Duration = "30s"                       # an empty GPU node goes after 30 s
    budgets: list[DisruptionBudgetConfig] = GPU_POOL_BUDGETS
    disk_gib: Annotated[int, Field(alias="diskGiB", ge=100, le=16000)] = 200   # CUDA images are large
    sharing: SharingConfig = SharingConfig()

    @model_validator(mode="after")
    def _one_gpu_type(self) -> GpuNodePoolConfig:
        kinds = {catalog.instance_types()[t].gpu_type for t in self.instance_types}
        if len(kinds) > 1:
            raise ValueError(f"instanceTypes mix GPU types {sorted(kinds)}; a NodePool holds one GPU type so its "
                             "labels, sharing config and MIG layout fit every node")
        if len(set(self.instance_types)) != len(self.instance_types):
            raise ValueError("instanceTypes lists a type twice")
        return self

    @property
    def gpu_type(self) -> str:
        return catalog.instance_types()[self.instance_types[0]].gpu_type

    @property
    def gpus_per_node(self) -> list[int]:
        return sorted({catalog.instance_types()[t].gpus for t in self.instance_types})

    @property
    def default_cpu_limit(self) -> int:
        """vCPUs of gpuLimit GPUs' worth of the pool's most CPU-rich instance type (so it never binds first)."""
        table = catalog.instance_types()
        return max(-(-self.gpu_limit * table[t].vcpu // table[t].gpus) for t in self.instance_types)

    def gpu_resources(self, mig_strategy: str) -> dict[str, int]:
        """Extended resource -> units each physical GPU advertises on this pool's nodes (device plugin)."""
        s = self.sharing
        if s.mode == "time-slicing" and s.replicas:
            return {labels.GPU_SHARED_RESOURCE if s.rename_by_default else labels.GPU_RESOURCE: s.replicas}
        if s.mode == "mig" and s.mig_layout:
            if mig_strategy == "single":
                return {labels.GPU_RESOURCE: sum(s.mig_layout.values())}
            return {labels.MIG_RESOURCE_PREFIX + p: n for p, n in s.mig_layout.items()}
        return {labels.GPU_RESOURCE: 1}

    def limits(self, mig_strategy: str) -> dict[str, int]:
        """The NodePool's `limits`: vCPUs, physical GPUs (`nvidia.com/gpu`), and every shared resource at the
        GPU limit. Where sharing keeps the name `nvidia.com/gpu` (time-slicing without rename, MIG single), a
        node advertises one unit per replica or MIG device, so that limit counts those units."""
        limits = {"cpu": self.cpu_limit or self.default_cpu_limit, labels.GPU_RESOURCE: self.gpu_limit}
        limits.update({res: self.gpu_limit * units for res, units in self.gpu_resources(mig_strategy).items()})
        return limits


class GpuAlertsConfig(Model):
    """Thresholds of the waste alerts on DCGM exporter metrics (PrometheusRules)."""

    idle_utilization_percent: Annotated[int, Field(ge=1, le=100)] = 10   # a GPU held by a pod below this ...
    idle_for: Duration = "30m"                                           # ... for this long is idle
    memory_used_percent: Annotated[int, Field(ge=1, le=100)] = 25        # a pod never using more GPU memory ...
    rightsizing_for: Duration = "6h"                                     # ... for this long fits a smaller GPU


class GpuConfig(Model):
    """GPU NodePools, GPU sharing and the GPU waste alerts."""

    node_pools: list[GpuNodePoolConfig] = [
        GpuNodePoolConfig(name="training", instance_types=["g5.xlarge", "g5.2xlarge"], capacity_types=["spot"],
                          gpu_limit=4),
        GpuNodePoolConfig(name="inference", instance_types=["g6.xlarge", "g6.2xlarge"],
                          capacity_types=["on-demand"], gpu_limit=2),
    ]
    mig_strategy: Literal["single", "mixed"] = "mixed"   # single: every MIG pool uses one profile per GPU
    alerts: GpuAlertsConfig = GpuAlertsConfig()


class CpuNodePoolConfig(NodePoolConfig):
    """A Karpenter NodePool of general-purpose instances for CPU work (no taint)."""

    instance_categories: Annotated[list[Literal["c", "m", "r"]], Field(min_length=1)] = ["c", "m", "r"]
    min_generation: Annotated[int, Field(ge=5, le=9)] = 6
    capacity_types: Annotated[list[KarpenterCapacityType], Field(min_length=1)] = ["spot", "on-demand"]
    cpu_limit: Annotated[int, Field(ge=1)] = 64
    memory_limit_gib: Annotated[int, Field(alias="memoryLimitGiB", ge=1)] = 256


class KarpenterConfig(Model):
    """The Karpenter controller and the CPU NodePools (GPU NodePools are under `gpu.nodePools`)."""

    # EKS AMI release v20260512 ships Kubernetes 1.34 nodes; move it forward deliberately (a preview shows drift).
    ami_alias: AmiAlias = "al2023@v20260512"
    controller_replicas: Annotated[int, Field(ge=1, le=3)] = 2
    cpu_node_pools: list[CpuNodePoolConfig] = [CpuNodePoolConfig(name="general")]


# ---------------------------------------------------------------------------------------------------
# MLflow (tracking server + model registry; components/mlflow.py)


class MlflowDatabaseConfig(Model):
    """The RDS PostgreSQL instance behind MLflow's tracking store and model registry."""

    instance_class: Annotated[str, Field(pattern=r"^db\.[a-z0-9]+\.[a-z0-9]+$")] = "db.t4g.medium"
    allocated_storage_gib: Annotated[int, Field(ge=20, le=65536)] = 20
    max_allocated_storage_gib: Annotated[int, Field(ge=20, le=65536)] = 100   # storage autoscaling ceiling
    multi_az: bool | None = None                                              # default: true in prod only
    backup_retention_days: Annotated[int, Field(ge=1, le=35)] = 7

    @model_validator(mode="after")
    def _storage_ordered(self) -> MlflowDatabaseConfig:
        if self.max_allocated_storage_gib < self.allocated_storage_gib:
            raise ValueError("maxAllocatedStorageGib must be at least allocatedStorageGib")
        return self


class MlflowConfig(Model):
    replicas: Annotated[int, Field(ge=1, le=10)] | None = None               # default: 2 in prod, 1 in dev
    database: MlflowDatabaseConfig = MlflowDatabaseConfig()


# ---------------------------------------------------------------------------------------------------
# Supply chain (team image repositories, CI push roles, image admission; components/supply_chain.py)

# Images that may run besides the stack's own team ECR repositories (README, "Supply chain"). Team namespaces also
# run pods the platform's controllers build, so their upstream images must pass too; the policy pack checks every
# workload the program declares against this list. A `docker.io/<org>/` entry also allows the short `<org>/...`.
DEFAULT_ALLOWED_REGISTRIES = (
    "public.ecr.aws/docker/library/",   # Docker's official images (python, ubuntu, ...) as mirrored on ECR Public
    "nvcr.io/nvidia/",                  # NVIDIA NGC: CUDA, PyTorch, Triton (also KServe's Triton runtime)
    "ghcr.io/mlflow/",                  # the MLflow tracking server (components/mlflow.py)
    "docker.io/kserve/",                # KServe model servers and storage-initializer in InferenceService pods
    "docker.io/pytorch/",               # KServe's TorchServe runtime
    "docker.io/tensorflow/",            # KServe's TensorFlow Serving runtime
    "gcr.io/knative-releases/",         # Knative's queue-proxy sidecar in InferenceService pods
    "quay.io/jupyter/",                 # Jupyter's notebook images
    "quay.io/jupyterhub/",              # zero-to-jupyterhub's single-user helpers
    "docker.io/kubeflow/",              # the Kubeflow training operator (components/training.py)
    "docker.io/mpioperator/",           # the kubectl-delivery init container it puts into MPIJob launchers
)


class SupplyChainConfig(Model):
    allowed_registries: list[RegistryPrefix] = list(DEFAULT_ALLOWED_REGISTRIES)   # plus this stack's team ECR
    scanning: Literal["basic", "enhanced"] = "basic"      # enhanced: Amazon Inspector, continuous, registry-wide
    admission_action: Literal["Deny", "Warn"] = "Deny"    # Warn: report violations to the client, admit anyway
    untagged_image_days: Annotated[int, Field(ge=1, le=365)] = 7      # untagged images expire after this
    max_images: Annotated[int, Field(ge=10, le=10000)] = 500          # per team repository, oldest expire first
    # The repository holding this platform's `.github/workflows/team-image.yml`: CI roles trust only that
    # workflow (its `job_workflow_ref`), so every pushed image went through its Trivy scan.
    workflow_repository: GithubRepository | None = None
    # The account's existing IAM OIDC provider for token.actions.githubusercontent.com (one per account); none:
    # this stack declares it.
    github_oidc_provider_arn: Annotated[str, Field(
        pattern=r"^arn:aws[-a-z]*:iam::\d{12}:oidc-provider/token\.actions\.githubusercontent\.com$")] | None = None


# ---------------------------------------------------------------------------------------------------
# Notebooks (JupyterHub; components/notebooks.py) and training (Kubeflow training operator; components/training.py)


def duration_seconds(value: str) -> int:
    """Seconds of a duration such as "8h", "90m" or "1h30m" (the `Duration` pattern)."""
    return sum(int(n) * {"s": 1, "m": 60, "h": 3600}[u] for n, u in re.findall(r"([0-9]+)([smh])", value))


def _https_url(value: str) -> str:
    if not re.fullmatch(r"https://[A-Za-z0-9.-]+(:\d+)?(/\S*)?", value):
        raise ValueError("must be an https:// URL, for example 'https://jupyter.example.com/hub/oauth_callback'")
    return value


def _pinned_image(value: str) -> str:
    name, _, digest = value.partition("@")
    tag = name.rsplit("/", 1)[-1].partition(":")[2]
    if not digest and (not tag or tag == "latest"):
        raise ValueError("must be pinned: a version tag other than 'latest' or a digest, for example "
                         "'quay.io/jupyter/scipy-notebook:2026-08-03'")
    return value


HttpsUrl = Annotated[str, AfterValidator(_https_url)]
PinnedImage = Annotated[str, AfterValidator(_pinned_image)]
NotebookGpuSharing = Literal["none", "time-slicing", "mig"]


class NotebookGpuConfig(Model):
    """The GPU a notebook profile asks for: whole GPUs of a type, one time-sliced replica, or one MIG instance."""

    type: str                                            # a gpuTypes key of components/data/gpus.yaml, e.g. t4
    count: Annotated[int, Field(ge=1, le=8)] = 1         # whole GPUs; a shared or MIG profile gets one unit
    sharing: NotebookGpuSharing = "none"
    mig_profile: Annotated[str, AfterValidator(_mig_profile)] | None = None   # with sharing 'mig', e.g. 1g.10gb

    @field_validator("type")
    @classmethod
    def _known_gpu_type(cls, value: str) -> str:
        if value not in catalog.gpu_types():
            raise ValueError(f"is not a GPU type of components/data/gpus.yaml; known: {', '.join(catalog.gpu_types())}")
        return value

    @model_validator(mode="after")
    def _sharing_fields(self) -> NotebookGpuConfig:
        if self.sharing != "none" and self.count != 1:
            raise ValueError(f"count must be 1 with sharing '{self.sharing}': a pod gets one replica or MIG instance")
        if (self.sharing == "mig") != (self.mig_profile is not None):
            raise ValueError("migProfile goes with sharing 'mig' and only with it, for example "
                             "{type: a100-80gb, sharing: mig, migProfile: 1g.10gb}")
        return self


class NotebookProfileConfig(Model):
    """A JupyterHub server profile. Teams list the names they may use in `teams[].notebookProfiles`."""

    name: DnsLabel
    display_name: str | None = None
    description: str | None = None
    cpu: Annotated[float, Field(gt=0, le=192)]
    memory_gb: Annotated[int, Field(alias="memoryGB", ge=1, le=2048)]    # KubeSpawner "G" (10^9 bytes)
    gpu: NotebookGpuConfig | None = None
    image: PinnedImage | None = None          # default: the CPU or CUDA image of components/notebooks.py
    pool: DnsLabel | None = None              # pin a GPU pool; default: the best pool offering the GPU


class NotebookCullingConfig(Model):
    """Idle culling: the hub's culler for every server, a shorter server-side timeout for GPU profiles."""

    idle_timeout: Duration = "8h"             # any server idle this long is stopped (the hub's culler)
    gpu_idle_timeout: Duration = "1h"         # GPU profiles: the server stops itself after this long idle
    max_age: Duration = "72h"                 # any server is stopped after this long, busy or not
    gpu_max_age: Duration = "24h"             # GPU profiles' pods are ended after this long (activeDeadlineSeconds)
    every: Duration = "10m"                   # how often the hub's culler looks

    @model_validator(mode="after")
    def _ordered(self) -> NotebookCullingConfig:
        s = duration_seconds
        if s(self.gpu_idle_timeout) > s(self.idle_timeout):
            raise ValueError("gpuIdleTimeout must not exceed idleTimeout: GPU notebooks are culled sooner, not later")
        if s(self.gpu_max_age) > s(self.max_age):
            raise ValueError("gpuMaxAge must not exceed maxAge")
        if s(self.idle_timeout) > s(self.max_age) or s(self.gpu_idle_timeout) > s(self.gpu_max_age):
            raise ValueError("an idle timeout longer than its maximum age never applies; shorten it")
        if s(self.every) > s(self.gpu_idle_timeout):
            raise ValueError("every must not exceed gpuIdleTimeout, or the culler looks too rarely to honour it")
        if min(s(self.gpu_idle_timeout), s(self.every)) < 60:
            raise ValueError("timeouts below one minute would cull servers while they start")
        return self


class NotebookAuthConfig(Model):
    """How people log in to JupyterHub. `github` and `oidc` take the client secret as a `secure:` config value."""

    type: Literal["github", "oidc", "dummy"] = "dummy"        # dummy: any password, dev only (refused in prod)
    client_id: str | None = None
    client_secret: str | None = None          # `pulumi config set --path --secret notebooks.auth.clientSecret`
    callback_url: HttpsUrl | None = None      # https://<host>/hub/oauth_callback
    allowed_organizations: list[str] = []     # github: only members of these organizations log in
    authorize_url: HttpsUrl | None = None     # oidc: the provider's endpoints
    token_url: HttpsUrl | None = None
    userdata_url: HttpsUrl | None = None
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"              # oidc: the claim listing the user's groups (team membership)
    admin_groups: list[str] = []              # JupyterHub admins
    dummy_users: dict[str, list[DnsLabel]] = {}   # dummy: user -> teams it belongs to (dev)

    @model_validator(mode="after")
    def _fields_for_type(self) -> NotebookAuthConfig:
        if self.type != "dummy":
            missing = [k for k, v in (("clientId", self.client_id), ("clientSecret", self.client_secret),
                                      ("callbackUrl", self.callback_url)) if not v]
            if missing:
                raise ValueError(f"type '{self.type}' needs {', '.join(missing)} (the client secret as a secure "
                                 "value: pulumi config set --path --secret mlops-platform:notebooks.auth.clientSecret)")
            if self.dummy_users:
                raise ValueError("dummyUsers only applies to type 'dummy'")
        if self.type == "github" and not self.allowed_organizations:
            raise ValueError("type 'github' needs allowedOrganizations, or every GitHub user could log in")
        if self.type == "oidc" and not (self.authorize_url and self.token_url and self.userdata_url):
            raise ValueError("type 'oidc' needs authorizeUrl, tokenUrl and userdataUrl (the provider's endpoints)")
        if self.type != "oidc" and any((self.authorize_url, self.token_url, self.userdata_url)):
            raise ValueError("authorizeUrl, tokenUrl and userdataUrl only apply to type 'oidc'")
        return self


class NotebooksConfig(Model):
    """JupyterHub: authentication, profiles (generated from the GPU pools, plus `profiles`), home volumes, culling."""

    enabled: bool = True
    auth: NotebookAuthConfig = NotebookAuthConfig()
    profiles: list[NotebookProfileConfig] = []      # added to the generated ones; same name replaces one
    home_gib: Annotated[int, Field(alias="homeGiB", ge=1, le=1000)] = 10    # per user and team (gp3 PVC)
    culling: NotebookCullingConfig = NotebookCullingConfig()
    team_groups: dict[DnsLabel, str] = {}     # team -> JupyterHub group of its members; default the team's `group`
    hub_replicas: Literal[1] = 1              # the hub keeps state in sqlite on a PVC: one replica only


class TrainingConfig(Model):
    """The Kubeflow training operator (PyTorchJob, TFJob, MPIJob) and where teams' training jobs run."""

    enabled: bool = True
    pool: DnsLabel | None = None              # GPU NodePool for jobs; default: the first spot pool of whole GPUs
    controller_replicas: Annotated[int, Field(ge=1, le=3)] = 1
    # Images the operator injects into team pods (they must pass the team namespaces' image admission policy).
    init_container_image: PinnedImage = "public.ecr.aws/docker/library/alpine:3.22"
    mpi_kubectl_delivery_image: PinnedImage = "docker.io/mpioperator/kubectl-delivery:v0.4.0"


# ---------------------------------------------------------------------------------------------------
# Observability (Prometheus, Grafana dashboards, alerts; components/observability.py)


class ObservabilityAlertsConfig(Model):
    """Thresholds of the platform's model and capacity alerts (the GPU waste alerts' are `gpu.alerts`)."""

    error_rate_percent: Annotated[float, Field(gt=0, le=100)] = 5     # share of a model's requests answered 5xx ...
    error_rate_for: Duration = "5m"                                    # ... for this long
    latency_for: Duration = "10m"            # a model's p99 above its latencyP99Ms for this long
    pending_gpu_pods_for: Duration = "10m"   # a GPU NodePool at its GPU limit while GPU pods wait, for this long


def _scrape_interval(value: str) -> str:
    if not 10 <= duration_seconds(value) <= 60:
        raise ValueError("must be between 10s and 1m: the dashboards' and alerts' 5m rate windows need several "
                         "samples, and shorter intervals multiply Prometheus' load for nothing")
    return value


class ObservabilityConfig(Model):
    """kube-prometheus-stack (Prometheus, Grafana, kube-state-metrics, the operator) on the system nodes."""

    enabled: bool = True
    retention_days: Annotated[int, Field(ge=1, le=3650)] | None = None      # default 15, in prod 31 (a month of cost)
    storage_gib: Annotated[int, Field(alias="storageGiB", ge=10, le=16000)] = 50   # each Prometheus replica's volume
    storage_class: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")] = "gp3"
    prometheus_replicas: Annotated[int, Field(ge=1, le=3)] = 1
    scrape_interval: Annotated[Duration, AfterValidator(_scrape_interval)] = "30s"
    node_exporter: bool = False             # node CPU/memory/disk metrics (a DaemonSet on every node, GPU nodes too)
    alerts: ObservabilityAlertsConfig = ObservabilityAlertsConfig()

    def retention(self, is_prod: bool) -> int:
        """Days Prometheus keeps: `retentionDays`, else 31 in prod (a month of GPU cost) and 15 elsewhere."""
        return self.retention_days or (31 if is_prod else 15)


# ---------------------------------------------------------------------------------------------------
# The whole stack


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


def gpu_capacity(cfg: PlatformConfig) -> int:
    """The most GPUs the stack's GPU pools can supply at once: the sum of every declared GPU pool's maximum.

    Managed GPU node groups count `maxSize` x GPUs per instance; every other GPU pool the config declares
    (Karpenter GPU NodePools) counts its `nvidia.com/gpu` limit. A team's `gpuQuota` may not exceed it.
    """
    return sum(g.max_gpus for g in cfg.cluster.gpu_node_groups) + \
        sum(p.limits(cfg.gpu.mig_strategy)[labels.GPU_RESOURCE] for p in cfg.gpu.node_pools)


def gpu_resource_supply(cfg: PlatformConfig) -> dict[str, int]:
    """Every GPU extended resource the stack's GPU pools advertise, with the most units they can supply at once:
    `nvidia.com/gpu`, and where pools share GPUs `nvidia.com/gpu.shared` and `nvidia.com/mig-<profile>`."""
    supply = {labels.GPU_RESOURCE: sum(g.max_gpus for g in cfg.cluster.gpu_node_groups)}
    for pool in cfg.gpu.node_pools:
        for resource, units in pool.limits(cfg.gpu.mig_strategy).items():
            if resource != "cpu":
                supply[resource] = supply.get(resource, 0) + units
    return supply


def team_gpu_quota(cfg: PlatformConfig, team: TeamConfig) -> dict[str, int]:
    """The team's quota for every GPU resource the stack offers. Shared resources the team's config does not set
    default to what `gpuQuota` whole GPUs would give (GPUs x replicas or MIG instances per GPU), at most the supply."""
    supply = gpu_resource_supply(cfg)
    per_gpu: dict[str, int] = {}
    for pool in cfg.gpu.node_pools:
        for resource, units in pool.gpu_resources(cfg.gpu.mig_strategy).items():
            per_gpu[resource] = max(per_gpu.get(resource, 0), units)
    explicit = {labels.MIG_RESOURCE_PREFIX + p: n for p, n in team.mig_quota.items()}
    if team.shared_gpu_quota is not None:
        explicit[labels.GPU_SHARED_RESOURCE] = team.shared_gpu_quota
    quota = {r: min(team.gpu_quota * per_gpu.get(r, 1), n) for r, n in supply.items() if r != labels.GPU_RESOURCE}
    return {**quota, **explicit, labels.GPU_RESOURCE: team.gpu_quota}


def _team_rule_errors(cfg: PlatformConfig) -> list[tuple[str, str, Any]]:
    """Tenancy rules across sections: quotas against GPU capacity, one team per IAM role."""
    errors: list[tuple[str, str, Any]] = []
    capacity = gpu_capacity(cfg)
    supply = gpu_resource_supply(cfg)
    for i, team in enumerate(cfg.teams):
        shared = [(f"teams[{i}].migQuota[{p}]", labels.MIG_RESOURCE_PREFIX + p, n) for p, n in team.mig_quota.items()]
        if team.shared_gpu_quota is not None:
            shared.append((f"teams[{i}].sharedGpuQuota", labels.GPU_SHARED_RESOURCE, team.shared_gpu_quota))
        for path, resource, n in shared:
            if resource not in supply:
                offered = ", ".join(sorted(r for r in supply if r != labels.GPU_RESOURCE)) or "none"
                errors.append((path, f"asks for {resource}, which no GPU pool offers (shared GPU resources offered: "
                               f"{offered}); add a pool with that sharing under gpu.nodePools", n))
            elif n > supply[resource]:
                errors.append((path, f"exceeds the {supply[resource]} {resource} the GPU pools can supply at most",
                               n))
    owner: dict[str, str] = {arn: "cluster.adminRoleArns" for arn in cfg.cluster.admin_role_arns}
    for i, team in enumerate(cfg.teams):
        if team.gpu_quota > capacity:
            errors.append((f"teams[{i}].gpuQuota",
                           f"exceeds the {capacity} GPUs the stack's GPU pools can supply at most; lower it or "
                           "raise a GPU pool's maximum (cluster.gpuNodeGroups maxSize or a GPU NodePool's limit)",
                           team.gpu_quota))
        for j, arn in enumerate(team.member_role_arns):
            if arn in owner:
                errors.append((f"teams[{i}].memberRoleArns[{j}]",
                               f"is already in {owner[arn]}; EKS gives a role one access entry, so a role can "
                               "belong to one team only", arn))
            owner.setdefault(arn, f"teams[{i}].memberRoleArns")
    return errors


def _dataset_rule_errors(cfg: PlatformConfig) -> list[tuple[str, str, Any]]:
    """Datasets against teams and the network: references exist, names unique, subnet exists, prod backups."""
    errors: list[tuple[str, str, Any]] = []
    team_names = [t.name for t in cfg.teams]
    dataset_names = [d.name for d in cfg.datasets]
    subnets = len(cfg.network.existing.private_subnet_ids) if cfg.network.existing else cfg.network.az_count
    for i, d in enumerate(cfg.datasets):
        if dataset_names.index(d.name) != i:
            errors.append((f"datasets[{i}].name", "must be unique; another dataset already has this name", d.name))
        for j, team in enumerate(d.teams):
            if team not in team_names:
                errors.append((f"datasets[{i}].teams[{j}]",
                               f"names no team in `teams`; known: {known(team_names, team)}", team))
        if d.subnet_index >= subnets:
            errors.append((f"datasets[{i}].subnetIndex",
                           f"must be less than {subnets}, the number of private subnets (FSx for Lustre lives in "
                           "one subnet, one AZ)", d.subnet_index))
        if cfg.is_prod and d.fsx.backups and d.backup_days(is_prod=True) < 1:
            errors.append((f"datasets[{i}].backupRetentionDays",
                           f"must be at least 1 in prod for {d.deployment_type}: persistent file systems are backed "
                           "up daily", d.backup_retention_days))
    for i, team in enumerate(cfg.teams):
        for j, name in enumerate(team.datasets):
            if name not in dataset_names:
                errors.append((f"teams[{i}].datasets[{j}]",
                               f"names no dataset in `datasets`; known: {known(dataset_names, name)}", name))
    return errors


def _serving_rule_errors(cfg: PlatformConfig) -> list[tuple[str, str, Any]]:
    """Model deployments against the serving catalog (components/data/serving.yaml)."""
    errors: list[tuple[str, str, Any]] = []
    frameworks = catalog.serving_frameworks()
    for i, team in enumerate(cfg.teams):
        for j, m in enumerate(team.models):
            path, fw = f"teams[{i}].models[{j}]", frameworks[m.framework]
            if m.gpu and fw.gpu_rps_per_replica is None:
                errors.append((f"{path}.gpu", f"cannot be true for framework '{m.framework}': its runtime "
                               f"({fw.runtime}) has no GPU path; serve it on CPU or export it to onnx", m.gpu))
            if m.latency_p99_ms < fw.min_p99_ms:
                errors.append((f"{path}.latencyP99Ms", f"is below the {fw.min_p99_ms} ms the '{m.framework}' "
                               "runtime needs to answer at all (model server and queue-proxy overhead)",
                               m.latency_p99_ms))
            if m.canary is not None and m.canary.location.rstrip("/") == m.location.rstrip("/"):
                errors.append((f"{path}.canary.location", "must differ from `location`: a canary rolls out a new "
                               "model version next to the one at `location`", m.canary.location))
        errors += _model_quota_errors(cfg, i, team)
    return errors


def _model_quota_errors(cfg: PlatformConfig, i: int, team: TeamConfig) -> list[tuple[str, str, Any]]:
    """A team's quota must let its models scale to their peak (CPU, memory) and start at all (GPUs)."""
    frameworks = catalog.serving_frameworks()
    cpus = memory = min_gpus = 0.0
    for m in team.models:
        fw, size = frameworks[m.framework], m.sizing(cfg.is_prod)
        cpus += size.max_replicas * float(fw.cpu)
        memory += size.max_replicas * fw.memory_gib
        min_gpus += size.min_replicas if m.gpu else 0
    peak = "at their peak traffic (maxReplicas x the replica's requests, components/data/serving.yaml)"
    checks = [("cpuQuota", team.cpu_quota, cpus, f"CPUs the team's models need {peak}"),
              ("memoryQuotaGib", team.memory_quota_gib, memory, f"GiB the team's models need {peak}"),
              ("gpuQuota", team.gpu_quota, min_gpus, "GPUs the team's GPU models need to start (their minReplicas)")]
    return [(f"teams[{i}].{key}", f"is below the {need:g} {what}; raise it, or lower the models' peakRps",
             quota) for key, quota, need, what in checks if need > quota]


def _mlflow_rule_errors(cfg: PlatformConfig) -> list[tuple[str, str, Any]]:
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
    return [(path, msg, value) for path, broken, msg, value in rules if broken]


def _gpu_rule_errors(cfg: PlatformConfig) -> list[tuple[str, str, Any]]:
    """GPU and CPU NodePools: unique names, GPU limits that fit a node, sharing within the catalog's limits."""
    errors: list[tuple[str, str, Any]] = []
    seen: dict[str, str] = {f"gpu-{g.name}": "cluster.gpuNodeGroups" for g in cfg.cluster.gpu_node_groups}
    seen.update({g.name: "cluster.gpuNodeGroups" for g in cfg.cluster.gpu_node_groups})
    pools = [(f"gpu.nodePools[{i}]", p) for i, p in enumerate(cfg.gpu.node_pools)] + \
            [(f"karpenter.cpuNodePools[{i}]", p) for i, p in enumerate(cfg.karpenter.cpu_node_pools)]
    for path, pool in pools:
        if pool.name in seen:
            errors.append((f"{path}.name", f"must be unique; {seen[pool.name]} already uses this name (NodePools, "
                           f"node groups and the {labels.NODE_POOL} label share one name space)", pool.name))
        seen.setdefault(pool.name, path)
    for i, pool in enumerate(cfg.gpu.node_pools):
        path, s = f"gpu.nodePools[{i}]", pool.sharing
        smallest = pool.gpus_per_node[0]
        if pool.gpu_limit < smallest:
            errors.append((f"{path}.gpuLimit", f"must be at least {smallest}: the pool's smallest instance type "
                           f"carries {smallest} GPUs, so no node could ever start", pool.gpu_limit))
        family = pool.ami.family_name if pool.ami else (
            "Bottlerocket" if cfg.karpenter.ami_alias.startswith("bottlerocket@") else "AL2023")
        if family == "Bottlerocket" and s.mode != "none":
            errors.append((f"{path}.sharing.mode", "must be 'none' on Bottlerocket nodes: Bottlerocket runs its own "
                           "NVIDIA device plugin, which the GPU operator's sharing configs do not reach; use an "
                           "AL2023 AMI for shared GPUs", s.mode))
        if s.mode != "time-slicing" and s.replicas is not None:
            errors.append((f"{path}.sharing.replicas", f"only applies to mode 'time-slicing' (mode is '{s.mode}')",
                           s.replicas))
        if s.mode != "mig" and s.mig_layout:
            errors.append((f"{path}.sharing.migLayout", f"only applies to mode 'mig' (mode is '{s.mode}')", None))
        if s.mode == "time-slicing":
            low, high = catalog.time_slicing_replicas_range(pool.gpu_type)
            if s.replicas is None:
                errors.append((f"{path}.sharing.replicas", f"is required with mode 'time-slicing' ({low} to {high} "
                               f"for {pool.gpu_type} GPUs)", None))
            elif not low <= s.replicas <= high:
                errors.append((f"{path}.sharing.replicas", f"must be between {low} and {high} for {pool.gpu_type} "
                               f"GPUs ({catalog.gpu_types()[pool.gpu_type].memory_gib} GiB, shared by every "
                               "replica; see components/data/time-slicing.yaml)", s.replicas))
        if s.mode == "mig":
            if catalog.mig_model(pool.gpu_type) is None:
                errors.append((f"{path}.sharing.mode", catalog.mig_layout_problems(pool.gpu_type, {})[0], s.mode))
            elif not s.mig_layout:
                profiles = ", ".join(catalog.mig_model(pool.gpu_type).profiles)
                errors.append((f"{path}.sharing.migLayout", f"is required with mode 'mig': profile -> instances per "
                               f"GPU, from {profiles}", None))
            else:
                for problem in catalog.mig_layout_problems(pool.gpu_type, s.mig_layout, cfg.gpu.mig_strategy):
                    errors.append((f"{path}.sharing.migLayout", f"impossible on {pool.gpu_type}: {problem}", None))
    return errors


def _supply_chain_rule_errors(cfg: PlatformConfig) -> list[tuple[str, str, Any]]:
    """CI push roles trust only the platform's scanning workflow; prod admission denies."""
    errors: list[tuple[str, str, Any]] = []
    sc = cfg.supply_chain
    pushers = [f"teams[{i}].ciRepository" for i, t in enumerate(cfg.teams) if t.ci_repository]
    if pushers and sc.workflow_repository is None:
        errors.append(("supplyChain.workflowRepository",
                       f"is required when a team sets ciRepository ({', '.join(pushers)}): name the repository "
                       "holding .github/workflows/team-image.yml (owner/name), so only that scanning workflow may "
                       "push images", None))
    if cfg.is_prod and sc.admission_action != "Deny":
        errors.append(("supplyChain.admissionAction",
                       "must be 'Deny' in prod: with 'Warn' unscanned or unpinned images still run",
                       sc.admission_action))
    return errors


# ---- notebooks and training: GPU pools as profiles and jobs see them -------------------------------------------


class GpuPool(NamedTuple):
    """A GPU pool (managed node group or Karpenter NodePool) as notebook profiles and training jobs select it: nodes
    carry `mlops.platform/node-pool: <name>` and `mlops.platform/gpu-type: <gpu_type>`."""

    name: str
    gpu_type: str
    sharing: str                          # none | time-slicing | mig
    capacity_types: tuple[str, ...]       # spot / on-demand
    instance_types: tuple[str, ...]
    resources: dict[str, int]             # extended resource -> units per physical GPU
    mig_layout: dict[str, int]
    karpenter: bool


def gpu_pools(cfg: PlatformConfig) -> list[GpuPool]:
    """Every GPU pool of the stack: node groups (whole GPUs) first, then GPU NodePools, in config order."""
    pools = [GpuPool(g.name, g.gpu_type, "none", (g.capacity_type.lower().replace("_", "-"),),
                     tuple(g.instance_types), {labels.GPU_RESOURCE: 1}, {}, False)
             for g in cfg.cluster.gpu_node_groups]
    pools += [GpuPool(p.name, p.gpu_type, p.sharing.mode, tuple(p.capacity_types), tuple(p.instance_types),
                      p.gpu_resources(cfg.gpu.mig_strategy), dict(p.sharing.mig_layout), True)
              for p in cfg.gpu.node_pools]
    return pools


class NotebookProfile(NamedTuple):
    """A notebook profile resolved against the GPU pools: what its pods request and where they run."""

    name: str
    display_name: str
    description: str
    cpu: float
    memory_gb: int
    image: str | None                     # None: the component's default CPU or CUDA image
    gpu_type: str | None                  # None: a CPU profile
    sharing: str
    pool: str | None                      # the GPU pool (node-pool label value) its pods select
    resource: str | None                  # extended resource requested, e.g. nvidia.com/gpu, nvidia.com/mig-1g.10gb
    units: int


# Sizes of the generated profiles (cores, GB): the seed's CPU and T4 profiles; shared GPUs get a slice of a node.
NOTEBOOK_SIZES = {"cpu": (2, 4), "none": (4, 16), "time-slicing": (1, 4), "mig": (2, 16)}
# What a node keeps for the kubelet, system daemons and DaemonSets (approximate; EKS reserves by instance size).
NODE_RESERVED_CPU = 0.25
NODE_RESERVED_GIB = 1.5


def _fits(pool: GpuPool, cpu: float, memory_gb: int) -> bool:
    table = catalog.instance_types()
    return any(cpu <= table[t].vcpu - NODE_RESERVED_CPU and memory_gb * 1e9 <= (table[t].memory_gib - NODE_RESERVED_GIB)
               * 2 ** 30 for t in pool.instance_types)


def _gpu_candidates(pools: list[GpuPool], gpu: NotebookGpuConfig) -> list[GpuPool]:
    return [p for p in pools if p.gpu_type == gpu.type and p.sharing == gpu.sharing
            and (gpu.sharing != "mig" or gpu.mig_profile in p.mig_layout)]


def _generated_profiles(cfg: PlatformConfig, pools: list[GpuPool]) -> list[NotebookProfileConfig]:
    """CPU, plus one profile per GPU type offered whole, per time-sliced GPU type and per MIG pool's smallest slice."""
    def make(name: str, display: str, sharing: str, gpu: NotebookGpuConfig | None) -> NotebookProfileConfig:
        cores, gb = NOTEBOOK_SIZES["cpu" if gpu is None else sharing]
        size = f"{cores} core{'s' if cores != 1 else ''}, {gb} GB"
        return NotebookProfileConfig(name=name, display_name=f"{display}, {size}" if gpu else f"CPU only: {size}",
                                     cpu=cores, memory_gb=gb, gpu=gpu)

    profiles, seen = [make("cpu", "CPU", "cpu", None)], {"cpu"}
    for pool in pools:
        product = catalog.gpu_types()[pool.gpu_type].product
        if pool.sharing == "none":
            name, display, gpu = pool.gpu_type, f"{product}: 1 GPU", NotebookGpuConfig(type=pool.gpu_type)
        elif pool.sharing == "time-slicing":
            name, display = f"{pool.gpu_type}-shared", f"{product}: a time-sliced share of 1 GPU"
            gpu = NotebookGpuConfig(type=pool.gpu_type, sharing="time-slicing")
        else:
            model = catalog.mig_model(pool.gpu_type)
            if model is None or not pool.mig_layout:
                continue
            smallest = min(pool.mig_layout, key=lambda p: (model.profiles[p].compute_slices,
                                                           model.profiles[p].memory_slices) if p in model.profiles
                           else (99, 99))
            name, display = f"mig-{smallest.replace('.', '-').replace('+', '-')}", f"{product}: MIG slice {smallest}"
            gpu = NotebookGpuConfig(type=pool.gpu_type, sharing="mig", mig_profile=smallest)
        if name in seen:
            continue
        profile = make(name, display, gpu.sharing, gpu)
        candidates = _gpu_candidates(pools, gpu)
        if not any(_fits(p, profile.cpu, profile.memory_gb) for p in candidates):
            # Smaller instances only (e.g. a g4dn.xlarge node group): the largest size that fits one of them.
            table = catalog.instance_types()
            largest = max((table[t] for p in candidates for t in p.instance_types),
                          key=lambda i: (i.vcpu, i.memory_gib))
            cores = min(profile.cpu, math.floor(largest.vcpu - NODE_RESERVED_CPU))
            gb = min(profile.memory_gb, math.floor((largest.memory_gib - NODE_RESERVED_GIB) * 2 ** 30 / 1e9))
            if cores < 1 or gb < 1:
                continue
            profile = make(name, display, gpu.sharing, gpu).model_copy(update={
                "cpu": cores, "memory_gb": gb,
                "display_name": f"{display}, {cores} core{'s' if cores != 1 else ''}, {gb} GB"})
        profiles.append(profile)
        seen.add(name)
    return profiles


def _resolve_notebook_profiles(cfg: PlatformConfig) -> tuple[dict[str, NotebookProfile], list[tuple[str, str, Any]]]:
    pools = gpu_pools(cfg)
    errors: list[tuple[str, str, Any]] = []
    declared = [(None, p) for p in _generated_profiles(cfg, pools)]
    names = [p.name for p in cfg.notebooks.profiles]
    for i, p in enumerate(cfg.notebooks.profiles):
        if names.index(p.name) != i:
            errors.append((f"notebooks.profiles[{i}].name", "must be unique among notebooks.profiles", p.name))
        declared = [(j, q) for j, q in declared if q.name != p.name] + [(i, p)]
    resolved: dict[str, NotebookProfile] = {}
    for i, p in declared:
        path = f"notebooks.profiles[{i}]"
        display = p.display_name or p.name
        if p.gpu is None:
            if p.pool is not None and i is not None:
                errors.append((f"{path}.pool", "only applies to GPU profiles (CPU profiles run on the CPU NodePools)",
                               p.pool))
            resolved[p.name] = NotebookProfile(p.name, display, p.description or "", p.cpu, p.memory_gb, p.image,
                                               None, "none", None, None, 0)
            continue
        candidates = _gpu_candidates(pools, p.gpu)
        if not candidates:
            offered = ", ".join(sorted({f"{q.gpu_type} ({q.sharing})" for q in pools})) or "none"
            errors.append((f"{path}.gpu.type", f"names GPU type '{p.gpu.type}' with sharing '{p.gpu.sharing}'"
                           + (f" and MIG profile {p.gpu.mig_profile}" if p.gpu.mig_profile else "")
                           + f", which no GPU pool offers (pools offer: {offered}); pick one of those or add a pool "
                           "under gpu.nodePools", p.gpu.type))
            continue
        if p.pool is not None:
            candidates = [q for q in candidates if q.name == p.pool]
            if not candidates:
                errors.append((f"{path}.pool", f"names no GPU pool offering {p.gpu.type} ({p.gpu.sharing})", p.pool))
                continue
        fitting = [q for q in candidates if _fits(q, p.cpu, p.memory_gb)]
        if not fitting:
            errors.append((f"{path}.cpu", f"{p.cpu:g} cores and {p.memory_gb} GB do not fit any instance type of the "
                           f"pools offering {p.gpu.type} ({', '.join(q.name for q in candidates)}), after what a node "
                           "keeps for itself; ask for less or add a larger instance type", p.cpu))
            continue
        # Interactive work: on-demand capacity first (a spot reclaim loses the kernel's state), then config order.
        pool = sorted(fitting, key=lambda q: "on-demand" not in q.capacity_types)[0]
        per_node = catalog.max_gpus_per_instance(list(pool.instance_types))
        if p.gpu.count > per_node:
            errors.append((f"{path}.gpu.count", f"exceeds the {per_node} GPUs the largest instance of pool "
                           f"'{pool.name}' carries", p.gpu.count))
            continue
        if p.gpu.sharing == "none":
            resource, units = labels.GPU_RESOURCE, p.gpu.count
        elif p.gpu.sharing == "mig" and labels.MIG_RESOURCE_PREFIX + p.gpu.mig_profile in pool.resources:
            resource, units = labels.MIG_RESOURCE_PREFIX + p.gpu.mig_profile, 1
        else:       # time-sliced replicas, or MIG with strategy single: one unit of the pool's only resource
            resource, units = next(iter(pool.resources)), 1
        resolved[p.name] = NotebookProfile(p.name, display, p.description or "", p.cpu, p.memory_gb, p.image,
                                           p.gpu.type, p.gpu.sharing, pool.name, resource, units)
    return resolved, errors


def notebook_profiles(cfg: PlatformConfig) -> dict[str, NotebookProfile]:
    """Every notebook profile of the stack by name: the generated ones and `notebooks.profiles`, resolved."""
    return _resolve_notebook_profiles(cfg)[0]


def team_notebook_group(cfg: PlatformConfig, team: TeamConfig) -> str:
    """The JupyterHub group whose members see the team's profiles: `notebooks.teamGroups`, else the team's group."""
    return cfg.notebooks.team_groups.get(team.name, team.kubernetes_group)


def training_pool(cfg: PlatformConfig) -> GpuPool | None:
    """The GPU pool training jobs select: `training.pool`, else the first spot-capable pool of whole GPUs
    (Karpenter NodePools before managed node groups)."""
    pools = [p for p in gpu_pools(cfg) if p.sharing == "none"]
    if cfg.training.pool is not None:
        return next((p for p in pools if p.name == cfg.training.pool), None)
    spot = sorted((p for p in pools if "spot" in p.capacity_types), key=lambda p: not p.karpenter)
    return spot[0] if spot else None


def _image_allowed(image: str, prefixes: list[str]) -> bool:
    """The admission policy's prefix rule (a `docker.io/<org>/` prefix also allows the short `<org>/...`)."""
    short = [p[len("docker.io/"):] for p in prefixes if p.startswith("docker.io/")]
    first = image.split("/", 1)[0]
    return any(image.startswith(p) for p in prefixes) or ("." not in first and any(image.startswith(p) for p in short))


def _notebook_rule_errors(cfg: PlatformConfig) -> list[tuple[str, str, Any]]:
    """Profiles against the GPU pools, teams' profiles against their quotas, authentication in prod."""
    nb = cfg.notebooks
    errors: list[tuple[str, str, Any]] = []
    if cfg.is_prod and nb.enabled and nb.auth.type == "dummy":
        errors.append(("notebooks.auth.type", "must not be 'dummy' in prod (anyone could log in with any password); "
                       "use 'github' or 'oidc' with a secure clientSecret", nb.auth.type))
    profiles, profile_errors = _resolve_notebook_profiles(cfg)
    errors += profile_errors
    allowed = list(cfg.supply_chain.allowed_registries)
    for i, p in enumerate(nb.profiles):
        if p.image is not None and not _image_allowed(p.image, allowed):
            errors.append((f"notebooks.profiles[{i}].image", "is not from a registry in supplyChain.allowedRegistries; "
                           "the team namespaces' admission policy would refuse the notebook pod", p.image))
    team_names = [t.name for t in cfg.teams]
    for team, _ in nb.team_groups.items():
        if team not in team_names:
            errors.append((f"notebooks.teamGroups.{team}", f"names no team in `teams`; known: "
                           f"{known(team_names, team)}", team))
    for user, teams in nb.auth.dummy_users.items():
        for j, team in enumerate(teams):
            if team not in team_names:
                errors.append((f"notebooks.auth.dummyUsers.{user}[{j}]", f"names no team in `teams`; known: "
                               f"{known(team_names, team)}", team))
    for i, team in enumerate(cfg.teams):
        quota = team_gpu_quota(cfg, team)
        for j, name in enumerate(team.notebook_profiles):
            path = f"teams[{i}].notebookProfiles[{j}]"
            if name not in profiles:
                if not any(e[0].startswith("notebooks.profiles") for e in profile_errors):
                    errors.append((path, f"names no notebook profile of this stack; known: {', '.join(profiles)} "
                                   "(generated from the GPU pools, plus notebooks.profiles)", name))
                continue
            p = profiles[name]
            if p.resource is not None and p.units > quota.get(p.resource, 0):
                errors.append((path, f"asks for {p.units} {p.resource} per notebook, more than the team's quota of "
                               f"{quota.get(p.resource, 0)}; raise the quota or use a smaller profile", name))
    return errors


def _training_rule_errors(cfg: PlatformConfig) -> list[tuple[str, str, Any]]:
    tr = cfg.training
    if not tr.enabled:
        return []
    errors: list[tuple[str, str, Any]] = []
    if training_pool(cfg) is None:
        whole = ", ".join(p.name for p in gpu_pools(cfg) if p.sharing == "none") or "none"
        if tr.pool is not None:
            errors.append(("training.pool", f"names no GPU pool of whole GPUs; pools of whole GPUs: {whole}", tr.pool))
        else:
            errors.append(("training.pool", f"is required: no GPU pool offers spot capacity of whole GPUs; name one "
                           f"of: {whole}", None))
    allowed = list(cfg.supply_chain.allowed_registries)
    for key, image in (("initContainerImage", tr.init_container_image),
                       ("mpiKubectlDeliveryImage", tr.mpi_kubectl_delivery_image)):
        if not _image_allowed(image, allowed):
            errors.append((f"training.{key}", "is not from a registry in supplyChain.allowedRegistries; the operator "
                           "puts it into team pods, which the image admission policy would refuse", image))
    return errors


def _observability_rule_errors(cfg: PlatformConfig) -> list[tuple[str, str, Any]]:
    """Prod keeps its alerts and a month of metrics; every model's latency target is one the alert can see."""
    obs = cfg.observability
    errors: list[tuple[str, str, Any]] = []
    if cfg.is_prod and not obs.enabled:
        errors.append(("observability.enabled", "must be true in prod: the latency, error-rate and GPU capacity "
                       "alerts and the cost dashboards depend on it", obs.enabled))
    if cfg.is_prod and obs.retention_days is not None and obs.retention_days < 31:
        errors.append(("observability.retentionDays", "must be at least 31 in prod, so the cost dashboard can show a "
                       "whole month of GPU cost", obs.retention_days))
    if obs.enabled:
        top_ms = catalog.inference_latency_buckets_seconds()[-1] * 1000
        for i, team in enumerate(cfg.teams):
            for j, m in enumerate(team.models):
                if m.latency_p99_ms >= top_ms:
                    errors.append((f"teams[{i}].models[{j}].latencyP99Ms", f"must be below {top_ms:g} ms: the "
                                   "queue-proxy's latency histogram ends there (components/data/metrics.yaml), so "
                                   "the p99 alert could never fire above it", m.latency_p99_ms))
        for key, value in (("errorRateFor", obs.alerts.error_rate_for), ("latencyFor", obs.alerts.latency_for),
                           ("pendingGpuPodsFor", obs.alerts.pending_gpu_pods_for)):
            if duration_seconds(value) < 2 * duration_seconds(obs.scrape_interval):
                errors.append((f"observability.alerts.{key}", f"must be at least two scrape intervals "
                               f"(scrapeInterval {obs.scrape_interval}), or one missed scrape fires or clears the "
                               "alert", value))
    return errors


def _rule_errors(cfg: PlatformConfig) -> list[tuple[str, str, Any]]:
    """Rules across sections, as (key path, message, value). Run only once the structure is valid."""
    errors: list[tuple[str, str, Any]] = []
    names = [t.name for t in cfg.teams]
    for i, team in enumerate(cfg.teams):
        if names.index(team.name) != i:
            errors.append((f"teams[{i}].name", "must be unique; another team already has this name", team.name))
        model_names = [m.name for m in team.models]
        for j, m in enumerate(team.models):
            if model_names.index(m.name) != j:
                errors.append((f"teams[{i}].models[{j}].name", "must be unique within the team", m.name))
    errors += _team_rule_errors(cfg)
    errors += _dataset_rule_errors(cfg)
    errors += _gpu_rule_errors(cfg)
    errors += _serving_rule_errors(cfg)
    errors += _mlflow_rule_errors(cfg)
    errors += _supply_chain_rule_errors(cfg)
    # Profiles and training jobs are resolved against the GPU pools: only once the pools themselves are valid.
    if not _gpu_rule_errors(cfg):
        errors += _notebook_rule_errors(cfg)
        errors += _training_rule_errors(cfg)
    errors += _observability_rule_errors(cfg)
    if cfg.is_prod:
        prod_rules = [
            ("network.azCount", cfg.network.existing is None and cfg.network.az_count < 3,
             "must be at least 3 in prod (multi-AZ control of failure domains)", cfg.network.az_count),
            ("network.natGateways", cfg.network.existing is None and cfg.network.nat_gateways != "perAz",
             "must be 'perAz' in prod, so one AZ outage does not cut every private subnet off",
             cfg.network.nat_gateways),
            ("cluster.systemNodes.capacityType", cfg.cluster.system_nodes.capacity_type != "ON_DEMAND",
             "must be 'ON_DEMAND' in prod: spot reclaims would evict the platform's controllers",
             cfg.cluster.system_nodes.capacity_type),
            ("protectData", not cfg.protect_data,
             "must be true in prod, so data stores and keys cannot be deleted by a `pulumi up`", cfg.protect_data),
        ]
        errors += [(path, msg, value) for path, broken, msg, value in prod_rules if broken]
    return errors


# ---------------------------------------------------------------------------------------------------
# Loading and error reporting


class ConfigError(pulumi.RunError):
    """Invalid stack config. Its message lists every problem, one per line, with its key path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            f"the stack config has {len(problems)} problem{'s' if len(problems) != 1 else ''}:\n"
            + "\n".join(f"  {p}" for p in problems)
        )


def _key_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith("function-after") or part in ("literal", "str", "int", "[key]"):
            continue  # pydantic's internal step names, not keys the user wrote
        else:
            path += f".{part}" if path else part
    return path


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = next((f for f in model.model_fields.values() if f.alias == part), None)
        if field is None:
            return []
        ann = field.annotation
        inner = getattr(ann, "__args__", None) or (ann,)
        nested = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nested is None:
            inner2 = [x for a in inner for x in (getattr(a, "__args__", None) or ())]
            nested = next((a for a in inner2 if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nested is None:
            return []
        model = nested
    return [f.alias for f in model.model_fields.values() if f.alias]


def _message(err: dict) -> str:
    kind, ctx = err["type"], err.get("ctx", {})
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        known = _known_keys(PlatformConfig, err["loc"])
        close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else (f"; known keys: {', '.join(known)}" if known else "")
        return f"is not a known setting{hint}"
    if kind in ("greater_than_equal", "greater_than") and ctx.get("ge", ctx.get("gt")) in (0, 1):
        return "must be a non-negative integer" if ctx.get("ge") == 0 else "must be a positive number"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "must be a whole number"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind == "string_pattern_mismatch":
        return f"must match the pattern {ctx.get('pattern')}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return err["msg"][0].lower() + err["msg"][1:]


def _format(path: str, message: str, value: Any, has_value: bool = True) -> str:
    shown = f" (got: {json.dumps(value, default=str)})" if has_value and not isinstance(value, (dict, list)) else ""
    return f"{path or '(top level)'}: {message}{shown}"


def parse_config(raw: dict[str, Any]) -> PlatformConfig:
    """Validate a whole stack config (keys without the project prefix). Raise ConfigError listing all problems."""
    try:
        cfg = PlatformConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [
            _format(_key_path(e["loc"]), _message(e), e.get("input"), e["type"] not in ("missing",))
            for e in exc.errors(include_url=False)
        ]
        raise ConfigError(problems) from None
    rule_errors = _rule_errors(cfg)
    if rule_errors:
        raise ConfigError([_format(p, m, v) for p, m, v in rule_errors])
    return cfg


def _decode(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def load_config() -> PlatformConfig:
    """Read every `mlops-platform:*` key of the running stack and validate the whole."""
    from pulumi.runtime import config as runtime_config

    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = f"{PROJECT}:"
    raw = {k[len(prefix):]: _decode(v) for k, v in values.items() if k.startswith(prefix)}
    return parse_config(raw)

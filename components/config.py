"""The stack config: one typed model of everything a `Pulumi.<stack>.yaml` may say.

Users write camelCase keys under the `mlops-platform:` namespace; each top-level key is one field of
`PlatformConfig`. The whole config is validated before any resource is declared, and every problem is
reported at once with its key path (`teams[1].gpuQuota: ...`).
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from typing import Annotated, Any, Literal

import pulumi
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from components import catalog

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
        known = ", ".join(sorted(catalog.instance_types()))
        raise ValueError(f"is not a GPU instance type in the catalog (components/data/gpus.yaml); known: {known}")
    return value


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
Cidr = Annotated[str, AfterValidator(_cidr)]
IamRoleArn = Annotated[str, AfterValidator(_iam_role_arn)]
S3Uri = Annotated[str, AfterValidator(_s3_uri)]
GpuInstanceType = Annotated[str, AfterValidator(_gpu_instance_type)]
CapacityType = Literal["ON_DEMAND", "SPOT"]


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
    addon_versions: dict[Literal["vpc-cni", "coredns", "kube-proxy", "aws-ebs-csi-driver"], str] = {}
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


class ModelDeploymentConfig(Model):
    """A model a team serves: where it is and the traffic it must take; the platform sizes the rest."""

    name: DnsLabel
    location: S3Uri
    framework: Literal["sklearn", "xgboost", "lightgbm", "pytorch", "tensorflow", "onnx", "huggingface", "triton"]
    peak_rps: Annotated[float, Field(gt=0)]
    latency_p99_ms: Annotated[int, Field(gt=0)] = 100
    gpu: bool = False


class TeamConfig(Model):
    name: DnsLabel
    gpu_quota: Annotated[int, Field(ge=0)]
    notebook_profiles: list[str] = ["cpu"]
    datasets: list[DnsLabel] = []
    models: list[ModelDeploymentConfig] = []


# ---------------------------------------------------------------------------------------------------
# The whole stack


class PlatformConfig(Model):
    environment: Literal["dev", "prod"]
    protect_data: bool = False
    network: NetworkConfig = NetworkConfig()
    cluster: ClusterConfig = ClusterConfig()
    teams: list[TeamConfig] = []

    @property
    def is_prod(self) -> bool:
        return self.environment == "prod"


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
        elif part.startswith("function-after") or part in ("literal", "str", "int"):
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

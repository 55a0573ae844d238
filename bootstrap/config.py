"""The bootstrap stack's config (`mlops-bootstrap:*` keys), validated before any resource is declared."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationError

from components.config import ConfigError, GithubRepository, Model

PROJECT = "mlops-bootstrap"


def _bucket_name(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", value):
        raise ValueError("must be an S3 bucket name (lower-case letters, digits, hyphens; 3-63 characters), "
                         "for example 'acme-mlops-pulumi-state'")
    return value


def _kms_alias(value: str) -> str:
    if not re.fullmatch(r"alias/[A-Za-z0-9/_-]{1,250}", value) or value.startswith("alias/aws/"):
        raise ValueError("must be a KMS alias such as 'alias/mlops-pulumi-secrets' (not under alias/aws/)")
    return value


def _environment(value: str) -> str:
    # GitHub environment names appear verbatim in the token's `sub`; keep them to what cannot confuse a match.
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}", value):
        raise ValueError("must be a GitHub environment name of letters, digits, '.', '_' or '-', "
                         "for example 'production'")
    return value


class GithubConfig(Model):
    repository: GithubRepository = Field(description="owner/name of the repository whose workflows preview and deploy")
    deploy_environments: list[Annotated[str, AfterValidator(_environment)]] = Field(
        default=["production"], min_length=1,
        description="The `environment:` of every job in .github/workflows/deploy.yml that assumes the deploy role: "
                    "the role trusts exactly repo:<repository>:environment:<name> for each")
    oidc_provider_arn: Annotated[str, Field(
        pattern=r"^arn:aws[-a-z]*:iam::\d{12}:oidc-provider/token\.actions\.githubusercontent\.com$")] | None = Field(
        default=None, description="The account's existing GitHub OIDC provider (one per account); none: declared here")
    role_name_prefix: Annotated[str, Field(pattern=r"^[\w+=,.@-]{1,40}$")] = Field(
        default="mlops-ci", description="CI roles are <prefix>-preview and <prefix>-deploy")


class StateConfig(Model):
    bucket_name: Annotated[str, AfterValidator(_bucket_name)] = Field(
        description="The S3 bucket holding every platform stack's state (globally unique name)")
    secrets_key_alias: Annotated[str, AfterValidator(_kms_alias)] = Field(
        default="alias/mlops-pulumi-secrets", description="Alias of the KMS key of the awskms:// secrets provider")
    noncurrent_version_days: Annotated[int, Field(ge=7, le=3650)] = Field(
        default=90, description="How long superseded state versions stay recoverable")
    protect: bool = Field(default=True, description="Protect the bucket and key from `pulumi destroy`")


class GpuQuotasConfig(Model):
    platform_stacks: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*$")]] = Field(
        default=[], description="Platform stacks (../Pulumi.<name>.yaml) in this account and region whose GPU pools' "
                                "EC2 vCPU quotas are requested here (summed)")


class BootstrapConfig(Model):
    github: GithubConfig
    state: StateConfig
    gpu_quotas: GpuQuotasConfig = GpuQuotasConfig()


def _path(loc: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc))


def parse_config(raw: dict[str, Any]) -> BootstrapConfig:
    """Validate the whole config; raise ConfigError listing every problem with its key path."""
    try:
        return BootstrapConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([
            f"{_path(e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            + (f" (got: {json.dumps(e['input'], default=str)})" if e["type"] != "missing" else "")
            for e in exc.errors(include_url=False)]) from None


def load_config() -> BootstrapConfig:
    from pulumi.runtime import config as runtime_config

    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    raw = {}
    for key, value in values.items():
        if key.startswith(f"{PROJECT}:"):
            try:
                raw[key[len(PROJECT) + 1:]] = json.loads(value)
            except ValueError:
                raw[key[len(PROJECT) + 1:]] = value
    return parse_config(raw)

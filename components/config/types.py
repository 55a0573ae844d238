"""Domain types of the stack config: annotated strings and numbers with validators whose messages show an example."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from components import catalog
from components.config.problems import known
from components.images import pin_problem

PROJECT = "mlops-platform"


def matching(pattern: str, message: str, forbidden: Callable[[str], bool] | None = None) -> AfterValidator:
    """A validator: the whole value matches `pattern` (and is not `forbidden`), else `message` (with an example)."""
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value) or (forbidden is not None and forbidden(value)):
            raise ValueError(message)
        return value
    return AfterValidator(check)


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        raise ValueError("must be a CIDR block, for example '10.0.0.0/16'") from None


def _gpu_instance_type(value: str) -> str:
    if value not in catalog.instance_types():
        raise ValueError("is not a GPU instance type in the catalog (components/data/gpus.yaml); known: "
                         f"{known(sorted(catalog.instance_types()), value)}")
    return value


DnsLabel = Annotated[str, matching(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?", (
    "must be a lower-case DNS label of at most 40 characters, starting with a letter, for example 'fraud-detection'"))]
IamRoleArn = Annotated[str, matching(r"arn:aws[-a-z]*:iam::\d{12}:role/[\w+=,.@/-]+", (
    "must be an IAM role ARN, for example 'arn:aws:iam::123456789012:role/platform-admins'"))]
S3Uri = Annotated[str, matching(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?", (
    "must be an S3 location, for example 's3://ml-models/fraud/v3'"))]
GithubRepository = Annotated[str, matching(r"[A-Za-z0-9](-?[A-Za-z0-9]){0,38}/[A-Za-z0-9._-]{1,100}", (
    "must be a GitHub repository as owner/name, for example 'acme/fraud-models'"))]
GitBranch = Annotated[str, matching(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*", (
    "must be a branch name without wildcards, for example 'main' or 'release/v2'"), lambda v: ".." in v)]
KubernetesGroup = Annotated[str, matching(r"[A-Za-z0-9][-A-Za-z0-9_.:@/]{0,99}", (
    "must be a Kubernetes group name not starting with 'system:', for example 'team:fraud-detection'"),
    lambda v: v.startswith("system:"))]
MigProfile = Annotated[str, matching(r"(\d+c\.)?\d+g\.\d+gb([+-][a-z][a-z.,]*)?", (
    "must be a MIG profile name, for example '1g.10gb' (the resource becomes nvidia.com/mig-1g.10gb)"))]
Cidr = Annotated[str, AfterValidator(_cidr)]
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


RegistryPrefix = Annotated[str, AfterValidator(_registry_prefix)]

OPEN_INTERNET = ("0.0.0.0/0", "::/0")


def _not_open_internet(value: str) -> str:
    if value in OPEN_INTERNET:
        raise ValueError("would open the pods to the whole internet; list the package index's own CIDRs or use a proxy")
    return value


PackageCidr = Annotated[str, AfterValidator(_cidr), AfterValidator(_not_open_internet)]
Port = Annotated[int, Field(ge=1, le=65535)]

Duration = Annotated[str, Field(pattern=r"^([0-9]+(s|m|h))+$")]


def duration_seconds(value: str) -> int:
    """Seconds of a duration such as "8h", "90m" or "1h30m" (the `Duration` pattern)."""
    return sum(int(n) * {"s": 1, "m": 60, "h": 3600}[u] for n, u in re.findall(r"([0-9]+)([smh])", value))


def _https_url(value: str) -> str:
    if not re.fullmatch(r"https://[A-Za-z0-9.-]+(:\d+)?(/\S*)?", value):
        raise ValueError("must be an https:// URL, for example 'https://jupyter.example.com/hub/oauth_callback'")
    return value


def _pinned_image(value: str) -> str:
    problem = pin_problem(value)      # the admission policy's and the policy pack's own rule
    if problem:
        raise ValueError(f"must be pinned: it {problem}; use a version tag other than 'latest' or a digest, for "
                         "example 'quay.io/jupyter/scipy-notebook:2026-08-03'")
    return value


HttpsUrl = Annotated[str, AfterValidator(_https_url)]
PinnedImage = Annotated[str, AfterValidator(_pinned_image)]


class Model(BaseModel):
    """Base for every config model: frozen, camelCase keys as users write them, no unknown keys."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True, strict=False
    )

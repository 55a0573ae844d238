"""Domain types of the stack config: annotated strings and numbers with validators whose messages show an example."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from components import catalog
from components.config.problems import known
from components.images import pin_problem

PROJECT = "mlops-platform"


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

MigProfile = Annotated[str, AfterValidator(_mig_profile)]
KubernetesGroup = Annotated[str, AfterValidator(_kubernetes_group)]


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

"""Image rules for what the program itself declares: the same rules the image admission policy enforces in team
namespaces (components/supply_chain.py), applied before anything reaches a cluster.

- Every image of a workload's pod template (Deployments, StatefulSets, DaemonSets, Jobs, CronJobs, Pods, training
  jobs, InferenceServices) comes from an allowed prefix: the allowlist the stack's image admission policy carries
  (annotation `mlops.platform/image-allowlist`: this stack's team ECR repositories, `supplyChain.allowedRegistries`,
  and a team's `imageRegistries` for workloads in its namespace), plus this policy's `allowedRegistries` config.
- Every such image is pinned: a version tag other than `latest`, or a digest. In Helm release values, an image
  given as `{repository, tag: latest}` or as a string ending in `:latest` is a violation. Images a chart sets by
  default are pinned by the chart's pinned version and are not checked for their registry here.

Props are camelCase wire-form dicts; during a real preview a value may be unknown: helpers skip what they cannot
read (the same policies run again at `pulumi up`, when every value is known).
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from components import labels
from components.config import DEFAULT_ALLOWED_REGISTRIES
from components.images import pin_problem, registry_allowed
from policies.declare import resource_policy, stack_policy
from policies.workloads import containers, pod_specs

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
ADMISSION_POLICY = "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"   # the engine's marker for a value unknown during preview


def _known_str(value: Any) -> bool:
    return isinstance(value, str) and value != "" and value != UNKNOWN and value != "[unknown]"


def _where(resource_type: str, props: dict[str, Any]) -> str:
    meta = props.get("metadata") if isinstance(props.get("metadata"), dict) else {}
    name = "/".join(str(x) for x in (meta.get("namespace"), meta.get("name")) if x)
    return f"{resource_type.rsplit(':', 1)[-1]} '{name or '?'}'"


def workload_images(resource_type: str, props: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(where, container name, image) for every known image in a resource's pod templates."""
    for where, spec in pod_specs(resource_type, props):
        for c in containers(spec):
            if _known_str(c.get("image")):
                yield where, str(c.get("name") or "?"), c["image"]


# ---- images come from allowed registries (stack) ---------------------------------------------------------


def declared_allowlist(resources: list[tuple[str, dict[str, Any]]]) -> dict[str, Any] | None:
    """The allowlist the stack's image admission policy carries, merged over every such policy; None if none."""
    found: dict[str, Any] | None = None
    for typ, props in resources:
        if typ != ADMISSION_POLICY:
            continue
        annotations = (props.get("metadata") or {}).get("annotations") or {}
        raw = annotations.get(labels.IMAGE_ALLOWLIST) if isinstance(annotations, dict) else None
        if not _known_str(raw):
            continue
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        found = found or {"prefixes": [], "namespaces": {}}
        found["prefixes"] += [p for p in doc.get("prefixes") or [] if isinstance(p, str)]
        for ns, prefixes in (doc.get("namespaces") or {}).items():
            found["namespaces"].setdefault(ns, []).extend(p for p in prefixes or [] if isinstance(p, str))
    return found


def registry_problems(resources: list[tuple[str, dict[str, Any]]], extra: list[str]) -> list[str]:
    """One sentence per workload image outside the allowlist (the declared one, or the config defaults)."""
    declared = declared_allowlist(resources)
    base = list(extra) + (declared["prefixes"] if declared else list(DEFAULT_ALLOWED_REGISTRIES))
    per_namespace = declared["namespaces"] if declared else {}
    problems = []
    for typ, props in resources:
        namespace = (props.get("metadata") or {}).get("namespace") if isinstance(props.get("metadata"), dict) else None
        allowed = base + per_namespace.get(namespace, [])
        for where, container, image in workload_images(typ, props):
            if not registry_allowed(image, allowed):
                problems.append(f"{_where(typ, props)} runs image '{image}' (container '{container}' at {where}), "
                                f"which is not from an allowed registry ({', '.join(allowed)}).")
    return problems


@stack_policy(
    "workload-image-from-allowed-registry",
    "Every image a declared workload runs comes from this stack's team ECR repositories or an allowed registry "
    "prefix (the allowlist the image admission policy enforces in team namespaces).",
    config={"allowedRegistries": {
        "type": "array", "items": {"type": "string"}, "default": [],
        "description": "Image prefixes allowed on top of the allowlist the stack's image admission policy carries "
                       "(or, when a stack declares none, on top of the default supplyChain.allowedRegistries)."}},
    remediation="Build the image with the team-image workflow into the team's ECR repository, or use an image from "
                "a registry in supplyChain.allowedRegistries; a registry every team may use is added there (a "
                "reviewed change to the stack config), one team's exception in that team's imageRegistries.",
)
def workload_image_from_allowed_registry(resources, config):
    return registry_problems(resources, [p for p in config.get("allowedRegistries") or [] if isinstance(p, str)])


# ---- images are pinned (resource) ----------------------------------------------------------------------


def helm_image_problems(values: Any, path: str = "values") -> list[str]:
    """`latest` images in Helm values: `{repository|name|image: ..., tag: latest}` or a string `image: x:latest`."""
    problems = []
    if isinstance(values, dict):
        tag = values.get("tag")
        if tag == "latest" and any(k in values for k in ("repository", "name", "image", "registry")):
            problems.append(f"{path}.tag is 'latest'")
        for key, value in values.items():
            if isinstance(value, str) and key.lower().endswith("image") and value.endswith(":latest"):
                problems.append(f"{path}.{key} is '{value}'")
            elif isinstance(value, (dict, list)):
                problems += helm_image_problems(value, f"{path}.{key}")
    elif isinstance(values, list):
        for i, value in enumerate(values):
            problems += helm_image_problems(value, f"{path}[{i}]")
    return problems


def pin_problems(resource_type: str, props: dict[str, Any]) -> list[str]:
    if resource_type == HELM_RELEASE:
        return [f"The Helm release '{props.get('name') or '?'}' sets a mutable image tag: {p}; pin a version."
                for p in helm_image_problems(props.get("values"))]
    return [f"{_where(resource_type, props)} runs image '{image}' (container '{container}' at {where}), which "
            f"{problem}; pin a version tag or a digest."
            for where, container, image in workload_images(resource_type, props)
            for problem in [pin_problem(image)] if problem]


@resource_policy(
    "workload-image-pinned",
    "Workload images and Helm-value images are pinned: a version tag other than latest, or a digest.",
    remediation="Write the image with a version tag (e.g. ':v3.9.0') or a digest ('@sha256:...'), as a module "
                "constant next to the component that runs it; never ':latest' or no tag.",
)
def workload_image_pinned(r, config):
    return pin_problems(r.resource_type, r.props) if r.resource_type.startswith("kubernetes:") else []


POLICIES = [workload_image_from_allowed_registry, workload_image_pinned]

"""Strict validation of rendered Kubernetes objects: core kinds against the Kubernetes OpenAPI schema
(kubernetes-validate, strict like `kubectl apply --validate=strict`), custom resources against their upstream
CRD schemas in the shared schema directory, with unknown fields rejected."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
from referencing import Registry, Resource

KUBERNETES_VERSION = "1.34"


def strip_nulls(x: Any) -> Any:
    """Drop nulls (the API server prunes them). Masked secrets keep their shape (a `[secret]` string per key), so a
    Secret validates as it is."""
    if isinstance(x, dict):
        return {k: strip_nulls(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [strip_nulls(v) for v in x]
    return x


def _forbid_unknown(schema: Any) -> Any:
    """CRD schemas leave `additionalProperties` open; the API server prunes/rejects unknown fields, so do we."""
    if isinstance(schema, dict):
        out = {k: _forbid_unknown(v) for k, v in schema.items()}
        if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out \
                and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_forbid_unknown(v) for v in schema]
    return schema


def _validator(schema: dict[str, Any]) -> Any:
    strict = _forbid_unknown(schema)
    # metadata is validated by the API server's ObjectMeta, not by the CRD's schema.
    strict.setdefault("properties", {})["metadata"] = {"type": "object"}
    return jsonschema.validators.validator_for(strict)(strict)


@functools.cache
def crd_validators(schemas_dir: Path) -> dict[tuple[str, str], Any]:
    index = {}
    for f in (schemas_dir / "crds").glob("*/*.json"):
        schema = json.loads(f.read_text())
        gvk = schema["x-kubernetes-group-version-kind"][0]
        index[(f"{gvk['group']}/{gvk['version']}", gvk["kind"])] = _validator(schema)
    return index


def crd_object_validators(crds: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> validator for every served version of CustomResourceDefinition objects (as a chart
    ships them), like crd_validators."""
    return {(f"{crd['spec']['group']}/{v['name']}", crd["spec"]["names"]["kind"]): _validator(
                v["schema"]["openAPIV3Schema"])
            for crd in crds if crd.get("kind") == "CustomResourceDefinition"
            for v in crd["spec"]["versions"] if v.get("served") and v.get("schema")}


def errors(obj: dict[str, Any], schemas_dir: Path, crds: dict[tuple[str, str], Any] | None = None) -> list[str]:
    """Strict validation errors of one object; custom resources against `crds` (crd_object_validators) first, then
    the shared schemas."""
    obj = strip_nulls(obj)
    key = (obj.get("apiVersion"), obj.get("kind"))
    name = f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}"
    validator = (crds or {}).get(key) or crd_validators(schemas_dir).get(key)
    if validator is not None:
        return [f"{name}: {e.json_path}: {e.message}" for e in validator.iter_errors(obj)]
    if "." in (obj.get("apiVersion") or "").split("/")[0] and not obj["apiVersion"].endswith(".k8s.io/v1") \
            and obj["apiVersion"].split("/")[0] not in ("apps", "batch", "policy"):
        return [f"{name}: no upstream schema for custom resource {key}"]
    validator = core_validator(*key)
    if validator is None:
        return [f"{name}: no Kubernetes {KUBERNETES_VERSION} schema for {key}"]
    return [f"{name}: {'.'.join(str(p) for p in e.path)}: {e.message}" for e in validator.iter_errors(obj)]


@functools.cache
def _k8s_schema(path: str) -> Any:
    return kubernetes_validate.utils.schema_contents(f"kubernetes-json-schema/{path}", KUBERNETES_VERSION)


@functools.cache
def core_validator(api_version: str, kind: str) -> Any:
    """The validator `kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)` builds, built once per
    kind (the library re-reads its multi-megabyte definitions file for every object)."""
    utils = kubernetes_validate.utils
    version = [v for v in utils.all_versions() if utils.major_minor(v) <= KUBERNETES_VERSION][-1]
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema_dir = f"v{version}-local-strict"
    try:
        schema = _k8s_schema(f"{schema_dir}/{kind.lower()}-{group}.json")
    except FileNotFoundError:
        return None
    registry = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(_k8s_schema(f"{schema_dir}/_definitions.json")) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)

"""Strict validation of rendered Kubernetes objects: core kinds against the Kubernetes OpenAPI schema
(kubernetes-validate, strict like `kubectl apply --validate=strict`), custom resources against their upstream
CRD schemas in the shared schema directory, with unknown fields rejected."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate

KUBERNETES_VERSION = "1.34"


MASKED = "[secret]"   # what the offline preview writes for a secret value (a Secret's whole `data`/`stringData`)


def strip_nulls(x: Any) -> Any:
    """Drop nulls (the API server prunes them) and masked secret values (their content is not known offline)."""
    if isinstance(x, dict):
        return {k: strip_nulls(v) for k, v in x.items() if v is not None and v != MASKED}
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


@functools.cache
def crd_validators(schemas_dir: Path) -> dict[tuple[str, str], Any]:
    index = {}
    for f in (schemas_dir / "crds").glob("*/*.json"):
        schema = json.loads(f.read_text())
        gvk = schema["x-kubernetes-group-version-kind"][0]
        strict = _forbid_unknown(schema)
        # metadata is validated by the API server's ObjectMeta, not by the CRD's schema.
        strict.setdefault("properties", {})["metadata"] = {"type": "object"}
        index[(f"{gvk['group']}/{gvk['version']}", gvk["kind"])] = jsonschema.validators.validator_for(strict)(strict)
    return index


def errors(obj: dict[str, Any], schemas_dir: Path) -> list[str]:
    obj = strip_nulls(obj)
    key = (obj.get("apiVersion"), obj.get("kind"))
    name = f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}"
    validator = crd_validators(schemas_dir).get(key)
    if validator is not None:
        return [f"{name}: {e.json_path}: {e.message}" for e in validator.iter_errors(obj)]
    if "." in (obj.get("apiVersion") or "").split("/")[0] and not obj["apiVersion"].endswith(".k8s.io/v1") \
            and obj["apiVersion"].split("/")[0] not in ("apps", "batch", "policy"):
        return [f"{name}: no upstream schema for custom resource {key}"]
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{name}: {'.'.join(str(p) for p in e.path)}: {e.message}"]
    return []

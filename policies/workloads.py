"""Pure helpers that find pod specs and containers inside the resource types the platform declares.

Props are camelCase wire-form dicts, as CrossGuard hands them to a policy. During a real preview any value
may be unknown (None or a placeholder string): helpers skip what they cannot read instead of failing.
"""

from __future__ import annotations

from typing import Any, Iterator

K8S = "kubernetes:"


def as_dict(value: Any) -> dict:
    """`value` if it is a mapping, else {} (an unknown or missing prop during a real preview)."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def pod_specs(resource_type: str, props: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod spec) for every pod template a Kubernetes resource carries."""
    kind = resource_type.rsplit(":", 1)[-1]
    if not resource_type.startswith(K8S):
        return
    if kind == "Pod":
        spec = props.get("spec")
        if isinstance(spec, dict):
            yield "spec", spec
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        spec = _get(props, "spec", "template", "spec")
        if isinstance(spec, dict):
            yield "spec.template.spec", spec
    elif kind == "CronJob":
        spec = _get(props, "spec", "jobTemplate", "spec", "template", "spec")
        if isinstance(spec, dict):
            yield "spec.jobTemplate.spec.template.spec", spec
    elif kind in ("PyTorchJob", "TFJob", "MPIJob", "XGBoostJob", "PaddleJob", "JAXJob"):
        replica_specs = next((v for k, v in (props.get("spec") or {}).items() if k.endswith("ReplicaSpecs")), {})
        for role, replica in (replica_specs or {}).items():
            spec = _get(replica, "template", "spec")
            if isinstance(spec, dict):
                yield f"{role} replicas", spec
    elif kind == "InferenceService":
        for component in ("predictor", "transformer", "explainer"):
            part = _get(props, "spec", component)
            if isinstance(part, dict):
                # KServe inlines the pod spec in the component; `model` is its main container.
                containers = list(part.get("containers") or [])
                if isinstance(part.get("model"), dict):
                    containers.append(part["model"])
                yield f"spec.{component}", {**part, "containers": containers}


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in (spec.get("containers") or []) + (spec.get("initContainers") or []) if isinstance(c, dict)]

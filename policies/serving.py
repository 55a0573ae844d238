"""Serving rules: a production model keeps a warm replica, and its autoscaler cannot outgrow its team's quota.

An InferenceService's components (predictor, transformer, explainer) scale between `minReplicas` and
`maxReplicas`, or the Knative annotations `autoscaling.knative.dev/min-scale` / `max-scale` on the component. At
its maximum, a component holds max x (the requests of its containers); the namespace's ResourceQuota must hold all
components of all its InferenceServices at their maxima, or the autoscaler stalls exactly when traffic peaks.
"""

from __future__ import annotations

import re
from typing import Any

from policies.data import PRODUCTION_CONFIG, is_production
from policies.declare import stack_policy
from policies.workloads import as_dict, containers, pod_templates

INFERENCE_SERVICE = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
QUOTA = "kubernetes:core/v1:ResourceQuota"
MIN_SCALE, MAX_SCALE = "autoscaling.knative.dev/min-scale", "autoscaling.knative.dev/max-scale"
SUFFIX = {"m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30,
          "Ti": 2 ** 40}


def quantity(value: Any) -> float | None:
    """A Kubernetes quantity ("500m", "2Gi", 4) as a number; None when it cannot be read."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*(m|k|M|G|T|Ki|Mi|Gi|Ti)?\s*", str(value))
    if not m:
        return None
    try:
        return float(m.group(1)) * SUFFIX[m.group(2) or ""]
    except ValueError:
        return None


def _show(resource: str, number: float) -> str:
    return f"{number / 2 ** 30:g}Gi" if resource in ("memory", "ephemeral-storage", "storage") else f"{number:g}"


def _scale(part: dict[str, Any], field: str, annotation: str) -> int | None:
    for value in (part.get(field), as_dict(part.get("annotations")).get(annotation)):
        number = quantity(value) if value is not None else None
        if number is not None:
            return int(number)
    return None


def _components(props: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(component, component props, its pod spec) of an InferenceService."""
    spec = as_dict(props.get("spec"))
    return [(t.where.removeprefix("spec."), as_dict(spec.get(t.where.removeprefix("spec."))), t.spec)
            for t in pod_templates(INFERENCE_SERVICE, props)]


def scale_to_zero_problems(resources: list[tuple[str, dict[str, Any]]]) -> list[str]:
    problems = []
    for typ, props in resources:
        if typ != INFERENCE_SERVICE:
            continue
        meta = as_dict(props.get("metadata"))
        for component, part, _ in _components(props):
            if _scale(part, "minReplicas", MIN_SCALE) == 0:
                problems.append(f"InferenceService '{meta.get('namespace')}/{meta.get('name')}' scales its "
                                f"{component} to zero in production: the first request after a quiet spell waits "
                                "for a pod (and a GPU node) to start.")
    return problems


def replica_quota_problems(resources: list[tuple[str, dict[str, Any]]]) -> list[str]:
    hard: dict[str, dict[str, float]] = {}
    for typ, props in resources:
        spec = as_dict(props.get("spec"))
        if typ == QUOTA and not spec.get("scopes") and not spec.get("scopeSelector"):
            ns = as_dict(props.get("metadata")).get("namespace")
            for key, value in as_dict(spec.get("hard")).items():
                number = quantity(value)
                if key.startswith("requests.") and number is not None:
                    name = key.removeprefix("requests.")
                    hard.setdefault(ns, {})[name] = min(number, hard.get(ns, {}).get(name, number))
    peak: dict[str, dict[str, float]] = {}
    unbounded: list[str] = []
    for typ, props in resources:
        if typ != INFERENCE_SERVICE:
            continue
        meta = as_dict(props.get("metadata"))
        ns = meta.get("namespace")
        if ns not in hard:
            continue
        for component, part, pod in _components(props):
            top = _scale(part, "maxReplicas", MAX_SCALE)
            if not top:
                unbounded.append(f"InferenceService '{ns}/{meta.get('name')}' sets no maxReplicas on its {component}; "
                                 f"its autoscaler is bounded only by the quota of namespace '{ns}'.")
                continue
            for c in containers(pod):
                for res, value in as_dict(as_dict(c.get("resources")).get("requests")).items():
                    number = quantity(value)
                    if number is not None:
                        peak.setdefault(ns, {})[res] = peak.get(ns, {}).get(res, 0.0) + top * number
    problems = list(unbounded)
    for ns, needs in sorted(peak.items()):
        over = [f"{_show(res, need)} {res} (quota {_show(res, hard[ns][res])})" for res, need in sorted(needs.items())
                if res in hard[ns] and need > hard[ns][res] + 1e-9]
        if over:
            problems.append(f"At their maxReplicas the InferenceServices of namespace '{ns}' request "
                            f"{', '.join(over)}: more than its ResourceQuota holds.")
    return problems


@stack_policy(
    "inference-no-scale-to-zero-in-prod",
    "In production stacks no InferenceService component scales to zero (minReplicas 0 or the Knative min-scale "
    "annotation 0).",
    policy_resources=True,
    config=PRODUCTION_CONFIG,
    remediation="Set the model's minReplicas to 1 or more (teams[].models[].minReplicas); scale-to-zero is for dev "
                "stacks.",
)
def inference_warm_in_prod(resources, config):
    if not is_production(resources, config.get("production", "auto")):
        return []
    return scale_to_zero_problems([(r.resource_type, r.props) for r in resources])


@stack_policy(
    "inference-replicas-within-quota",
    "In a namespace with a ResourceQuota, every InferenceService component sets maxReplicas, and all of them at their "
    "maxima request no more CPU, memory or GPU than the quota holds.",
    remediation="Lower the model's maxReplicas or its per-replica requests, or raise the team's quota (teams[].quota "
                "in the stack config).",
)
def inference_replicas_within_quota(resources, config):
    return replica_quota_problems(resources)


POLICIES = [inference_warm_in_prod, inference_replicas_within_quota]

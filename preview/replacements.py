"""Which changes replace a resource, and which chart upgrades need a manual CRD step.

The facts live in `components/data/replacements.yaml` (force-new properties per resource type, with their sources;
charts that carry CRDs in `crds/`). A resource is replaced when a force-new property changes, or when a force-new
property refers to a resource that is itself replaced (a subnet's `vpcId` when the VPC is replaced: a real preview
sees the new VPC's id as unknown and plans the subnet's replacement too), or when its provider is replaced.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Iterable

import yaml

DATA_FILE = Path(__file__).resolve().parent.parent / "components" / "data" / "replacements.yaml"
_TOKEN = re.compile(r"\[[^\]]*\]|\((?:json|yaml)\)|[^.\[(]+")


@functools.cache
def table() -> dict[str, Any]:
    return yaml.safe_load(DATA_FILE.read_text())


def _tokens(path: str) -> list[str]:
    """`spec.hard["a.b"]` -> [spec, hard, *]: any list index, identity or map key matches `[*]`."""
    return ["*" if t.startswith("[") else t for t in _TOKEN.findall(path) if not t.startswith("(")]


def force_new(typ: str) -> list[str]:
    entry = (table()["types"].get(typ) or {})
    props = list(entry.get("forceNew") or [])
    if typ.startswith("kubernetes:") and typ != "kubernetes:helm.sh/v3:Release":
        props += table()["kubernetesDefaultForceNew"]
    return props


def known(typ: str) -> bool:
    return typ in table()["types"]


def _covers(prop: str, path: str) -> bool:
    if prop == "*":
        return True
    want, got = _tokens(prop), _tokens(path)
    return len(got) >= len(want) and all(w in ("*", g) for w, g in zip(want, got))


def triggering(typ: str, changed_paths: Iterable[str]) -> list[str]:
    """The changed paths (input paths, no `inputs.` prefix) that force a replacement of a `typ` resource."""
    props = force_new(typ)
    return [p for p in changed_paths if any(_covers(f, p) for f in props)]


def values_at(value: Any, prop: str) -> list[Any]:
    """Every value under `prop` (with `[*]` wildcards) in an inputs object."""
    if prop == "*":
        return [value]
    current = [value]
    for token in _tokens(prop):
        nxt: list[Any] = []
        for v in current:
            if token == "*" and isinstance(v, dict):
                nxt += list(v.values())
            elif token == "*" and isinstance(v, list):
                nxt += v
            elif isinstance(v, dict) and token in v:
                nxt.append(v[token])
            elif isinstance(v, list):      # a list of blocks (pulumi-aws flattens MaxItems=1 blocks to objects)
                nxt += [x[token] for x in v if isinstance(x, dict) and token in x]
        current = nxt
    return current


def _strings(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_strings(v) for v in value)) if value else set()
    return set()


def reference_values(resource: dict[str, Any]) -> set[str]:
    """What other resources' inputs hold when they refer to `resource`: its id, ARN and name, as the offline mocks
    answer them (deterministic, so the same strings appear in the dependents' inputs)."""
    from types import SimpleNamespace

    from preview.aws_mocks import AwsLikeMocks

    typ, inputs = resource["type"], resource.get("inputs") or {}
    if not typ.startswith("aws:"):
        return set()
    rid, state = AwsLikeMocks().new_resource(SimpleNamespace(typ=typ, name=resource["name"], inputs=dict(inputs)))
    found = {rid, state.get("arn"), inputs.get("name"), inputs.get("bucket")}
    return {v for v in found if isinstance(v, str) and len(v) > 3}


def plan_replacements(base_by: dict[str, dict], head_by: dict[str, dict],
                      changed_paths: dict[str, list[str]]) -> dict[str, list[str]]:
    """urn -> reasons, for every resource present in both plans that the update would replace."""
    replaced: dict[str, list[str]] = {}
    for urn, paths in changed_paths.items():
        hits = triggering(head_by[urn]["type"], paths)
        if hits:
            replaced[urn] = [f"`{p}` changed" for p in hits]
    refs: dict[str, set[str]] = {}
    grew = True
    while grew:   # a replaced VPC replaces its subnets, whose replacement replaces the NAT gateway, ...
        grew = False
        for urn, new in head_by.items():
            if urn in replaced or urn not in base_by or not new.get("custom"):
                continue
            reasons = []
            if any((new.get("provider") or "").startswith(u + "::") for u in replaced):
                reasons.append("its provider is replaced")
            referring: dict[str, list[str]] = {}      # force-new property -> replaced resources it refers to
            for dep in new.get("dependencies") or []:
                if dep not in replaced or dep not in base_by:
                    continue
                if dep not in refs:
                    refs[dep] = reference_values(base_by[dep])
                for prop in force_new(new["type"]):
                    if _strings(values_at(new.get("inputs") or {}, prop)) & refs[dep]:
                        referring.setdefault(prop, []).append(f"`{base_by[dep]['name']}`")
            reasons += [f"`{prop}` refers to replaced {', '.join(sorted(names))}" for prop, names in referring.items()]
            if reasons:
                replaced[urn] = reasons
                grew = True
    return replaced


def chart_name(chart: str) -> str:
    return chart.rstrip("/").rsplit("/", 1)[-1]


def crd_warnings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """A Helm release whose chart carries CRDs in `crds/` and whose version changes: the manual step."""
    charts = table()["helmChartsWithCrdsFolder"]
    name = chart_name(str(new.get("chart", "")))
    if name not in charts or old.get("version") == new.get("version"):
        return []
    entry = charts[name]
    return [f"Chart `{name}` {old.get('version')} → {new.get('version')} carries CRDs in `crds/` ({entry['crds']}). "
            f"Helm installs those on first install only and never upgrades them: apply the new CRDs before "
            f"`pulumi up`: `{entry['step'].format(version=new.get('version'))}`"]

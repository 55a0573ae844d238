"""Property-level diff of two plans, as Markdown for a pull-request comment.

Resources are matched by URN. Inputs are compared leaf by leaf (`spec.limits["nvidia.com/gpu"]`), so a Helm
release's values show key by key instead of as one blob.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preview import cost as cost_model

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
MAX_CHANGES_SHOWN = 40


def _join(prefix: str, key: str) -> str:
    if re.fullmatch(r"[A-Za-z_][\w-]*", key):
        return f"{prefix}.{key}" if prefix else key
    return f"{prefix}[{json.dumps(key)}]"


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of a JSON value by path: `spec.limits["nvidia.com/gpu"]`, `spec.containers[0].image`."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, _join(prefix, k)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


@dataclass
class Change:
    path: str
    old: Any
    new: Any


@dataclass
class ResourceDiff:
    urn: str
    type: str
    name: str
    component: str
    changes: list[Change] = field(default_factory=list)


@dataclass
class PlanDiff:
    added: list[ResourceDiff]
    removed: list[ResourceDiff]
    changed: list[ResourceDiff]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def _component(resource: dict[str, Any], by_urn: dict[str, dict[str, Any]]) -> str:
    node = resource
    while node["parent"] in by_urn:
        node = by_urn[node["parent"]]
    return node["name"] if not node.get("custom") else "(stack)"


def _compared(r: dict[str, Any]) -> dict[str, Any]:
    """What a reviewer cares about: inputs, plus protection and the provider choice."""
    return {"inputs": r.get("inputs") or {}, "protect": r.get("protect"), "retainOnDelete": r.get("retainOnDelete")}


def diff_plans(base: dict[str, Any], head: dict[str, Any]) -> PlanDiff:
    base_by = {r["urn"]: r for r in base["resources"]}
    head_by = {r["urn"]: r for r in head["resources"]}

    def entry(r: dict[str, Any], by: dict[str, dict[str, Any]]) -> ResourceDiff:
        return ResourceDiff(r["urn"], r["type"], r["name"], _component(r, by))

    added = [entry(r, head_by) for urn, r in head_by.items() if urn not in base_by and r.get("custom")]
    removed = [entry(r, base_by) for urn, r in base_by.items() if urn not in head_by and r.get("custom")]
    changed = []
    for urn, new in head_by.items():
        old = base_by.get(urn)
        if old is None or not new.get("custom"):
            continue
        before, after = flatten(_compared(old)), flatten(_compared(new))
        changes = [Change(path, before.get(path), after.get(path))
                   for path in sorted(set(before) | set(after)) if before.get(path) != after.get(path)]
        if changes:
            d = entry(new, head_by)
            d.changes = changes
            changed.append(d)
    return PlanDiff(added, removed, changed)


def _fmt(value: Any) -> str:
    if value is None:
        return "(unset)"
    text = json.dumps(value) if not isinstance(value, str) else value
    return f"`{text if len(text) <= 80 else text[:77] + '...'}`"


def markdown(stack: str, d: PlanDiff, violations: list, base_cost: cost_model.Cost,
             head_cost: cost_model.Cost) -> str:
    out = [f"## Offline preview diff: stack `{stack}`", ""]
    out.append(f"**{len(d.added)} to add, {len(d.changed)} to change, {len(d.removed)} to delete**")
    out.append("")
    components = sorted({r.component for r in d.added + d.removed + d.changed})
    for comp in components:
        out += [f"### {comp}", ""]
        for r in (x for x in d.added if x.component == comp):
            out.append(f"- :heavy_plus_sign: `{r.type}` **{r.name}**")
        for r in (x for x in d.removed if x.component == comp):
            out.append(f"- :heavy_minus_sign: `{r.type}` **{r.name}**")
        for r in (x for x in d.changed if x.component == comp):
            label = "Helm release values" if r.type == HELM_RELEASE else r.type
            out.append(f"- :pencil2: `{label}` **{r.name}**")
            for c in r.changes[:MAX_CHANGES_SHOWN]:
                path = c.path.removeprefix("inputs.")
                out.append(f"  - `{path}`: {_fmt(c.old)} → {_fmt(c.new)}")
            if len(r.changes) > MAX_CHANGES_SHOWN:
                out.append(f"  - ... and {len(r.changes) - MAX_CHANGES_SHOWN} more")
        out.append("")
    if d.empty:
        out += ["No changes.", ""]
    out += ["### Policy check (head)", ""]
    out += [f"- **{v.enforcement}** `{v.policy}`: {v.message}" for v in violations] or ["- no violations"]
    out += ["", "### Cost", "", cost_model.delta_markdown(base_cost, head_cost)]
    return "\n".join(out)


def counts(stack: str, d: PlanDiff, violations: list, base_cost: cost_model.Cost,
           head_cost: cost_model.Cost) -> dict[str, Any]:
    """The diff as numbers only: what the fork-safe comment workflow may receive (preview/comment.py)."""
    mandatory = sum(1 for v in violations if v.mandatory)
    return {
        "stack": stack, "added": len(d.added), "changed": len(d.changed), "removed": len(d.removed),
        "violations": {"mandatory": mandatory, "advisory": len(violations) - mandatory},
        "cost": {"baselineMonthly": [round(base_cost.baseline_total, 2), round(head_cost.baseline_total, 2)],
                 "burnHourly": [round(base_cost.burn_total, 2), round(head_cost.burn_total, 2)]},
    }


def render_revision(stack: str, ref: str, project_dir: Path) -> dict[str, Any]:
    """Render `stack` as it is at git `ref`, in a temporary worktree, with that revision's own code."""
    with tempfile.TemporaryDirectory(prefix="preview-base-") as tmp:
        worktree = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(worktree), ref], cwd=project_dir,
                       check=True, capture_output=True, text=True)
        try:
            out = Path(tmp) / "build"
            result = subprocess.run([sys.executable, "-m", "preview", "render", stack, "--out", str(out)],
                                    cwd=worktree, capture_output=True, text=True)
            if not (out / "plan.json").exists():
                raise RuntimeError(f"the base revision {ref} could not be rendered:\n{result.stderr.strip()}")
            return json.loads((out / "plan.json").read_text())
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=project_dir,
                           capture_output=True)

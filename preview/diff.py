"""Diff of two plans for a pull-request review: what is replaced, deleted, added and changed, property by property.

Resources are matched by URN. Inputs are compared structurally (`preview.structdiff`: lists by identity, embedded
JSON/YAML parsed), replacements are decided from the providers' force-new properties (`preview.replacements`), and
chart upgrades that need a manual CRD step are flagged. `preview.report` renders the result as Markdown.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preview import cost as cost_model
from preview import replacements, structdiff
from preview.structdiff import Change

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
FLAGS = ("protect", "retainOnDelete")


@dataclass
class ResourceDiff:
    urn: str
    type: str
    name: str
    component: str
    protect: bool = False
    inputs: dict[str, Any] = field(default_factory=dict)     # head inputs (base inputs for a deletion)
    changes: list[Change] = field(default_factory=list)      # paths relative to the inputs; flags as `(protect)`
    replace_reasons: list[str] = field(default_factory=list)

    @property
    def replaced(self) -> bool:
        return bool(self.replace_reasons)


@dataclass
class PlanDiff:
    added: list[ResourceDiff]
    removed: list[ResourceDiff]
    changed: list[ResourceDiff]                               # replaced ones included
    warnings: list[str] = field(default_factory=list)         # manual steps (CRDs of upgraded charts)

    @property
    def replaced(self) -> list[ResourceDiff]:
        return [r for r in self.changed if r.replaced]

    @property
    def updated(self) -> list[ResourceDiff]:
        return [r for r in self.changed if not r.replaced]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def _component(resource: dict[str, Any], by_urn: dict[str, dict[str, Any]]) -> str:
    node = resource
    while node["parent"] in by_urn:
        node = by_urn[node["parent"]]
    return node["name"] if not node.get("custom") else "(stack)"


def resource_changes(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    changes = structdiff.diff(old.get("inputs") or {}, new.get("inputs") or {})
    for flag in FLAGS:
        if bool(old.get(flag)) != bool(new.get(flag)):
            changes.append(Change(f"({flag})", bool(old.get(flag)), bool(new.get(flag))))
    return changes


def diff_plans(base: dict[str, Any], head: dict[str, Any]) -> PlanDiff:
    base_by = {r["urn"]: r for r in base["resources"]}
    head_by = {r["urn"]: r for r in head["resources"]}

    def entry(r: dict[str, Any], by: dict[str, dict[str, Any]]) -> ResourceDiff:
        return ResourceDiff(r["urn"], r["type"], r["name"], _component(r, by), bool(r.get("protect")),
                            r.get("inputs") or {})

    added = [entry(r, head_by) for urn, r in head_by.items() if urn not in base_by and r.get("custom")]
    removed = [entry(r, base_by) for urn, r in base_by.items() if urn not in head_by and r.get("custom")]
    changes = {urn: resource_changes(base_by[urn], new) for urn, new in head_by.items()
               if urn in base_by and new.get("custom")}
    replaced = replacements.plan_replacements(
        base_by, head_by, {urn: [c.path for c in cs if not c.path.startswith("(")] for urn, cs in changes.items()})
    changed, warnings = [], []
    for urn, cs in changes.items():
        if not cs and urn not in replaced:
            continue
        d = entry(head_by[urn], head_by)
        d.changes, d.replace_reasons = cs, replaced.get(urn, [])
        # Pulumi refuses to replace a protected resource: the base's protection is what counts.
        d.protect = d.protect or bool(base_by[urn].get("protect"))
        changed.append(d)
        if d.type == HELM_RELEASE:
            warnings += replacements.crd_warnings(base_by[urn].get("inputs") or {}, head_by[urn].get("inputs") or {})
    return PlanDiff(added, removed, changed, warnings)


def markdown(stack: str, d: PlanDiff, violations: list, base_cost, head_cost, budget: int | None = None,
             full_name: str | None = None) -> str:
    from preview import report

    return report.render(stack, d, violations, base_cost, head_cost, budget=budget, full_name=full_name)


def counts(stack: str, d: PlanDiff, violations: list, base_cost: cost_model.Cost,
           head_cost: cost_model.Cost) -> dict[str, Any]:
    """The diff as numbers only: what the fork-safe comment workflow may receive (preview/comment.py)."""
    mandatory = sum(1 for v in violations if v.mandatory)
    return {
        "stack": stack, "added": len(d.added), "changed": len(d.updated), "removed": len(d.removed),
        "replaced": len(d.replaced),
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

"""The diff as Markdown (the run's job summary; `--full` writes all of it): a one-screen summary (replacements,
deletions, manual steps, policy, cost), then each component's changes in a collapsible section. Within a size
budget, sections that do not fit are named with their counts and a pointer to the full text (the workflow's
`offline-preview-full` artifact): nothing is dropped without saying so.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from preview import structdiff
from preview.diff import HELM_RELEASE, PlanDiff, ResourceDiff
from preview.structdiff import Change

SUMMARY_ITEMS = 12      # replacements/deletions listed in the summary; all of them are in the details

# Properties shown for an added resource, so a reviewer sees what it grants or limits (everything else is in a
# collapsed list below it).
KEY_PROPERTIES = {
    "kubernetes:core/v1:ResourceQuota": ["spec.hard"],
    "kubernetes:core/v1:LimitRange": ["spec.limits"],
    "kubernetes:core/v1:Namespace": ["metadata.labels", "metadata.annotations"],
    "kubernetes:core/v1:ServiceAccount": ["metadata.annotations"],
    "kubernetes:rbac.authorization.k8s.io/v1:Role": ["rules"],
    "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole": ["rules"],
    "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding": ["roleRef", "subjects"],
    "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding": ["roleRef", "subjects"],
    "kubernetes:karpenter.sh/v1:NodePool": ["spec.limits", "spec.template.spec.requirements"],
    "kubernetes:networking.k8s.io/v1:NetworkPolicy": ["spec"],
    HELM_RELEASE: ["chart", "version", "namespace"],
    "aws:iam/policy:Policy": ["policy"],
    "aws:iam/rolePolicy:RolePolicy": ["policy"],
    "aws:iam/role:Role": ["assumeRolePolicy"],
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": ["policyArn"],
    "aws:s3/bucketPolicy:BucketPolicy": ["policy"],
    "aws:sqs/queuePolicy:QueuePolicy": ["policy"],
    "aws:ecr/repositoryPolicy:RepositoryPolicy": ["policy"],
    "aws:eks/nodeGroup:NodeGroup": ["instanceTypes", "capacityType", "scalingConfig"],
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": ["ipProtocol", "fromPort", "toPort", "cidrIpv4",
                                                                  "referencedSecurityGroupId", "prefixListId"],
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": ["ipProtocol", "fromPort", "toPort", "cidrIpv4",
                                                                "referencedSecurityGroupId", "prefixListId"],
}
POLICY_KEYS = ("policy", "assumeRolePolicy")


def code(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}" if text else "`\"\"`"


def _long(value: Any) -> bool:
    return isinstance(value, str) and ("\n" in value or len(value) > 100)


def change_lines(c: Change) -> list[str]:
    """One changed property as Markdown list lines; long texts as a unified diff, added subtrees leaf by leaf."""
    path = code(c.path or "(whole value)")
    if c.kind == "added" and isinstance(c.new, (dict, list)):
        return [f"- {path} added:"] + [f"  - {code(p or '.')}: {code(v)}" for p, v in structdiff.leaves(c.new)]
    if c.kind == "removed" and isinstance(c.old, (dict, list)):
        return [f"- {path} removed:"] + [f"  - {code(p or '.')}: {code(v)}" for p, v in structdiff.leaves(c.old)]
    if _long(c.old) or _long(c.new):
        lines = difflib.unified_diff(str(c.old or "").splitlines(), str(c.new or "").splitlines(), lineterm="", n=2)
        return [f"- {path}:", "", "  ```diff"] + [f"  {line}" for line in list(lines)[2:]] + ["  ```", ""]
    if c.kind == "added":
        return [f"- {path}: (unset) → {code(c.new)}"]
    if c.kind == "removed":
        return [f"- {path}: {code(c.old)} → (unset)"]
    return [f"- {path}: {code(c.old)} → {code(c.new)}"]


def policy_statements(text: str) -> list[str] | None:
    """An IAM policy document as one line per statement: `Allow s3:GetObject on arn:...`."""
    try:
        doc = json.loads(text)
    except (TypeError, ValueError):
        return None
    statements = doc.get("Statement") if isinstance(doc, dict) else None
    if not isinstance(statements, list):
        return None
    lines = []
    for s in statements:
        as_list = lambda v: v if isinstance(v, list) else [v]  # noqa: E731
        actions = ", ".join(code(a) for a in as_list(s.get("Action") or s.get("NotAction") or []))
        where = s.get("Resource") or s.get("NotResource")
        who = s.get("Principal")
        line = f"**{s.get('Effect')}** {actions}"
        line += f" on {', '.join(code(r) for r in as_list(where))}" if where else ""
        line += f" for {code(who)}" if who else ""
        line += f" if {code(s['Condition'])}" if s.get("Condition") else ""
        lines.append(line)
    return lines


def added_lines(r: ResourceDiff) -> list[str]:
    keys = KEY_PROPERTIES.get(r.type, [])
    shown: list[str] = []
    for key in keys:
        value = structdiff.get(r.inputs, key)
        if value is None:
            continue
        if key in POLICY_KEYS and (statements := policy_statements(value)) is not None:
            shown += [f"  - {line}" for line in statements]
            continue
        shown += [f"  - {code(p)}: {code(v)}" for p, v in structdiff.leaves(value, key)]
    rest = [(p, v) for p, v in structdiff.leaves(r.inputs)
            if not any(p == k or p.startswith((k + ".", k + "[", k + "(")) for k in keys)]
    if rest:
        shown += ["  <details><summary>all properties</summary>", ""]
        shown += [f"  - {code(p)}: {code(v)}" for p, v in rest] + ["", "  </details>"]
    return shown


def _label(r: ResourceDiff) -> str:
    return f"`{'Helm release' if r.type == HELM_RELEASE else r.type}` **{r.name}**" + (" :lock: protected"
                                                                                        if r.protect else "")


def resource_lines(r: ResourceDiff, kind: str) -> list[str]:
    if kind == "replace":
        out = [f"- :recycle: **replace** {_label(r)}: " + "; ".join(r.replace_reasons)]
    elif kind == "delete":
        return [f"- :x: **delete** {_label(r)}"]
    elif kind == "add":
        return [f"- :heavy_plus_sign: **add** {_label(r)}"] + added_lines(r)
    else:
        out = [f"- :pencil2: **update** {_label(r)}"]
    for c in r.changes:
        out += ["  " + line if line else "" for line in change_lines(c)]
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def component_section(comp: str, d: PlanDiff) -> str:
    groups = [("replace", [r for r in d.replaced if r.component == comp]),
              ("delete", [r for r in d.removed if r.component == comp]),
              ("add", [r for r in d.added if r.component == comp]),
              ("update", [r for r in d.updated if r.component == comp])]
    counts = ", ".join(f"{len(rs)} to {kind}" for kind, rs in groups if rs)
    risky = any(rs for kind, rs in groups[:2])
    lines = [f"<details{' open' if risky else ''}><summary><b>{comp}</b>: {counts}</summary>", ""]
    for kind, rs in groups:
        for r in rs:
            lines += resource_lines(r, kind)
    return "\n".join(lines + ["", "</details>", ""])


def _alert_list(kind: str, title: str, rows: list[str]) -> list[str]:
    shown = rows[:SUMMARY_ITEMS]
    more = [f"> - ... and {len(rows) - SUMMARY_ITEMS} more, each marked in the details below"] \
        if len(rows) > SUMMARY_ITEMS else []
    return [f"> [!{kind}]", f"> **{title}**", ">"] + [f"> - {row}" for row in shown] + more + [""]


def summary(stack: str, d: PlanDiff, violations: list, base_cost, head_cost) -> list[str]:
    from preview import cost as cost_model

    # Protected first, then what the change itself replaces, then what follows from it.
    protected_first = lambda rs: sorted(rs, key=lambda r: (  # noqa: E731
        not r.protect, not any(x.endswith("changed") for x in r.replace_reasons), r.component, r.name))
    mandatory = sum(1 for v in violations if getattr(v, "mandatory", False))
    rows = [
        ("replace (delete + create)", len(d.replaced)), ("delete", len(d.removed)), ("add", len(d.added)),
        ("update in place", len(d.updated)),
    ]
    out = [f"## Offline preview: stack `{stack}`", "",
           " · ".join(f"**{n}** to {label}" for label, n in rows), "",
           f"Policy check: **{_plural(len(violations), 'violation')}** ({mandatory} mandatory) · "
           + cost_model.summary_line(base_cost, head_cost), ""]
    if d.replaced:
        out += _alert_list("CAUTION", f"{_plural(len(d.replaced), 'resource')} replaced (deleted and created again)",
                           [f"{_label(r)} ({r.component}): {'; '.join(r.replace_reasons)}"
                            for r in protected_first(d.replaced)])
        if any(r.protect for r in d.replaced):
            out += ["Protected resources cannot be replaced: `pulumi up` stops at them until their protection is "
                    "lifted on purpose.", ""]
    if d.removed:
        out += _alert_list("WARNING", f"{_plural(len(d.removed), 'resource')} deleted",
                           [f"{_label(r)} ({r.component})" for r in protected_first(d.removed)])
    if d.warnings:
        out += ["> [!WARNING]", "> **Manual step before `pulumi up`**", ">"] + [f"> - {w}" for w in d.warnings] + [""]
    return out


def render(stack: str, d: PlanDiff, violations: list, base_cost, head_cost, budget: int | None = None,
           full_name: str | None = None) -> str:
    from preview import cost as cost_model

    head = summary(stack, d, violations, base_cost, head_cost)
    tail = ["### Policy check (head)", ""]
    tail += [f"- **{v.enforcement}** `{v.policy}`: {v.message}" for v in violations] or ["- no violations"]
    tail += ["", "### Cost", "", cost_model.delta_markdown(base_cost, head_cost)]
    sections = [component_section(c, d) for c in sorted({r.component for r in d.added + d.removed + d.changed})]
    if d.empty:
        sections = ["No changes.\n"]
    room = None if budget is None else budget - len("\n".join(head + tail)) - 400
    body, left_out = [], []
    for comp, text in zip(sorted({r.component for r in d.added + d.removed + d.changed}) or [""], sections):
        if room is not None and len(text) > room:
            left_out.append(comp)
            continue
        body.append(text)
        room = None if room is None else room - len(text)
    if left_out:
        where = (f"`{full_name}` (the workflow's `offline-preview-full` artifact)" if full_name
                 else "the full diff (`--full FILE`)")
        body.append(f"> [!NOTE]\n> Not shown here (comment size limit): {', '.join(f'**{c}**' for c in left_out)}. "
                    f"Every change is in {where}.\n")
    return "\n".join(head + ["### Changes by component", ""] + body + tail)

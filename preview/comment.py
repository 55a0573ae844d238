"""`python3 -m preview.comment DIR --run-url URL --head-sha SHA`: the offline-preview pull-request comment.

Runs in `offline-comment.yml` with a write token on an artifact that a fork's run produced, so it trusts nothing
in it: the artifact holds one `<stack>.json` of counts per stack (`preview diff --format json`) and `head-sha`;
every field is checked (known stacks, integers, amounts) and the Markdown is written here, never copied from the
artifact. Standard library only: the workflow runs it with the runner's Python, without installing anything.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

MARKER = "<!-- offline-preview -->"
STACKS = ("dev", "prod")
MAX_COUNT = 100_000
MAX_AMOUNT = 1e9


class BadArtifact(ValueError):
    """The artifact is not what `preview diff --format json` writes."""


def _count(doc: dict[str, Any], *path: str) -> int:
    value: Any = doc
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if type(value) is not int or not 0 <= value <= MAX_COUNT:
        raise BadArtifact(f"{'.'.join(path)} must be an integer between 0 and {MAX_COUNT}")
    return value


def _amount(value: Any, where: str) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or not 0 <= value <= MAX_AMOUNT:
        raise BadArtifact(f"{where} must be an amount between 0 and {MAX_AMOUNT:.0f}")
    return float(value)


def summary(stack: str, doc: Any) -> dict[str, Any]:
    """The checked counts of one stack's JSON (raises BadArtifact)."""
    if not isinstance(doc, dict) or doc.get("stack") != stack:
        raise BadArtifact(f"{stack}.json must be an object for stack '{stack}'")
    cost = doc.get("cost")
    if not isinstance(cost, dict):
        raise BadArtifact("cost must be an object")
    amounts = {}
    for key in ("baselineMonthly", "burnHourly"):
        pair = cost.get(key)
        if not isinstance(pair, list) or len(pair) != 2:
            raise BadArtifact(f"cost.{key} must be [base, head]")
        amounts[key] = tuple(_amount(v, f"cost.{key}") for v in pair)
    return {
        "replaced": _count(doc, "replaced"), "removed": _count(doc, "removed"), "added": _count(doc, "added"),
        "changed": _count(doc, "changed"),
        "mandatory": _count(doc, "violations", "mandatory"), "advisory": _count(doc, "violations", "advisory"),
        **amounts,
    }


def _money(x: float) -> str:
    return f"${x:,.2f}"


def _delta(base: float, head: float) -> str:
    d = round(head - base, 2)
    return f"{'+' if d >= 0 else '-'}${abs(d):,.2f}"


def render(summaries: dict[str, dict[str, Any]], run_url: str, head_sha: str) -> str:
    lines = [MARKER, f"## Offline preview of `{head_sha[:12]}`", "",
             "| stack | replace | delete | add | change in place | mandatory violations | advisory | "
             "idle baseline / month | max GPU burn / hour |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for stack, s in summaries.items():
        base_m, head_m = s["baselineMonthly"]
        base_b, head_b = s["burnHourly"]
        lines.append(f"| `{stack}` | {s['replaced']} | {s['removed']} | {s['added']} | {s['changed']} | "
                     f"{s['mandatory']} | {s['advisory']} | {_money(head_m)} ({_delta(base_m, head_m)}) | "
                     f"{_money(head_b)} ({_delta(base_b, head_b)}) |")
    risky = [f"`{stack}`" for stack, s in summaries.items() if s["replaced"] or s["removed"]]
    if risky:   # replacements and deletions first: the job summary lists them, protected ones at the top
        lines += ["", "> [!CAUTION]", f"> Resources are replaced or deleted in {', '.join(risky)}: read the list at "
                  "the top of the job summary before merging."]
    lines += ["", f"Resource-level diff (replacements, structural changes, manual CRD steps), policy messages and "
              f"cost lines: [the run's job summary]({run_url})."]
    return "\n".join(lines) + "\n"


def load(artifact: Path, head_sha: str) -> dict[str, dict[str, Any]]:
    """Every stack's checked counts; the artifact must be from the run of exactly `head_sha`."""
    recorded = (artifact / "head-sha").read_text().strip() if (artifact / "head-sha").is_file() else ""
    if recorded != head_sha:
        raise BadArtifact(f"the artifact is for commit '{recorded[:40]}', not the run's head {head_sha}")
    out = {}
    for stack in STACKS:
        path = artifact / f"{stack}.json"
        if not path.is_file() or path.stat().st_size > 65536:
            raise BadArtifact(f"{stack}.json is missing or too large")
        try:
            doc = json.loads(path.read_text())
        except ValueError:
            raise BadArtifact(f"{stack}.json is not JSON") from None
        out[stack] = summary(stack, doc)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m preview.comment", description=__doc__)
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--run-url", required=True)
    parser.add_argument("--head-sha", required=True)
    args = parser.parse_args(argv)
    # Both come from the triggering event (GitHub's own values); checked anyway, as they reach the comment.
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+/actions/runs/\d+", args.run_url):
        print(f"error: unexpected run URL {args.run_url!r}", file=sys.stderr)
        return 2
    if not re.fullmatch(r"[0-9a-f]{40}", args.head_sha):
        print("error: --head-sha must be a full commit SHA", file=sys.stderr)
        return 2
    try:
        summaries = load(args.artifact, args.head_sha)
    except BadArtifact as exc:
        print(f"error: refusing the artifact: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(render(summaries, args.run_url, args.head_sha))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cost from what a plan declares, priced with `components/data/prices.yaml` (one source of prices).

- idle baseline per month: what runs with zero jobs (components/planning/cost.py lists the items), each line with
  the source of its price and the date that source was read;
- maximum burn per hour: every GPU pool at its limit (node groups at maxSize, NodePools at their GPU limit);
- per team: its GPU quota at the most expensive GPU-hour among the pools (an upper bound).
"""

from __future__ import annotations

from components.catalog import PRICES_FILE, gpu_hour_price, instance_price, prices  # noqa: F401 (re-exported)
# The arithmetic lives below the preview and the policy pack, which both use it; re-exported for the cost command.
from components.planning.cost import (CAPACITY_TYPE_KEY, INSTANCE_FAMILY_KEY, INSTANCE_TYPE_KEY,  # noqa: F401
                                      USAGE_BASED, Cost, Line, estimate, from_plan)


def source_note(line: Line, p: dict) -> str:
    """`vpc 2025-07`: the prices.yaml source(s) of a line and the date each was read; `assumed volume` too."""
    parts = []
    for name in filter(None, line.source.split("+")):
        parts.append("assumed volume" if name == "assumption" else f"{name} {p['sources'][name]['read']}")
    return f" ({', '.join(parts)})" if parts else ""


def markdown(cost: Cost, title: str) -> str:
    p = prices()
    lines = [f"### {title}", "",
             f"Idle baseline: **${cost.baseline_total:,.0f}/month** (with zero jobs running)", ""]
    lines += [f"- {line.item}: ${line.amount:,.2f}/month{source_note(line, p)}"
              for line in sorted(cost.baseline, key=lambda x: -x.amount)]
    lines += ["", f"Maximum burn with every GPU pool at its limit: **${cost.burn_total:,.2f}/hour**", ""]
    lines += [f"- {line.item}: ${line.amount:,.2f}/hour{source_note(line, p)}" for line in cost.burn] \
        or ["- (no GPU pools)"]
    if cost.teams:
        lines += ["", "Per team, its whole GPU quota in use at the most expensive GPU-hour:", ""]
        lines += [f"- {line.item}: ${line.amount:,.2f}/hour, ${line.amount * p['hoursPerMonth']:,.0f}/month "
                  "if never idle" for line in cost.teams]
    if cost.unpriced:
        lines += ["", f"Not priced (missing from components/data/prices.yaml): {', '.join(cost.unpriced)}"]
    lines += ["", "Charged by use, not in the baseline: " + "; ".join(USAGE_BASED) + "."]
    lines += ["", "Prices: components/data/prices.yaml, us-east-1 list prices (`make prices` refreshes them from the "
              "AWS Price List; spot figures are typical, not quotes). Sources and the date each was read:", ""]
    lines += [f"- {name}: {src['url']}, read {src['read']}" for name, src in p["sources"].items()]
    return "\n".join(lines) + "\n"


def summary_line(base: Cost, head: Cost) -> str:
    """One line for the top of the PR comment: the idle baseline and its change."""
    delta = round(head.baseline_total - base.baseline_total, 2)
    change = "no change" if delta == 0 else f"{'+' if delta > 0 else '-'}${abs(delta):,.2f}/month"
    return f"idle baseline **${head.baseline_total:,.0f}/month** ({change})"


def delta_markdown(base: Cost, head: Cost) -> str:
    """Base, head and change; a team that exists on one side only shows a dash on the other (not "$0.00")."""
    def money(x: float | None) -> str:
        return "—" if x is None else f"${x:,.2f}"

    def signed(old: float | None, new: float | None) -> str:
        if old is None or new is None:
            return "new" if old is None else "removed"
        x = round(new - old, 2)
        return f"{'+' if x >= 0 else '-'}${abs(x):,.2f}"

    rows: list[tuple[str, float | None, float | None]] = [
        ("idle baseline / month", base.baseline_total, head.baseline_total),
        ("max GPU burn / hour", base.burn_total, head.burn_total)]
    base_teams = {line.item.split(":")[0]: line.amount for line in base.teams}
    head_teams = {line.item.split(":")[0]: line.amount for line in head.teams}
    for team in sorted(set(base_teams) | set(head_teams)):
        old, new = base_teams.get(team), head_teams.get(team)
        if old is None or new is None or round(old, 2) != round(new, 2):
            rows.append((f"{team} quota at full use / hour", old, new))
    return "| | base | head | change |\n|---|---:|---:|---:|\n" + "".join(
        f"| {label} | {money(old)} | {money(new)} | {signed(old, new)} |\n" for label, old, new in rows)

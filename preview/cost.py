"""Cost from what a plan declares, priced with `components/data/prices.yaml` (one source of prices).

- idle baseline per month: what runs with zero jobs (control plane, node groups at their desired size, NAT
  gateways, FSx storage, RDS);
- maximum burn per hour: every GPU pool at its limit (node groups at maxSize, NodePools at their GPU limit);
- per team: its GPU quota at the most expensive GPU-hour among the pools (an upper bound).
"""

from __future__ import annotations

from components.catalog import PRICES_FILE, gpu_hour_price, instance_price, prices  # noqa: F401 (re-exported)
# The arithmetic lives below the preview and the policy pack, which both use it; re-exported for the cost command.
from components.planning.cost import (CAPACITY_TYPE_KEY, INSTANCE_FAMILY_KEY, INSTANCE_TYPE_KEY, Cost,  # noqa: F401
                                      Line, estimate, from_plan)


def markdown(cost: Cost, title: str) -> str:
    p = prices()
    lines = [f"### {title}", "",
             f"Idle baseline: **${cost.baseline_total:,.0f}/month** (with zero jobs running)", ""]
    lines += [f"- {line.item}: ${line.amount:,.2f}/month" for line in cost.baseline]
    lines += ["", f"Maximum burn with every GPU pool at its limit: **${cost.burn_total:,.2f}/hour**", ""]
    lines += [f"- {line.item}: ${line.amount:,.2f}/hour" for line in cost.burn] or ["- (no GPU pools)"]
    if cost.teams:
        lines += ["", "Per team, its whole GPU quota in use at the most expensive GPU-hour:", ""]
        lines += [f"- {line.item}: ${line.amount:,.2f}/hour, ${line.amount * p['hoursPerMonth']:,.0f}/month "
                  "if never idle" for line in cost.teams]
    if cost.unpriced:
        lines += ["", f"Not priced (missing from components/data/prices.yaml): {', '.join(cost.unpriced)}"]
    lines += ["", f"Prices: components/data/prices.yaml (list prices, read {p['sources']['ec2']['read']}; "
              "spot figures are typical, not quotes)."]
    return "\n".join(lines) + "\n"


def summary_line(base: Cost, head: Cost) -> str:
    """One line for the top of the PR comment: the idle baseline and its change."""
    delta = round(head.baseline_total - base.baseline_total, 2)
    change = "no change" if delta == 0 else f"{'+' if delta > 0 else '-'}${abs(delta):,.2f}/month"
    return f"idle baseline **${head.baseline_total:,.0f}/month** ({change})"


def delta_markdown(base: Cost, head: Cost) -> str:
    def signed(x: float) -> str:
        x = round(x, 2)
        return f"{'+' if x >= 0 else '-'}${abs(x):,.2f}"

    rows = [("idle baseline / month", base.baseline_total, head.baseline_total),
            ("max GPU burn / hour", base.burn_total, head.burn_total)]
    base_teams = {line.item.split(":")[0]: line.amount for line in base.teams}
    head_teams = {line.item.split(":")[0]: line.amount for line in head.teams}
    for team in sorted(set(base_teams) | set(head_teams)):
        old, new = base_teams.get(team, 0.0), head_teams.get(team, 0.0)
        if round(old, 2) != round(new, 2):
            rows.append((f"{team} quota at full use / hour", old, new))
    return "| | base | head | change |\n|---|---:|---:|---:|\n" + "".join(
        f"| {label} | ${old:,.2f} | ${new:,.2f} | {signed(new - old)} |\n" for label, old, new in rows)

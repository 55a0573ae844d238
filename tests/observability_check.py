"""A checker of the PromQL a rendered stack runs, for the observability tests: every recording and alerting rule,
dashboard query and template variable, and the GPU culler's queries must name metrics an installed exporter emits
(components/data/metrics.yaml) or a rule records, match only labels those series carry, and group, join and relabel
only by labels their operands carry. Plus the readers of the rendered rules and dashboards it needs.

A support module (not a test file), so each test module that checks PromQL imports it from here.
"""

from __future__ import annotations

import json
import re
from typing import Any

import promql_parser as pp

from components import catalog, observability
from preview import render
from tests.conftest import Rendered


def rule_groups(rendered: Rendered) -> list[dict[str, Any]]:
    """Every rule group of every PrometheusRule the stack declares (the GPU operator's too)."""
    return [g for r in rendered.objects("PrometheusRule") for g in r["spec"]["groups"]]


def rules(rendered: Rendered) -> list[dict[str, Any]]:
    return [r for g in rule_groups(rendered) for r in g["rules"]]


def recorded(rendered: Rendered) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rules(rendered):
        if "record" in r:
            out.setdefault(r["record"], []).append(r)
    return out


def dashboards(rendered: Rendered) -> dict[str, dict[str, Any]]:
    boards = {}
    for cm in rendered.objects("ConfigMap", observability.NAMESPACE):
        if (cm["metadata"].get("labels") or {}).get(observability.DASHBOARD_LABEL) == "1":
            for key, text in cm["data"].items():
                board = json.loads(text)                      # valid JSON, or the test fails here
                assert key == f"{board['uid']}.json"
                boards[board["uid"]] = board
    return boards


def targets(board: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", [])]


GRAFANA_VARIABLES = {"$__range": "1h", "$__rate_interval": "5m", "$__interval": "1m"}


def promql(expr: str) -> Any:
    """Parse an expression as Prometheus would once Grafana has substituted its variables."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return pp.parse(expr)


def selectors(node: Any) -> list[tuple[str, set[str]]]:
    """(metric name, label names matched) of every vector selector in a parsed expression."""
    if isinstance(node, str):
        node = promql(node)
    if isinstance(node, pp.VectorSelector):
        return [(node.name, {m.name for m in node.matchers.matchers})]
    if isinstance(node, pp.MatrixSelector):
        return selectors(node.vector_selector)
    if isinstance(node, pp.BinaryExpr):
        return selectors(node.lhs) + selectors(node.rhs)
    if isinstance(node, pp.AggregateExpr):
        return selectors(node.expr) + (selectors(node.param) if node.param is not None else [])
    if isinstance(node, pp.Call):
        return [s for a in node.args for s in selectors(a)]
    if isinstance(node, (pp.ParenExpr, pp.UnaryExpr, pp.SubqueryExpr)):
        return selectors(node.expr)
    return []


def produced_labels(node: Any, records: dict[str, set[str] | None]) -> set[str] | None:
    """The labels an expression's result carries (PromQL's rules for aggregations, vector matching and the functions
    the rules use); None where an exporter decides."""
    if isinstance(node, pp.VectorSelector):
        return records.get(node.name)
    if isinstance(node, pp.MatrixSelector):
        return produced_labels(node.vector_selector, records)
    if isinstance(node, (pp.ParenExpr, pp.UnaryExpr)):
        return produced_labels(node.expr, records)
    if isinstance(node, pp.AggregateExpr):
        if node.modifier is None:
            return set()
        return set(node.modifier.labels) if node.modifier.type == pp.AggModifierType.By else None
    if isinstance(node, pp.BinaryExpr):
        left, right = produced_labels(node.lhs, records), produced_labels(node.rhs, records)
        if isinstance(node.lhs, pp.NumberLiteral):
            return right
        mod = node.modifier
        if str(node.op) in ("and", "or", "unless") or mod is None or mod.matching is None:
            return left
        if mod.card == pp.VectorMatchCardinality.ManyToOne:
            return None if left is None else left | set(mod.group_labels or [])
        if mod.card == pp.VectorMatchCardinality.OneToMany:
            return None if right is None else right | set(mod.group_labels or [])
        if mod.matching.type == pp.LabelModifierType.Include:       # one-to-one `on (...)`: only those labels
            return set(mod.matching.labels)
        return None if left is None else left - set(mod.matching.labels)
    if isinstance(node, pp.Call):
        name = node.func.name
        if name == "vector":
            return set()
        if name == "label_replace":
            inner = produced_labels(node.args[0], records)
            return None if inner is None else inner | {node.args[1].val}
        if name == "histogram_quantile":
            inner = produced_labels(node.args[1], records)
            return None if inner is None else inner - {"le"}
        return produced_labels(node.args[0], records) if node.args else set()
    return set()


def join_problems(node: Any, records: dict[str, set[str] | None]) -> list[str]:
    """Labels an expression groups, joins, copies or relabels by that its operand does not carry."""
    found: list[str] = []

    def need(wanted: set[str], have: set[str] | None, what: str) -> None:
        if have is not None and wanted - have:
            found.append(f"{what} {sorted(wanted - have)} not on {node_text(have)}")

    def node_text(have: set[str]) -> str:
        return "{" + ", ".join(sorted(have)) + "}"

    def walk(n: Any) -> None:
        if isinstance(n, pp.AggregateExpr):
            if n.modifier is not None:
                need(set(n.modifier.labels), produced_labels(n.expr, records), f"{n.op} by")
            walk(n.expr)
        elif isinstance(n, pp.BinaryExpr):
            mod = n.modifier
            if mod is not None and mod.matching is not None and mod.matching.type == pp.LabelModifierType.Include:
                for side in (n.lhs, n.rhs):
                    need(set(mod.matching.labels), produced_labels(side, records), "on")
            if mod is not None and mod.card == pp.VectorMatchCardinality.ManyToOne:
                need(set(mod.group_labels or []), produced_labels(n.rhs, records), "group_left")
            walk(n.lhs)
            walk(n.rhs)
        elif isinstance(n, pp.Call):
            if n.func.name == "label_replace" and n.args[3].val:
                need({n.args[3].val}, produced_labels(n.args[0], records), "label_replace source")
            for a in n.args:
                walk(a)
        elif isinstance(n, (pp.ParenExpr, pp.UnaryExpr, pp.SubqueryExpr)):
            walk(n.expr)
        elif isinstance(n, pp.MatrixSelector):
            walk(n.vector_selector)

    walk(node)
    return found


def exporter_labels() -> dict[str, set[str]]:
    """Metric name -> the labels its series may carry: its own, its exporter's, the scrape's target labels, and the
    `label_*` kube-state-metrics makes from the platform's allowlist."""
    data = catalog.exporter_metrics()
    target = set(data["targetLabels"]["labels"])
    allowlisted = {kind: {observability.ksm_label(n) for n in names}
                   for kind, names in observability.KSM_LABEL_ALLOWLIST.items()}
    annotations = {kind: {observability.ksm_annotation(n) for n in names}
                   for kind, names in observability.KSM_ANNOTATION_ALLOWLIST.items()}
    out = {}
    for exporter in data["exporters"].values():
        for metric, info in exporter["metrics"].items():
            out[metric] = target | set(exporter["labels"]) | set(info.get("labels", [])) | \
                allowlisted.get(info.get("allowlist"), set()) | annotations.get(info.get("annotationAllowlist"), set())
    return out


def values_of_hub_with_culler(rendered: Rendered) -> dict[str, Any]:
    """The JupyterHub release's `hub` values if it runs the GPU culler, else {}."""
    hub = next((r.inputs["values"]["hub"] for r in render.helm_releases(rendered.run)
                if r.inputs["chart"].rsplit("/", 1)[-1] == "jupyterhub"), {})
    return hub if "gpu-culler-config" in hub.get("extraFiles", {}) else {}


def culler_queries(rendered: Rendered) -> dict[str, str]:
    """The PromQL the GPU culler runs (its configuration file in the JupyterHub release), with a window filled in."""
    files = values_of_hub_with_culler(rendered).get("extraFiles", {})
    if not files:
        return {}
    queries = json.loads(files["gpu-culler-config"]["stringData"])["queries"]
    return {name: q.replace("$WINDOW", "1h") for name, q in queries.items()}


def expression_problems(rendered: Rendered) -> list[str]:
    """Metric names neither emitted by an installed exporter nor recorded by the platform, label matchers the series
    cannot carry, recording rules used but never defined, and expressions that do not parse."""
    known = exporter_labels()
    records: dict[str, set[str] | None] = {}
    for r in rules(rendered):                     # constants first: their labels are the rule's
        if "record" in r and r["expr"].startswith("vector("):
            records.setdefault(r["record"], set()).update(r.get("labels", {}))
    for r in rules(rendered):
        if "record" in r and not r["expr"].startswith("vector("):
            records[r["record"]] = produced_labels(promql(r["expr"]), records)
    exprs = [(f"rule {r.get('record') or r.get('alert')}", r["expr"]) for r in rules(rendered)]
    for uid, board in dashboards(rendered).items():
        exprs += [(f"dashboard {uid}: {title}", e) for title, e in targets(board)]
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                inner = re.fullmatch(r"label_values\((.+), *(\w+)\)", var["query"]["query"])
                exprs.append((f"dashboard {uid}: variable {var['name']}", inner.group(1)))
    exprs += [(f"GPU culler query {name}", e) for name, e in culler_queries(rendered).items()]
    problems = []
    everything = {**known, **records}
    for where, expr in exprs:
        try:
            found = selectors(expr)
        except Exception as e:            # noqa: BLE001 (any parse error is a finding)
            problems.append(f"{where}: does not parse: {e}")
            continue
        problems += [f"{where}: {p}" for p in join_problems(promql(expr), everything)]
        for name, matched in found:
            if name in known:
                allowed: set[str] | None = known[name]
            elif name in records:
                allowed = records[name]
            else:
                problems.append(f"{where}: {name} is neither emitted by an installed exporter nor recorded")
                continue
            if allowed is not None and matched - allowed:
                problems.append(f"{where}: {name} has no label {sorted(matched - allowed)}")
    return problems

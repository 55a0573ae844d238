"""A JSON Schema for the Grafana dashboard JSON model (schemaVersion 39, Grafana 10/11), restricted to what the
platform's dashboards use and strict about it: every object lists its keys (additionalProperties false), so a
misspelt key, a panel type Grafana does not ship or a target without refId fails. Written from Grafana's dashboard
schema (the `dashboard` kind, kinds/dashboard/dashboard_kind.cue) and panel plugin ids; no upstream JSON Schema of
dashboards is in ../shared/schemas (Grafana publishes it as CUE only)."""

from __future__ import annotations

# The core panel plugins of Grafana 10/11 (public/app/plugins/panel/*).
PANEL_TYPES = ["row", "timeseries", "table", "stat", "gauge", "bargauge", "barchart", "piechart", "text", "heatmap",
               "histogram", "state-timeline", "status-history", "logs", "news", "dashlist", "alertlist", "nodeGraph",
               "traces", "flamegraph", "geomap", "canvas", "xychart", "candlestick", "trend", "datagrid",
               "annolist"]
# Variables Grafana provides itself (global variables and data link variables).
BUILTIN_VARIABLES = {"__range", "__rate_interval", "__interval", "__interval_ms", "__range_s", "__range_ms",
                     "__from", "__to", "__dashboard", "__user", "__org", "__name", "__value", "__data", "__field",
                     "__series", "__url_time_range", "timeFilter", "__timeFilter"}


def _object(properties: dict, required: list[str] | None = None) -> dict:
    return {"type": "object", "properties": properties, "required": required or [], "additionalProperties": False}


_STRING, _INT, _BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
_DATASOURCE = _object({"type": _STRING, "uid": _STRING}, ["type", "uid"])
_LINK = _object({"title": _STRING, "url": _STRING, "targetBlank": _BOOL}, ["title", "url"])
_TARGET = _object({"refId": {"type": "string", "pattern": "^[A-Z]$"}, "datasource": _DATASOURCE, "expr": _STRING,
                   "legendFormat": _STRING, "range": _BOOL, "instant": _BOOL,
                   "format": {"enum": ["time_series", "table", "heatmap"]}}, ["refId", "expr"])
_GRID = _object({"x": {"type": "integer", "minimum": 0, "maximum": 23}, "y": {"type": "integer", "minimum": 0},
                 "w": {"type": "integer", "minimum": 1, "maximum": 24}, "h": {"type": "integer", "minimum": 1}},
                ["x", "y", "w", "h"])
_FIELD_DEFAULTS = _object({"unit": _STRING, "links": {"type": "array", "items": _LINK}})
_OVERRIDE = _object({
    "matcher": _object({"id": {"enum": ["byName", "byRegexp", "byType", "byFrameRefID"]}, "options": _STRING},
                       ["id", "options"]),
    "properties": {"type": "array", "items": _object({"id": _STRING, "value": {}}, ["id", "value"])},
}, ["matcher", "properties"])
_PANEL = _object({
    "id": _INT, "type": {"enum": PANEL_TYPES}, "title": _STRING, "description": _STRING, "gridPos": _GRID,
    "datasource": _DATASOURCE, "targets": {"type": "array", "items": _TARGET, "minItems": 1},
    "fieldConfig": _object({"defaults": _FIELD_DEFAULTS, "overrides": {"type": "array", "items": _OVERRIDE}},
                           ["defaults", "overrides"]),
    "options": {"type": "object"},
    "transformations": {"type": "array", "items": _object({"id": _STRING, "options": {"type": "object"}},
                                                          ["id", "options"])},
    "collapsed": _BOOL, "panels": {"type": "array", "maxItems": 0},
}, ["id", "type", "title", "gridPos"])
_VARIABLE = _object({
    "name": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"}, "label": _STRING, "description": _STRING,
    "type": {"enum": ["query", "datasource", "textbox", "custom", "constant", "interval", "adhoc"]},
    "datasource": _DATASOURCE, "query": {"type": ["string", "object"]}, "definition": _STRING,
    "refresh": {"enum": [0, 1, 2]}, "sort": {"type": "integer", "minimum": 0, "maximum": 8}, "multi": _BOOL,
    "includeAll": _BOOL, "allValue": _STRING, "current": {"type": "object"}, "hide": {"enum": [0, 1, 2]},
}, ["name", "type"])
DASHBOARD_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    **_object({
        "uid": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,40}$"}, "title": _STRING, "description": _STRING,
        "tags": {"type": "array", "items": _STRING}, "schemaVersion": {"type": "integer", "minimum": 36},
        "version": _INT, "editable": _BOOL, "graphTooltip": {"enum": [0, 1, 2]},
        "timezone": {"enum": ["browser", "utc", ""]}, "refresh": _STRING,
        "time": _object({"from": _STRING, "to": _STRING}, ["from", "to"]),
        "templating": _object({"list": {"type": "array", "items": _VARIABLE}}, ["list"]),
        "annotations": _object({"list": {"type": "array"}}, ["list"]), "links": {"type": "array"},
        "panels": {"type": "array", "items": _PANEL, "minItems": 1},
    }, ["uid", "title", "schemaVersion", "panels", "templating", "time"]),
}

"""GPU-utilization culler: stops JupyterHub servers whose GPUs stayed idle, whatever the browser does.

A JupyterHub-managed service (hub.services, `command`), run in the hub pod by the hub image's own Python (standard
library only). jupyter-server's idle timeout counts an open JupyterLab tab as activity (jupyterlab/jupyterlab#9379),
so a forgotten GPU notebook in an open browser would run until its maximum age; this service looks at the GPU instead.

Every `everySeconds` it
1. lists the active servers through the hub API (token scopes: list:users, read:servers, delete:servers);
2. asks Prometheus, per idle window, for the highest GPU busy-ness (DCGM engine activity, else GPU utilization) and
   GPU memory used of every notebook pod over that window, joined to the pod's user by the pod annotation
   KubeSpawner writes (`hub.jupyter.org/username`, exported by kube-state-metrics);
3. stops a server whose profile it watches when the server has run for the whole window and its GPUs stayed below
   the profile's busy threshold (and, if set, below its memory threshold) for the window. During a team's
   off-hours (weekly windows in the team's time zone) the team's shorter off-hours window applies.
It never stops anything when Prometheus is unreachable, answers an error, or has no series for a server: it logs
that instead. Each stop is logged, counted in the metrics it serves (`/metrics`), and written to a notice file the
hub shows the user on its home page (hub.extraConfig `template_vars`).

Usage: python3 gpu_culler.py CONFIG_JSON (written by the stack: components/gpu_culler.py). The hub API URL and token
come from the config (`hubApiUrl`) and JUPYTERHUB_API_TOKEN, which JupyterHub gives every managed service.
"""

from __future__ import annotations

import html
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

log = logging.getLogger("gpu-culler")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WINDOW = "$WINDOW"                  # the query templates' placeholder for the idle window, e.g. 3600s


class Unavailable(Exception):
    """Prometheus or the hub did not answer usefully: this cycle decides nothing."""


def minute_of_week(text: str) -> int:
    """'fri 18:00' -> minutes since Monday 00:00."""
    day, clock = text.split()
    hours, minutes = clock.split(":")
    return DAYS.index(day.lower()) * 1440 + int(hours) * 60 + int(minutes)


def in_off_hours(rule: dict[str, Any], now: datetime) -> bool:
    """Whether `now` falls in one of the team's weekly windows, read in the team's time zone."""
    local = now.astimezone(ZoneInfo(rule["timeZone"]))
    minute = local.weekday() * 1440 + local.hour * 60 + local.minute
    for window in rule["windows"]:
        start, end = minute_of_week(window["start"]), minute_of_week(window["end"])
        if (start <= minute < end) if start < end else (minute >= start or minute < end):
            return True
    return False


def duration(seconds: int) -> str:
    """3600 -> '1 h', 900 -> '15 min', 3 -> '3 s'."""
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


class Metrics:
    """Counters and gauges in the Prometheus text format, served on /metrics."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.help = {
            "mlops_gpu_culler_cycles_total": ("counter", "Culling cycles by outcome (ok, prometheus_error, "
                                                         "hub_error, error)."),
            "mlops_gpu_culler_stopped_servers_total": ("counter", "Servers stopped for idle GPUs, by team, profile and "
                                                                  "rule (idle, off-hours)."),
            "mlops_gpu_culler_servers_without_data": ("gauge", "Watched servers Prometheus had no GPU series for in "
                                                               "the last cycle (not stopped)."),
            "mlops_gpu_culler_last_cycle_timestamp_seconds": ("gauge", "When the last cycle ended."),
        }

    def inc(self, name: str, labels: dict[str, str] | None = None, by: float = 1) -> None:
        key = (name, tuple(sorted((labels or {}).items())))
        with self.lock:
            self.values[key] = self.values.get(key, 0) + by

    def set(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        with self.lock:
            self.values[(name, tuple(sorted((labels or {}).items())))] = value

    def text(self) -> str:
        lines = []
        with self.lock:
            for name, (kind, text) in self.help.items():
                lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
                for (metric, labels), value in sorted(self.values.items()):
                    if metric == name:
                        rendered = ",".join(f'{k}="{v}"' for k, v in labels)
                        lines.append(f"{name}{{{rendered}}} {value}" if rendered else f"{name} {value}")
        return "\n".join(lines) + "\n"


def serve_metrics(metrics: Metrics, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = metrics.text().encode() if self.path == "/metrics" else b"ok\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Culler:
    def __init__(self, config: dict[str, Any], token: str, metrics: Metrics) -> None:
        self.config, self.token, self.metrics = config, token, metrics

    # ---- the two APIs
    def _get(self, url: str, headers: dict[str, str]) -> Any:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def hub(self, method: str, path: str) -> Any:
        url = self.config["hubApiUrl"].rstrip("/") + path
        headers = {"Authorization": f"token {self.token}", "Accept": "application/jupyterhub-pagination+json"}
        if method == "GET":
            return self._get(url, headers)
        request = urllib.request.Request(url, headers=headers, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status

    def active_servers(self) -> list[dict[str, Any]]:
        """Every ready server: {user, server, profile, started}."""
        servers, offset = [], 0
        while True:
            page = self.hub("GET", f"/users?state=active&limit=200&offset={offset}")
            for user in page["items"]:
                for name, server in (user.get("servers") or {}).items():
                    if server.get("ready") and not server.get("pending"):
                        servers.append({"user": user["name"], "server": name,
                                        "profile": (server.get("user_options") or {}).get("profile"),
                                        "started": server.get("started")})
            following = page["_pagination"].get("next")
            if not following:
                return servers
            offset = following["offset"]

    def query(self, template: str, window: int) -> dict[tuple[str, str], float]:
        """(namespace, user) -> value; raises Unavailable unless Prometheus answers a vector."""
        promql = template.replace(WINDOW, f"{window}s")
        url = self.config["prometheusUrl"].rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            answer = self._get(url, {"Accept": "application/json"})
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise Unavailable(f"Prometheus at {self.config['prometheusUrl']} did not answer: {e}") from e
        if answer.get("status") != "success" or answer.get("data", {}).get("resultType") != "vector":
            raise Unavailable(f"Prometheus answered an error: {answer.get('error') or answer}")
        out: dict[tuple[str, str], float] = {}
        for series in answer["data"]["result"]:
            key = (series["metric"].get("namespace", ""), series["metric"].get(self.config["userLabel"], ""))
            out[key] = max(out.get(key, float("-inf")), float(series["value"][1]))
        return out

    # ---- one cycle
    def window_for(self, profile: dict[str, Any], now: datetime) -> tuple[int, str]:
        """The idle window (seconds) and the rule that sets it: the profile's, or the team's shorter off-hours one."""
        rule = self.config.get("offHours", {}).get(profile["team"])
        if rule and rule["idleSeconds"] < profile["idleSeconds"]:
            try:
                if in_off_hours(rule, now):
                    return rule["idleSeconds"], "off-hours"
            except (KeyError, ValueError) as e:     # a time zone the image does not know: never stop more
                log.error("off-hours rule of team %s not applied: %s", profile["team"], e)
        return profile["idleSeconds"], "idle"

    def cycle(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Decide and stop; returns what was stopped. Any Prometheus or hub failure stops nothing."""
        now = now or datetime.now(timezone.utc)
        try:
            servers = self.active_servers()
        except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
            log.error("hub API unavailable, nothing stopped: %s", e)
            self.metrics.inc("mlops_gpu_culler_cycles_total", {"outcome": "hub_error"})
            return []
        candidates = []
        for s in servers:
            profile = self.config["profiles"].get(s["profile"] or "")
            if profile is None or not s["started"]:
                continue                                # a profile this service does not watch
            window, rule = self.window_for(profile, now)
            started = datetime.fromisoformat(s["started"].replace("Z", "+00:00"))
            if (now - started).total_seconds() >= window:     # it ran for the whole window
                candidates.append({**s, "team": profile["team"], "window": window, "rule": rule, "limits": profile})
        try:
            busy, memory = {}, {}
            for window in sorted({c["window"] for c in candidates}):
                busy[window] = self.query(self.config["queries"]["gpuBusyPercent"], window)
                memory[window] = self.query(self.config["queries"]["gpuMemoryUsedMiB"], window)
        except Unavailable as e:
            log.error("%s; nothing stopped this cycle", e)
            self.metrics.inc("mlops_gpu_culler_cycles_total", {"outcome": "prometheus_error"})
            return []
        stopped, without_data = [], 0
        for c in candidates:
            key = (c["team"], c["user"])
            gpu, mem = busy[c["window"]].get(key), memory[c["window"]].get(key)
            if gpu is None:
                without_data += 1
                log.warning("no GPU series for %s/%s (profile %s) over %ss: not stopped", c["team"], c["user"],
                            c["profile"], c["window"])
                continue
            limits = c["limits"]
            if gpu >= limits["busyPercent"] or (limits.get("memoryBusyMiB") is not None and mem is not None
                                                 and mem >= limits["memoryBusyMiB"]):
                continue
            stopped.append(self.stop(c, gpu, mem, now))
        self.metrics.set("mlops_gpu_culler_servers_without_data", without_data)
        self.metrics.inc("mlops_gpu_culler_cycles_total", {"outcome": "ok"})
        self.update_notices([s for s in servers if s["started"]], [s for s in stopped if s])
        return [s for s in stopped if s]

    def stop(self, c: dict[str, Any], gpu: float, mem: float | None, now: datetime) -> dict[str, Any] | None:
        held = f", {mem / 1024:.1f} GiB of GPU memory held" if mem is not None else ""
        reason = (f"its GPU stayed below {c['limits']['busyPercent']:g}% busy (at most {gpu:.0f}%{held}) for "
                  f"{duration(c['window'])}" + (" during the team's off-hours" if c["rule"] == "off-hours" else ""))
        path = f"/users/{urllib.parse.quote(c['user'])}/server" + (
            f"s/{urllib.parse.quote(c['server'])}" if c["server"] else "")
        try:
            self.hub("DELETE", path)
        except (urllib.error.URLError, OSError) as e:
            log.error("could not stop %s's server %r: %s", c["user"], c["server"], e)
            return None
        log.info("stopped user=%s server=%r team=%s profile=%s rule=%s window=%ss gpu_busy_max=%.1f "
                 "gpu_memory_mib_max=%s: %s", c["user"], c["server"], c["team"], c["profile"], c["rule"], c["window"],
                 gpu, "none" if mem is None else f"{mem:.0f}", reason)
        self.metrics.inc("mlops_gpu_culler_stopped_servers_total",
                         {"team": c["team"], "profile": c["profile"], "rule": c["rule"]})
        return {"user": c["user"], "server": c["server"], "profile": c["profile"], "reason": reason,
                "stoppedAt": now.isoformat()}

    # ---- what the user sees
    def update_notices(self, running: list[dict[str, Any]], stopped: list[dict[str, Any]]) -> None:
        """One notice per user (the last stop), dropped once the user has started a server again."""
        path = self.config["noticeFile"]
        try:
            with open(path) as f:
                notices = json.load(f)
        except (OSError, ValueError):
            notices = {}
        for s in running:
            notice = notices.get(s["user"])
            if notice and s["started"].replace("Z", "+00:00") > notice["stoppedAt"]:
                del notices[s["user"]]
        for s in stopped:
            notices[s["user"]] = s
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(notices, f)
        os.replace(tmp, path)


def notice_html(notices_file: str, user_name: str) -> str | None:
    """The hub home page's announcement for `user_name`, or None (used by hub.extraConfig)."""
    try:
        with open(notices_file) as f:
            notice = json.load(f).get(user_name)
    except (OSError, ValueError):
        return None
    if not notice:
        return None
    when = notice["stoppedAt"][:16].replace("T", " ")
    return html.escape(f"Your server (profile {notice['profile']}) was stopped at {when} UTC because "
                       f"{notice['reason']}. Your files are kept; start it again when you need the GPU.")


def main(config_path: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s gpu-culler %(levelname)s %(message)s")
    with open(config_path) as f:
        config = json.load(f)
    metrics = Metrics()
    serve_metrics(metrics, int(config["metricsPort"]))
    culler = Culler(config, os.environ["JUPYTERHUB_API_TOKEN"], metrics)
    log.info("watching %d profiles every %ss", len(config["profiles"]), config["everySeconds"])
    while True:
        try:
            culler.cycle()
        except Exception:       # noqa: BLE001 (one bad cycle must not end the service)
            log.exception("cycle failed; nothing more stopped")
            metrics.inc("mlops_gpu_culler_cycles_total", {"outcome": "error"})
        metrics.set("mlops_gpu_culler_last_cycle_timestamp_seconds", time.time())
        time.sleep(float(config["everySeconds"]))


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        main(sys.argv[1])
    except KeyboardInterrupt:      # the hub stops its managed services with SIGINT
        log.info("stopping")

"""Alert delivery, with the real tools on the fixture config (tests/alert_fixture.py, not the shipped stacks' teams):
the alertmanager.yaml the program writes into its Secret passes `amtool check-config`; `amtool config routes test`
sends each team's GPU waste and model alerts (labels as the rendered PrometheusRules give them) to that team's
receiver, a team without a receiver's and the cluster-wide alerts to the platform receiver; the real chart runs
Alertmanager on that Secret; a real Alertmanager sends one message per server and holds back rightsizing while the
GPU is idle; the receivers' secrets stay in the Secret."""

from __future__ import annotations

import copy
import http.server
import json
import socket
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.config import parse_config
from components.config.alerting import receivers
from components.observability import alertmanager
from preview import engine, render
from tests import charts, test_secrets, upstream
from tests.alert_fixture import (AMTOOL_HOW, FIXTURE, SLACK, alert_labels, amtool, config_text,  # noqa: F401 (fixtures)
                                 routes, unmasked, write)
from tests.conftest import SHIPPED_STACKS, Rendered, run_config
from tests.test_shipped_stacks import config_of


# ---- Alertmanager: the config in the cluster, checked and routed by amtool --------------------------------------


def test_the_secret_holds_a_config_amtool_accepts(unmasked, amtool, tmp_path):
    text = config_text(unmasked)
    done = subprocess.run([amtool, "check-config", str(write(tmp_path, text))], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 receivers" in done.stdout and "2 inhibit rules" in done.stdout, done.stdout


def test_mutation_a_broken_config_fails_amtool(unmasked, amtool, tmp_path):
    """A route to a receiver that is not declared (as if a team's receiver were left out)."""
    config = yaml.safe_load(config_text(unmasked))
    config["receivers"] = [r for r in config["receivers"] if r["name"] != "team-alpha"]
    done = subprocess.run([amtool, "check-config", str(write(tmp_path, yaml.safe_dump(config)))],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "team-alpha" in done.stdout + done.stderr


@pytest.mark.parametrize("team, receiver", [("alpha", "team-alpha"), ("beta", "team-beta"), ("gamma", "platform")])
@pytest.mark.parametrize("alert", ["GpuAllocatedButIdle", "GpuMemoryRightsizing", "InferenceErrorRateHigh"])
def test_each_teams_alerts_reach_its_receiver(unmasked, amtool, tmp_path, team, receiver, alert):
    """gamma configured no receiver: the platform receiver gets its alerts (the documented default)."""
    labels = alert_labels(unmasked, alert, namespace=team, pod="jupyter-alice", gpu="0", inferenceservice="m")
    assert labels["team"] == team
    assert routes(amtool, write(tmp_path, config_text(unmasked)), labels) == [receiver]


CLUSTER_WIDE = {"GpuNodePoolAtLimitWithPendingPods"}


def test_every_alert_but_the_cluster_wide_ones_names_its_team(unmasked):
    """A new alert about a team's workload must carry `team`, or it reaches only the platform receiver."""
    alerts = {r["alert"]: r.get("labels", {}) for o in unmasked.objects("PrometheusRule") for g in o["spec"]["groups"]
              for r in g["rules"] if "alert" in r}
    assert CLUSTER_WIDE < set(alerts)
    assert {name: labels.get("team") for name, labels in alerts.items() if name not in CLUSTER_WIDE
            and labels.get("team") != "{{ $labels.namespace }}"} == {}
    assert not any("team" in alerts[name] for name in CLUSTER_WIDE)


def test_cluster_wide_alerts_reach_the_platform_receiver(unmasked, amtool, tmp_path):
    labels = alert_labels(unmasked, "GpuNodePoolAtLimitWithPendingPods", nodepool="training",
                          resource_type="nvidia.com/gpu")
    assert "team" not in labels
    assert routes(amtool, write(tmp_path, config_text(unmasked)), labels) == ["platform"]


def test_mutation_alerts_without_the_team_label_reach_only_the_platform(unmasked, amtool, tmp_path):
    """As before: the rules gave no `team` label, so no team route could match."""
    labels = alert_labels(unmasked, "GpuAllocatedButIdle", namespace="alpha", pod="jupyter-alice")
    del labels["team"]
    assert routes(amtool, write(tmp_path, config_text(unmasked)), labels) == ["platform"]


def test_grouping_and_inhibition_for_gpu_waste(unmasked):
    """One message per server (pod), whatever its GPUs; rightsizing is quiet while the same pod's GPU is idle."""
    config = yaml.safe_load(config_text(unmasked))
    group_by = config["route"]["group_by"]
    assert {"alertname", "team", "namespace", "pod"} <= set(group_by) and "gpu" not in group_by
    assert {"source_matchers": ['alertname="GpuAllocatedButIdle"'],
            "target_matchers": ['alertname="GpuMemoryRightsizing"'], "equal": ["namespace", "pod"]} \
        in config["inhibit_rules"]


def test_secrets_reach_only_the_secret(unmasked):
    """The webhook URLs are in the Alertmanager Secret, and in nothing else the program declares."""
    text = config_text(unmasked)
    assert all(url in text for url in SLACK.values())
    others = [r for r in unmasked.resources if any(url in str(r.inputs) for url in SLACK.values())
              and r.name != "observability-alertmanager-config"]
    assert [r.name for r in others] == []


def test_the_offline_render_masks_the_config():
    rendered = Rendered(run_config(FIXTURE))
    assert config_text(rendered) == engine.SECRET_PLACEHOLDER
    values = rendered.helm(alertmanager.RELEASE)["values"]["alertmanager"]
    assert values["alertmanagerSpec"]["useExistingSecret"] is True and "config" not in values


def chart_objects(rendered: Rendered, charts_dir: Path) -> list[dict[str, Any]]:
    """kube-prometheus-stack rendered by the real chart and helm with the release's values."""
    helm = upstream.tool("helm", charts.HELM_HOW)
    inputs = next(r.inputs for r in render.helm_releases(rendered.run) if r.inputs["name"] == alertmanager.RELEASE)
    code, out, err = charts.template(helm, charts.archive(charts_dir, inputs), inputs)
    assert code == 0, err[-800:]
    return charts.objects(out)


def test_the_chart_runs_alertmanager_on_the_secret_and_prometheus_sends_to_it(unmasked, charts_dir):
    """The operator reads `alertmanager-<Alertmanager name>` (its default configSecret), which the component writes
    in the same namespace; the chart writes no config of its own, and Prometheus is pointed at this Alertmanager."""
    objects = chart_objects(unmasked, charts_dir)
    (am,) = [o for o in objects if o["kind"] == "Alertmanager"]
    assert f"alertmanager-{am['metadata']['name']}" == alertmanager.CONFIG_SECRET and "configSecret" not in am["spec"]
    ours = unmasked.obj("Secret", alertmanager.CONFIG_SECRET)
    assert ours["metadata"]["namespace"] == am["metadata"]["namespace"]
    assert [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == alertmanager.CONFIG_SECRET] == []
    (prometheus,) = [o for o in objects if o["kind"] == "Prometheus"]
    targets = prometheus["spec"]["alerting"]["alertmanagers"]
    assert [(t["namespace"], t["name"]) for t in targets] == [(am["metadata"]["namespace"], am["metadata"]["name"])]


def test_mutation_the_config_in_the_chart_values_fails_the_leak_search(monkeypatch, tmp_path):
    """tests/test_secrets.py's search covers the receivers' secrets: with the configuration in the chart's values
    (where the chart's own `alertmanager.config` would put it), a shipped stack's `secure:` webhook is found there.
    (One shipped stack with such a webhook is enough; none at all would leave the mutation nothing to find.)"""
    configs = {stack: parse_config(config_of(engine.stack_file(stack))) for stack in SHIPPED_STACKS}
    with_webhook = [s for s, cfg in configs.items()
                    if any(r.slack_webhook_url == engine.OFFLINE_SECRET for _, r in receivers(cfg))]
    assert with_webhook, "no shipped stack has a `secure:` webhook to look for"
    stack, cfg = with_webhook[0], configs[with_webhook[0]]
    original = alertmanager.helm_values
    monkeypatch.setattr(alertmanager, "helm_values", lambda am, nodes: {
        **original(am, nodes), "config": alertmanager.alertmanager_config(am, cfg.teams)})
    found = test_secrets.leaks(stack, test_secrets.render_mutated(stack), tmp_path)
    assert any("offline value of secure config in inputs of" in leak and "observability-stack" in leak
               for leak in found), found


# ---- a real Alertmanager: one message per server, rightsizing held back while the GPU is idle --------------------


class Capture(http.server.BaseHTTPRequestHandler):
    """Stands in for Slack and the email webhook on the loopback address: records every notification."""

    received: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Capture.received.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_receivers(config: dict[str, Any], base: str) -> dict[str, Any]:
    """The same routes, grouping and inhibition; Slack posts to the capture server, email becomes a webhook to it
    (nothing leaves the machine). A new group is sent after 1s instead of groupWait."""
    config = copy.deepcopy(config)
    config["route"]["group_wait"] = "1s"
    for r in config["receivers"]:
        for slack in r.get("slack_configs", []):
            slack["api_url"] = f"{base}/{r['name']}/slack"
        if r.pop("email_configs", None):
            r["webhook_configs"] = [{"url": f"{base}/{r['name']}/email"}]
    return config


@pytest.fixture
def running_alertmanager(unmasked, tmp_path):
    """prometheus-alertmanager (Debian's, amtool's package) on loopback ports with the Secret's config."""
    binary = upstream.tool("prometheus-alertmanager", AMTOOL_HOW)
    Capture.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = local_receivers(yaml.safe_load(config_text(unmasked)), f"http://127.0.0.1:{server.server_port}")
    path = write(tmp_path, yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen([binary, f"--config.file={path}", f"--storage.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        until(lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200, "Alertmanager to start",
              proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        server.shutdown()


def until(check, what: str, proc: subprocess.Popen | None = None, limit: float = 120) -> None:
    """Poll `check` until it holds; the limit is generous (a loaded machine), never part of what is asserted."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited while waiting for {what}: {proc.stderr.read()[-1500:]}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"gave up waiting for {what}")


def post(url: str, path: str, body: Any) -> Any:
    request = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def get(url: str, path: str) -> Any:
    with urllib.request.urlopen(f"{url}{path}", timeout=10) as response:
        return json.loads(response.read())


def firing(rendered: Rendered, alert: str, description: str, **series: str) -> dict[str, Any]:
    return {"labels": alert_labels(rendered, alert, **series), "annotations": {"description": description}}


def test_a_real_alertmanager_sends_one_message_per_server_and_holds_back_rightsizing(unmasked, running_alertmanager):
    url = running_alertmanager
    alerts = [
        # alice's notebook holds two idle GPUs, and uses little of their memory.
        firing(unmasked, "GpuAllocatedButIdle", "GPU 0 idle", namespace="alpha", pod="jupyter-alice", gpu="0"),
        firing(unmasked, "GpuAllocatedButIdle", "GPU 1 idle", namespace="alpha", pod="jupyter-alice", gpu="1"),
        firing(unmasked, "GpuMemoryRightsizing", "alice: 1g.10gb fits", namespace="alpha", pod="jupyter-alice",
               gpu="0"),
        # beta's training pod is busy but small; gamma has no receiver; a cluster-wide alert.
        firing(unmasked, "GpuMemoryRightsizing", "train-7: 1g.10gb fits", namespace="beta", pod="train-7", gpu="1"),
        firing(unmasked, "GpuAllocatedButIdle", "gamma GPU idle", namespace="gamma", pod="jupyter-bob", gpu="0"),
        firing(unmasked, "GpuNodePoolAtLimitWithPendingPods", "training full", nodepool="training",
               resource_type="nvidia.com/gpu"),
    ]
    post(url, "/api/v2/alerts", alerts)
    # Slack and email each get the platform's two groups; alpha's Slack one group, beta's email one.
    expected = {"/team-alpha/slack": 1, "/team-beta/email": 1, "/platform/slack": 2, "/platform/email": 2}
    until(lambda: all(sum(p == path for p, _ in Capture.received) >= n for path, n in expected.items()),
          f"notifications {expected}")
    rightsizing = get(url, '/api/v2/alerts?filter=alertname%3D%22GpuMemoryRightsizing%22')
    state = {a["labels"]["namespace"]: (a["status"]["state"], bool(a["status"]["inhibitedBy"])) for a in rightsizing}
    assert state == {"alpha": ("suppressed", True), "beta": ("active", False)}

    groups = [(p, [a["annotations"]["description"] for a in body.get("alerts", [])] or body["attachments"][0]["text"])
              for p, body in Capture.received]
    (alpha,) = [text for p, text in groups if p == "/team-alpha/slack"]
    assert "GPU 0 idle" in alpha and "GPU 1 idle" in alpha and "1g.10gb" not in alpha    # one message, two GPUs
    (beta,) = [descriptions for p, descriptions in groups if p == "/team-beta/email"]
    assert beta == ["train-7: 1g.10gb fits"]
    platform = sorted(d for p, ds in groups if p == "/platform/email" for d in ds)
    assert platform == ["gamma GPU idle", "training full"]
    assert Counter(p for p, _ in Capture.received) == Counter(expected)

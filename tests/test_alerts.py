"""Alert delivery, checked with the real tools on a config built here (not the shipped stacks' teams):

- the alertmanager.yaml the program writes into its Secret passes `amtool check-config`, and `amtool config routes
  test` sends each team's GPU waste alerts (labels as the rendered PrometheusRules give them) to that team's receiver,
  a team without a receiver's to the platform receiver, and the cluster-wide alerts to the platform receiver;
- the GPU memory rightsizing alert's text, by `promtool test rules` on DCGM-shaped series: how much the pod uses of
  how much, and the smallest GPU unit of the stack's pools that fits it;
- the config rules (bad webhook URL, email without SMTP, prod without a platform receiver) and secret handling.
"""

from __future__ import annotations

import copy
import http.server
import json
import re
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
from components.config.alerting import AlertmanagerConfig, receivers
from components.observability import alertmanager
from preview import engine, render
from tests import charts, upstream
from tests import test_secrets
from tests.conftest import SHIPPED_STACKS, Rendered, config_problems, raw_config, run_config
from tests.test_prometheus_rules import DCGM_TARGET, PROMTOOL_HOW, Stack, promtool_test, series

AMTOOL_HOW = "apt-get install prometheus-alertmanager (Debian ships amtool in it)"
P = "mlops-platform:"
SLACK = {t: f"https://hooks.slack.com/services/T0FIXTURE/B0{t.upper()}/s3cr3t{t}" for t in ("alpha", "platform")}
# Teams: alpha on Slack, beta by email, gamma with no receiver (the platform's then).
FIXTURE: dict[str, Any] = {
    "aws:region": "us-west-2",
    f"{P}environment": "dev",
    f"{P}protectData": False,
    f"{P}network": {"vpcCidr": "10.40.0.0/16", "azCount": 2, "natGateways": "single"},
    f"{P}cluster": {
        "kubernetesVersion": "1.34", "adminRoleArns": ["arn:aws:iam::123456789012:role/platform-admins"],
        "logRetentionDays": 7,
        "systemNodes": {"instanceTypes": ["m6i.large"], "capacityType": "ON_DEMAND", "minSize": 2, "desiredSize": 2,
                        "maxSize": 3}},
    f"{P}teams": [
        {"name": "alpha", "gpuQuota": 2, "alertReceiver": {"slackWebhookUrl": SLACK["alpha"]}},
        {"name": "beta", "gpuQuota": 1, "alertReceiver": {"emailTo": ["beta-oncall@example.org", "lead@example.org"]}},
        {"name": "gamma", "gpuQuota": 1},
    ],
    # Whole A100s, MIG slices of A100 80GB and time-sliced L4s: what the rightsizing alert can suggest.
    f"{P}gpu": {
        "nodePools": [
            {"name": "training", "instanceTypes": ["p4d.24xlarge"], "capacityTypes": ["spot"], "gpuLimit": 8},
            {"name": "inference-mig", "instanceTypes": ["p4de.24xlarge"], "capacityTypes": ["on-demand"],
             "gpuLimit": 8, "sharing": {"mode": "mig", "migLayout": {"3g.40gb": 1, "2g.20gb": 1, "1g.10gb": 2}}},
            {"name": "small", "instanceTypes": ["g6.xlarge"], "capacityTypes": ["on-demand"], "gpuLimit": 2,
             "sharing": {"mode": "time-slicing", "replicas": 4}},
        ],
        "alerts": {"idleFor": "10m", "rightsizingFor": "30m"},
    },
    f"{P}observability": {"alertmanager": {
        "platformReceiver": {"slackWebhookUrl": SLACK["platform"], "emailTo": ["platform@example.org"]},
        "smtp": {"smarthost": "smtp.example.org:587", "from": "alerts@example.org"}}},
    f"{P}notebooks": {"auth": {"type": "dummy", "dummyUsers": {"alice": ["alpha"]}}},
}


def raw(config: dict[str, Any]) -> dict[str, Any]:
    return {k[len(P):]: v for k, v in config.items() if k.startswith(P)}


@pytest.fixture(scope="module")
def unmasked() -> Rendered:
    """The fixture stack rendered with secrets shown, to read what the Alertmanager Secret really holds."""
    original = engine.masked
    engine.masked = lambda value: value
    try:
        return Rendered(run_config(FIXTURE))
    finally:
        engine.masked = original


@pytest.fixture(scope="module")
def amtool() -> str:
    return upstream.tool("amtool", AMTOOL_HOW)


@pytest.fixture(scope="module")
def promtool() -> str:
    return upstream.tool("promtool", PROMTOOL_HOW)


def config_text(rendered: Rendered) -> str:
    secret = rendered.obj("Secret", alertmanager.CONFIG_SECRET)
    return secret["stringData"][alertmanager.CONFIG_KEY]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alertmanager.yaml"
    path.write_text(text)
    return path


def routes(amtool: str, config: Path, labels: dict[str, str]) -> list[str]:
    done = subprocess.run([amtool, "config", "routes", "test", f"--config.file={config}",
                           *(f"{k}={v}" for k, v in sorted(labels.items()))], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.split()


def alert_labels(rendered: Rendered, alert: str, **series: str) -> dict[str, str]:
    """The labels an alert fires with: its series' labels, then the rule's own, templates expanded as Prometheus
    does for `{{ $labels.x }}`."""
    rule = next(r for o in rendered.objects("PrometheusRule") for g in o["spec"]["groups"] for r in g["rules"]
                if r.get("alert") == alert)
    expand = lambda v: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: series.get(m.group(1), ""), v)
    return {**series, "alertname": alert, **{k: expand(v) for k, v in rule.get("labels", {}).items()}}


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


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_mutation_the_config_in_the_chart_values_fails_the_leak_search(stack, monkeypatch, tmp_path):
    """tests/test_secrets.py's search covers the receivers' secrets: with the configuration in the chart's values
    (where the chart's own `alertmanager.config` would put it), a shipped stack's `secure:` webhook is found there."""
    cfg = parse_config(raw_config(stack))
    if not any(r.slack_webhook_url == engine.OFFLINE_SECRET for _, r in receivers(cfg)):
        pytest.skip(f"Pulumi.{stack}.yaml has no `secure:` webhook to look for")
    original = alertmanager.helm_values
    monkeypatch.setattr(alertmanager, "helm_values", lambda am, nodes: {
        **original(am, nodes), "config": alertmanager.alertmanager_config(am, cfg.teams)})
    found = test_secrets.leaks(stack, test_secrets.render_mutated(stack), tmp_path)
    assert any("offline value of secure config in inputs of" in leak and "observability-stack" in leak
               for leak in found), found


# ---- the rightsizing text, by promtool on DCGM-shaped series --------------------------------------------------------

A100_40 = {"modelName": "NVIDIA A100-SXM4-40GB", "Hostname": "ip-10-0-2-41.ec2.internal"}
A100_80 = {"modelName": "NVIDIA A100-SXM4-80GB", "Hostname": "ip-10-0-3-7.ec2.internal"}


def memory_series(gpu: str, model: dict[str, str], used_mib: int, total_mib: int, pod: str, team: str,
                  mig: dict[str, str] | None = None) -> tuple[list[dict], dict[str, str]]:
    """FB_USED/FB_FREE of one GPU (or MIG device) held by `pod`, as the DCGM exporter reports them."""
    labels = {**DCGM_TARGET, **model, **(mig or {}), "gpu": gpu, "UUID": f"GPU-7f3e9a10-0000-4000-8000-00000000000{gpu}",
              "device": f"nvidia{gpu}", "pci_bus_id": f"00000000:{10 + int(gpu)}:00.0",
              "DCGM_FI_DRIVER_VERSION": "570.172.08", "instance": "10.0.2.41:9400",
              "namespace": team, "pod": pod, "container": "notebook"}
    return ([series("DCGM_FI_DEV_FB_USED", labels, f"{used_mib}x120"),
             series("DCGM_FI_DEV_FB_FREE", labels, f"{total_mib - used_mib}x120")], labels)


def rightsizing_case(stack: Stack) -> tuple[dict, dict[str, dict[str, str]]]:
    """Three pods: 7.8 GiB of a whole A100 40GB, 7 GiB of a 3g.40gb MIG slice of an A100 80GB, and 30 GiB of an
    A100 40GB (no alert). Returns the input series and each alerting pod's series labels."""
    alerting = [memory_series("0", A100_40, 7987, 40326, "jupyter-alice", "alpha"),
                memory_series("1", A100_80, 7168, 40448, "train-7", "beta",
                              {"GPU_I_PROFILE": "3g.40gb", "GPU_I_ID": "2"})]
    # Busy: a whole GPU, and another MIG slice of GPU 1 (its memory is not the 3g.40gb slice's).
    quiet = [memory_series("2", A100_40, 30720, 40326, "busy-0", "alpha"),
             memory_series("1", A100_80, 16000, 20096, "serve-3", "beta", {"GPU_I_PROFILE": "2g.20gb", "GPU_I_ID": "5"})]
    inputs = [s for c, _ in [*alerting, *quiet] for s in c]
    return {"interval": "1m", "input_series": inputs}, {labels["pod"]: labels for _, labels in alerting}


def rightsizing_test(stack: Stack, texts: dict[str, str]) -> dict:
    """promtool's alert test: exactly the alerting pods, with their labels (series + the rule's, team expanded) and
    `texts` as descriptions."""
    alert = stack.alert("GpuMemoryRightsizing")
    case, labels = rightsizing_case(stack)
    exp = [{"exp_labels": {**labels[pod], **{k: v.replace("{{ $labels.namespace }}", labels[pod]["namespace"])
                                              for k, v in alert["labels"].items()}},
            "exp_annotations": {"summary": alert["annotations"]["summary"], "description": text}}
           for pod, text in texts.items()]
    return {**case, "alert_rule_test": [{"eval_time": "60m", "alertname": "GpuMemoryRightsizing", "exp_alerts": exp}]}


EXPECTED = {
    "jupyter-alice": ("alpha/jupyter-alice uses 7.8 GiB of the 39.4 GiB of GPU 0 (NVIDIA A100-SXM4-40GB) at most, for "
                      "30m: the 1g.10gb MIG profile (nvidia.com/mig-1g.10gb, pool inference-mig, 10 GiB) fits it with "
                      "25% headroom: ask for that resource instead (notebook profile or the pod's resources)."),
    "train-7": ("beta/train-7 uses 7.0 GiB of the 39.5 GiB of GPU 1 (NVIDIA A100-SXM4-80GB) at most, for 30m: the "
                "1g.10gb MIG profile (nvidia.com/mig-1g.10gb, pool inference-mig, 10 GiB) fits it with 25% headroom: "
                "ask for that resource instead (notebook profile or the pod's resources)."),
}


@pytest.fixture(scope="module")
def fixture_stack() -> Stack:
    return Stack(Rendered(run_config(FIXTURE)))


def test_rightsizing_says_what_fits(fixture_stack, promtool, tmp_path):
    done = promtool_test(promtool, fixture_stack, [rightsizing_test(fixture_stack, EXPECTED)], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_rightsizing_with_nothing_smaller_offered(fixture_stack, promtool, tmp_path):
    """Without the pools' offers (a stack with none smaller), the text says so instead of naming one."""
    rules = copy.deepcopy(fixture_stack.rule_objects)
    for spec in rules.values():
        for group in spec["groups"]:
            group["rules"] = [r for r in group["rules"] if r.get("record") != "mlops:gpu_offer_memory:gib"]
    texts = {pod: text.split(": the 1g.10gb")[0] + ": no smaller GPU, share or MIG profile of the platform's GPU "
             "pools fits it with 25% headroom; share the GPU between jobs." for pod, text in EXPECTED.items()}
    done = promtool_test(promtool, fixture_stack, [rightsizing_test(fixture_stack, texts)], tmp_path, rules)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mutation_a_wrong_suggestion_fails(fixture_stack, promtool, tmp_path):
    wrong = {pod: text.replace("1g.10gb MIG profile (nvidia.com/mig-1g.10gb", "2g.20gb MIG profile "
                               "(nvidia.com/mig-2g.20gb") for pod, text in EXPECTED.items()}
    done = promtool_test(promtool, fixture_stack, [rightsizing_test(fixture_stack, wrong)], tmp_path)
    assert done.returncode != 0 and "GpuMemoryRightsizing" in done.stdout + done.stderr


# ---- config rules ----------------------------------------------------------------------------------------------------


def with_changes(**paths: Any) -> dict[str, Any]:
    config = raw(copy.deepcopy(FIXTURE))
    for path, value in paths.items():
        node = config
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[keys[-1]] = value
    return config


def test_a_bad_webhook_url_is_reported_without_its_value():
    found = config_problems(with_changes(**{"teams.0.alertReceiver": {"slackWebhookUrl": "http://hooks.example/x"}}))
    assert any(p.startswith("teams[0].alertReceiver.slackWebhookUrl: must be an https:// webhook URL") for p in found)
    assert not any("hooks.example" in p for p in found), found


def test_email_needs_smtp():
    config = with_changes()
    del config["observability"]["alertmanager"]["smtp"]
    found = config_problems(config)
    assert "teams[1].alertReceiver.emailTo: needs observability.alertmanager.smtp" in "\n".join(found)
    assert any(p.startswith("observability.alertmanager.platformReceiver.emailTo: needs") for p in found)


def test_an_empty_receiver_is_refused():
    found = config_problems(with_changes(**{"teams.2.alertReceiver": {}}))
    assert any(p.startswith("teams[2].alertReceiver: set slackWebhookUrl or emailTo") for p in found), found


def test_prod_needs_a_platform_receiver_and_secure_webhooks():
    config = with_changes(environment="prod", protectData=True)
    del config["observability"]["alertmanager"]["platformReceiver"]
    found = "\n".join(config_problems(config))
    assert "observability.alertmanager.platformReceiver: is required in prod" in found
    assert "teams[0].alertReceiver.slackWebhookUrl: must be a `secure:` value in prod" in found


def test_defaults_are_valid_alertmanager_settings():
    am = AlertmanagerConfig()
    assert am.enabled and am.platform_receiver is None and am.repeat_interval == "4h"


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

"""The stack config the alert tests build (tests/test_alert_routing.py, tests/test_alert_text.py), independent of the
shipped stacks: three teams (alpha on Slack, beta by email, gamma with no receiver), a platform receiver on Slack and
email, GPU pools offering whole A100s, MIG slices of A100 80GB and time-sliced L4s; and the helpers that read the
Alertmanager configuration the program writes and the labels the rendered rules give an alert."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.observability import alertmanager
from preview import engine
from tests import upstream
from tests.conftest import Rendered, run_config

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

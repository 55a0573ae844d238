"""Alertmanager's configuration file (alertmanager.yaml) from the stack config: one route per team with a receiver,
matched on the `team` label every team-scoped alert carries (components/observability/rules.py); everything else,
and the alerts of teams without a receiver, to the platform receiver. It holds webhook URLs and the SMTP password,
so it lives in a Secret (component.py), never in the chart's values."""

from __future__ import annotations

from typing import Any

from components.config import TeamConfig
from components.config.alerting import AlertmanagerConfig, AlertReceiverConfig
from components.observability.metrics import RELEASE

# The Alertmanager custom resource the chart creates; with `useExistingSecret` the operator reads its configuration
# from the Secret `alertmanager-<name>` (prometheus-operator's default configSecret), which component.py writes.
ALERTMANAGER_NAME = f"{RELEASE}-alertmanager"
CONFIG_SECRET = f"alertmanager-{ALERTMANAGER_NAME}"
CONFIG_KEY = "alertmanager.yaml"
PLATFORM_RECEIVER = "platform"
TEAM_LABEL = "team"

# One message per alert and workload: a server (pod) with four idle GPUs is one message, not four, and not one per
# evaluation. Model alerts group per InferenceService, capacity alerts per NodePool.
GROUP_BY = ["alertname", TEAM_LABEL, "namespace", "pod", "inferenceservice", "nodepool"]
# While a pod's GPU is idle, telling its owner it could use a smaller GPU is noise: stop the pod first. A model
# failing its requests is also slow; the error-rate alert says more.
INHIBIT_RULES = [
    {"source_matchers": ['alertname="GpuAllocatedButIdle"'], "target_matchers": ['alertname="GpuMemoryRightsizing"'],
     "equal": ["namespace", "pod"]},
    {"source_matchers": ['alertname="InferenceErrorRateHigh"'],
     "target_matchers": ['alertname="InferenceLatencyP99AboveTarget"'], "equal": ["namespace", "inferenceservice"]},
]
# Slack's default message is the title alone: the text lists each alert's description (what to change).
SLACK_TITLE = '[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}] ' \
              '{{ .CommonLabels.alertname }} {{ .CommonLabels.namespace }}'
SLACK_TEXT = '{{ range .Alerts }}{{ .Annotations.summary }}\n{{ .Annotations.description }}\n{{ end }}'


def team_receiver(team: str) -> str:
    return f"team-{team}"


def _receiver(name: str, cfg: AlertReceiverConfig | None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    if cfg is None:          # no integration: alerts are kept (and shown in Alertmanager's UI), not sent
        return out
    if cfg.slack_webhook_url:
        out["slack_configs"] = [{"api_url": cfg.slack_webhook_url, "send_resolved": True,
                                 "title": SLACK_TITLE, "text": SLACK_TEXT}]
    if cfg.email_to:
        out["email_configs"] = [{"to": ", ".join(cfg.email_to), "send_resolved": True}]
    return out


def _info_route(cfg: AlertmanagerConfig) -> dict[str, Any]:
    """Severity `info` (rightsizing) alerts are reminders: resent daily, not every few hours."""
    return {"matchers": ['severity="info"'], "repeat_interval": cfg.info_repeat_interval}


def alertmanager_config(cfg: AlertmanagerConfig, teams: list[TeamConfig]) -> dict[str, Any]:
    """The whole alertmanager.yaml. Teams without `alertReceiver` get no route: their alerts fall through to the root
    route, the platform receiver."""
    routed = [t for t in teams if t.alert_receiver is not None]
    config: dict[str, Any] = {
        "route": {
            "receiver": PLATFORM_RECEIVER,
            "group_by": list(GROUP_BY),
            "group_wait": cfg.group_wait,
            "group_interval": cfg.group_interval,
            "repeat_interval": cfg.repeat_interval,
            "routes": [{"receiver": team_receiver(t.name), "matchers": [f'{TEAM_LABEL}="{t.name}"'],
                        "routes": [_info_route(cfg)]} for t in routed] + [_info_route(cfg)],
        },
        "inhibit_rules": [dict(r) for r in INHIBIT_RULES],
        "receivers": [_receiver(PLATFORM_RECEIVER, cfg.platform_receiver)]
        + [_receiver(team_receiver(t.name), t.alert_receiver) for t in routed],
    }
    if cfg.smtp is not None:
        smtp = {"smtp_smarthost": cfg.smtp.smarthost, "smtp_from": cfg.smtp.from_,
                "smtp_require_tls": cfg.smtp.require_tls}
        if cfg.smtp.auth_username:
            smtp |= {"smtp_auth_username": cfg.smtp.auth_username, "smtp_auth_password": cfg.smtp.auth_password}
        config["global"] = smtp
    return config


def helm_values(cfg: AlertmanagerConfig, system_nodes: dict[str, str]) -> dict[str, Any]:
    """The chart's `alertmanager` values: its configuration from CONFIG_SECRET (never from these values)."""
    return {
        "enabled": True,
        "alertmanagerSpec": {
            "useExistingSecret": True,
            "replicas": cfg.replicas,
            "nodeSelector": dict(system_nodes),
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        },
    }

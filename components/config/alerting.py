"""Where alerts go: a team's receiver (`teams[].alertReceiver`), and Alertmanager's own settings
(`observability.alertmanager`: the platform receiver, SMTP, grouping). Rendered by components/observability/alertmanager.py;
user docs in docs/alerts.md."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, model_validator

from components.config.problems import Problem
from components.config.secrets import PLACEHOLDER
from components.config.types import Duration, Model, duration_seconds

if TYPE_CHECKING:
    from components.config.platform import PlatformConfig

Email = Annotated[str, Field(pattern=r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")]
SmartHost = Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]+:[0-9]{1,5}$")]
# The webhook URL is a secret: its rule (below) says what is wrong without echoing it, which a field pattern would.
WEBHOOK_URL = re.compile(r"https://[A-Za-z0-9.-]+(:\d+)?/\S+")
SET_WEBHOOK = "pulumi config set --secret --path 'mlops-platform:{path}' <url>"


class AlertReceiverConfig(Model):
    """Where a team's (or the platform's) alerts are sent: a Slack incoming webhook, email addresses, or both."""

    # Marked secret: the stack-file schema (components/config/docs.py) also accepts Pulumi's `secure:` ciphertext.
    slack_webhook_url: str | None = Field(None, json_schema_extra={"x-secret": True}, description=(
        "Slack incoming-webhook URL (https://hooks.slack.com/services/...), as a secret: `pulumi config set --secret "
        "--path 'mlops-platform:teams[0].alertReceiver.slackWebhookUrl' <url>`. The webhook picks the channel."))
    email_to: list[Email] = Field([], description=(
        "Email addresses the alerts go to (needs observability.alertmanager.smtp)."))

    @model_validator(mode="after")
    def _somewhere(self) -> AlertReceiverConfig:
        if not self.slack_webhook_url and not self.email_to:
            raise ValueError("set slackWebhookUrl or emailTo (or remove the block: a team without a receiver gets "
                             "its alerts through the platform receiver)")
        return self


class SmtpConfig(Model):
    """The mail server Alertmanager sends email through (needed once any receiver has emailTo)."""

    smarthost: SmartHost = Field(description="host:port of the SMTP server, e.g. email-smtp.us-east-1.amazonaws.com:587.")
    from_: Email = Field(alias="from", description="Sender address of the alert emails.")
    auth_username: str | None = Field(None, description="SMTP user name, if the server needs a login.")
    auth_password: str | None = Field(None, json_schema_extra={"x-secret": True}, description=(
        "SMTP password, as a secret: `pulumi config set --secret --path "
        "'mlops-platform:observability.alertmanager.smtp.authPassword' <password>`."))
    require_tls: bool = Field(True, description="Require STARTTLS (the password never travels in clear).")

    @model_validator(mode="after")
    def _login_pair(self) -> SmtpConfig:
        if bool(self.auth_username) != bool(self.auth_password):
            raise ValueError("set authUsername and authPassword together, or neither")
        return self


class AlertmanagerConfig(Model):
    """kube-prometheus-stack's Alertmanager: routes alerts by their `team` label to the team's receiver; the rest,
    and the alerts of teams without a receiver, to the platform receiver."""

    enabled: bool = Field(True, description="Run Alertmanager and send the alerts (required in prod).")
    platform_receiver: AlertReceiverConfig | None = Field(None, description=(
        "Receiver of cluster-wide alerts and of the alerts of teams without an alertReceiver (required in prod; "
        "without it, elsewhere, alerts are only shown in Alertmanager's UI)."))
    smtp: SmtpConfig | None = Field(None, description="Mail server; required once any receiver has emailTo.")
    group_wait: Duration = Field("30s", description="How long a new group of alerts waits for more before the first message.")
    group_interval: Duration = Field("5m", description="How long before a message about alerts added to a group.")
    repeat_interval: Duration = Field("4h", description="How often an alert still firing is sent again.")
    info_repeat_interval: Duration = Field("24h", description=(
        "The same for severity `info` alerts (GPU rightsizing): a daily reminder is enough."))
    replicas: Annotated[int, Field(ge=1, le=3)] = Field(1, description="Alertmanager replicas (they gossip to send once).")


def receivers(cfg: PlatformConfig) -> list[tuple[str, AlertReceiverConfig]]:
    """(key path, receiver) of every configured receiver: the platform's, then each team's."""
    found = []
    if cfg.observability.alertmanager.platform_receiver is not None:
        found.append(("observability.alertmanager.platformReceiver", cfg.observability.alertmanager.platform_receiver))
    found += [(f"teams[{i}].alertReceiver", t.alert_receiver) for i, t in enumerate(cfg.teams)
              if t.alert_receiver is not None]
    return found


def problems(cfg: PlatformConfig) -> list[Problem]:
    """Webhook URLs (never echoed: they are secrets), SMTP once email is used, and prod's alerts reaching someone."""
    am = cfg.observability.alertmanager
    errors: list[Problem] = []
    for path, receiver in receivers(cfg):
        url = receiver.slack_webhook_url
        if url and url != PLACEHOLDER and not WEBHOOK_URL.fullmatch(url):
            errors.append(Problem(f"{path}.slackWebhookUrl", "must be an https:// webhook URL such as "
                                  "https://hooks.slack.com/services/T000/B000/XXXX (value not shown: it is a secret); "
                                  + SET_WEBHOOK.format(path=f"{path}.slackWebhookUrl")))
        if receiver.email_to and am.smtp is None:
            errors.append(Problem(f"{path}.emailTo", "needs observability.alertmanager.smtp (smarthost and from) to "
                                  "send email; set it, or use slackWebhookUrl", receiver.email_to[0]))
    if cfg.is_prod and cfg.observability.enabled and not am.enabled:
        errors.append(Problem("observability.alertmanager.enabled", "must be true in prod: without Alertmanager the "
                              "GPU waste, capacity and model alerts reach nobody", am.enabled))
    if cfg.is_prod and am.enabled and am.platform_receiver is None:
        errors.append(Problem("observability.alertmanager.platformReceiver", "is required in prod: it receives the "
                              "cluster-wide alerts and those of teams without an alertReceiver"))
    for key, value in (("groupWait", am.group_wait), ("groupInterval", am.group_interval),
                       ("repeatInterval", am.repeat_interval), ("infoRepeatInterval", am.info_repeat_interval)):
        if duration_seconds(value) == 0:
            errors.append(Problem(f"observability.alertmanager.{key}", "must be longer than 0s", value))
    if duration_seconds(am.repeat_interval) < duration_seconds(am.group_interval):
        errors.append(Problem("observability.alertmanager.repeatInterval", "must be at least groupInterval "
                              f"({am.group_interval}): Alertmanager only resends on a group's interval",
                              am.repeat_interval))
    return errors

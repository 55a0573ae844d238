"""Which settings are secrets: `secure:` values go there and only there, and prod keeps them encrypted.

A stack file's `secure:` values are known by their full key path when the file is read (`read_stack_file`); a
running program only knows which top-level keys hold one (Pulumi marks the whole key secret), so a path here is
either. A path covers a secret setting when it is that setting or one of its parents.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable

from components.config.problems import Problem

if TYPE_CHECKING:
    from components.config.platform import PlatformConfig


def _webhooks(cfg: PlatformConfig, prefix: str) -> dict[str, Any]:
    """The Slack webhook URL of every alert receiver under `prefix`, by key path (components/config/alerting.py)."""
    from components.config.alerting import receivers
    return {f"{path}.slackWebhookUrl": r.slack_webhook_url for path, r in receivers(cfg) if path.startswith(prefix)}


# Key path (`[*]`: any index of a list) -> how to read the values of the settings it names from the validated
# config, by their key path.
SECRET_SETTINGS: dict[str, Callable[[PlatformConfig], dict[str, Any]]] = {
    "notebooks.auth.clientSecret": lambda cfg: {"notebooks.auth.clientSecret": cfg.notebooks.auth.client_secret},
    "observability.alertmanager.platformReceiver.slackWebhookUrl": lambda cfg: _webhooks(cfg, "observability."),
    "teams[*].alertReceiver.slackWebhookUrl": lambda cfg: _webhooks(cfg, "teams["),
    "observability.alertmanager.smtp.authPassword": lambda cfg: {
        "observability.alertmanager.smtp.authPassword": cfg.observability.alertmanager.smtp.auth_password
        if cfg.observability.alertmanager.smtp else None},
}
# What a `secure:` value reads as when it cannot be decrypted (the offline preview, tests): it was a `secure:` value.
PLACEHOLDER = "offline-preview-placeholder"
SET_SECRET = "pulumi config set --path --secret 'mlops-platform:{path}' <value>"


def _covers(path: str, setting: str) -> bool:
    """`path` (a key path the user wrote, or a top-level key) is `setting` or a parent of it."""
    return setting == path or setting.startswith((path + ".", path + "["))


def _any_index(path: str) -> str:
    """`teams[2].alertReceiver` -> `teams[*].alertReceiver`, as SECRET_SETTINGS names list items."""
    return re.sub(r"\[[0-9]+\]", "[*]", path)


def misplaced_secrets(secret_paths: list[str]) -> list[Problem]:
    """`secure:` values where no secret belongs (checked before the structure: the value itself is unreadable)."""
    return [Problem(path, "is a `secure:` value, but no secret belongs here (secrets: "
                    f"{', '.join(SECRET_SETTINGS)}); write it in plain text", None)
            for path in secret_paths if not any(_covers(_any_index(path), s) for s in SECRET_SETTINGS)]


def plain_secrets(cfg: PlatformConfig, secret_paths: list[str]) -> list[Problem]:
    """In prod, every secret that is set is a `secure:` value."""
    if not cfg.is_prod:
        return []
    return [Problem(path, "must be a `secure:` value in prod, not plain text in the stack file (anyone with the "
                    f"repository could read it): {SET_SECRET.format(path=path)}", None)
            for read in SECRET_SETTINGS.values() for path, value in read(cfg).items()
            if value and value != PLACEHOLDER and not any(_covers(p, path) for p in secret_paths)]

# Where a secret goes, the repository's stack files ship a plain `[placeholder] ...` string: a `secure:` ciphertext
# made with another key would stop the real CLI before the program with a decryption error. The offline preview
# reads a placeholder as a `secure:` value (loading.read_stack_file); a real `pulumi preview` hands it to the
# program, and `parse_config` stops with the command that sets the real value.
PLACEHOLDER_PREFIX = "[placeholder]"


def is_placeholder(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PLACEHOLDER_PREFIX)


def placeholder_paths(value: Any, path: str = "") -> list[str]:
    """Key paths (`notebooks.auth.clientSecret`) of every placeholder in a config value."""
    if is_placeholder(value):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in placeholder_paths(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in placeholder_paths(v, f"{path}[{i}]")]
    return []

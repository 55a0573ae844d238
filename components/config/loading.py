"""Loading the stack config and reporting its problems as `key.path: message (got: value)`, before any resource."""

from __future__ import annotations

import difflib
import json
from typing import Any

import pulumi
from pydantic import BaseModel, ValidationError

from components.config.platform import PlatformConfig
from components.config.problems import format_problem
from components.config.rules import problems as rule_problems
from components.config.types import PROJECT


class ConfigError(pulumi.RunError):
    """Invalid stack config. Its message lists every problem, one per line, with its key path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            f"the stack config has {len(problems)} problem{'s' if len(problems) != 1 else ''}:\n"
            + "\n".join(f"  {p}" for p in problems)
        )


def _key_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith("function-after") or part in ("literal", "str", "int", "[key]"):
            continue  # pydantic's internal step names, not keys the user wrote
        else:
            path += f".{part}" if path else part
    return path


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = next((f for f in model.model_fields.values() if f.alias == part), None)
        if field is None:
            return []
        ann = field.annotation
        inner = getattr(ann, "__args__", None) or (ann,)
        nested = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nested is None:
            inner2 = [x for a in inner for x in (getattr(a, "__args__", None) or ())]
            nested = next((a for a in inner2 if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nested is None:
            return []
        model = nested
    return [f.alias for f in model.model_fields.values() if f.alias]


def _message(err: dict) -> str:
    kind, ctx = err["type"], err.get("ctx", {})
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        known = _known_keys(PlatformConfig, err["loc"])
        close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else (f"; known keys: {', '.join(known)}" if known else "")
        return f"is not a known setting{hint}"
    if kind in ("greater_than_equal", "greater_than") and ctx.get("ge", ctx.get("gt")) in (0, 1):
        return "must be a non-negative integer" if ctx.get("ge") == 0 else "must be a positive number"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "must be a whole number"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind == "string_pattern_mismatch":
        return f"must match the pattern {ctx.get('pattern')}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return err["msg"][0].lower() + err["msg"][1:]


def parse_config(raw: dict[str, Any]) -> PlatformConfig:
    """Validate a whole stack config (keys without the project prefix). Raise ConfigError listing all problems."""
    try:
        cfg = PlatformConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [
            format_problem(_key_path(e["loc"]), _message(e), e.get("input"), e["type"] not in ("missing",))
            for e in exc.errors(include_url=False)
        ]
        raise ConfigError(problems) from None
    found = rule_problems(cfg)
    if found:
        raise ConfigError([str(p) for p in found])
    return cfg


def _decode(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def load_config() -> PlatformConfig:
    """Read every `mlops-platform:*` key of the running stack and validate the whole."""
    from pulumi.runtime import config as runtime_config

    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = f"{PROJECT}:"
    raw = {k[len(prefix):]: _decode(v) for k, v in values.items() if k.startswith(prefix)}
    return parse_config(raw)

"""Loading the stack config and reporting its problems as `key.path: message (got: value)`, before any resource.

A stack file is read here too (`read_stack_file`): YAML syntax errors come back as `file:line:column` problems and a
document that is not a mapping as a problem of its own, so no input ends in a traceback. The key paths are the ones
the user wrote (`teams[1].packageIndex.cidrs[0]`), never pydantic's validation steps.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import pulumi
import yaml
from pydantic import BaseModel, ValidationError

from components.config.platform import PlatformConfig
from components.config.problems import FieldError, format_problem
from components.config.rules import problems as rule_problems
from components.config.secrets import PLACEHOLDER, is_placeholder, misplaced_secrets, placeholder_paths, plain_secrets
from components.config.types import PROJECT



class ConfigError(pulumi.RunError):
    """Invalid stack config. Its message lists every problem, one per line, with its key path."""

    def __init__(self, problems: list[str], position: tuple[int, int] | None = None) -> None:
        self.problems = problems
        self.position = position           # (line, column) of a YAML syntax error, 1-based
        super().__init__(
            f"the stack config has {len(problems)} problem{'s' if len(problems) != 1 else ''}:\n"
            + "\n".join(f"  {p}" for p in problems)
        )

    def lines(self, file_name: str) -> list[str]:
        """What a command prints: `error: <file>: <problem>` (`error: <file>:<line>:<column>: ...`), one per line."""
        where = f"{file_name}:{self.position[0]}:{self.position[1]}" if self.position else file_name
        found = [f"error: {where}: {p}" for p in self.problems]
        if len(self.problems) > 1:
            found.append(f"error: {file_name}: the stack config has {len(self.problems)} problems; nothing was "
                         "declared")
        return found


class StackFile(NamedTuple):
    config: dict[str, Any]      # the `config:` mapping, `secure:` values replaced by PLACEHOLDER
    secret_keys: list[str]      # top-level keys holding a `secure:` value (as the engine marks them)
    raw: dict[str, Any]         # this project's keys without the `mlops-platform:` prefix
    secret_paths: list[str]     # key paths (without prefix) of this project's `secure:` values


def _unsecure(value: Any, path: str, found: list[str]) -> Any:
    if is_placeholder(value):             # the stack files' stand-in for a secret (config/secrets.py)
        found.append(path)
        return PLACEHOLDER
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            found.append(path)
            return PLACEHOLDER
        return {k: _unsecure(v, f"{path}.{k}" if path else str(k), found) for k, v in value.items()}
    if isinstance(value, list):
        return [_unsecure(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
    return value


def read_stack_file(path: Path) -> StackFile:
    """Read a `Pulumi.<stack>.yaml`; raise ConfigError for what is not a readable mapping of config keys."""
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        raise ConfigError([f"YAML syntax error: {problem}"], (mark.line + 1, mark.column + 1) if mark else None) \
            from None
    except (yaml.YAMLError, OSError, UnicodeDecodeError, RecursionError) as exc:
        raise ConfigError([f"(file): cannot be read as YAML: {exc}"]) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError([f"(top level): must be a mapping with a `config:` key (got a {_kind(doc)})"])
    config = doc.get("config") if doc.get("config") is not None else {}
    if not isinstance(config, dict):
        raise ConfigError([f"config: must be a mapping of `{PROJECT}:<key>: <value>` (got a {_kind(config)})"])
    wire, secret_keys, raw, secret_paths = {}, [], {}, []
    prefix = f"{PROJECT}:"
    for key, value in config.items():
        key = str(key)
        found: list[str] = []
        short = key[len(prefix):] if key.startswith(prefix) else None
        wire[key] = _unsecure(value, short or key, found)
        if found:
            secret_keys.append(key)
        if short is not None:
            raw[short] = wire[key]
            secret_paths += found
    return StackFile(wire, secret_keys, raw, secret_paths)


def _kind(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value),
                                                                                         type(value).__name__)


STEP_NAMES = ("function-after", "function-before", "function-wrap", "function-plain", "constrained-", "tagged-union",
              "union[", "nullable", "lax-or-strict", "json-or-python", "chain", "literal", "is-instance", "definition-ref",
              "model-fields", "[key]")
PRIMITIVES = ("str", "int", "float", "bool", "list", "dict", "set", "tuple", "none", "bytes", "json")


def _key_path(loc: tuple, raw: Any = None) -> str:
    """The key path as the user wrote it: the keys and indexes of `raw` that `loc` walks, pydantic's steps left out."""
    path, node = "", raw
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            continue
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif part in PRIMITIVES or part.startswith(STEP_NAMES) or "[" in part:
            continue  # pydantic's internal step names, not keys the user wrote
        else:
            node = None
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
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping of settings (got a {_kind(err.get('input'))})"
    if kind == "list_type":
        return f"must be a list (got a {_kind(err.get('input'))})"
    return err["msg"][0].lower() + err["msg"][1:]


def _where(err: dict, raw: Any) -> str:
    path = _key_path(err["loc"], raw)
    error = err.get("ctx", {}).get("error")
    key = getattr(error, "key", None)          # a model rule that names the key it is about (FieldError)
    return f"{path}.{key}" if key and path else (key or path)


def parse_config(raw: Any, secret_paths: Iterable[str] = ()) -> PlatformConfig:
    """Validate a whole stack config (keys without the project prefix). Raise ConfigError listing all problems.

    `secret_paths`: key paths holding `secure:` values (a top-level key when only that is known, as in a run).
    """
    if not isinstance(raw, dict):
        raise ConfigError([f"(top level): the `{PROJECT}:` keys must form a mapping (got a {_kind(raw)})"])
    secret_paths = list(secret_paths)
    # Only a real `pulumi preview`/`up` meets a placeholder: the offline preview reads it as a `secure:` value.
    placeholders = placeholder_paths(raw)
    if placeholders:
        raise ConfigError([
            format_problem(path, "is the placeholder shipped in the repository, not your secret: set it with "
                                 f"pulumi config set --secret --path '{PROJECT}:{path}' <value>", None, False)
            for path in placeholders])
    misplaced = [str(p) for p in misplaced_secrets(secret_paths)]
    try:
        cfg = PlatformConfig.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        unknown = {_where(e, raw) for e in errors if e["type"] == "extra_forbidden"}
        secret = {p.path for p in misplaced_secrets(secret_paths)}
        # An unknown key says more than "no secret belongs here"; a misplaced secret more than its placeholder's fault.
        problems = [p for p in misplaced_secrets(secret_paths) if p.path not in unknown]
        problems = [str(p) for p in problems] + [
            format_problem(_where(e, raw), _message(e), e.get("input"), e["type"] not in ("missing",))
            for e in errors if _where(e, raw) not in secret or e["type"] == "extra_forbidden"
        ]
        raise ConfigError(problems) from None
    found = [*misplaced, *map(str, rule_problems(cfg)), *map(str, plain_secrets(cfg, secret_paths))]
    if found:
        raise ConfigError(found)
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
    secret = [k[len(prefix):] for k in values if k.startswith(prefix) and (
        runtime_config.is_config_secret(k) or k in runtime_config.get_config_secret_keys_env())]
    return parse_config(raw, secret)

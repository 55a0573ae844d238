"""Shared fixtures: the real program rendered offline (same engine as `make preview`), and the upstream schemas."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from preview import engine, render
from tests import upstream

PROJECT_DIR = engine.PROJECT_DIR
# Every stack file shipped with the project: checked generically (tests must not depend on what they contain).
SHIPPED_STACKS = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in PROJECT_DIR.glob("Pulumi.*.yaml"))


def stack_yaml(stack: str) -> dict[str, Any]:
    """The `config:` map of Pulumi.<stack>.yaml as written (structured values as YAML data), `secure:` values replaced
    by the offline placeholder as `preview render` does (they cannot be decrypted here)."""
    config = yaml.safe_load((PROJECT_DIR / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {k: engine._unsecure(copy.deepcopy(v))[0] for k, v in config.items()}


def raw_config(stack: str = "dev") -> dict[str, Any]:
    """The stack file's `mlops-platform:` keys without the prefix: what `parse_config` validates."""
    prefix = "mlops-platform:"
    return {k[len(prefix):]: v for k, v in stack_yaml(stack).items() if k.startswith(prefix)}


def config_problems(config: dict[str, Any]) -> list[str]:
    """The problems `parse_config` reports for an invalid config (fails the test if it accepts it)."""
    from components.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as info:
        parse_config(config)
    return info.value.problems


def run_config(config: dict[str, Any], stack: str = "test") -> engine.Run:
    """Run the real program with a config map written like a stack file's `config:`."""
    wire = {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    return engine.run_program(stack, wire)


class CapturingMocks(engine.AwsLikeMocks):
    """The offline mocks, remembering every value they generate for a `random:` resource (passwords, hashes): the
    secrets the program is given, which must never reach a recorded input, output or written file."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.generated: dict[str, str] = {}

    def new_resource(self, args):
        rid, state = super().new_resource(args)
        if args.typ.startswith("random:"):
            self.generated.update({f"{args.name}.{key}": value for key, value in state.items()
                                   if key not in args.inputs and isinstance(value, str) and len(value) >= 8})
        return rid, state


def run_capturing(run: Callable[[], engine.Run]) -> tuple[engine.Run, dict[str, str]]:
    """`run()` under `CapturingMocks`: the run and the secret values the mocks generated for it."""
    made: list[CapturingMocks] = []

    def mocks(*args, **kwargs) -> CapturingMocks:
        made.append(CapturingMocks(*args, **kwargs))
        return made[-1]

    original = engine.AwsLikeMocks
    engine.AwsLikeMocks = mocks
    try:
        result = run()
    finally:
        engine.AwsLikeMocks = original
    return result, {k: v for m in made for k, v in m.generated.items()}


class Rendered:
    """A run with lookups by type and name, for assertions on what ends up in AWS and the cluster.
    `generated` holds the secret values the mocks generated for it (when rendered by `rendered_stack`)."""

    def __init__(self, run: engine.Run, generated: dict[str, str] | None = None) -> None:
        self.run = run
        self.generated = generated or {}
        self.resources = run.resources
        self.manifests = render.manifests(run)

    def of_type(self, typ: str) -> list[engine.Registration]:
        return [r for r in self.resources if r.type == typ]

    def one(self, typ: str, name: str | None = None) -> engine.Registration:
        found = [r for r in self.of_type(typ) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {typ} {name or ''}, found {[r.name for r in found]}"
        return found[0]

    def objects(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.manifests if m["kind"] == kind
                and (namespace is None or m["metadata"].get("namespace") == namespace)]

    def obj(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        found = [m for m in self.objects(kind, namespace) if m["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]

    def helm(self, release_name: str) -> dict[str, Any]:
        found = [r.inputs for r in render.helm_releases(self.run) if r.inputs.get("name") == release_name]
        assert len(found) == 1, f"expected one Helm release {release_name}"
        return found[0]


_RENDERED: dict[str, Rendered] = {}


def rendered_stack(stack: str) -> Rendered:
    """Each shipped stack rendered once per test session (per xdist worker), shared by every test that reads it."""
    if stack not in _RENDERED:
        _RENDERED[stack] = Rendered(*run_capturing(lambda: engine.run_stack(stack)))
    return _RENDERED[stack]


_CLI_RENDERS: dict[str, tuple[Path, str]] = {}


def cli_render(stack: str, tmp_path_factory) -> tuple[Path, str]:
    """`python -m preview render <stack>` as a user runs it, once per session: (output folder, what it printed)."""
    if stack not in _CLI_RENDERS:
        out = tmp_path_factory.mktemp(f"cli-{stack}")
        result = subprocess.run([sys.executable, "-m", "preview", "render", stack, "--out", str(out)],
                                cwd=PROJECT_DIR, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        _CLI_RENDERS[stack] = out, result.stdout
    return _CLI_RENDERS[stack]


@pytest.fixture(scope="session")
def dev() -> Rendered:
    return rendered_stack("dev")


@pytest.fixture(scope="session")
def prod() -> Rendered:
    return rendered_stack("prod")


@pytest.fixture(scope="session")
def schemas_dir() -> Path:
    return upstream.data_dir("schemas")


@pytest.fixture(scope="session")
def charts_dir() -> Path:
    return upstream.data_dir("charts")

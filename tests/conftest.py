"""Shared fixtures: the real program rendered offline (same engine as `make preview`), and the upstream schemas.

Two kinds of stacks, kept apart so that editing a shipped stack file never breaks a behaviour test:
- the test-owned stacks in tests/fixtures/stacks (`dev`, `prod` fixtures, `stack_yaml`, `raw_config`,
  `rendered_stack`): behaviour tests assert on what these files say;
- the shipped `Pulumi.<stack>.yaml` files (`SHIPPED_STACKS`, `rendered_shipped`): checked generically only
  (tests/test_shipped_stacks.py, tests/test_schemas.py, tests/test_secrets.py, tests/test_preview.py).
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import io
import json
import os
import pickle
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from preview import engine, render
from tests import upstream

PROJECT_DIR = engine.PROJECT_DIR
# Every stack file shipped with the project: checked generically (tests must not depend on what they contain).
SHIPPED_STACKS = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in PROJECT_DIR.glob("Pulumi.*.yaml"))
# The stacks behaviour tests use: test fixtures written like stack files, independent of the shipped ones.
FIXTURE_STACKS_DIR = Path(__file__).resolve().parent / "fixtures" / "stacks"


def fixture_stack_file(stack: str) -> Path:
    """tests/fixtures/stacks/Pulumi.<stack>.yaml (`dev`, `prod`)."""
    return FIXTURE_STACKS_DIR / f"Pulumi.{stack}.yaml"


def stack_yaml(stack: str) -> dict[str, Any]:
    """The `config:` map of the fixture stack file as written (structured values as YAML data), `secure:` values
    replaced by the offline placeholder as `preview render` does (they cannot be decrypted here)."""
    config = yaml.safe_load(fixture_stack_file(stack).read_text())["config"]
    return {k: engine._unsecure(copy.deepcopy(v))[0] for k, v in config.items()}


def raw_config(stack: str = "dev") -> dict[str, Any]:
    """The fixture stack file's `mlops-platform:` keys without the prefix: what `parse_config` validates."""
    prefix = "mlops-platform:"
    return {k[len(prefix):]: v for k, v in stack_yaml(stack).items() if k.startswith(prefix)}


def config_problems(config: dict[str, Any]) -> list[str]:
    """The problems `parse_config` reports for an invalid config (fails the test if it accepts it)."""
    from components.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as info:
        parse_config(config)
    return info.value.problems


def assert_example_is_current(path: Path, header: str, document: dict[str, Any]) -> None:
    """A shipped example (examples/*.yaml) is the document the platform renders, written without YAML anchors
    (readers copy parts of it one by one). UPDATE_EXAMPLES=1 rewrites it first."""
    if os.environ.get("UPDATE_EXAMPLES"):
        path.write_text(header + yaml.safe_dump(document, sort_keys=False))
    assert yaml.safe_load(path.read_text()) == document, \
        f"examples/{path.name} is stale: rerun with UPDATE_EXAMPLES=1"
    assert "&id" not in path.read_text(), "no YAML anchors: readers copy replica specs one by one"


def assert_config_problem(config: dict[str, Any], expected: str) -> None:
    """`parse_config` refuses the config with a problem that starts with `expected` (key path, then message)."""
    found = config_problems(config)
    assert any(p.startswith(expected) for p in found), found


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


_RENDERED: dict[Path, tuple[tuple, Rendered]] = {}
# Under pytest-xdist each worker is a process of its own: the run's folder the workers share (None when not).
_SHARED_DIR: Path | None = None


@pytest.fixture(scope="session", autouse=True)
def _shared_between_workers(request, tmp_path_factory) -> None:
    """Beside the workers' own temporary folders, named after this run (a pytest started by a test inherits the
    workers' environment, not their `workerinput`)."""
    global _SHARED_DIR
    worker = getattr(request.config, "workerinput", None)
    if worker:
        _SHARED_DIR = tmp_path_factory.getbasetemp().parent / f"shared-{worker['testrunuid']}"
        _SHARED_DIR.mkdir(exist_ok=True)


def shared_between_workers(key: str, make: Callable[[], Any]) -> Any:
    """`make()` once per test run instead of once per xdist worker: the first worker to need `key` makes it (holding
    a lock) and leaves it pickled in the run's shared folder; the other waits for it and loads it (~0.2 s for a
    render that costs 3-5 s)."""
    if _SHARED_DIR is None:
        return make()
    name = hashlib.sha256(key.encode()).hexdigest()[:20]
    with open(_SHARED_DIR / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)        # released when the file closes
        done = _SHARED_DIR / f"{name}.pickle"
        if done.exists():
            return pickle.loads(done.read_bytes())
        value = make()
        done.with_suffix(".partial").write_bytes(pickle.dumps(value))
        done.with_suffix(".partial").replace(done)
        return value


def rendered_file(stack: str, path: Path) -> Rendered:
    """A stack file rendered once per test run (`shared_between_workers`). Files with the same config share the
    render: the run depends only on the stack name and the config, so a shipped stack still equal to its fixture
    costs nothing."""
    config = engine.read_stack_config(path)
    key = (stack, json.dumps(config, sort_keys=True))
    for seen_key, rendered in _RENDERED.values():
        if seen_key == key:
            return rendered
    if path not in _RENDERED:
        _RENDERED[path] = key, shared_between_workers(repr(key), lambda: Rendered(
            *run_capturing(lambda: engine.run_program(stack, *config))))
    return _RENDERED[path][1]


def rendered_stack(stack: str) -> Rendered:
    """The fixture stack (tests/fixtures/stacks) rendered once per session, shared by every test that reads it."""
    return rendered_file(stack, fixture_stack_file(stack))


def rendered_shipped(stack: str) -> Rendered:
    """The shipped Pulumi.<stack>.yaml rendered once per session: for the generic checks only."""
    return rendered_file(stack, engine.stack_file(stack))


def cli_with_render(argv: list[str], stack: str, path: Path) -> tuple[int, str]:
    """`python -m preview <argv>` in-process as a user runs it (the CLI reads and validates the stack file itself and
    prints and writes everything), its one engine run served by the session's render of the same stack name and
    config (`rendered_file`): a subprocess render costs ~10x the shared one, and `python -m preview` itself runs as
    a process in tests/test_diff_histories.py. (exit code, what it printed)."""
    from preview import __main__ as cli

    rendered = rendered_file(stack, path)
    expected = (stack, *engine.read_stack_config(path))

    def run_program(name, config, secret_keys, *args, **kwargs) -> engine.Run:
        assert (name, config, secret_keys) == expected, "the CLI ran another stack or config than the shared render"
        return rendered.run

    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setattr(engine, "run_program", run_program)
        code = cli.main(argv)
    return code, printed.getvalue()


def preview_cli(argv: list[str], run: engine.Run, monkeypatch, capsys) -> tuple[int, str]:
    """`python -m preview <argv>` in-process on an already rendered run: the CLI's own printing and writing without
    another render (a subprocess render costs ~10x the shared one). (exit code, what it printed)."""
    from preview import __main__ as cli

    monkeypatch.setattr(cli, "_run", lambda *args, **kwargs: run)
    code = cli.main(argv)
    return code, capsys.readouterr().out


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

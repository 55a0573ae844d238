"""Run the real `__main__.py` in-process under the Pulumi SDK's mock monitor and record every registration.

The program runs exactly as the Python language host runs it for `pulumi up` (`run_in_stack` over
`runpy.run_path`); only the monitor differs: it answers like AWS would (`aws_mocks.AwsLikeMocks`) and
records each RegisterResource request (type, inputs in wire form, parent, dependencies, options).

SDK costs that grow with the number of resources are removed for the run (`_offline_runtime`), none of which
changes what is registered: the cyclic GC (it rescans the growing heap of pending outputs), the SDK's
`wait_for_rpcs` (it re-waits on every pending output once per completion wave), the per-registration stack trace
(only the real engine reads it, for source positions), the thread hop per monitor call (a real monitor is a gRPC
server; the mock one is a function: called inline, and its results serialized without an event loop of its own) and
the reference cycle `contains_unknowns` leaves per call (a million cyclic objects for the GC at 100 teams).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import gc
import runpy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml
from google.protobuf import json_format
from pulumi.runtime import known_types
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import resource as pulumi_resource
from pulumi.runtime import rpc as pulumi_rpc
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime import stack as pulumi_stack
from pulumi.runtime.proto import source_pb2
from pulumi.runtime.config import set_all_config
from pulumi.runtime.stack import run_in_stack

from preview.aws_mocks import AwsLikeMocks

PROJECT_DIR = Path(__file__).resolve().parent.parent
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
SIG_KEY = "4dabf18193072939515e22adb298388d"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
SECRET_PLACEHOLDER = "[secret]"
UNKNOWN_PLACEHOLDER = "[unknown]"
OFFLINE_SECRET = "offline-preview-placeholder"   # = components.config.loading.PLACEHOLDER


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    provider: str
    dependencies: list[str]
    protect: bool
    retain_on_delete: bool
    inputs: dict[str, Any]          # wire form, secrets masked
    ignore_changes: list[str] = field(default_factory=list)

    def to_plan(self) -> dict[str, Any]:
        return {
            "urn": self.urn, "type": self.type, "name": self.name, "custom": self.custom,
            "parent": self.parent, "provider": self.provider, "dependencies": self.dependencies,
            "protect": self.protect, "retainOnDelete": self.retain_on_delete, "inputs": self.inputs,
        }


@dataclass
class Run:
    stack: str
    project: str
    resources: list[Registration]
    outputs: dict[str, Any]
    config_secret_keys: list[str]
    invokes: list[str] = field(default_factory=list)   # data-source tokens the program called, in order


def from_wire(value: Any, reveal: bool = False) -> Any:
    """Wire-form value (after MessageToDict) -> plain JSON with secrets masked (or, for tests that follow the mocks'
    stand-in secrets, `reveal`ed) and integral numbers as ints."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return from_wire(value.get("value"), reveal=reveal) if reveal else masked(value.get("value"))
        return {k: from_wire(value[k], reveal=reveal) for k in sorted(value)}
    if isinstance(value, list):
        return [from_wire(v, reveal=reveal) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value == UNKNOWN:
        return UNKNOWN_PLACEHOLDER
    return value


def masked(value: Any) -> Any:
    """A secret keeps its shape, every leaf masked: a Secret's `stringData` stays a map of its keys (each
    `[secret]`), so the rendered object is still a valid Secret and shows which keys it holds, never their values."""
    if isinstance(value, dict):
        return {k: masked(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return SECRET_PLACEHOLDER


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi_mocks.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        self.stack_outputs: dict[str, Any] = {}
        self.stack_urn = ""
        self.invokes: list[str] = []

    def Invoke(self, request):  # noqa: N802 (gRPC method name)
        self.invokes.append(request.tok)
        return super().Invoke(request)

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            self.stack_urn = response.urn
            return response
        self.registrations.append(Registration(
            urn=response.urn,
            type=request.type,
            name=request.name,
            custom=bool(request.custom),
            parent=request.parent,
            provider=request.provider,
            dependencies=list(request.dependencies),
            protect=bool(request.protect),
            retain_on_delete=bool(request.retainOnDelete),
            inputs=from_wire(json_format.MessageToDict(request.object)),
            ignore_changes=list(request.ignoreChanges),
        ))
        return response

    def RegisterResourceOutputs(self, request):  # noqa: N802
        if request.urn == self.stack_urn:
            self.stack_outputs = from_wire(json_format.MessageToDict(request.outputs))
        return super().RegisterResourceOutputs(request)


def _unsecure(value: Any) -> tuple[Any, bool]:
    """Replace `secure:` values (undecryptable offline) with a placeholder; say whether any was found."""
    from components.config.loading import _unsecure as unsecure

    found: list[str] = []
    return unsecure(value, "", found), bool(found)


def read_stack_config(stack_file: Path) -> tuple[dict[str, str], list[str]]:
    """Config as the engine hands it to the program: strings, structured values as JSON. A file that is not valid
    YAML, or not a mapping of config keys, raises the config's ConfigError (printed as `error: <file>:...`)."""
    import json

    from components.config.loading import read_stack_file

    found = read_stack_file(stack_file)
    return ({k: v if isinstance(v, str) else json.dumps(v) for k, v in found.config.items()}, found.secret_keys)


def stack_file(stack: str, project_dir: Path = PROJECT_DIR) -> Path:
    path = project_dir / f"Pulumi.{stack}.yaml"
    if not path.exists():
        known = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in project_dir.glob("Pulumi.*.yaml"))
        raise SystemExit(f"no stack '{stack}': {path.name} does not exist (stacks here: {', '.join(known)})")
    return path


def project_name(project_dir: Path = PROJECT_DIR) -> str:
    """The `name:` of the project's Pulumi.yaml (the prefix of its config keys)."""
    return yaml.safe_load((project_dir / "Pulumi.yaml").read_text())["name"]


def resolve(target: str, project_dir: Path | None = None) -> tuple[Path, str]:
    """(project directory, stack) for `preview <command> TARGET [--project-dir DIR]`.

    TARGET is a stack of the project in DIR (default: this repository's platform project), or a directory holding
    another Pulumi project of this repository with exactly one stack file (`preview render bootstrap`).
    """
    if project_dir is None:
        candidate = PROJECT_DIR / target
        if candidate != PROJECT_DIR and (candidate / "Pulumi.yaml").is_file():
            stacks = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in candidate.glob("Pulumi.*.yaml"))
            if len(stacks) != 1:
                raise SystemExit(f"project {target}/ has stacks {', '.join(stacks) or '(none)'}: name one with "
                                 f"`--project-dir {target} <stack>`")
            return candidate, stacks[0]
        return PROJECT_DIR, target
    project_dir = project_dir.resolve()
    if not (project_dir / "Pulumi.yaml").is_file():
        raise SystemExit(f"no Pulumi project in {project_dir} (no Pulumi.yaml)")
    return project_dir, target


async def _wait_for_rpcs(await_all_outstanding_tasks: bool = True) -> None:
    """`pulumi.runtime.stack.wait_for_rpcs`, waiting on outstanding outputs one at a time.

    The SDK's version hands every pending output to `asyncio.wait(FIRST_COMPLETED)` and puts the unfinished ones back,
    once per completion wave: quadratic in the number of outputs (1.3 M re-registrations at 100 teams). Awaiting one
    pending output at a time ends in the same state (all outputs settled, the first failure re-raised) in linear time.
    """
    rpc_manager = pulumi_settings._get_rpc_manager()
    while True:
        while rpc_manager.rpcs:
            await asyncio.sleep(0)
            try:
                await rpc_manager.rpcs.pop()
            except Exception as exn:
                if rpc_manager.unhandled_exception is not None:
                    raise exn from rpc_manager.unhandled_exception.with_traceback(rpc_manager.exception_traceback)
                raise
        if rpc_manager.unhandled_exception is not None:
            raise rpc_manager.unhandled_exception.with_traceback(rpc_manager.exception_traceback)
        while await_all_outstanding_tasks:
            with pulumi_settings.SETTINGS.lock:
                if not pulumi_settings.SETTINGS.outputs:
                    break
                output = pulumi_settings.SETTINGS.outputs.pop()
            await output
        if not rpc_manager.rpcs:
            return


def _no_stack_trace() -> source_pb2.StackTrace:
    return source_pb2.StackTrace()


def _contains_unknowns(value: Any) -> bool:
    """`pulumi.runtime.rpc.contains_unknowns` without its self-referencing inner function: that closure is a reference
    cycle per call (function, cell, `set[int]` annotation), left for the cyclic GC: ~10 objects per call, called for
    every output. Same answer: whether an unknown is reachable through dicts and lists."""
    seen: set[int] = set()
    pending = [value]
    while pending:
        item = pending.pop()
        if known_types.is_unknown(item):
            return True
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            pending.extend([item[key] for key in item])   # not .values(): typed inputs may have a `values` field
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _completed(awaitable: Any) -> Any:
    """`pulumi.runtime.mocks._sync_await` for the mock monitor's own serialization of the plain data the mocks return:
    that coroutine never waits on anything, so it is run to its end here instead of on an event loop the SDK would
    create for the calling thread. A coroutine that does wait is a bug in the mocks: said, not hidden."""
    try:
        awaitable.send(None)
    except StopIteration as done:
        return done.value
    awaitable.close()
    raise RuntimeError("offline engine: the mock monitor's serialization waited on a pending value (preview/aws_mocks.py "
                       "must return plain data)")


class _InlineExecutor(concurrent.futures.ThreadPoolExecutor):
    """The loop's executor for monitor calls: runs each call at once on the calling thread. The SDK hands every call
    to a thread because a real monitor is a remote gRPC server; the mock monitor is a Python function."""

    def submit(self, fn, /, *args, **kwargs):
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:   # handed to the awaiting coroutine, as a thread's failure would be
            future.set_exception(exc)
        return future


@contextlib.contextmanager
def _offline_runtime():
    """Run with the GC paused and the SDK functions above replaced; restore everything afterwards."""
    replaced = ((pulumi_stack, "wait_for_rpcs", _wait_for_rpcs), (pulumi_resource, "_get_stack_trace", _no_stack_trace),
                (pulumi_rpc, "contains_unknowns", _contains_unknowns), (pulumi_mocks, "_sync_await", _completed))
    for module, name, _ in replaced:
        # A renamed SDK function would otherwise be "replaced" without effect and the render silently slow again.
        if not callable(getattr(module, name, None)):
            raise RuntimeError(f"{module.__name__}.{name} is gone: update preview/engine.py for this pulumi SDK")
    saved = [(module, name, getattr(module, name)) for module, name, _ in replaced]
    gc_enabled = gc.isenabled()
    gc.disable()
    # What exists before the run (the SDK modules, earlier renders' results) is left out of the collection below.
    gc.freeze()
    for module, name, function in replaced:
        setattr(module, name, function)
    try:
        yield
    finally:
        for module, name, function in saved:
            setattr(module, name, function)
        # One collection for the cycles the run left, instead of dozens of ever slower ones during it.
        gc.collect()
        gc.unfreeze()
        if gc_enabled:
            gc.enable()


def run_program(stack: str, config: dict[str, str], secret_keys: list[str] = (),
                project_dir: Path = PROJECT_DIR, project: str = "mlops-platform",
                body: Callable[[], Any] | None = None) -> Run:
    """Execute `<project_dir>/__main__.py` for `stack` with `config`; return everything it registered.
    `body` runs instead of the program (tests/components.py: one component under the same mocks and runtime)."""
    region = config.get("aws:region", "us-west-2")
    monitor = RecordingMonitor(AwsLikeMocks(region=region))

    def run() -> Run:
        pulumi_settings.ROOT.set(None)
        # The SDK's own mock settings (as `set_mocks` makes them), but without its eager root stack:
        # `run_in_stack` creates the stack exactly as the language host does.
        settings = pulumi_mocks.MockSettings(
            monitor=monitor,
            monitor_features=set(monitor.GetDeploymentInfo(None).supportedFeatures),
            engine=pulumi_mocks.MockEngine(None),
            project=project,
            stack=stack,
            dry_run=True,
            organization="organization",
            callbacks=None,
        )
        pulumi_settings.configure(settings)
        # MockSettings leaves the pending-output set as the previous run left it (a failed run leaves its outputs
        # there, bound to a closed event loop): every run starts with its own.
        pulumi_settings.SETTINGS.outputs = set()
        set_all_config(dict(config), list(secret_keys))
        program = str(project_dir / "__main__.py")
        added_path = str(project_dir) not in sys.path
        if added_path:
            sys.path.insert(0, str(project_dir))
        loop = asyncio.new_event_loop()
        loop.set_default_executor(_InlineExecutor(max_workers=1))
        try:
            with _offline_runtime():
                loop.run_until_complete(run_in_stack(body or (lambda: runpy.run_path(program, run_name="__main__"))))
        finally:
            for task in asyncio.all_tasks(loop):
                task.cancel()
                with contextlib.suppress(BaseException):
                    loop.run_until_complete(task)
            loop.close()
            if added_path:
                sys.path.remove(str(project_dir))
        return Run(stack, project, monitor.registrations, monitor.stack_outputs, list(secret_keys), monitor.invokes)

    return contextvars.copy_context().run(run)


def run_stack(stack: str, project_dir: Path = PROJECT_DIR) -> Run:
    config, secret_keys = read_stack_config(stack_file(stack, project_dir))
    return run_program(stack, config, secret_keys, project_dir, project_name(project_dir))

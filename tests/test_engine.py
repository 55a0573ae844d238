"""The offline engine's speed-ups change nothing a program can observe: outputs settle, failures surface, and the
SDK and the garbage collector are left as they were found."""

from __future__ import annotations

import asyncio
import gc

import pytest
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import resource as pulumi_resource
from pulumi.runtime import rpc as pulumi_rpc
from pulumi.runtime import stack as pulumi_stack
from pulumi.runtime.rpc import UNKNOWN

from preview import aws_mocks, engine

PROGRAM = """
import pulumi

def chain(value, depth):
    out = pulumi.Output.from_input(value)
    for _ in range(depth):
        out = out.apply(lambda v: v + 1)
    return out

pulumi.export("sum", pulumi.Output.all(*[chain(i, 20) for i in range(50)]).apply(sum))
"""


def run(tmp_path, program: str) -> engine.Run:
    (tmp_path / "__main__.py").write_text(program)
    return engine.run_program("test", {}, project_dir=tmp_path, project="p")


def test_every_pending_output_settles_before_the_run_ends(tmp_path):
    assert run(tmp_path, PROGRAM).outputs == {"sum": sum(range(50)) + 50 * 20}


def test_a_failing_output_fails_the_run(tmp_path):
    program = PROGRAM + "pulumi.Output.from_input(1).apply(lambda v: v / 0)\n"
    with pytest.raises(ZeroDivisionError):
        run(tmp_path, program)


def sdk_functions() -> tuple:
    return (pulumi_stack.wait_for_rpcs, pulumi_resource._get_stack_trace, pulumi_rpc.contains_unknowns,
            pulumi_mocks._sync_await)


def test_the_sdk_and_the_gc_are_restored_after_a_run(tmp_path):
    sdk = sdk_functions()
    run(tmp_path, PROGRAM)
    assert sdk_functions() == sdk
    assert gc.isenabled() and gc.get_freeze_count() == 0
    with pytest.raises(ZeroDivisionError):
        run(tmp_path, "1 / 0\n")
    assert sdk_functions() == sdk
    assert gc.isenabled() and gc.get_freeze_count() == 0


RESOURCES = """
import pulumi

class Thing(pulumi.CustomResource):
    def __init__(self, name, props, opts=None):
        super().__init__("test:index:Thing", name, props, opts)

first = Thing("first", {"size": 1, "labels": {"a": "b"}})
Thing("second", {"size": 2, "peer": first.id, "secret": pulumi.Output.secret("s3cr3t")},
      pulumi.ResourceOptions(depends_on=[first]))
"""


def test_the_monitor_records_inputs_secrets_and_dependencies_as_declared(tmp_path):
    recorded = {r.name: r for r in run(tmp_path, RESOURCES).resources}
    assert recorded["first"].inputs == {"size": 1, "labels": {"a": "b"}}
    assert recorded["second"].inputs == {"size": 2, "peer": "first-id", "secret": "[secret]"}
    assert recorded["second"].dependencies == [recorded["first"].urn]


def test_a_failing_monitor_call_fails_the_run(monkeypatch, tmp_path):
    def refuse(self, args):
        raise ValueError(f"mock refused {args.name}")

    monkeypatch.setattr(aws_mocks.AwsLikeMocks, "new_resource", refuse)
    with pytest.raises(Exception, match="mock refused first"):
        run(tmp_path, RESOURCES)


class Typed(dict):
    """A typed input as the SDK generates them: a dict whose attributes may shadow dict methods."""
    values = None


SHARED = {"x": UNKNOWN}


@pytest.mark.parametrize("value", [
    None, 1, "text", UNKNOWN, [], {}, [1, [2, [3, UNKNOWN]]], {"a": {"b": [{"c": UNKNOWN}]}}, {"a": {"b": [{"c": 1}]}},
    Typed(values=["x"], key={"inner": UNKNOWN}), Typed(values=["x"]), [SHARED, SHARED], ("tuple", UNKNOWN),
])
def test_contains_unknowns_answers_as_the_sdk_does(value):
    assert engine._contains_unknowns(value) is pulumi_rpc.contains_unknowns(value)


def test_the_mock_serialization_runs_without_a_loop_and_refuses_to_wait():
    async def plain():
        return 42

    async def waits():
        await asyncio.sleep(0)

    assert engine._completed(plain()) == 42
    with pytest.raises(RuntimeError, match="must return plain data"):
        engine._completed(waits())


def test_the_replaced_sdk_functions_still_exist(monkeypatch, tmp_path):
    """An SDK upgrade that renames them must fail loudly, not silently render slowly again."""
    monkeypatch.delattr(pulumi_resource, "_get_stack_trace")
    with pytest.raises(RuntimeError, match="_get_stack_trace is gone"):
        run(tmp_path, PROGRAM)

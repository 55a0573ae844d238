"""The offline engine's speed-ups change nothing a program can observe: outputs settle, failures surface, and the
SDK and the garbage collector are left as they were found."""

from __future__ import annotations

import gc

import pytest
from pulumi.runtime import resource as pulumi_resource
from pulumi.runtime import stack as pulumi_stack

from preview import engine

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


def test_the_sdk_and_the_gc_are_restored_after_a_run(tmp_path):
    sdk = (pulumi_stack.wait_for_rpcs, pulumi_resource._get_stack_trace)
    run(tmp_path, PROGRAM)
    assert (pulumi_stack.wait_for_rpcs, pulumi_resource._get_stack_trace) == sdk
    assert gc.isenabled() and gc.get_freeze_count() == 0
    with pytest.raises(ZeroDivisionError):
        run(tmp_path, "1 / 0\n")
    assert (pulumi_stack.wait_for_rpcs, pulumi_resource._get_stack_trace) == sdk
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_the_replaced_sdk_functions_still_exist(monkeypatch, tmp_path):
    """An SDK upgrade that renames them must fail loudly, not silently render slowly again."""
    monkeypatch.delattr(pulumi_resource, "_get_stack_trace")
    with pytest.raises(RuntimeError, match="_get_stack_trace is gone"):
        run(tmp_path, PROGRAM)

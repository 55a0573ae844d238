"""Run one policy object on hand-written resources, as `preview check` and the pack do."""

from __future__ import annotations

import copy
from typing import Any, Callable

from preview.check import evaluate
from preview.engine import Registration


def resource(typ: str, props: dict[str, Any], name: str = "r") -> Registration:
    return Registration(urn=f"urn:pulumi:test::mlops-platform::{typ}::{name}", type=typ, name=name, custom=True,
                        parent="", provider="", dependencies=[], protect=False, retain_on_delete=False,
                        inputs=props)


def violations(policy, *resources: Registration, config: dict[str, Any] | None = None) -> list[str]:
    overrides = {policy.name: config} if config else {}
    return [v.message for v in evaluate([policy], list(resources), overrides)]


def mutated(props: dict[str, Any], change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    copy_ = copy.deepcopy(props)
    change(copy_)
    return copy_

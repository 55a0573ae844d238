"""Evaluate the policy pack's own policy objects (`policies.POLICIES`) against a recorded run.

Each policy gets the same arguments the CrossGuard analyzer would build from a `pulumi preview`: resource
type, camelCase props, URN, name, options, and the policy's config: its schema defaults, overridden by the
stack's policy config file `policies/config.<stack>.json` when present (the file CI passes to
`pulumi preview --policy-pack-config`). An entry's `enforcementLevel` overrides the policy's own level.

The pack is loaded by name, as `pulumi preview --policy-pack policies` loads it: the preview does not import the
pack's code, and the pack does not import the preview (what both need lives in components/planning/).
"""

from __future__ import annotations

import importlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from preview.engine import Registration


@dataclass(frozen=True)
class Violation:
    policy: str
    enforcement: str
    message: str
    urn: str | None

    @property
    def mandatory(self) -> bool:
        return self.enforcement == EnforcementLevel.MANDATORY.value


def policy_config(policy, overrides: dict[str, Any]) -> dict[str, Any]:
    schema = getattr(policy, "config_schema", None)
    defaults = {k: v.get("default") for k, v in (schema.properties.items() if schema else []) if "default" in v}
    entry = overrides.get(policy.name, {})
    if isinstance(entry, str):          # CrossGuard's short form: "policy-name": "advisory"
        entry = {}
    return {**defaults, **{k: v for k, v in entry.items() if k != "enforcementLevel"}}


def enforcement_level(policy, overrides: dict[str, Any]) -> EnforcementLevel:
    entry = overrides.get(policy.name, {})
    level = entry if isinstance(entry, str) else entry.get("enforcementLevel")
    if level is None:
        everything = overrides.get("all")
        level = everything if isinstance(everything, str) else (everything or {}).get("enforcementLevel")
    if level is None:
        return policy.enforcement_level or EnforcementLevel.ADVISORY
    return EnforcementLevel(level)


def _options(r: Registration) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect=r.protect, ignore_changes=r.ignore_changes, delete_before_replace=None,
                                 aliases=[], custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
                                 additional_secret_outputs=[], parent=r.parent or None)


def _policy_resources(resources: list[Registration]) -> list[PolicyResource]:
    by_urn: dict[str, PolicyResource] = {}
    for r in resources:
        by_urn[r.urn] = PolicyResource(r.type, r.inputs, r.urn, r.name, _options(r), None,
                                       by_urn.get(r.parent), [], {})
    for r in resources:
        by_urn[r.urn].dependencies = [by_urn[d] for d in r.dependencies if d in by_urn]
    return list(by_urn.values())


def _call(fn, args, report) -> None:
    result = fn(args, report)
    if inspect.isawaitable(result):
        import asyncio
        asyncio.run(result)


def evaluate(policies: list, resources: list[Registration], overrides: dict[str, Any] | None = None) -> list[Violation]:
    overrides = overrides or {}
    violations: list[Violation] = []
    for policy in policies:
        level = enforcement_level(policy, overrides)
        if level == EnforcementLevel.DISABLED:
            continue
        config = policy_config(policy, overrides)

        def report(message: str, urn: str | None = None, _p=policy, _level=level, _default_urn=None) -> None:
            violations.append(Violation(_p.name, _level.value, message, urn or _default_urn))

        if isinstance(policy, ResourceValidationPolicy):
            for r in resources:
                if not r.custom:
                    continue
                args = ResourceValidationArgs(r.type, r.inputs, r.urn, r.name, _options(r), None, config)
                _call(policy.validate, args, lambda m, u=None, _r=r: report(m, u or _r.urn))
        elif isinstance(policy, StackValidationPolicy):
            args = StackValidationArgs(_policy_resources([r for r in resources if r.custom]), config)
            _call(policy.validate, args, report)
    return violations


POLICY_PACK = "policies"      # the directory `pulumi preview --policy-pack` takes, importable as a package


def load_pack(name: str = POLICY_PACK) -> list:
    """The pack's policy objects (`<pack>.POLICIES`), the same list its PulumiPolicy entry point serves."""
    return list(importlib.import_module(name).POLICIES)


def config_file(project_dir: Path, stack: str) -> Path:
    return project_dir / "policies" / f"config.{stack}.json"


def load_overrides(project_dir: Path, stack: str) -> dict[str, Any]:
    path = config_file(project_dir, stack)
    return json.loads(path.read_text()) if path.exists() else {}

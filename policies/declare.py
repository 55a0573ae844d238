"""How a rule becomes a CrossGuard policy, written once for the whole pack.

A rule is a check: a pure function from what it judges and its config (the policy config, defaults filled in) to
the problems it finds. `stack_policy` / `resource_policy` wrap it into the StackValidationPolicy /
ResourceValidationPolicy that the pack (`policies/__main__.py`), the offline `preview check` and the rule table
(`policies/docs.py`) all use, so the CrossGuard plumbing (`validate(args, report_violation)`, the config
schema, the enforcement level) is not repeated in every module:

    @stack_policy("team-namespace-default-deny-egress", "Every team namespace has ...",
                  config={"teamLabel": {...}}, remediation="Declare the namespace through ...")
    def team_namespace_default_deny_egress(resources, config):
        return default_deny_problems(resources, config.get("teamLabel") or labels.TEAM)

The decorated name is the policy object. A problem is a message, or `(urn, message)` to attach it to one resource
of a stack. Rules are mandatory unless declared otherwise (a secure default).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Union

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

Config = dict[str, Any]
Problem = Union[str, tuple[Union[str, None], str]]      # a message, or (urn, message)
Pairs = list[tuple[str, dict[str, Any]]]                  # (resource type, camelCase props) of every resource
StackCheck = Callable[[Any, Config], Iterable[Problem]]   # (Pairs, or [PolicyResource], config) -> problems
ResourceCheck = Callable[[ResourceValidationArgs, Config], Iterable[str]]


def _report(problems: Iterable[Problem], report_violation: ReportViolation) -> None:
    for problem in problems:
        urn, message = problem if isinstance(problem, tuple) else (None, problem)
        report_violation(message, urn)


def stack_policy(name: str, description: str, *, remediation: str, config: Config | None = None,
                 level: EnforcementLevel = EnforcementLevel.MANDATORY,
                 policy_resources: bool = False) -> Callable[[StackCheck], StackValidationPolicy]:
    """A stack rule. Its check sees the plan as (type, props) pairs, or with `policy_resources` the
    PolicyResource objects themselves (URNs, dependencies, `protect` and other options)."""
    def declare(check: StackCheck) -> StackValidationPolicy:
        def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
            resources: list[PolicyResource] = args.resources
            seen = resources if policy_resources else [(r.resource_type, r.props) for r in resources]
            _report(check(seen, args.get_config() or {}), report_violation)

        return StackValidationPolicy(name=name, description=description, enforcement_level=level, validate=validate,
                                     config_schema=PolicyConfigSchema(properties=dict(config or {})),
                                     remediation_steps=remediation)
    return declare


def resource_policy(name: str, description: str, *, remediation: str, config: Config | None = None,
                    types: tuple[str, ...] | None = None,
                    level: EnforcementLevel = EnforcementLevel.MANDATORY,
                    ) -> Callable[[ResourceCheck], ResourceValidationPolicy]:
    """A resource rule. Its check sees one resource (`resource_type`, `props`, `name`, `urn`); with `types` only
    resources of those type tokens (CrossGuard's Python SDK has no type filter of its own)."""
    def declare(check: ResourceCheck) -> ResourceValidationPolicy:
        def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
            if types is None or args.resource_type in types:
                _report(check(args, args.get_config() or {}), report_violation)

        return ResourceValidationPolicy(name=name, description=description, enforcement_level=level,
                                        validate=validate,
                                        config_schema=PolicyConfigSchema(properties=dict(config or {})),
                                        remediation_steps=remediation)
    return declare

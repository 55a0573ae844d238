"""A small IAM policy evaluator for identity, key and trust policies: enough of AWS's evaluation logic to ask "may this role do X to
Y?" of the documents the program renders, instead of comparing their text.

What it implements (IAM User Guide, "Policy evaluation logic" and "IAM JSON policy elements: Condition operators"):
an explicit Deny wins, else any Allow, else an implicit deny; `Action`/`NotAction` and `Resource`/`NotResource`
with `*` and `?` wildcards (actions case-insensitively); condition keys case-insensitively; the operators
String(Not)Equals, String(Not)Like, StringEqualsIgnoreCase, Arn(Not)Equals/Like, Bool, Null, Numeric*, with the
`IfExists` suffix and the `ForAllValues:`/`ForAnyValue:` set prefixes; a resource policy's `Principal` (exact or
wildcard per principal type, against the request's principal); several values of one key are ORed, several
keys and operators ANDed. Not implemented (never used by this platform's documents): policy variables, Date*, IP
address operators, NotPrincipal, permission boundaries, SCPs, and the joining of an identity and a resource policy. An unknown operator raises, so a document
using one cannot pass by accident.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ALLOW, DENY, IMPLICIT_DENY = "Allow", "Deny", "ImplicitDeny"


@dataclass(frozen=True)
class Request:
    """One API call as IAM authorizes it: the action, the resource ARN and the request context."""

    action: str
    resource: str
    context: Mapping[str, str | list[str]] = field(default_factory=dict)
    principal: tuple[str, str] | None = None      # for resource policies (key policies): ("Service", "logs...")


def tagged_request(action: str, resource: str, resource_tags: Mapping[str, str] = {},
                   request_tags: Mapping[str, str] = {}, **extra: str) -> Request:
    """A request with `aws:ResourceTag/*`, `aws:RequestTag/*` and `aws:TagKeys` filled in as AWS does."""
    context: dict[str, str | list[str]] = {f"aws:ResourceTag/{k}": v for k, v in resource_tags.items()}
    context |= {f"aws:RequestTag/{k}": v for k, v in request_tags.items()}
    if request_tags:
        context["aws:TagKeys"] = list(request_tags)
    context |= {k.replace("__", ":"): v for k, v in extra.items()}
    return Request(action, resource, context)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _glob(pattern: str, value: str, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL) is not None


def _arn_like(pattern: str, value: str) -> bool:
    """ARN matching is per colon-separated segment, each segment with wildcards (the resource part may hold ':')."""
    p, v = pattern.split(":", 5), value.split(":", 5)
    return len(p) == len(v) == 6 and all(_glob(a, b) for a, b in zip(p, v))


def _number(x: Any) -> float:
    return float(x)


_SINGLE = {
    "StringEquals": lambda p, v: str(v) == str(p),
    "StringNotEquals": lambda p, v: str(v) == str(p),            # negated below
    "StringEqualsIgnoreCase": lambda p, v: str(v).lower() == str(p).lower(),
    "StringNotEqualsIgnoreCase": lambda p, v: str(v).lower() == str(p).lower(),
    "StringLike": lambda p, v: _glob(str(p), str(v)),
    "StringNotLike": lambda p, v: _glob(str(p), str(v)),
    "ArnEquals": lambda p, v: _arn_like(str(p), str(v)),
    "ArnLike": lambda p, v: _arn_like(str(p), str(v)),
    "ArnNotEquals": lambda p, v: _arn_like(str(p), str(v)),
    "ArnNotLike": lambda p, v: _arn_like(str(p), str(v)),
    "Bool": lambda p, v: str(v).lower() == str(p).lower(),
    "NumericEquals": lambda p, v: _number(v) == _number(p),
    "NumericNotEquals": lambda p, v: _number(v) == _number(p),
    "NumericLessThan": lambda p, v: _number(v) < _number(p),
    "NumericLessThanEquals": lambda p, v: _number(v) <= _number(p),
    "NumericGreaterThan": lambda p, v: _number(v) > _number(p),
    "NumericGreaterThanEquals": lambda p, v: _number(v) >= _number(p),
}
_NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike",
            "NumericNotEquals"}


def _lookup(context: Mapping[str, Any], key: str) -> list[str] | None:
    lowered = {k.lower(): v for k, v in context.items()}
    return None if key.lower() not in lowered else [str(v) for v in _as_list(lowered[key.lower()])]


def _condition_holds(operator: str, key: str, patterns: list[Any], context: Mapping[str, Any]) -> bool:
    values = _lookup(context, key)
    set_op, _, op = operator.rpartition(":")
    if_exists = op.endswith("IfExists")
    op = op.removesuffix("IfExists")
    if op == "Null":
        # "true": the key must be absent; "false": present.
        return all((values is None) == (str(p).lower() == "true") for p in patterns)
    if op not in _SINGLE:
        raise ValueError(f"condition operator {operator!r} is not implemented by this evaluator")
    if values is None:
        return if_exists or (set_op == "ForAllValues") or (op in _NEGATED and not set_op)
    negated = op in _NEGATED

    def matches(v: str) -> bool:
        hit = any(_SINGLE[op](p, v) for p in patterns)
        return not hit if negated else hit

    if set_op == "ForAllValues":
        return all(matches(v) for v in values)
    if set_op == "ForAnyValue":
        return any(matches(v) for v in values)
    if set_op:
        raise ValueError(f"condition set operator {set_op!r} is not implemented by this evaluator")
    # A single-valued key given several values in the context: AWS treats that as ForAnyValue for positive and
    # ForAllValues for negated operators.
    return all(matches(v) for v in values) if negated else any(matches(v) for v in values)


def _matches_any(patterns: Iterable[str], value: str, ignore_case: bool) -> bool:
    return any(_glob(p, value, ignore_case) for p in patterns)


def _principal_matches(principal: Any, request: Request) -> bool:
    """A resource policy's `Principal`: "*" or {type: value(s)}; an identity policy has none (always applies)."""
    if principal == "*":
        return True
    if request.principal is None:
        return False
    kind, who = request.principal
    return any(_glob(str(p), who) for p in _as_list(as_map(principal).get(kind, [])))


def as_map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def statement_applies(statement: Mapping[str, Any], request: Request) -> bool:
    if "Principal" in statement and not _principal_matches(statement["Principal"], request):
        return False
    if "Action" in statement:
        action_ok = _matches_any(_as_list(statement["Action"]), request.action, ignore_case=True)
    else:
        action_ok = not _matches_any(_as_list(statement["NotAction"]), request.action, ignore_case=True)
    if "Resource" in statement:
        resource_ok = _matches_any(_as_list(statement["Resource"]), request.resource, ignore_case=False)
    else:
        resource_ok = not _matches_any(_as_list(statement.get("NotResource", [])), request.resource, False)
    if not (action_ok and resource_ok):
        return False
    return all(_condition_holds(op, key, _as_list(patterns), request.context)
               for op, block in statement.get("Condition", {}).items() for key, patterns in block.items())


def evaluate(policies: Iterable[str | Mapping[str, Any]], request: Request) -> str:
    """`Allow`, `Deny` (an explicit deny matched) or `ImplicitDeny` (nothing allowed it)."""
    decision = IMPLICIT_DENY
    for policy in policies:
        doc = json.loads(policy) if isinstance(policy, str) else policy
        for statement in _as_list(doc["Statement"]):
            if statement_applies(statement, request):
                if statement["Effect"] == "Deny":
                    return DENY
                decision = ALLOW
    return decision


def allowed(policies: Iterable[str | Mapping[str, Any]], request: Request) -> bool:
    return evaluate(policies, request) == ALLOW


# ---- trust policies (who may assume a role) -------------------------------------------------------------------

def allows(policy: str | Mapping[str, Any], federated: str, claims: Mapping[str, str],
           action: str = "sts:AssumeRoleWithWebIdentity") -> bool:
    """May a token of the `federated` identity provider, with these claims, assume the role with this trust policy?"""
    return evaluate([policy], Request(action, "*", claims, ("Federated", federated))) == ALLOW


def github_claims(sub: str, aud: str = "sts.amazonaws.com") -> dict[str, str]:
    """The request context of a GitHub Actions token as AWS STS exposes it to a trust policy."""
    return {"token.actions.githubusercontent.com:sub": sub, "token.actions.githubusercontent.com:aud": aud}

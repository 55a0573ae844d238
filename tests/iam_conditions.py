"""A small IAM policy evaluator for trust policies: may this principal, with these request claims, do this action?

Covers what the project's trust policies use: Allow/Deny statements, `Principal.Federated`, `Action` (with `*`
wildcards), and the condition operators StringEquals, StringLike, StringNotEquals, StringNotLike (each key's
values are ORed, keys and operators ANDed, condition keys case-insensitive, values case-sensitive). Any other
operator raises, so a policy this evaluator cannot judge never passes a test silently.
"""

from __future__ import annotations

import re
from typing import Any

SUPPORTED = {"StringEquals", "StringLike", "StringNotEquals", "StringNotLike"}


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def like(pattern: str, value: str) -> bool:
    """IAM's StringLike: `*` any run of characters, `?` one character, everything else literal."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def _key_matches(operator: str, patterns: list[str], value: str | None) -> bool:
    if operator == "StringEquals":
        return value is not None and value in patterns
    if operator == "StringLike":
        return value is not None and any(like(p, value) for p in patterns)
    if operator == "StringNotEquals":      # true when the key is absent, as in IAM
        return value is None or value not in patterns
    return value is None or not any(like(p, value) for p in patterns)   # StringNotLike


def conditions_hold(condition: dict[str, dict[str, Any]], claims: dict[str, str]) -> bool:
    context = {k.lower(): v for k, v in claims.items()}
    for operator, keys in condition.items():
        if operator not in SUPPORTED:
            raise ValueError(f"condition operator {operator} is not supported by this evaluator")
        for key, patterns in keys.items():
            if not _key_matches(operator, [str(p) for p in _as_list(patterns)], context.get(key.lower())):
                return False
    return True


def _statement_applies(statement: dict[str, Any], federated: str, action: str, claims: dict[str, str]) -> bool:
    principal = statement.get("Principal", {})
    if principal != "*" and federated not in _as_list(principal.get("Federated", [])):
        return False
    if not any(like(a, action) for a in _as_list(statement.get("Action", []))):
        return False
    return conditions_hold(statement.get("Condition", {}), claims)


def allows(policy: dict[str, Any], federated: str, claims: dict[str, str],
           action: str = "sts:AssumeRoleWithWebIdentity") -> bool:
    """IAM's decision for one request: an explicit Deny wins, else any matching Allow, else implicit deny."""
    statements = _as_list(policy.get("Statement", []))
    if any(s.get("Effect") == "Deny" and _statement_applies(s, federated, action, claims) for s in statements):
        return False
    return any(s.get("Effect") == "Allow" and _statement_applies(s, federated, action, claims) for s in statements)


def github_claims(sub: str, aud: str = "sts.amazonaws.com") -> dict[str, str]:
    """The request context of a GitHub Actions token as AWS STS exposes it to a trust policy."""
    return {"token.actions.githubusercontent.com:sub": sub, "token.actions.githubusercontent.com:aud": aud}

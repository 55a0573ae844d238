"""The trust-policy evaluator (tests/iam_conditions.py) decides like IAM on the cases the project relies on."""

from __future__ import annotations

import pytest

from tests.iam_conditions import allows, conditions_hold, github_claims, like

PROVIDER = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
HOST = "token.actions.githubusercontent.com"


def trust(condition: dict, effect: str = "Allow", action: str = "sts:AssumeRoleWithWebIdentity") -> dict:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": effect, "Principal": {"Federated": PROVIDER}, "Action": action, "Condition": condition}]}


@pytest.mark.parametrize("pattern,value,expected", [
    ("repo:a/b:*", "repo:a/b:pull_request", True),
    ("repo:a/b:*", "repo:a/bc:pull_request", False),
    ("repo:a/b:ref:refs/heads/?ain", "repo:a/b:ref:refs/heads/main", True),
    ("repo:a/b.c", "repo:a/bxc", False),            # `.` is literal, not a regex
    ("repo:a/[b]", "repo:a/b", False),              # brackets are literal too
])
def test_like_has_iam_wildcards_only(pattern, value, expected):
    assert like(pattern, value) is expected


def test_string_equals_is_exact_and_ors_a_key_s_values():
    policy = trust({"StringEquals": {f"{HOST}:sub": ["repo:a/b:pull_request", "repo:a/b:environment:prod"],
                                     f"{HOST}:aud": "sts.amazonaws.com"}})
    assert allows(policy, PROVIDER, github_claims("repo:a/b:pull_request"))
    assert allows(policy, PROVIDER, github_claims("repo:a/b:environment:prod"))
    assert not allows(policy, PROVIDER, github_claims("repo:a/b:environment:prod2"))
    assert not allows(policy, PROVIDER, github_claims("repo:a/b:pull_request", aud="https://github.com/a"))


def test_every_key_must_hold_and_a_missing_key_fails_a_positive_operator():
    condition = {"StringEquals": {f"{HOST}:sub": "repo:a/b:pull_request", f"{HOST}:aud": "sts.amazonaws.com"}}
    assert not conditions_hold(condition, {f"{HOST}:sub": "repo:a/b:pull_request"})
    assert conditions_hold({"StringNotEquals": {f"{HOST}:sub": "x"}}, {})      # absent: Not* holds, as in IAM


def test_condition_keys_are_case_insensitive_values_are_not():
    policy = trust({"StringEquals": {f"{HOST.upper()}:SUB": "repo:a/b:pull_request"}})
    assert allows(policy, PROVIDER, {f"{HOST}:sub": "repo:a/b:pull_request"})
    assert not allows(policy, PROVIDER, {f"{HOST}:sub": "repo:A/B:pull_request"})


def test_string_like_and_negations():
    policy = trust({"StringLike": {f"{HOST}:sub": "repo:a/b:*"},
                    "StringNotLike": {f"{HOST}:sub": "repo:a/b:ref:*"}})
    assert allows(policy, PROVIDER, github_claims("repo:a/b:pull_request"))
    assert not allows(policy, PROVIDER, github_claims("repo:a/b:ref:refs/heads/main"))


def test_another_provider_or_action_is_not_allowed():
    policy = trust({"StringEquals": {f"{HOST}:sub": "repo:a/b:pull_request"}})
    other = PROVIDER.replace("123456789012", "210987654321")
    assert not allows(policy, other, github_claims("repo:a/b:pull_request"))
    assert not allows(policy, PROVIDER, github_claims("repo:a/b:pull_request"), action="sts:AssumeRole")


def test_an_explicit_deny_wins():
    policy = trust({"StringEquals": {f"{HOST}:sub": "repo:a/b:pull_request"}})
    policy["Statement"].append(trust({"StringLike": {f"{HOST}:sub": "*"}}, effect="Deny")["Statement"][0])
    assert not allows(policy, PROVIDER, github_claims("repo:a/b:pull_request"))


def test_an_operator_it_cannot_judge_raises_instead_of_passing():
    with pytest.raises(ValueError, match="ForAnyValue:StringLike"):
        allows(trust({"ForAnyValue:StringLike": {f"{HOST}:sub": "*"}}), PROVIDER, github_claims("x"))

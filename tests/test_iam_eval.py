"""The IAM evaluator (tests/iam_eval.py) against the rules of AWS's evaluation logic it claims to implement."""

from __future__ import annotations

import pytest

from tests.iam_eval import ALLOW, DENY, IMPLICIT_DENY, Request, allows, evaluate, github_claims, tagged_request

FS = "arn:aws:fsx:us-east-1:111122223333:file-system/fs-0123"


def doc(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action="fsx:DeleteFileSystem", resource="*", **condition):
    s = {"Effect": "Allow", "Action": action, "Resource": resource}
    if condition:
        s["Condition"] = condition
    return s


def test_nothing_allowed_is_an_implicit_deny():
    assert evaluate([doc()], Request("fsx:DeleteFileSystem", FS)) == IMPLICIT_DENY


def test_explicit_deny_beats_allow_in_any_order():
    deny = {"Effect": "Deny", "Action": "fsx:*", "Resource": "*"}
    assert evaluate([doc(allow(), deny)], Request("fsx:DeleteFileSystem", FS)) == DENY
    assert evaluate([doc(deny), doc(allow())], Request("fsx:DeleteFileSystem", FS)) == DENY


@pytest.mark.parametrize("action,request_action,expected", [
    ("fsx:DeleteFileSystem", "fsx:deletefilesystem", ALLOW),       # actions are case-insensitive
    ("fsx:Delete*", "fsx:DeleteFileSystem", ALLOW),
    ("fsx:Describe*", "fsx:DeleteFileSystem", IMPLICIT_DENY),
    (["s3:GetObject", "fsx:?eleteFileSystem"], "fsx:DeleteFileSystem", ALLOW),
])
def test_action_wildcards(action, request_action, expected):
    assert evaluate([doc(allow(action))], Request(request_action, FS)) == expected


def test_not_action_and_resource_patterns():
    s = {"Effect": "Allow", "NotAction": "fsx:DeleteFileSystem", "Resource": "arn:aws:fsx:*:*:file-system/*"}
    assert evaluate([doc(s)], Request("fsx:UpdateFileSystem", FS)) == ALLOW
    assert evaluate([doc(s)], Request("fsx:DeleteFileSystem", FS)) == IMPLICIT_DENY
    assert evaluate([doc(s)], Request("fsx:UpdateFileSystem", "arn:aws:fsx:us-east-1:1:backup/b-1")) == IMPLICIT_DENY


def test_string_like_on_a_missing_key_does_not_match_but_if_exists_does():
    cond = {"StringLike": {"aws:ResourceTag/CSIVolumeName": "*"}}
    assert evaluate([doc(allow(**cond))], tagged_request("fsx:DeleteFileSystem", FS)) == IMPLICIT_DENY
    assert evaluate([doc(allow(**cond))], tagged_request("fsx:DeleteFileSystem", FS,
                                                         {"CSIVolumeName": "pvc-1"})) == ALLOW
    if_exists = {"StringLikeIfExists": {"aws:ResourceTag/CSIVolumeName": "pvc-*"}}
    assert evaluate([doc(allow(**if_exists))], tagged_request("fsx:DeleteFileSystem", FS)) == ALLOW


def test_condition_keys_are_case_insensitive_values_are_not():
    cond = {"StringEquals": {"fsx:CreateAction": "CreateFileSystem"}}
    r = tagged_request("fsx:TagResource", FS, fsx__createaction="CreateFileSystem")
    assert evaluate([doc(allow("fsx:TagResource", **cond))], r) == ALLOW
    r = tagged_request("fsx:TagResource", FS, fsx__CreateAction="createfilesystem")
    assert evaluate([doc(allow("fsx:TagResource", **cond))], r) == IMPLICIT_DENY


def test_values_are_ored_keys_and_operators_anded():
    cond = {"StringEquals": {"fsx:CreateAction": ["CreateFileSystem", "CreateFileSystemFromBackup"]},
            "StringLike": {"aws:RequestTag/CSIVolumeName": "*"}}
    ok = tagged_request("fsx:TagResource", FS, request_tags={"CSIVolumeName": "pvc-1"},
                        fsx__CreateAction="CreateFileSystemFromBackup")
    assert evaluate([doc(allow("fsx:TagResource", **cond))], ok) == ALLOW
    no_tag = tagged_request("fsx:TagResource", FS, fsx__CreateAction="CreateFileSystem")
    assert evaluate([doc(allow("fsx:TagResource", **cond))], no_tag) == IMPLICIT_DENY


def test_null_operator():
    deny = {"Effect": "Deny", "Action": "*", "Resource": "*",
            "Condition": {"Null": {"aws:ResourceTag/mlops.platform/dataset": "false"}}}
    dataset = tagged_request("fsx:DeleteFileSystem", FS, {"mlops.platform/dataset": "x"})
    assert evaluate([doc(allow(), deny)], dataset) == DENY
    assert evaluate([doc(allow(), deny)], tagged_request("fsx:DeleteFileSystem", FS)) == ALLOW


def test_negated_operators_match_a_missing_key():
    cond = {"StringNotEquals": {"aws:RequestTag/team": "a"}}
    assert evaluate([doc(allow(**cond))], tagged_request("fsx:DeleteFileSystem", FS)) == ALLOW
    assert evaluate([doc(allow(**cond))], tagged_request("fsx:DeleteFileSystem", FS,
                                                         request_tags={"team": "a"})) == IMPLICIT_DENY


def test_set_operators_on_tag_keys():
    only = {"ForAllValues:StringEquals": {"aws:TagKeys": ["CSIVolumeName", "Name"]}}
    assert evaluate([doc(allow("fsx:TagResource", **only))],
                    tagged_request("fsx:TagResource", FS, request_tags={"CSIVolumeName": "v"})) == ALLOW
    assert evaluate([doc(allow("fsx:TagResource", **only))],
                    tagged_request("fsx:TagResource", FS, request_tags={"Other": "v"})) == IMPLICIT_DENY
    some = {"ForAnyValue:StringEquals": {"aws:TagKeys": ["CSIVolumeName"]}}
    assert evaluate([doc(allow("fsx:TagResource", **some))],
                    tagged_request("fsx:TagResource", FS, request_tags={"CSIVolumeName": "v", "X": "y"})) == ALLOW


def test_arn_like_matches_segment_by_segment():
    cond = {"ArnLike": {"aws:SourceArn": "arn:aws:fsx:*:111122223333:file-system/*"}}
    assert evaluate([doc(allow(**cond))], Request("fsx:DeleteFileSystem", FS, {"aws:SourceArn": FS})) == ALLOW
    other = FS.replace("111122223333", "999988887777")
    assert evaluate([doc(allow(**cond))], Request("fsx:DeleteFileSystem", FS, {"aws:SourceArn": other})) \
        == IMPLICIT_DENY


def test_unknown_operator_raises_instead_of_passing():
    with pytest.raises(ValueError, match="DateGreaterThan"):
        evaluate([doc(allow(DateGreaterThan={"aws:CurrentTime": "2020-01-01T00:00:00Z"}))],
                 Request("fsx:DeleteFileSystem", FS, {"aws:CurrentTime": "2026-01-01T00:00:00Z"}))


def test_a_resource_policy_statement_applies_only_to_its_principal():
    s = {"Effect": "Allow", "Principal": {"Service": "logs.us-east-1.amazonaws.com"}, "Action": "kms:Decrypt",
         "Resource": "*"}
    assert evaluate([doc(s)], Request("kms:Decrypt", "*", principal=("Service", "logs.us-east-1.amazonaws.com"))) \
        == ALLOW
    assert evaluate([doc(s)], Request("kms:Decrypt", "*", principal=("AWS", "arn:aws:iam::1:root"))) == IMPLICIT_DENY
    assert evaluate([doc(s)], Request("kms:Decrypt", "*")) == IMPLICIT_DENY
    anyone = {**s, "Principal": "*"}
    assert evaluate([doc(anyone)], Request("kms:Decrypt", "*", principal=("AWS", "arn:aws:iam::1:root"))) == ALLOW


def test_trust_policy_for_one_github_repository_and_branch():
    provider = "arn:aws:iam::1:oidc-provider/token.actions.githubusercontent.com"
    trust = doc({"Effect": "Allow", "Principal": {"Federated": provider}, "Action": "sts:AssumeRoleWithWebIdentity",
                 "Condition": {"StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"},
                               "StringLike": {"token.actions.githubusercontent.com:sub": "repo:acme/ml:ref:refs/heads/main"}}})
    assert allows(trust, provider, github_claims("repo:acme/ml:ref:refs/heads/main"))
    assert not allows(trust, provider, github_claims("repo:acme/ml:ref:refs/heads/feature"))
    assert not allows(trust, provider, github_claims("repo:acme/ml:ref:refs/heads/main", aud="other"))
    assert not allows(trust, provider.replace("githubusercontent", "example"), github_claims("repo:acme/ml:ref:refs/heads/main"))
    assert not allows(trust, provider, github_claims("repo:acme/ml:ref:refs/heads/main"), action="sts:AssumeRole")

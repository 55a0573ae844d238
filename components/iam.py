"""IAM documents and IRSA roles shared by the components."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class Oidc:
    """The cluster's IAM OIDC provider, as IRSA trust policies need it."""

    provider_arn: pulumi.Output[str]
    issuer_url: pulumi.Output[str]  # with https://


def service_trust_policy(service: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    })


def tls_only_bucket_policy(bucket_arn: str) -> str:
    """A bucket policy refusing any request not made over TLS."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }]})


def web_identity_trust(provider_arn: str, string_equals: dict[str, Any],
                       string_like: dict[str, Any] | None = None) -> dict[str, Any]:
    """The trust policy of a role assumed with an OIDC token (IRSA service accounts, GitHub Actions): tokens of this
    one provider whose claims equal `string_equals` (and match the `string_like` patterns)."""
    condition: dict[str, Any] = {"StringEquals": string_equals}
    if string_like:
        condition["StringLike"] = string_like
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": condition,
        }],
    }


def customer_key(name: str, description: str, opts: pulumi.ResourceOptions, **args: Any) -> aws.kms.Key:
    """A customer-managed KMS key as the platform keeps every key: rotated yearly (policy kms-key-rotation), and
    deleted only after 30 days, in which a mistaken deletion can still be cancelled."""
    return aws.kms.Key(name, description=description, enable_key_rotation=True, deletion_window_in_days=30,
                       opts=opts, **args)


def irsa_trust_policy(oidc: Oidc, namespace: str, service_account: str) -> pulumi.Output[str]:
    """Only this one service account of this cluster may assume the role."""

    def doc(arn: str, issuer: str) -> str:
        host = issuer.removeprefix("https://")
        return json.dumps(web_identity_trust(arn, {
            f"{host}:sub": f"system:serviceaccount:{namespace}:{service_account}",
            f"{host}:aud": "sts.amazonaws.com",
        }))

    return pulumi.Output.all(oidc.provider_arn, oidc.issuer_url).apply(lambda a: doc(*a))


def irsa_role(
    name: str,
    oidc: Oidc,
    namespace: str,
    service_account: str,
    parent: pulumi.Resource,
    managed_policy_arns: list[str] = (),
    inline_policy: pulumi.Input[str] | None = None,
) -> aws.iam.Role:
    """A role for one Kubernetes service account, with AWS managed policies and/or one inline policy."""
    role = aws.iam.Role(
        name,
        assume_role_policy=irsa_trust_policy(oidc, namespace, service_account),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    for arn in managed_policy_arns:
        aws.iam.RolePolicyAttachment(
            f"{name}-{arn.rsplit('/', 1)[-1]}",
            role=role.name,
            policy_arn=arn,
            opts=pulumi.ResourceOptions(parent=parent),
        )
    if inline_policy is not None:
        aws.iam.RolePolicy(f"{name}-inline", role=role.id, policy=inline_policy,
                           opts=pulumi.ResourceOptions(parent=parent))
    return role


def logs_key_policy(partition: str, account: str, region: str, log_groups: list[str]) -> str:
    """A KMS key policy for CloudWatch Logs log groups (CloudWatch Logs User Guide, "Encrypt log data in CloudWatch
    Logs using AWS KMS"): the account administers the key through IAM; the regional Logs service may use it, only
    for the named log groups (the encryption context names the log group)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "AccountAdministersThroughIam", "Effect": "Allow",
         "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "CloudWatchLogsForTheseGroups", "Effect": "Allow",
         "Principal": {"Service": f"logs.{region}.amazonaws.com"},
         "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
         "Resource": "*",
         "Condition": {"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": [
             f"arn:{partition}:logs:{region}:{account}:log-group:{g}" for g in log_groups]}}},
    ]})


def encrypted_log_group(name: str, log_group_name: pulumi.Input[str], retention_days: int, description: str,
                        parent: pulumi.Resource) -> aws.cloudwatch.LogGroup:
    """A CloudWatch log group encrypted with its own KMS key (rotated), readable only through IAM."""
    invoke = pulumi.InvokeOutputOptions(parent=parent)
    identity = aws.get_caller_identity_output(opts=invoke)
    policy = pulumi.Output.all(aws.get_partition_output(opts=invoke).partition, identity.account_id,
                               aws.get_region_output(opts=invoke).region, log_group_name).apply(
        lambda a: logs_key_policy(a[0], a[1], a[2], [a[3]]))
    key = customer_key(f"{name}-logs", description, pulumi.ResourceOptions(parent=parent), policy=policy)
    return aws.cloudwatch.LogGroup(name, name=log_group_name, retention_in_days=retention_days, kms_key_id=key.arn,
                                   opts=pulumi.ResourceOptions(parent=parent))

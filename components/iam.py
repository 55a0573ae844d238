"""IAM documents and IRSA roles shared by the components."""

from __future__ import annotations

import json
from dataclasses import dataclass

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


def irsa_trust_policy(oidc: Oidc, namespace: str, service_account: str) -> pulumi.Output[str]:
    """Only this one service account of this cluster may assume the role."""

    def doc(arn: str, issuer: str) -> str:
        host = issuer.removeprefix("https://")
        return json.dumps({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {
                    f"{host}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                    f"{host}:aud": "sts.amazonaws.com",
                }},
            }],
        })

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

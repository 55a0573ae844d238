"""The GitHub OIDC provider and the two CI roles the workflows assume: preview (pull requests) and deploy.

Trust: exactly the OIDC subjects the workflows' jobs present, `aud` = sts.amazonaws.com.
- preview: `repo:<owner>/<repo>:pull_request` (.github/workflows/preview.yml: a `pull_request` job without
  `environment:`). A fork's pull request gets no token at all (GitHub withholds `id-token: write` from forks);
  a fork's own workflows present `repo:<fork owner>/<repo>:...`, which no role trusts.
- deploy: `repo:<owner>/<repo>:environment:<name>` for each `environment:` of .github/workflows/deploy.yml. With
  an environment the subject carries no branch: the environments' deployment-branch rule (main only) and
  required reviewers, set in the repository settings (docs/first-deploy.md), bind it to main. A job on main
  without the environment (`repo:<owner>/<repo>:ref:refs/heads/main`) is refused, so nothing skips the review.

Permissions (least privilege that still runs `pulumi preview` / `pulumi up` of the platform):
- preview: read the state bucket (plus the lock objects the S3 backend writes), decrypt with the secrets key
  (the stack's data key), and the read-only EC2/EKS calls behind the program's data sources (PLAN_READS); nothing
  else in AWS. In the cluster it needs more: see components/cluster.py (access entries).
- deploy: read/write the state, decrypt with the secrets key, and full access to the services the platform
  declares resources in (DEPLOY_SERVICES), minus tampering with what the bootstrap owns (its CI roles, the OIDC
  provider, the state bucket's protections, the secrets key). It can create IAM roles for the platform's
  components; a permissions boundary on those roles would be the next tightening (docs/first-deploy.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from bootstrap.config import GithubConfig
from components.iam import web_identity_trust
from components.supply_chain import GITHUB_OIDC_HOST

AUDIENCE = "sts.amazonaws.com"

# Data sources the platform program calls during a preview -> the IAM actions they need. tests/test_bootstrap.py
# checks this covers every invoke of a real render of the platform stacks.
PLAN_READS: dict[str, list[str]] = {
    "aws:index/getCallerIdentity:getCallerIdentity": [],      # sts:GetCallerIdentity needs no permission
    "aws:index/getPartition:getPartition": [],                # answered by the provider itself
    "aws:index/getRegion:getRegion": ["ec2:DescribeRegions"],
    "aws:index/getAvailabilityZones:getAvailabilityZones": ["ec2:DescribeAvailabilityZones"],
    "aws:iam/getPolicyDocument:getPolicyDocument": [],        # rendered locally
    "aws:ec2/getManagedPrefixList:getManagedPrefixList": ["ec2:DescribeManagedPrefixLists",
                                                           "ec2:GetManagedPrefixListEntries"],
    "aws:ec2/getNetworkInterface:getNetworkInterface": ["ec2:DescribeNetworkInterfaces"],
    "aws:ec2/getSubnet:getSubnet": ["ec2:DescribeSubnets"],
    "aws:ec2/getVpc:getVpc": ["ec2:DescribeVpcs", "ec2:DescribeVpcAttribute", "ec2:DescribeRouteTables"],
    "aws:eks/getAddonVersion:getAddonVersion": ["eks:DescribeAddonVersions"],
}

# pulumi-aws module of each resource type the platform declares -> the IAM service prefixes `pulumi up` needs.
# tests/test_bootstrap.py checks every module of a real render of the platform stacks is listed.
DEPLOY_SERVICES: dict[str, list[str]] = {
    "autoscaling": ["autoscaling"],          # cluster-autoscaler discovery and node-template tags on GPU node groups' ASGs
    "cloudwatch": ["logs", "events"],        # log groups; EventBridge rules and targets (Karpenter interruptions)
    "ec2": ["ec2"],
    "vpc": ["ec2"],                          # security group rules
    "ecr": ["ecr", "inspector2"],            # enhanced scanning enables Amazon Inspector
    "eks": ["eks"],
    "fsx": ["fsx"],
    "iam": ["iam"],                          # IRSA roles, node role, service-linked roles (EKS, FSx, RDS)
    "kms": ["kms"],
    "rds": ["rds"],
    "s3": ["s3"],
    "sqs": ["sqs"],
}

STATE_LOCKS = ".pulumi/locks/*"   # the S3 backend's lock objects (written by preview too)


def subjects_preview(repository: str) -> list[str]:
    return [f"repo:{repository}:pull_request"]


def subjects_deploy(repository: str, environments: list[str]) -> list[str]:
    return [f"repo:{repository}:environment:{env}" for env in environments]


def trust_policy(provider_arn: str, subjects: list[str]) -> dict[str, Any]:
    """Only GitHub tokens for sts.amazonaws.com with exactly one of `subjects` (no wildcards)."""
    return web_identity_trust(provider_arn, {
        f"{GITHUB_OIDC_HOST}:aud": AUDIENCE,
        f"{GITHUB_OIDC_HOST}:sub": sorted(subjects),
    })


def _state_and_secrets(bucket_arn: str, key_arn: str, write: bool) -> list[dict[str, Any]]:
    objects = ["s3:GetObject", "s3:GetObjectVersion"] + (["s3:PutObject", "s3:DeleteObject"] if write else [])
    statements = [
        {"Sid": "ListState", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
         "Resource": bucket_arn},
        {"Sid": "State", "Effect": "Allow", "Action": objects, "Resource": f"{bucket_arn}/*"},
        # Decrypt the stack's data key (awskms:// provider) and the bucket's SSE-KMS objects; writes also
        # encrypt under the key (SSE-KMS with a bucket key: GenerateDataKey).
        {"Sid": "SecretsKey", "Effect": "Allow",
         "Action": ["kms:Decrypt"] + (["kms:GenerateDataKey", "kms:Encrypt"] if write else []),
         "Resource": key_arn},
    ]
    if not write:
        statements.insert(2, {"Sid": "StateLocks", "Effect": "Allow", "Action": ["s3:PutObject", "s3:DeleteObject"],
                              "Resource": f"{bucket_arn}/{STATE_LOCKS}"})
        statements[-1]["Action"].append("kms:GenerateDataKey")   # the lock objects are SSE-KMS encrypted too
    return statements


def preview_policy(bucket_arn: str, key_arn: str) -> dict[str, Any]:
    reads = sorted({a for actions in PLAN_READS.values() for a in actions})
    return {"Version": "2012-10-17", "Statement": [
        *_state_and_secrets(bucket_arn, key_arn, write=False),
        {"Sid": "PlanReads", "Effect": "Allow", "Action": reads, "Resource": "*"},
    ]}


def deploy_policy(bucket_arn: str, key_arn: str, protected_role_arns: list[str],
                  oidc_provider_arn: str) -> dict[str, Any]:
    services = sorted({s for prefixes in DEPLOY_SERVICES.values() for s in prefixes})
    return {"Version": "2012-10-17", "Statement": [
        *_state_and_secrets(bucket_arn, key_arn, write=True),
        {"Sid": "PlatformServices", "Effect": "Allow", "Action": [f"{s}:*" for s in services], "Resource": "*"},
        # What the bootstrap owns stays out of the deploy role's reach, though its service wildcards cover it.
        {"Sid": "KeepBootstrapIdentities", "Effect": "Deny", "Action": "iam:*",
         "Resource": [*protected_role_arns, oidc_provider_arn]},
        {"Sid": "KeepStateBucketProtections", "Effect": "Deny", "Action": [
            "s3:DeleteBucket", "s3:DeleteBucketPolicy", "s3:PutBucketPolicy", "s3:PutBucketVersioning",
            "s3:PutEncryptionConfiguration", "s3:PutBucketPublicAccessBlock", "s3:PutLifecycleConfiguration",
            "s3:PutBucketOwnershipControls", "s3:DeleteObjectVersion"], "Resource": [bucket_arn, f"{bucket_arn}/*"]},
        {"Sid": "KeepSecretsKey", "Effect": "Deny", "Action": [
            "kms:ScheduleKeyDeletion", "kms:DisableKey", "kms:PutKeyPolicy", "kms:CreateGrant",
            "kms:DisableKeyRotation", "kms:DeleteAlias", "kms:UpdateAlias"], "Resource": key_arn},
    ]}


@dataclass(frozen=True)
class GithubCiArgs:
    config: GithubConfig
    state_bucket_arn: pulumi.Input[str]
    secrets_key_arn: pulumi.Input[str]


class GithubCi(pulumi.ComponentResource):
    oidc_provider_arn: pulumi.Output[str]
    preview_role_arn: pulumi.Output[str]
    deploy_role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: GithubCiArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:bootstrap:GithubCi", name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)
        if cfg.oidc_provider_arn:
            provider_arn = pulumi.Output.from_input(cfg.oidc_provider_arn)
        else:
            provider_arn = aws.iam.OpenIdConnectProvider(
                f"{name}-github", url=f"https://{GITHUB_OIDC_HOST}", client_id_lists=[AUDIENCE], opts=child).arn

        def role(kind: str, subjects: list[str]) -> aws.iam.Role:
            return aws.iam.Role(
                f"{name}-{kind}",
                name=f"{cfg.role_name_prefix}-{kind}",
                description=f"GitHub Actions `pulumi {'preview' if kind == 'preview' else 'up'}` of {cfg.repository}",
                assume_role_policy=provider_arn.apply(lambda arn: json.dumps(trust_policy(arn, subjects))),
                max_session_duration=3600 * (1 if kind == "preview" else 4),   # a first prod `up` takes ~1h
                opts=child,
            )

        preview = role("preview", subjects_preview(cfg.repository))
        deploy = role("deploy", subjects_deploy(cfg.repository, cfg.deploy_environments))
        aws.iam.RolePolicy(f"{name}-preview", role=preview.id, policy=pulumi.Output.all(
            args.state_bucket_arn, args.secrets_key_arn).apply(lambda a: json.dumps(preview_policy(*a))), opts=child)
        aws.iam.RolePolicy(f"{name}-deploy", role=deploy.id, policy=pulumi.Output.all(
            args.state_bucket_arn, args.secrets_key_arn, preview.arn, deploy.arn, provider_arn).apply(
            lambda a: json.dumps(deploy_policy(a[0], a[1], [a[2], a[3]], a[4]))), opts=child)

        self.oidc_provider_arn = provider_arn
        self.preview_role_arn = preview.arn
        self.deploy_role_arn = deploy.arn
        self.register_outputs({
            "oidc_provider_arn": self.oidc_provider_arn,
            "preview_role_arn": self.preview_role_arn,
            "deploy_role_arn": self.deploy_role_arn,
        })

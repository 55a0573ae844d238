"""Upstream compliance rules (pulumi/compliance-policies) as policies of ours, with our thresholds.

| ours                         | upstream                                                                |
|------------------------------|-------------------------------------------------------------------------|
| eks-endpoint-restricted      | aws-eks-cluster-disallow-api-endpoint-public-access                     |
| ecr-repository-hardened      | aws-ecr-repository-disallow-mutable-image, -enable-image-scan,           |
|                              | -disallow-unencrypted-repository, -configure-customer-managed-key       |
| kms-key-rotation             | aws-kms-key-enable-key-rotation                                         |
| rds-backups-and-customer-key | aws-rds-instance-configure-backup-retention, RDS customer-managed key   |

Upstream forbids a public EKS endpoint outright; the platform's prod stack keeps it public for CI and
administrators but only from explicit CIDRs (cluster.publicAccessCidrs), so ours allows a public endpoint restricted
to CIDRs no wider than `maxPublicPrefix` and never 0.0.0.0/0 (the config rules refuse the same in prod).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from policies.data import PRODUCTION_CONFIG, is_production
from policies.declare import resource_policy, stack_policy
from policies.workloads import as_dict, as_list

EKS_CLUSTER = "aws:eks/cluster:Cluster"
ECR_REPOSITORY = "aws:ecr/repository:Repository"
KMS_KEY = "aws:kms/key:Key"
RDS_TYPES = ("aws:rds/instance:Instance", "aws:rds/cluster:Cluster")
SYMMETRIC = ("SYMMETRIC_DEFAULT", None)


def eks_endpoint_problems(props: dict[str, Any], max_prefix: int) -> list[str]:
    vpc = as_dict(props.get("vpcConfig"))
    # The provider's default is a public endpoint open to 0.0.0.0/0.
    if vpc.get("endpointPublicAccess") is False:
        return []
    cidrs = [str(c) for c in as_list(vpc.get("publicAccessCidrs"))]
    if not cidrs:
        return ["its API endpoint is public to the whole internet (no publicAccessCidrs)"]
    problems = []
    for cidr in cidrs:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            problems.append(f"publicAccessCidrs holds '{cidr}', which is not a CIDR")
            continue
        if net.prefixlen < max_prefix:
            problems.append(f"its public API endpoint admits {cidr}, wider than /{max_prefix}")
    if vpc.get("endpointPrivateAccess") is not True:
        problems.append("its API endpoint has no private access, so nodes reach it over the internet")
    return problems


def ecr_problems(props: dict[str, Any]) -> list[str]:
    problems = []
    if props.get("imageTagMutability") not in ("IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION"):
        problems.append("its image tags are mutable (imageTagMutability IMMUTABLE)")
    if as_dict(props.get("imageScanningConfiguration")).get("scanOnPush") is not True:
        problems.append("it does not scan images on push (imageScanningConfiguration.scanOnPush)")
    encryption = [as_dict(e) for e in as_list(props.get("encryptionConfigurations"))]
    if not any(e.get("encryptionType") == "KMS" and e.get("kmsKey") for e in encryption):
        problems.append("it is not encrypted with a customer KMS key (encryptionConfigurations KMS + kmsKey)")
    return problems


def kms_problems(props: dict[str, Any]) -> list[str]:
    if props.get("customerMasterKeySpec", props.get("keySpec")) not in SYMMETRIC:
        return []                       # AWS rotates only symmetric keys
    if props.get("enableKeyRotation") is not True:
        return ["key rotation is off (enableKeyRotation)"]
    return []


def rds_problems(props: dict[str, Any], min_retention: int) -> list[str]:
    problems = []
    retention = props.get("backupRetentionPeriod")
    if not isinstance(retention, int) or retention < min_retention:
        problems.append(f"its automated backups are kept {retention or 0} days (backupRetentionPeriod), fewer than "
                        f"{min_retention}")
    if not props.get("kmsKeyId"):
        problems.append("its storage is not encrypted with a customer KMS key (kmsKeyId)")
    return problems


def _named(what: str, name: str, problems: list[str]) -> list[str]:
    return [f"The {what} '{name}': {problem}." for problem in problems]


@stack_policy(
    "eks-endpoint-restricted",
    "In production stacks the EKS API endpoint is private, or public only from explicit CIDRs no wider than "
    "maxPublicPrefix, with private access on (upstream aws-eks-cluster-disallow-api-endpoint-public-access, relaxed "
    "to CIDRs). Dev clusters are throwaway and reached from changing addresses.",
    policy_resources=True,
    config={**PRODUCTION_CONFIG,
            "maxPublicPrefix": {"type": "integer", "minimum": 0, "maximum": 32, "default": 16,
                                "description": "The widest public CIDR (prefix length) the endpoint may admit."}},
    remediation="Set cluster.publicAccessCidrs to your office/CI ranges, or cluster.endpointPublicAccess: false.",
)
def eks_endpoint_restricted(resources, config):
    if not is_production(resources, config.get("production", "auto")):
        return []
    return [(r.urn, message) for r in resources if r.resource_type == EKS_CLUSTER
            for message in _named("EKS cluster", r.name,
                                  eks_endpoint_problems(r.props, int(config.get("maxPublicPrefix", 16))))]


@resource_policy(
    "ecr-repository-hardened",
    "ECR repositories have immutable tags, scan on push and a customer KMS key (upstream aws-ecr-repository-*).",
    types=(ECR_REPOSITORY,),
    remediation="Declare team repositories through the supply-chain component, which sets all three.",
)
def ecr_repository_hardened(r, config):
    return _named("ECR repository", r.name, ecr_problems(r.props))


@resource_policy(
    "kms-key-rotation",
    "Symmetric KMS keys rotate yearly (upstream aws-kms-key-enable-key-rotation).",
    types=(KMS_KEY,),
    remediation="Set enable_key_rotation=True on the key.",
)
def kms_key_rotation(r, config):
    return _named("KMS key", r.name, kms_problems(r.props))


@resource_policy(
    "rds-backups-and-customer-key",
    "RDS instances and clusters keep automated backups at least minBackupRetentionDays and encrypt with a customer "
    "KMS key (upstream aws-rds-instance-configure-backup-retention and customer-managed-key rules).",
    types=RDS_TYPES,
    config={"minBackupRetentionDays": {"type": "integer", "minimum": 1, "default": 7}},
    remediation="Set mlflow.database.backupRetentionDays (>= the minimum) and kms_key_id to the component's key.",
)
def rds_backups_and_customer_key(r, config):
    return _named("RDS database", r.name, rds_problems(r.props, int(config.get("minBackupRetentionDays", 7))))


POLICIES = [eks_endpoint_restricted, ecr_repository_hardened, kms_key_rotation, rds_backups_and_customer_key]

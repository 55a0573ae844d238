"""Data-protection rules: encryption, public access, versioning and deletion protection of data stores, and no
credentials in plain text in Kubernetes objects.

S3 settings live in companion resources (`BucketServerSideEncryptionConfiguration`, `BucketVersioning`,
`BucketPublicAccessBlock`), so the bucket rules are stack policies: a companion belongs to a bucket when it depends
on it (as `bucket=bucket.id` makes it) or names it. "In prod" rules apply to production stacks: with the policy
config `production: auto` (default) a stack is production when it protects anything from deletion (the program
sets `protect` exactly when `protectData: true`, which prod requires) or its EKS cluster has deletion protection;
`always` / `never` override that.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from pulumi_policy import PolicyResource

from policies.declare import resource_policy, stack_policy
from policies.workloads import containers, pod_specs

BUCKET_TYPES = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
SSE_TYPES = ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
             "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")
VERSIONING_TYPES = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
PUBLIC_ACCESS_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
RDS_TYPES = ("aws:rds/instance:Instance", "aws:rds/cluster:Cluster")
# Aurora: the cluster has no address of its own; each cluster instance may be made public.
RDS_INSTANCE_TYPES = ("aws:rds/instance:Instance", "aws:rds/clusterInstance:ClusterInstance")
FSX_LUSTRE = "aws:fsx/lustreFileSystem:LustreFileSystem"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"

PRODUCTION_CONFIG = {
    "production": {"type": "string", "enum": ["auto", "always", "never"], "default": "auto",
                   "description": "auto: the stack is production when it protects any resource from deletion or "
                                  "its EKS cluster has deletion protection."},
}
# Names that say "this is a credential"; `..._FILE`/`_PATH` etc. point at one instead of holding it.
CREDENTIAL_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL)",
                             re.IGNORECASE)
REFERENCE_SUFFIX = re.compile(r"(_FILE|_PATH|_DIR|_NAME|_ARN|_REF)$", re.IGNORECASE)
# scheme://user:password@host: a connection string with its password inside.
CREDENTIAL_URI = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)


def _where(r: PolicyResource) -> str:
    meta = r.props.get("metadata") if isinstance(r.props.get("metadata"), dict) else {}
    return f"{meta.get('namespace')}/{meta.get('name')}" if meta.get("name") else r.name


# ---- S3 buckets ----------------------------------------------------------------------------------------------


def _names(r: PolicyResource) -> set[str]:
    return {v for v in (r.props.get("bucket"), r.props.get("id")) if isinstance(v, str) and v}


def companions(bucket: PolicyResource, resources: list[PolicyResource], types: tuple[str, ...]) -> list[PolicyResource]:
    """The resources of `types` that configure `bucket`: they depend on it, or name it in `bucket`."""
    names = _names(bucket)
    return [r for r in resources if r.resource_type in types and (
        any(d.urn == bucket.urn for d in (r.dependencies or []))
        or (isinstance(r.props.get("bucket"), str) and r.props["bucket"] in names))]


def _sse_algorithms(props: dict[str, Any]) -> list[str]:
    rules = props.get("rules") or props.get("rule") or []
    rules = rules if isinstance(rules, list) else [rules]
    return [((rule or {}).get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm", "") for rule in rules]


def encryption_problem(bucket: PolicyResource, resources: list[PolicyResource], require_kms: bool) -> str | None:
    configs = companions(bucket, resources, SSE_TYPES)
    inline = (bucket.props.get("serverSideEncryptionConfiguration") or {}).get("rule")
    algorithms = [a for c in configs for a in _sse_algorithms(c.props)]
    if inline:
        algorithms.append(((inline or {}).get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm", ""))
    if not algorithms:
        return (f"The S3 bucket '{bucket.name}' must have a server-side encryption configuration "
                "(aws.s3.BucketServerSideEncryptionConfiguration).")
    if require_kms and not all(a.startswith("aws:kms") for a in algorithms):
        return f"The S3 bucket '{bucket.name}' must be encrypted with a KMS key (sseAlgorithm aws:kms)."
    return None


def versioning_problem(bucket: PolicyResource, resources: list[PolicyResource]) -> str | None:
    statuses = [((c.props.get("versioningConfiguration") or {}).get("status")) for c in
                companions(bucket, resources, VERSIONING_TYPES)]
    if (bucket.props.get("versioning") or {}).get("enabled") is True:
        statuses.append("Enabled")
    if "Enabled" not in statuses:
        return (f"The S3 bucket '{bucket.name}' must have versioning enabled (aws.s3.BucketVersioning with "
                "status Enabled), so an overwrite or delete can be undone.")
    return None


def public_access_problem(bucket: PolicyResource, resources: list[PolicyResource]) -> str | None:
    blocks = companions(bucket, resources, (PUBLIC_ACCESS_BLOCK,))
    # Every block counts: a second block with a switch off overrides the first (the last applied wins).
    if not blocks or not all(all(b.props.get(flag) is True for flag in PUBLIC_ACCESS_FLAGS) for b in blocks):
        return (f"The S3 bucket '{bucket.name}' must block public access: an aws.s3.BucketPublicAccessBlock "
                f"with {', '.join(PUBLIC_ACCESS_FLAGS)} all true.")
    return None


def _buckets(resources: list[PolicyResource]) -> Iterator[PolicyResource]:
    return (r for r in resources if r.resource_type in BUCKET_TYPES)


@stack_policy(
    "s3-bucket-encrypted",
    "Every S3 bucket has a server-side encryption configuration (KMS when requireKms is set).",
    policy_resources=True,
    config={"requireKms": {"type": "boolean", "default": False,
                           "description": "Require SSE-KMS (a customer key) rather than any encryption."}},
    remediation="Declare aws.s3.BucketServerSideEncryptionConfiguration for the bucket (bucket=bucket.id) with "
                "sseAlgorithm aws:kms and a KMS key, as components/mlflow.py does.",
)
def s3_bucket_encrypted(resources, config):
    require_kms = bool(config.get("requireKms", False))
    return [(b.urn, problem) for b in _buckets(resources)
            for problem in [encryption_problem(b, resources, require_kms)] if problem]


@stack_policy(
    "s3-bucket-versioned",
    "Every S3 bucket has versioning enabled.",
    policy_resources=True,
    remediation="Declare aws.s3.BucketVersioning for the bucket with versioningConfiguration.status Enabled; add a "
                "lifecycle rule expiring noncurrent versions to bound the cost.",
)
def s3_bucket_versioned(resources, config):
    return [(b.urn, problem) for b in _buckets(resources) for problem in [versioning_problem(b, resources)] if problem]


@stack_policy(
    "s3-bucket-public-access-blocked",
    "Every S3 bucket has a public access block with all four settings on.",
    policy_resources=True,
    remediation="Declare aws.s3.BucketPublicAccessBlock for the bucket with blockPublicAcls, blockPublicPolicy, "
                "ignorePublicAcls and restrictPublicBuckets set to true.",
)
def s3_bucket_public_access_blocked(resources, config):
    return [(b.urn, problem) for b in _buckets(resources)
            for problem in [public_access_problem(b, resources)] if problem]


# ---- RDS -----------------------------------------------------------------------------------------------------


@resource_policy(
    "rds-encrypted",
    "RDS instances and clusters encrypt their storage.",
    types=RDS_TYPES,
    remediation="Set storage_encrypted=True (and kms_key_id to a customer key). Encryption cannot be turned on in "
                "place: restore an encrypted copy of a snapshot.",
)
def rds_encrypted(r, config):
    if r.props.get("storageEncrypted") is not True:
        return [f"The RDS database '{r.name}' must have storageEncrypted set to true."]
    return []


@resource_policy(
    "rds-not-publicly-accessible",
    "RDS instances and Aurora cluster instances are not publicly accessible.",
    types=RDS_INSTANCE_TYPES,
    remediation="Set publicly_accessible=False and place the database in private subnets (a DB subnet group of the "
                "VPC's private subnets); reach it from the cluster's security group.",
)
def rds_not_publicly_accessible(r, config):
    if r.props.get("publiclyAccessible") is True:
        return [f"The RDS database '{r.name}' must not be publicly accessible."]
    return []


# ---- production: deletion protection -------------------------------------------------------------------------


def is_production(resources: list[PolicyResource], mode: str = "auto") -> bool:
    if mode in ("always", "never"):
        return mode == "always"
    return any(getattr(r.opts, "protect", False) for r in resources) or any(
        r.resource_type == EKS_CLUSTER and r.props.get("deletionProtection") is True for r in resources)


def rds_deletion_problems(resources: list[PolicyResource]) -> Iterator[tuple[str, str]]:
    for r in resources:
        if r.resource_type not in RDS_TYPES:
            continue
        if r.props.get("deletionProtection") is not True:
            yield r.urn, f"The RDS database '{r.name}' must have deletionProtection set to true in production."
        if r.props.get("skipFinalSnapshot") is True:
            yield r.urn, f"The RDS database '{r.name}' must take a final snapshot in production (skipFinalSnapshot)."


def data_store_protection_problems(resources: list[PolicyResource]) -> Iterator[tuple[str, str]]:
    for r in resources:
        stateful = r.resource_type in RDS_TYPES + BUCKET_TYPES or (
            r.resource_type == FSX_LUSTRE and str(r.props.get("deploymentType", "")).startswith("PERSISTENT"))
        if stateful and not getattr(r.opts, "protect", False):
            yield r.urn, (f"The data store '{r.name}' ({r.resource_type.rsplit(':', 1)[-1]}) must be protected "
                          "from deletion (protect=True) in production.")


@stack_policy(
    "rds-deletion-protection-in-prod",
    "In production stacks, RDS databases have deletion protection and take a final snapshot.",
    policy_resources=True,
    config=PRODUCTION_CONFIG,
    remediation="Set deletion_protection=True, skip_final_snapshot=False and a final_snapshot_identifier "
                "(components/mlflow.py does so when protectData is true).",
)
def rds_deletion_protection_in_prod(resources, config):
    return rds_deletion_problems(resources) if is_production(resources, config.get("production", "auto")) else []


@stack_policy(
    "data-stores-protected-in-prod",
    "In production stacks, RDS databases, S3 buckets and persistent FSx file systems are protected from deletion by "
    "Pulumi (protect).",
    policy_resources=True,
    config=PRODUCTION_CONFIG,
    remediation="Declare the resource with pulumi.ResourceOptions(protect=protect_data) (protectData is true in "
                "prod); deleting it then takes an explicit `pulumi state unprotect`.",
)
def data_stores_protected_in_prod(resources, config):
    if is_production(resources, config.get("production", "auto")):
        return data_store_protection_problems(resources)
    return []


# ---- no credentials in plain text in Kubernetes objects ------------------------------------------------------


def credential_problems(resource_type: str, props: dict[str, Any]) -> list[str]:
    """Where a Kubernetes object carries a credential in plain text (ConfigMap data, env values, args)."""
    problems = []
    if resource_type == CONFIG_MAP:
        for key, value in (props.get("data") or {}).items():
            if CREDENTIAL_NAME.search(key) and not REFERENCE_SUFFIX.search(key):
                problems.append(f"ConfigMap key '{key}' looks like a credential")
            elif isinstance(value, str) and CREDENTIAL_URI.search(value):
                problems.append(f"ConfigMap key '{key}' holds a URI with a password")
    for where, spec in pod_specs(resource_type, props):
        for c in containers(spec):
            for env in c.get("env") or []:
                name, value = env.get("name", ""), env.get("value")
                if not isinstance(value, str) or not value:
                    continue                                   # valueFrom (secretKeyRef) or empty
                if CREDENTIAL_NAME.search(name) and not REFERENCE_SUFFIX.search(name):
                    problems.append(f"{where}: container '{c.get('name')}' sets env {name} to a literal value")
                elif CREDENTIAL_URI.search(value):
                    problems.append(f"{where}: container '{c.get('name')}' env {name} holds a URI with a password")
            for field in ("command", "args"):
                if any(isinstance(a, str) and CREDENTIAL_URI.search(a) for a in c.get(field) or []):
                    problems.append(f"{where}: container '{c.get('name')}' has a URI with a password in its {field}")
    return problems


@resource_policy(
    "k8s-no-plaintext-credentials",
    "No password, token or key in plain text in ConfigMaps, container env values or arguments.",
    remediation="Put the value into a Kubernetes Secret created from a secret Output (pulumi.Output.secret or "
                "random.RandomPassword), and read it with env valueFrom.secretKeyRef, as the MLflow server reads its "
                "database URI.",
)
def k8s_no_plaintext_credentials(r, config):
    if not r.resource_type.startswith("kubernetes:"):
        return []
    return [f"Credentials must come from a Secret (secretKeyRef), not plain text: {problem}."
            for problem in credential_problems(r.resource_type, r.props)]


# ---- FSx for Lustre sits behind the Lustre security group --------------------------------------------------

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SG_RULES = ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
            "aws:ec2/securityGroupRule:SecurityGroupRule")
LUSTRE_PORT = 988


def _admits(rule: dict[str, Any], port: int) -> bool:
    low, high = rule.get("fromPort"), rule.get("toPort")
    protocol = str(rule.get("ipProtocol", rule.get("protocol", "tcp"))).lower()
    return protocol in ("tcp", "6", "-1", "all") and (protocol in ("-1", "all") or (
        isinstance(low, int) and isinstance(high, int) and low <= port <= high))


def lustre_security_groups(resources: list[PolicyResource]) -> set[str]:
    """URNs of security groups that admit the Lustre port: inline ingress, or an ingress rule attached to them."""
    found = {r.urn for r in resources if r.resource_type == SECURITY_GROUP
             and any(_admits(i, LUSTRE_PORT) for i in r.props.get("ingress") or [] if isinstance(i, dict))}
    for r in resources:
        if r.resource_type in SG_RULES and r.props.get("type", "ingress") == "ingress" and _admits(r.props, LUSTRE_PORT):
            # The rule's own group is a dependency (securityGroupId); a referenced source group may be one too,
            # so only a rule that references its own group or a CIDR marks every group it depends on.
            found |= {d.urn for d in r.dependencies or [] if d.resource_type == SECURITY_GROUP}
    return found


def fsx_problems(resources: list[PolicyResource]) -> Iterator[tuple[str, str]]:
    lustre = lustre_security_groups(resources)
    for r in resources:
        if r.resource_type != FSX_LUSTRE:
            continue
        groups = r.props.get("securityGroupIds")
        if not groups:
            yield r.urn, (f"The FSx for Lustre file system '{r.name}' sets no securityGroupIds: it gets the VPC's "
                          "default security group instead of the Lustre one.")
        elif not any(d.urn in lustre for d in r.dependencies or []):
            yield r.urn, (f"The FSx for Lustre file system '{r.name}' is not in a security group that admits Lustre "
                          f"(TCP {LUSTRE_PORT}): clients cannot mount it, or it sits in a group meant for something "
                          "else.")


@stack_policy(
    "fsx-in-lustre-security-group",
    "Every FSx for Lustre file system names its security groups, one of them admitting the Lustre port (988) by an "
    "inline rule or an ingress rule resource.",
    policy_resources=True,
    remediation="Declare file systems through the datasets component, which puts them in its Lustre security group "
                "(988 and 1018-1023 from the cluster's nodes and between file servers).",
)
def fsx_in_lustre_security_group(resources, config):
    return fsx_problems(resources)


POLICIES: list = [
    s3_bucket_encrypted,
    s3_bucket_versioned,
    s3_bucket_public_access_blocked,
    rds_encrypted,
    rds_not_publicly_accessible,
    rds_deletion_protection_in_prod,
    data_stores_protected_in_prod,
    k8s_no_plaintext_credentials,
    fsx_in_lustre_security_group,
]

"""What makes an S3 bucket of the platform private: one function, so the state, artifact and DVC buckets cannot
drift apart (ownership enforced, public access blocked, SSE-KMS with a bucket key, versioning with expiring
noncurrent versions, TLS only)."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.iam import tls_only_bucket_policy

LIFECYCLE_RULE_ID = "noncurrent-versions-and-stale-uploads"


def private_bucket_settings(name: str, bucket: aws.s3.Bucket, key_arn: pulumi.Input[str], *,
                            noncurrent_days: int, parent: pulumi.Resource) -> None:
    """Declare the companion resources of `bucket` (named `name`, children of `parent`)."""
    # Each setting is applied after the bucket exists; the lifecycle rule needs versioning on, and the policy
    # goes on after the public access block so no window leaves the bucket open to a public policy.
    after_bucket = pulumi.ResourceOptions(parent=parent, depends_on=[bucket])
    aws.s3.BucketOwnershipControls(name, bucket=bucket.id, rule=aws.s3.BucketOwnershipControlsRuleArgs(
        object_ownership="BucketOwnerEnforced"), opts=after_bucket)
    public_access = aws.s3.BucketPublicAccessBlock(
        name, bucket=bucket.id, block_public_acls=True, block_public_policy=True, ignore_public_acls=True,
        restrict_public_buckets=True, opts=after_bucket)
    aws.s3.BucketServerSideEncryptionConfiguration(name, bucket=bucket.id, rules=[
        aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
            apply_server_side_encryption_by_default=aws.s3.
            BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                sse_algorithm="aws:kms", kms_master_key_id=key_arn),
            bucket_key_enabled=True)], opts=after_bucket)
    versioning = aws.s3.BucketVersioning(name, bucket=bucket.id, opts=after_bucket,
                                         versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                                             status="Enabled"))
    aws.s3.BucketLifecycleConfiguration(name, bucket=bucket.id, rules=[
        aws.s3.BucketLifecycleConfigurationRuleArgs(
            id=LIFECYCLE_RULE_ID, status="Enabled",
            filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
            noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                noncurrent_days=noncurrent_days),
            abort_incomplete_multipart_upload=aws.s3.
            BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(days_after_initiation=7))],
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[versioning]))
    aws.s3.BucketPolicy(name, bucket=bucket.id, policy=bucket.arn.apply(tls_only_bucket_policy),
                        opts=pulumi.ResourceOptions(parent=parent, depends_on=[public_access]))

"""Where every platform stack keeps its state and how its secrets are encrypted: one S3 bucket, one KMS key."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from bootstrap.config import StateConfig
from components.buckets import private_bucket_settings
from components.iam import customer_key


@dataclass(frozen=True)
class StateBackendArgs:
    config: StateConfig
    region: str


class StateBackend(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    secrets_key_arn: pulumi.Output[str]
    backend_url: pulumi.Output[str]        # what `pulumi login` takes
    secrets_provider: str                  # what `pulumi stack init --secrets-provider` takes

    def __init__(self, name: str, args: StateBackendArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:bootstrap:StateBackend", name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)
        # Losing either loses every stack: the state, or the data key that decrypts its secrets.
        kept = pulumi.ResourceOptions(parent=self, protect=cfg.protect, retain_on_delete=cfg.protect)

        key = customer_key(f"{name}-secrets",
                           "Pulumi secrets provider (awskms://) and state bucket encryption of the ML platform stacks",
                           kept)
        aws.kms.Alias(f"{name}-secrets", name=cfg.secrets_key_alias, target_key_id=key.key_id, opts=child)

        bucket = aws.s3.Bucket(f"{name}-state", bucket=cfg.bucket_name, force_destroy=False,
                               tags={"Name": cfg.bucket_name, "purpose": "pulumi-state"}, opts=kept)
        # Every write of a checkpoint is a new version: a bad `pulumi up` or a deleted stack can be rolled back.
        private_bucket_settings(f"{name}-state", bucket, key.arn, noncurrent_days=cfg.noncurrent_version_days,
                                parent=self)

        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.secrets_key_arn = key.arn
        self.backend_url = pulumi.Output.concat("s3://", bucket.bucket, "?region=", args.region)
        self.secrets_provider = f"awskms://{cfg.secrets_key_alias}?region={args.region}"
        self.register_outputs({
            "bucket_name": self.bucket_name,
            "bucket_arn": self.bucket_arn,
            "secrets_key_arn": self.secrets_key_arn,
            "backend_url": self.backend_url,
            "secrets_provider": self.secrets_provider,
        })

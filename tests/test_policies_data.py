"""Data-protection policies: a compliant example passes, each one-property mutation is caught, the shipped stacks
pass."""

from __future__ import annotations

import dataclasses

import pytest

from policies import POLICIES, data
from tests.policy_harness import mutated, resource, violations

BUCKET = "aws:s3/bucket:Bucket"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
RDS = "aws:rds/instance:Instance"
KMS = "aws:kms/key:Key"
FSX = "aws:fsx/lustreFileSystem:LustreFileSystem"

SSE_PROPS = {"bucket": "artifacts-1", "rules": [{
    "applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms",
                                           "kmsMasterKeyId": "arn:aws:kms:us-west-2:123456789012:key/k"},
    "bucketKeyEnabled": True}]}
VERSIONING_PROPS = {"bucket": "artifacts-1", "versioningConfiguration": {"status": "Enabled"}}
PAB_PROPS = {"bucket": "artifacts-1", "blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True,
             "restrictPublicBuckets": True}
RDS_PROPS = {"engine": "postgres", "storageEncrypted": True, "publiclyAccessible": False, "deletionProtection": True,
             "skipFinalSnapshot": False, "finalSnapshotIdentifier": "db-final"}


def bucket_stack(sse=SSE_PROPS, versioning=VERSIONING_PROPS, pab=PAB_PROPS, bucket_props=None):
    found = [resource(BUCKET, bucket_props or {"bucket": "artifacts-1"}, "artifacts")]
    for typ, props in ((SSE, sse), (VERSIONING, versioning), (PAB, pab)):
        if props is not None:
            found.append(resource(typ, props, f"artifacts-{typ.rsplit(':', 1)[-1]}"))
    return found


def protected(r, flag: bool = True):
    return dataclasses.replace(r, protect=flag)


def test_policies_are_in_the_pack():
    assert all(p in POLICIES for p in data.POLICIES) and len(data.POLICIES) == 9


# ---- S3 ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [data.s3_bucket_encrypted, data.s3_bucket_versioned,
                                    data.s3_bucket_public_access_blocked])
def test_compliant_bucket_passes(policy):
    assert violations(policy, *bucket_stack()) == []


@pytest.mark.parametrize("policy, stack, expected", [
    (data.s3_bucket_encrypted, bucket_stack(sse=None), "must have a server-side encryption configuration"),
    (data.s3_bucket_versioned, bucket_stack(versioning=None), "must have versioning enabled"),
    (data.s3_bucket_versioned, bucket_stack(versioning=mutated(
        VERSIONING_PROPS, lambda p: p["versioningConfiguration"].update(status="Suspended"))), "versioning enabled"),
    (data.s3_bucket_public_access_blocked, bucket_stack(pab=None), "must block public access"),
    (data.s3_bucket_public_access_blocked, bucket_stack(pab={**PAB_PROPS, "restrictPublicBuckets": False}),
     "must block public access"),
    # A companion of another bucket does not count.
    (data.s3_bucket_encrypted, bucket_stack(sse={**SSE_PROPS, "bucket": "other-bucket"}), "encryption"),
])
def test_each_missing_bucket_setting_is_caught(policy, stack, expected):
    found = violations(policy, *stack)
    assert len(found) == 1 and expected in found[0] and "'artifacts'" in found[0]


def test_kms_can_be_required_by_config():
    aes = mutated(SSE_PROPS, lambda p: p["rules"][0]["applyServerSideEncryptionByDefault"].update(
        sseAlgorithm="AES256"))
    assert violations(data.s3_bucket_encrypted, *bucket_stack(sse=aes)) == []
    found = violations(data.s3_bucket_encrypted, *bucket_stack(sse=aes), config={"requireKms": True})
    assert found and "KMS key" in found[0]


def test_companions_match_their_bucket_by_dependency_when_its_name_is_not_known_yet():
    stack = bucket_stack(bucket_props={})          # name computed by AWS: unknown during a real preview
    bucket = stack[0]
    stack = [bucket, *(dataclasses.replace(r, inputs={**r.inputs, "bucket": "[unknown]"}, dependencies=[bucket.urn])
                       for r in stack[1:])]
    for policy in (data.s3_bucket_encrypted, data.s3_bucket_versioned, data.s3_bucket_public_access_blocked):
        assert violations(policy, *stack) == []


# ---- RDS -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy, change, expected", [
    (data.rds_encrypted, lambda p: p.update(storageEncrypted=False), "must have storageEncrypted set to true"),
    (data.rds_encrypted, lambda p: p.pop("storageEncrypted"), "must have storageEncrypted set to true"),
    (data.rds_not_publicly_accessible, lambda p: p.update(publiclyAccessible=True), "must not be publicly accessible"),
])
def test_rds_rules(policy, change, expected):
    assert violations(policy, resource(RDS, RDS_PROPS, "db")) == []
    found = violations(policy, resource(RDS, mutated(RDS_PROPS, change), "db"))
    assert len(found) == 1 and expected in found[0]


@pytest.mark.parametrize("change, expected", [
    (lambda p: p.update(deletionProtection=False), "must have deletionProtection set to true in production"),
    (lambda p: p.update(skipFinalSnapshot=True), "must take a final snapshot in production"),
])
def test_rds_deletion_protection_in_prod(change, expected):
    key = protected(resource(KMS, {"enableKeyRotation": True}, "key"))      # the stack protects data: production
    assert violations(data.rds_deletion_protection_in_prod, key, protected(resource(RDS, RDS_PROPS, "db"))) == []
    broken = protected(resource(RDS, mutated(RDS_PROPS, change), "db"))
    found = violations(data.rds_deletion_protection_in_prod, key, broken)
    assert len(found) == 1 and expected in found[0]
    # A dev stack (nothing protected) may delete its database; `production` config overrides the detection.
    dev_db = resource(RDS, mutated(RDS_PROPS, change), "db")
    assert violations(data.rds_deletion_protection_in_prod, dev_db) == []
    assert violations(data.rds_deletion_protection_in_prod, dev_db, config={"production": "always"})
    assert violations(data.rds_deletion_protection_in_prod, key, broken, config={"production": "never"}) == []


def test_data_stores_are_protected_in_prod():
    key = protected(resource(KMS, {}, "key"))
    stores = [protected(resource(RDS, RDS_PROPS, "db")), protected(resource(BUCKET, {"bucket": "b"}, "bucket")),
              protected(resource(FSX, {"deploymentType": "PERSISTENT_2"}, "fsx")),
              resource(FSX, {"deploymentType": "SCRATCH_2"}, "scratch")]          # re-importable: need not be
    assert violations(data.data_stores_protected_in_prod, key, *stores) == []
    for i in range(3):
        unprotected = [protected(s, False) if j == i else s for j, s in enumerate(stores)]
        found = violations(data.data_stores_protected_in_prod, key, *unprotected)
        assert len(found) == 1 and f"'{stores[i].name}'" in found[0] and "protect" in found[0]


# ---- credentials in Kubernetes objects -----------------------------------------------------------------------

DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app", "namespace": "t"},
              "spec": {"template": {"spec": {"containers": [{
                  "name": "app", "image": "app:1.0", "args": ["--port", "5000"],
                  "env": [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                          {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/token"},
                          {"name": "TRACKING_URI", "value": "http://mlflow.mlflow.svc.cluster.local"}]}]}}}}
CONFIG_MAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "t"},
              "data": {"log-level": "info", "endpoint": "https://api.example.com/v1"}}
TYPES = {"Deployment": "kubernetes:apps/v1:Deployment", "ConfigMap": "kubernetes:core/v1:ConfigMap"}


def _container(p):
    return p["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("kind, props, change, expected", [
    ("Deployment", DEPLOYMENT, lambda p: _container(p)["env"].append({"name": "API_TOKEN", "value": "abc123"}),
     "sets env API_TOKEN to a literal value"),
    ("Deployment", DEPLOYMENT, lambda p: _container(p)["env"].append(
        {"name": "DATABASE_URL", "value": "postgresql://mlflow:hunter2@db:5432/mlflow"}),
     "env DATABASE_URL holds a URI with a password"),
    ("Deployment", DEPLOYMENT, lambda p: _container(p)["args"].append("--backend-store-uri=mysql://u:p@db/x"),
     "a URI with a password in its args"),
    ("ConfigMap", CONFIG_MAP, lambda p: p["data"].update({"db-password": "hunter2"}),
     "ConfigMap key 'db-password' looks like a credential"),
    ("ConfigMap", CONFIG_MAP, lambda p: p["data"].update({"url": "redis://default:hunter2@cache:6379"}),
     "ConfigMap key 'url' holds a URI with a password"),
])
def test_plaintext_credentials_in_kubernetes_objects_are_caught(kind, props, change, expected):
    policy = data.k8s_no_plaintext_credentials
    assert violations(policy, resource(TYPES[kind], props)) == []
    found = violations(policy, resource(TYPES[kind], mutated(props, change)))
    assert len(found) == 1 and expected in found[0] and found[0].startswith("Credentials must come from a Secret")


# ---- the shipped stacks --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_shipped_stacks_pass_the_data_policies(stack, request):
    from preview.check import evaluate

    rendered = request.getfixturevalue(stack)
    assert [v.message for v in evaluate(data.POLICIES, rendered.resources)] == []


def test_prod_render_is_production_and_an_unprotected_database_is_caught(prod):
    from preview.check import evaluate

    resources = [dataclasses.replace(r, protect=False, inputs={**r.inputs, "deletionProtection": False})
                 if r.type == RDS else r for r in prod.resources]
    messages = [v.message for v in evaluate([data.rds_deletion_protection_in_prod, data.data_stores_protected_in_prod],
                                            resources)]
    assert len(messages) == 2 and all("mlflow-database" in m for m in messages)

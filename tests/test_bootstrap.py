"""The bootstrap program (bootstrap/): state bucket, secrets key, GitHub OIDC provider and CI roles, rendered offline
under the same engine and policy pack as the platform; each CI role trusts exactly the workflows' OIDC subjects."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from bootstrap import ci
from bootstrap.config import PROJECT
from policies import POLICIES
from preview import check, engine
from tests.conftest import PROJECT_DIR, Rendered
from tests.iam_eval import allows, github_claims

BOOTSTRAP = PROJECT_DIR / "bootstrap"
REPO = "acme/ml-platform"
WORKFLOWS = PROJECT_DIR / ".github" / "workflows"

CONFIG = {
    "aws:region": "eu-west-1",
    f"{PROJECT}:github": {"repository": REPO, "deployEnvironments": ["dev", "production"]},
    f"{PROJECT}:state": {"bucketName": "acme-test-pulumi-state"},
}


def render(config: dict) -> Rendered:
    wire = {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    return Rendered(engine.run_program("test", wire, project_dir=BOOTSTRAP, project=PROJECT))


@pytest.fixture(scope="module")
def boot() -> Rendered:
    return render(CONFIG)


def role(boot: Rendered, kind: str) -> tuple[dict, str]:
    r = boot.one("aws:iam/role:Role", f"github-ci-{kind}")
    provider = boot.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert provider.inputs["url"] == "https://token.actions.githubusercontent.com"
    assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    return json.loads(r.inputs["assumeRolePolicy"]), boot.run.outputs["githubOidcProviderArn"]


def accepted(policy: dict, provider: str, subjects: list[str]) -> set[str]:
    return {s for s in subjects if allows(policy, provider, github_claims(s))}


# Subjects a token can carry, from this repository, a fork, another repository and lookalikes.
CANDIDATES = [
    f"repo:{REPO}:pull_request",
    f"repo:{REPO}:ref:refs/heads/main",
    f"repo:{REPO}:ref:refs/heads/feature",
    f"repo:{REPO}:ref:refs/tags/v1",
    f"repo:{REPO}:environment:production",
    f"repo:{REPO}:environment:dev",
    f"repo:{REPO}:environment:staging",
    f"repo:{REPO}:environment:production-copy",
    f"repo:{REPO}:pull_request_target",
    "repo:forker/ml-platform:pull_request",               # a fork's own workflows
    "repo:forker/ml-platform:environment:production",
    "repo:forker/ml-platform:ref:refs/heads/main",
    "repo:acme/ml-platform-fork:pull_request",           # another repository of the same owner
    "repo:acme/ml-platform-fork:environment:production",
    "repo:acme/other:ref:refs/heads/main",
]


def test_preview_role_trusts_exactly_pull_requests_of_this_repository(boot):
    policy, provider = role(boot, "preview")
    assert accepted(policy, provider, CANDIDATES) == {f"repo:{REPO}:pull_request"}
    assert not allows(policy, provider, github_claims(f"repo:{REPO}:pull_request", aud="https://github.com/acme"))


def test_deploy_role_trusts_exactly_the_deploy_environments_of_this_repository(boot):
    policy, provider = role(boot, "deploy")
    assert accepted(policy, provider, CANDIDATES) == {f"repo:{REPO}:environment:production",
                                                       f"repo:{REPO}:environment:dev"}
    # A job on main without the environment would skip its required reviewers: refused.
    assert not allows(policy, provider, github_claims(f"repo:{REPO}:ref:refs/heads/main"))


def test_a_wildcard_subject_would_be_caught():
    # Mutation: the trust broadened to the whole repository accepts a feature branch and pull requests.
    provider = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    broad = ci.trust_policy(provider, [])
    cond = broad["Statement"][0]["Condition"]
    cond["StringLike"] = {"token.actions.githubusercontent.com:sub": f"repo:{REPO}:*"}
    del cond["StringEquals"]["token.actions.githubusercontent.com:sub"]
    assert accepted(broad, provider, CANDIDATES) != {f"repo:{REPO}:environment:production"}
    assert f"repo:{REPO}:ref:refs/heads/feature" in accepted(broad, provider, CANDIDATES)


def _workflow(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def _jobs_assuming(doc: dict, variable: str) -> list[dict]:
    return [job for job in doc["jobs"].values() if any(
        variable in str((s.get("with") or {}).get("role-to-assume", "")) for s in job.get("steps", []))]


def _subject(repository: str, doc: dict, job: dict) -> str:
    """The `sub` GitHub puts in a job's token (default subject template)."""
    if job.get("environment"):
        return f"repo:{repository}:environment:{job['environment']}"
    events = doc["on"] if isinstance(doc["on"], dict) else {doc["on"]: None}
    if set(events) == {"pull_request"}:
        return f"repo:{repository}:pull_request"
    branches = events["push"]["branches"]
    assert len(branches) == 1
    return f"repo:{repository}:ref:refs/heads/{branches[0]}"


def test_the_roles_trust_exactly_the_subjects_the_workflows_jobs_present():
    """Read the workflows as GitHub would mint their tokens: every job that assumes a role must be trusted, and the
    role must trust nothing else (the shipped bootstrap stack's environments match deploy.yml's jobs)."""
    stack = yaml.safe_load((BOOTSTRAP / "Pulumi.main.yaml").read_text())["config"]
    repository = stack[f"{PROJECT}:github"]["repository"]
    for variable, name, subjects in (
        ("AWS_PREVIEW_ROLE_ARN", "preview.yml", ci.subjects_preview(repository)),
        ("AWS_DEPLOY_ROLE_ARN", "deploy.yml",
         ci.subjects_deploy(repository, stack[f"{PROJECT}:github"]["deployEnvironments"])),
    ):
        doc = _workflow(name)
        jobs = _jobs_assuming(doc, variable)
        assert jobs, f"{name} assumes {variable}"
        assert {_subject(repository, doc, job) for job in jobs} == set(subjects), name


def test_preview_permissions_are_reads_plus_the_state_locks(boot):
    policy = json.loads(boot.one("aws:iam/rolePolicy:RolePolicy", "github-ci-preview").inputs["policy"])
    bucket = boot.run.outputs["stateBucket"]
    for s in policy["Statement"]:
        assert s["Effect"] == "Allow"
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        assert not any(a.endswith(":*") or a == "*" for a in actions), s
        writes = [a for a in actions if a.split(":")[1].startswith(("Put", "Delete", "Create", "Update"))]
        if writes:
            assert s["Resource"] == f"arn:aws:s3:::{bucket}/.pulumi/locks/*", s


def test_preview_permissions_cover_every_data_source_the_platform_calls(dev, prod):
    called = set(dev.run.invokes) | set(prod.run.invokes)
    assert called, "the engine records invokes"
    assert called <= set(ci.PLAN_READS), sorted(called - set(ci.PLAN_READS))


def test_deploy_permissions_cover_every_service_the_platform_declares(dev, prod):
    modules = {r.type.split(":")[1].split("/")[0] for run in (dev, prod) for r in run.resources
               if r.custom and r.type.startswith("aws:")}
    assert modules <= set(ci.DEPLOY_SERVICES), sorted(modules - set(ci.DEPLOY_SERVICES))


def test_deploy_cannot_touch_what_the_bootstrap_owns(boot):
    policy = json.loads(boot.one("aws:iam/rolePolicy:RolePolicy", "github-ci-deploy").inputs["policy"])
    denies = {s["Sid"]: s for s in policy["Statement"] if s["Effect"] == "Deny"}
    outputs = boot.run.outputs
    assert set(denies["KeepBootstrapIdentities"]["Resource"]) == {
        outputs["previewRoleArn"], outputs["deployRoleArn"], outputs["githubOidcProviderArn"]}
    assert denies["KeepSecretsKey"]["Resource"] == outputs["secretsKeyArn"]
    assert "s3:PutBucketPolicy" in denies["KeepStateBucketProtections"]["Action"]


def test_state_bucket_is_versioned_kms_encrypted_private_tls_only_and_protected(boot):
    bucket = boot.one("aws:s3/bucket:Bucket")
    key = boot.one("aws:kms/key:Key")
    assert bucket.protect and key.protect and key.inputs["enableKeyRotation"] is True
    assert boot.one("aws:s3/bucketVersioning:BucketVersioning").inputs[
        "versioningConfiguration"]["status"] == "Enabled"
    sse = boot.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    rule = sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]
    assert rule == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": boot.run.outputs["secretsKeyArn"]}
    block = boot.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                          "restrictPublicBuckets"))
    (statement,) = json.loads(boot.one("aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])["Statement"]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert boot.run.outputs["secretsProvider"] == "awskms://alias/mlops-pulumi-secrets?region=eu-west-1"
    assert boot.run.outputs["stateBackendUrl"] == "s3://acme-test-pulumi-state?region=eu-west-1"


def test_the_policy_pack_passes_the_bootstrap_and_catches_a_missing_protection(boot):
    assert check.evaluate(POLICIES, boot.resources) == []
    without = [r for r in boot.resources if r.type != "aws:s3/bucketVersioning:BucketVersioning"]
    assert [v.policy for v in check.evaluate(POLICIES, without)] == ["s3-bucket-versioned"]


def test_an_existing_oidc_provider_is_reused_not_declared():
    arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    boot = render({**CONFIG, f"{PROJECT}:github": {"repository": REPO, "oidcProviderArn": arn}})
    assert boot.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider") == []
    assert json.loads(boot.one("aws:iam/role:Role", "github-ci-preview").inputs["assumeRolePolicy"])[
        "Statement"][0]["Principal"]["Federated"] == arn


def test_bad_config_is_a_clear_error_before_any_resource(tmp_path):
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text(yaml.safe_dump({"config": {
        "aws:region": "us-east-1",
        f"{PROJECT}:github": {"repository": "not a repo", "deployEnvironments": ["prod uction"]},
        f"{PROJECT}:state": {"bucketName": "Bad_Bucket"}}}))
    result = subprocess.run([sys.executable, "-m", "preview", "render", "bad", "--project-dir", "bootstrap",
                             "--config", str(bad), "--out", str(tmp_path / "out")],
                            cwd=PROJECT_DIR, capture_output=True, text=True)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for path in ("github.repository: must be a GitHub repository", "github.deployEnvironments[0]: must be a GitHub "
                 "environment", "state.bucketName: must be an S3 bucket name"):
        assert f"error: Pulumi.bad.yaml:" in result.stderr and path in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_the_shipped_bootstrap_renders_with_no_violations(tmp_path):
    result = subprocess.run([sys.executable, "-m", "preview", "render", "bootstrap", "--out", str(tmp_path)],
                            cwd=PROJECT_DIR, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "policy check: 0 violations" in result.stdout
    assert json.loads((tmp_path / "plan.json").read_text())["outputs"]["githubVariables"]

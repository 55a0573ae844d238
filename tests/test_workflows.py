"""The GitHub workflows are valid and do what the README promises (OIDC, policy pack, gated prod)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import PROJECT_DIR

WORKFLOWS = sorted((PROJECT_DIR / ".github" / "workflows").glob("*.yml"))


def load(name: str) -> dict:
    # PyYAML reads the `on:` key as True.
    doc = yaml.safe_load((PROJECT_DIR / ".github" / "workflows" / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def test_workflows_validate_against_the_github_workflow_schema():
    assert WORKFLOWS
    result = subprocess.run([str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema",
                             "vendor.github-workflows", *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    stepz: []\n")
    result = subprocess.run([str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema",
                             "vendor.github-workflows", str(broken)], capture_output=True, text=True)
    assert result.returncode != 0


def steps(job: dict, uses_prefix: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").startswith(uses_prefix)]


def test_pull_request_preview_runs_both_stacks_with_the_policy_pack_and_comments():
    wf = load("preview.yml")
    job = wf["jobs"]["preview"]
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    (pulumi,) = steps(job, "pulumi/actions@")
    assert pulumi["with"]["command"] == "preview" and pulumi["with"]["policyPacks"] == "policies"
    assert pulumi["with"]["comment-on-pr"] is True and pulumi["with"]["edit-pr-comment"] is True
    assert wf["permissions"]["id-token"] == "write"


def test_credentials_come_from_oidc_never_stored_keys():
    for path in WORKFLOWS:
        text = path.read_text()
        assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text, path.name
        assert "PULUMI_ACCESS_TOKEN" not in text, path.name
    for name in ("preview.yml", "deploy.yml"):
        for job_name, job in load(name)["jobs"].items():
            for aws in steps(job, "aws-actions/configure-aws-credentials@"):
                assert "role-to-assume" in aws["with"], (name, job_name)


def test_prod_is_deployed_after_dev_behind_the_protected_environment():
    jobs = load("deploy.yml")["jobs"]
    assert jobs["up-prod"]["needs"] == "up-dev" and jobs["up-prod"]["environment"] == "production"
    assert steps(jobs["up-prod"], "pulumi/actions@")[0]["with"]["stack-name"].endswith("/prod")
    assert steps(jobs["up-dev"], "pulumi/actions@")[0]["with"]["stack-name"].endswith("/dev")


def test_fork_pull_requests_get_tests_and_offline_diff_without_secrets():
    wf = load("offline.yml")
    text = (PROJECT_DIR / ".github" / "workflows" / "offline.yml").read_text()
    assert "secrets." not in text and wf["permissions"] == {"contents": "read"}
    runs = " ".join(s.get("run", "") for s in wf["jobs"]["offline"]["steps"])
    assert "make test" in runs and "python -m preview diff" in runs

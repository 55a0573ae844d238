"""The GitHub workflows are valid and do what the README promises (OIDC, policy pack, gated prod)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
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


def check_workflow(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema",
                           "vendor.github-workflows", str(path)], capture_output=True, text=True)


def test_schema_check_rejects_a_broken_workflow_for_its_mistake(tmp_path):
    """The misspelt key is what is reported (a non-zero exit alone would also come from a wrong schema name or
    an unreadable file), and the same workflow spelt right passes."""
    good, broken = tmp_path / "good.yml", tmp_path / "broken.yml"
    good.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps: [{run: make test}]\n")
    broken.write_text(good.read_text().replace("steps:", "stepz:"))
    assert check_workflow(good).returncode == 0
    result = check_workflow(broken)
    assert result.returncode == 1
    assert "broken.yml::$.jobs.x" in result.stdout and "'stepz' was unexpected" in result.stdout, result.stdout


def steps(job: dict, uses_prefix: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").startswith(uses_prefix)]


def test_pull_request_preview_runs_both_stacks_with_the_policy_pack_and_comments():
    wf = load("preview.yml")
    job = wf["jobs"]["preview"]
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    (pulumi,) = steps(job, "pulumi/actions@")
    assert pulumi["with"]["command"] == "preview" and pulumi["with"]["policyPacks"] == "policies"
    assert pulumi["with"]["comment-on-pr"] is True and pulumi["with"]["edit-pr-comment"] is True
    assert job["permissions"]["id-token"] == "write" and "environment" not in job   # sub: ...:pull_request


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
    assert steps(jobs["up-prod"], "pulumi/actions@")[0]["with"]["stack-name"] == "prod"
    assert steps(jobs["up-dev"], "pulumi/actions@")[0]["with"]["stack-name"] == "dev"


def test_every_job_that_runs_the_tests_fetches_the_test_data_first():
    """Under CI=true missing upstream test data fails the suite: `make test-data` (tools/get_test_data.py) must run
    before `make test` in the same job, with the mirror of the files no upstream URL serves."""
    jobs = [(path.name, name, job) for path in WORKFLOWS for name, job in load(path.name)["jobs"].items()
            if any(s.get("run", "").strip() == "make test" for s in job.get("steps", []))]
    assert {name for name, _, _ in jobs} == {"offline.yml", "deploy.yml"}
    for name, job_name, job in jobs:
        runs = [s.get("run", "").strip() for s in job["steps"]]
        assert "make test-data" in runs[:runs.index("make test")], (name, job_name)
        fetch = job["steps"][runs.index("make test-data")]
        assert fetch["env"]["MLOPS_TEST_DATA_MIRROR"] == "${{ vars.MLOPS_TEST_DATA_MIRROR }}", (name, job_name)
    ci = (PROJECT_DIR / ".ci" / "run").read_text()
    assert ci.index("make test-data") < ci.index("make test ")


def test_fork_pull_requests_get_tests_and_offline_diff_without_secrets():
    wf = load("offline.yml")
    text = (PROJECT_DIR / ".github" / "workflows" / "offline.yml").read_text()
    assert "secrets." not in text and wf["permissions"] == {"contents": "read"}
    runs = " ".join(s.get("run", "") for s in wf["jobs"]["offline"]["steps"])
    assert "make test" in runs and "python -m preview diff" in runs


# ---------------------------------------------------------------------------------------------------
# Supply chain of the workflows themselves (issue 18, item 8)

USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<comment>\s+#.*)?$")
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
TAG_COMMENT = re.compile(r"^\s+#\s*v\d+(\.\d+){1,2}\b")


def unpinned(text: str) -> list[str]:
    """`uses:` lines not pinned to a full commit SHA with its release tag (vX.Y[.Z]) in a comment."""
    bad = []
    for line in text.splitlines():
        m = USES.match(line)
        if not m or m["ref"].startswith("./"):          # local actions and reusable workflows are this commit's
            continue
        if not PINNED.match(m["ref"]) or not TAG_COMMENT.match(m["comment"] or ""):
            bad.append(line.strip())
    return bad


def test_every_action_is_pinned_by_commit_sha_with_its_tag():
    uses = [line for path in WORKFLOWS for line in path.read_text().splitlines() if USES.match(line)]
    assert len(uses) > 10
    problems = {path.name: unpinned(path.read_text()) for path in WORKFLOWS}
    assert not any(problems.values()), problems


@pytest.mark.parametrize("line", [
    "      - uses: actions/checkout@v4",
    "      - uses: actions/checkout@11bd719  # v4.2.2",
    "      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683",
    "        uses: actions/checkout@main  # v4.2.2",
])
def test_the_pin_check_catches_a_tag_a_short_sha_or_a_missing_tag_comment(line):
    assert unpinned(line) == [line.strip()]


def test_the_pulumi_cli_is_pinned_to_the_sdk_version():
    sdk = re.search(r"^pulumi==(\S+)", (PROJECT_DIR / "requirements.txt").read_text(), re.M)[1]
    for name in ("preview.yml", "deploy.yml"):
        wf = load(name)
        assert wf["env"]["PULUMI_VERSION"] == sdk, name
        for job in wf["jobs"].values():
            for step in steps(job, "pulumi/actions@"):
                assert step["with"]["pulumi-version"] == "${{ env.PULUMI_VERSION }}", name


def test_real_previews_and_deploys_pass_the_policy_pack_and_its_per_stack_config():
    for name in ("preview.yml", "deploy.yml"):
        for job in load(name)["jobs"].values():
            for step in steps(job, "pulumi/actions@"):
                stack = step["with"]["stack-name"].rsplit("/", 1)[-1].replace("${{ matrix.stack }}", "STACK")
                assert step["with"]["policyPacks"] == "policies"
                assert step["with"]["policyPackConfigs"] in (f"policies/config.{stack}.json",
                                                             "policies/config.${{ matrix.stack }}.json")
                assert step["with"]["cloud-url"].startswith("s3://${{ vars.PULUMI_STATE_BUCKET }}")


def test_only_jobs_that_assume_a_role_get_an_oidc_token():
    for path in WORKFLOWS:
        wf = load(path.name)
        assert (wf.get("permissions") or {}).get("id-token") != "write" or path.name == "team-image.yml", path.name
        for job_name, job in wf["jobs"].items():
            if (job.get("permissions") or {}).get("id-token") == "write":
                assert steps(job, "aws-actions/configure-aws-credentials@"), (path.name, job_name)


def test_dependabot_updates_actions_and_pip():
    doc = yaml.safe_load((PROJECT_DIR / ".github" / "dependabot.yml").read_text())
    ecosystems = {u["package-ecosystem"]: u for u in doc["updates"]}
    assert set(ecosystems) == {"github-actions", "pip"}
    pip_dirs = ecosystems["pip"]["directories"]
    for req in [*PROJECT_DIR.glob("requirements*.txt"), *PROJECT_DIR.glob("*/requirements*.txt")]:
        assert "/" + str(req.parent.relative_to(PROJECT_DIR)).replace(".", "") in pip_dirs, req
    result = subprocess.run([str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema",
                             "vendor.dependabot", str(PROJECT_DIR / ".github" / "dependabot.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_fork_comment_takes_where_and_what_from_the_event_never_the_artifact():
    wf = load("offline-comment.yml")
    text = (PROJECT_DIR / ".github" / "workflows" / "offline-comment.yml").read_text()
    job = wf["jobs"]["comment"]
    assert "workflow_run.event == 'pull_request'" in job["if"]
    assert "workflow_run.repository.full_name == github.repository" in job["if"]
    find = next(s for s in job["steps"] if s.get("id") == "pr")
    assert find["env"]["HEAD_SHA"] == "${{ github.event.workflow_run.head_sha }}"
    assert "select(.head.sha == $sha)" in find["run"] and '.head.sha == \\"$HEAD_SHA\\"' in find["run"]
    # The artifact's files are read by the renderer only; no shell step reads a number or Markdown from it.
    assert "pr-number" not in text and "body.md" not in text
    render = next(s for s in job["steps"] if "preview.comment" in s.get("run", ""))
    assert render["env"]["HEAD_SHA"] == "${{ github.event.workflow_run.head_sha }}"
    post = job["steps"][-1]
    assert post["env"]["PR"] == "${{ steps.pr.outputs.number }}"
    offline = load("offline.yml")["jobs"]["offline"]
    diff_step = next(s for s in offline["steps"] if "preview diff" in s.get("run", ""))
    assert "--format json" in diff_step["run"] and "GITHUB_STEP_SUMMARY" in diff_step["run"]
    # Expressions from the event reach the shell through env only (no ${{ }} inside run scripts).
    for path in (PROJECT_DIR / ".github" / "workflows" / n for n in ("offline.yml", "offline-comment.yml")):
        for job in load(path.name)["jobs"].values():
            for step in job["steps"]:
                assert "${{" not in step.get("run", ""), (path.name, step.get("name"))

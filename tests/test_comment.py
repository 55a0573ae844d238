"""`preview.comment`: the fork-safe PR comment is rendered from checked counts, never from the artifact's text."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from preview import comment, cost, diff
from tests.conftest import PROJECT_DIR

SHA = "a" * 40
RUN = "https://github.com/acme/ml-platform/actions/runs/123"


def counts(stack: str) -> dict:
    d = diff.PlanDiff(added=[diff.ResourceDiff("u1", "t", "n", "c")], removed=[], changed=[])
    return diff.counts(stack, d, [], cost.Cost(), cost.Cost())


@pytest.fixture
def artifact(tmp_path):
    (tmp_path / "head-sha").write_text(SHA + "\n")
    for stack in comment.STACKS:
        (tmp_path / f"{stack}.json").write_text(json.dumps(counts(stack)))
    return tmp_path


def run(artifact, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "preview.comment", str(artifact), "--run-url", RUN,
                           "--head-sha", SHA, *extra], cwd=PROJECT_DIR, capture_output=True, text=True)


def test_renders_a_table_of_counts_with_the_marker(artifact):
    result = run(artifact)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(comment.MARKER + "\n")
    assert "| `dev` | 0 | 0 | 1 | 0 | 0 | 0 | $0.00 (+$0.00) | $0.00 (+$0.00) |" in result.stdout
    assert RUN in result.stdout and "[!CAUTION]" not in result.stdout


def test_replacements_and_deletions_come_first_with_a_caution(artifact):
    doc = counts("prod")
    doc["replaced"], doc["removed"] = 3, 1
    (artifact / "prod.json").write_text(json.dumps(doc))
    result = run(artifact)
    assert "| `prod` | 3 | 1 | 1 | 0 |" in result.stdout
    assert "> Resources are replaced or deleted in `prod`" in result.stdout


@pytest.mark.parametrize("field,value", [
    ("added", "1 | [click](https://evil.example)"),   # Markdown where a count belongs
    ("added", -1),
    ("added", True),                                  # a bool is not a count
    ("added", 1.5),
    ("replaced", "3"),
    ("stack", "prod"),                                # another stack's file
])
def test_refuses_anything_but_counts(artifact, field, value):
    doc = counts("dev")
    doc[field] = value
    (artifact / "dev.json").write_text(json.dumps(doc))
    result = run(artifact)
    assert result.returncode == 1 and result.stdout == "" and "refusing the artifact" in result.stderr


def test_refuses_an_artifact_from_another_commit(artifact):
    (artifact / "head-sha").write_text("b" * 40)
    result = run(artifact)
    assert result.returncode == 1 and "not the run's head" in result.stderr


def test_refuses_a_cost_that_is_not_an_amount(artifact):
    doc = counts("prod")
    doc["cost"]["burnHourly"] = [0, "NaN"]
    (artifact / "prod.json").write_text(json.dumps(doc))
    assert run(artifact).returncode == 1


def test_checks_the_event_values_too(artifact):
    result = subprocess.run([sys.executable, "-m", "preview.comment", str(artifact), "--run-url",
                             "https://evil.example/x", "--head-sha", SHA], cwd=PROJECT_DIR, capture_output=True,
                            text=True)
    assert result.returncode == 2

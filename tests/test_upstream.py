"""Missing upstream test data fails under CI=true with one clear line, and skips elsewhere (tests/upstream.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests import upstream
from tests.conftest import PROJECT_DIR

# The cheapest test that needs the schemas: it only validates three hand-written objects.
NEEDS_SCHEMAS = "tests/test_schemas.py::test_validation_rejects_unknown_fields_and_bad_values"


def run_without_data(tmp_path, ci: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI": ci, "MLOPS_SCHEMAS_DIR": str(tmp_path), "MLOPS_CHARTS_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:xdist",
                           NEEDS_SCHEMAS], cwd=PROJECT_DIR, env=env, capture_output=True, text=True)


def test_missing_data_fails_under_ci_with_how_to_get_it(tmp_path):
    result = run_without_data(tmp_path, "true")
    assert result.returncode == 1, result.stdout
    assert "1 error" in result.stdout  # the fixture that locates the data fails
    assert f"upstream schemas not found in {tmp_path}" in result.stdout
    assert "MLOPS_SCHEMAS_DIR" in result.stdout and "CI=true" in result.stdout


def test_missing_data_skips_elsewhere_with_how_to_get_it(tmp_path):
    result = run_without_data(tmp_path, "")
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout and f"upstream schemas not found in {tmp_path}" in result.stdout


def test_a_set_variable_is_the_only_place_looked_in(monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_SCHEMAS_DIR", str(tmp_path))
    assert upstream.candidates("schemas") == [tmp_path] and upstream.locate("schemas") is None
    (tmp_path / "crds").mkdir()
    assert upstream.locate("schemas") == tmp_path

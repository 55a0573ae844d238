"""Where the suite finds upstream test data (CRD/values schemas, packed charts) and external tools.

One mechanism, in this order:
1. an environment variable (`MLOPS_SCHEMAS_DIR`, `MLOPS_CHARTS_DIR`; tools: `MLOPS_HELM`, `MLOPS_PROMTOOL`, ...),
   which when set is the only place looked in;
2. `../shared/<kind>` beside the checkout (how this project's CI runs);
3. `.cache/test-data/<kind>` inside the checkout, which `make test-data` fills from pinned upstream URLs.
Missing data or tools fail the test under `CI=true` and skip it elsewhere, with one line saying how to get them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
CACHE_DIR = PROJECT_DIR / ".cache"
DATA_KINDS = {"schemas": ("MLOPS_SCHEMAS_DIR", "crds"), "charts": ("MLOPS_CHARTS_DIR", "SOURCES.md")}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(message: str) -> None:
    """Fail under CI (a CI run without its test data proves nothing), skip elsewhere."""
    if in_ci():
        pytest.fail(f"{message} (CI=true: missing test data or tools are failures)")
    pytest.skip(message)


def candidates(kind: str) -> list[Path]:
    """The folders looked in. A set environment variable is the only one: a wrong path is then reported, not
    quietly replaced by another copy of the data."""
    env, _ = DATA_KINDS[kind]
    if os.environ.get(env):
        return [Path(os.environ[env])]
    return [PROJECT_DIR.parent / "shared" / kind, CACHE_DIR / "test-data" / kind]


def locate(kind: str) -> Path | None:
    """The first candidate folder that holds the kind's marker file or folder, else None."""
    _, marker = DATA_KINDS[kind]
    return next((p for p in candidates(kind) if (p / marker).exists()), None)


def data_dir(kind: str) -> Path:
    path = locate(kind)
    if path is None:
        env, _ = DATA_KINDS[kind]
        missing(f"upstream {kind} not found in {', '.join(map(str, candidates(kind)))}: "
                f"run `make test-data` (internet; converted files also need MLOPS_TEST_DATA_MIRROR, "
                f"docs/testing.md) or set {env}")
    return path


def tool(name: str, how: str) -> str:
    """Path of an external tool: `MLOPS_<NAME>`, else `.cache/tools/<name>`, else a venv of its own beside the project's
    (`.venv-<name>/bin/<name>`, for Python tools whose pins clash with the main venv), else PATH; `how` says how to
    install it."""
    env = f"MLOPS_{name.upper()}"
    own_venv = PROJECT_DIR / f".venv-{name}" / "bin" / name
    for path in (os.environ.get(env), CACHE_DIR / "tools" / name, own_venv, shutil.which(name)):
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return str(path)
    missing(f"{name} not found (set {env}, or {how})")
    raise AssertionError("unreachable")


def clients_python() -> str:
    """The Python of the real-clients venv (JupyterHub, KubeSpawner, MLflow at the versions the platform's images
    run): `MLOPS_CLIENTS_PYTHON`, else `.venv-clients/bin/python`, which `make clients` builds."""
    for path in (os.environ.get("MLOPS_CLIENTS_PYTHON"), PROJECT_DIR / ".venv-clients" / "bin" / "python"):
        if path and Path(path).exists():
            return str(path)
    missing("the real-clients venv is missing (run `make clients`, or set MLOPS_CLIENTS_PYTHON)")
    raise AssertionError("unreachable")

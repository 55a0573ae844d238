"""One data file for versions: components/data/versions.yaml pins every chart, manifest release and image, and no
source module restates a version literal."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from components import catalog
from components.images import pin_problem
from tests.conftest import PROJECT_DIR

# A version as modules used to pin it: 1.14.1, v26.7.0, knative-v1.21.1, or an image reference with a tag.
VERSION_LITERAL = re.compile(r"(^|[-:@/])v?\d+\.\d+(\.\d+)?([-.][A-Za-z0-9]+)*$|^[a-z0-9.-]+/[\w./-]+:[\w.-]+$")


IP_ADDRESS = re.compile(r"\d+\.\d+\.\d+\.\d+")


def version_literals(path: Path) -> list[str]:
    """String constants of a module that look like pinned versions (docstrings and comments are prose)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docstrings and VERSION_LITERAL.search(n.value) and not IP_ADDRESS.fullmatch(n.value)]


def test_no_module_pins_a_version_of_its_own():
    found = {str(p.relative_to(PROJECT_DIR)): version_literals(p)
             for p in sorted((PROJECT_DIR / "components").rglob("*.py"))}
    assert {m: v for m, v in found.items() if v} == {}


@pytest.mark.parametrize("literal", ["1.14.1", "v26.7.0", "knative-v1.21.1", "ghcr.io/mlflow/mlflow:v3.9.0-full"])
def test_the_check_sees_a_version_literal(tmp_path, literal):
    """Mutation: each way a version used to be pinned in a module is found."""
    module = tmp_path / "m.py"
    module.write_text(f'"""Doc 1.2.3."""\nVERSION = "{literal}"\n')
    assert version_literals(module) == [literal]


def test_every_image_and_chart_is_pinned():
    data = catalog.versions()
    assert {name: ref for name, ref in data["images"].items() if pin_problem(ref)} == {}
    for name, chart in data["charts"].items():
        assert chart["version"] and chart["version"] != "latest", name
    assert all("latest" not in str(v) for v in [*data["manifests"].values(), *data["amis"].values()])

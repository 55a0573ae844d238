"""The layering the code relies on, checked from the source with ast: the policy pack and the offline preview do
not import each other (what both need lives in components/planning/), and source modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import PROJECT_DIR

MAX_LINES = 400          # "modules under ~400 lines"; data files and tests are not counted
# Allowed above the line until split: module -> its size when the check was written (never to grow).
OVERSIZED: dict[str, int] = {}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-local imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def forbidden_imports(package: str, other: str) -> list[str]:
    return [f"{path.relative_to(PROJECT_DIR)} imports {name}"
            for path in sorted((PROJECT_DIR / package).rglob("*.py"))
            for name in sorted(imported_modules(path)) if name == other or name.startswith(other + ".")]


@pytest.mark.parametrize("package, other", [("policies", "preview"), ("preview", "policies")])
def test_no_import_between_the_policy_pack_and_the_preview(package, other):
    assert forbidden_imports(package, other) == []


def test_the_import_check_sees_an_import(tmp_path):
    """Mutation: a function-local import, as policies/gpu_workloads.py once had, is found."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from preview import cost\n    return cost\n")
    assert "preview" in imported_modules(module) and "preview.cost" in imported_modules(module)


def source_modules() -> list[Path]:
    roots = [PROJECT_DIR / d for d in ("components", "policies", "preview")] + [PROJECT_DIR / "__main__.py"]
    return sorted(p for r in roots for p in ([r] if r.is_file() else r.rglob("*.py")))


def test_source_modules_stay_small():
    sizes = {str(p.relative_to(PROJECT_DIR)): len(p.read_text().splitlines()) for p in source_modules()}
    too_big = {m: n for m, n in sizes.items() if n > max(MAX_LINES, OVERSIZED.get(m, 0))}
    assert not too_big, f"split these modules (over {MAX_LINES} lines): {too_big}"

"""docs/policies.md is generated from the policy objects and lists every rule."""

from __future__ import annotations

from policies import POLICIES
from policies.docs import table
from tests.conftest import PROJECT_DIR


def test_the_rule_table_is_in_sync_with_the_policy_objects():
    assert (PROJECT_DIR / "docs" / "policies.md").read_text() == table(), \
        "regenerate: .venv/bin/python -m policies.docs > docs/policies.md"


def test_every_rule_has_a_row_with_its_level():
    text = table()
    for p in POLICIES:
        assert f"| `{p.name}` | {p.enforcement_level.value} |" in text


def test_a_changed_description_shows_as_drift():
    changed = list(POLICIES)
    original = changed[0].description
    try:
        changed[0].description = original + " (changed)"
        assert table(changed) != (PROJECT_DIR / "docs" / "policies.md").read_text()
    finally:
        changed[0].description = original

"""Generic checks of every shipped stack file, whatever it contains: it validates, renders, has no policy
violations and every rendered object validates strictly. The same checks hold for copies of the stacks with two
teams appended the way the README's "Adding a team" documents (one with a dataset and a model): the platform must
stay valid when users edit their stack files, and no test may depend on the teams the shipped files name."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.config import parse_config
from policies import POLICIES
from preview import check, engine
from tests import schemas
from tests.conftest import PROJECT_DIR, SHIPPED_STACKS, Rendered, rendered_shipped, run_capturing

PREFIX = "mlops-platform:"
NEW_TEAMS = [
    {"name": "added-vision", "gpuQuota": 1, "notebookProfiles": ["cpu"],
     "models": [{"name": "added-detector", "location": "s3://added-vision-models/detector/v1",
                 "framework": "pytorch", "peakRps": 10}]},
    {"name": "added-search", "gpuQuota": 0},
]
NEW_DATASET = {"name": "added-images", "location": "s3://added-vision-data/images", "sizeGiB": 1200,
               "deploymentType": "SCRATCH_2", "teams": ["added-vision"]}


def with_added_teams(stack_file: Path, out: Path) -> Path:
    """A copy of `stack_file` with NEW_TEAMS appended to its teams and NEW_DATASET to its datasets."""
    doc = yaml.safe_load(stack_file.read_text())
    config = doc["config"]
    config[f"{PREFIX}teams"] = [*(config.get(f"{PREFIX}teams") or []), *NEW_TEAMS]
    config[f"{PREFIX}datasets"] = [*(config.get(f"{PREFIX}datasets") or []), NEW_DATASET]
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def generic_problems(stack: str, rendered: Rendered, schemas_dir: Path | None) -> list[str]:
    """Policy violations and (with `schemas_dir`) strict-schema errors of a rendered stack, as readable lines."""
    problems = [f"policy {v.policy}: {v.message}" for v in check.evaluate(
        POLICIES, rendered.resources, check.load_overrides(PROJECT_DIR, stack))]
    if schemas_dir is None:
        return problems
    crds = schemas.crd_validators(schemas_dir)
    return problems + [p for m in rendered.manifests for p in schemas.errors(m, schemas_dir, crds)]


def config_of(stack_file: Path) -> dict[str, Any]:
    config, _ = engine.read_stack_config(stack_file)
    return {k[len(PREFIX):]: json.loads(v) if v[:1] in "[{" else v for k, v in config.items() if k.startswith(PREFIX)}


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_shipped_stack_validates_renders_and_passes_every_policy(stack):
    """(Strict schemas of every shipped stack: tests/test_schemas.py.)"""
    parse_config(config_of(engine.stack_file(stack)))
    rendered = rendered_shipped(stack)
    assert rendered.resources
    assert generic_problems(stack, rendered, None) == []


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_stacks_with_two_teams_added_as_the_readme_shows_pass_every_check(stack, schemas_dir, tmp_path):
    path = with_added_teams(engine.stack_file(stack), tmp_path / f"Pulumi.{stack}.yaml")
    config, secrets = engine.read_stack_config(path)
    rendered = Rendered(*run_capturing(lambda: engine.run_program(stack, config, secrets)))
    namespaces = {m["metadata"]["name"] for m in rendered.objects("Namespace")}
    assert {t["name"] for t in NEW_TEAMS} <= namespaces
    assert any(m["metadata"]["name"] == f"dataset-{NEW_DATASET['name']}"
               for m in rendered.objects("PersistentVolumeClaim", "added-vision"))
    assert generic_problems(stack, rendered, schemas_dir) == []


def test_the_generic_checks_can_fail(schemas_dir):
    """A policy violation and a schema error in a rendered stack both show up."""
    rendered = rendered_shipped(SHIPPED_STACKS[0])
    broken = Rendered(rendered.run)
    broken.manifests = [*rendered.manifests, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"},
                                              "bogus": 1}]
    assert generic_problems(SHIPPED_STACKS[0], broken, schemas_dir)


# ---- no test depends on the shipped stacks' teams -------------------------------------------------------------
# Behaviour tests read the fixture stacks (tests/fixtures/stacks), whose teams are named apart from the shipped
# ones: a test that names a shipped team depends on the shipped file and breaks when that team is renamed.

def shipped_team_names() -> set[str]:
    return {t["name"] for stack in SHIPPED_STACKS for t in config_of(engine.stack_file(stack)).get("teams") or []}


def mentions(text: str, names: set[str]) -> list[tuple[int, str]]:
    """(line number, name) for every whole-word mention of a name (a name may sit inside a longer resource name)."""
    pattern = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(map(re.escape, sorted(names))) + r")(?![A-Za-z0-9_])")
    return [(n, m[1]) for n, line in enumerate(text.splitlines(), 1) for m in pattern.finditer(line)]


def test_no_test_or_fixture_names_a_shipped_team():
    names = shipped_team_names()
    assert names
    found = [f"{path.relative_to(PROJECT_DIR)}:{n}: {name}"
             for path in sorted((PROJECT_DIR / "tests").rglob("*")) if path.suffix in (".py", ".yaml", ".yml", ".json")
             for n, name in mentions(path.read_text(), names)]
    assert found == [], ("tests must not depend on the shipped stacks' teams: use the fixture stacks' teams "
                         "(tests/fixtures/stacks) or read the shipped stacks generically; found:\n" + "\n".join(found))


def test_the_team_name_search_finds_a_mention():
    assert mentions('x = "team-a-serving"\nns = obj("Namespace", "team-a")\n"team-ab"', {"team-a"}) == [
        (1, "team-a"), (2, "team-a")]

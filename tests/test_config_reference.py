"""The config reference and the stack-file JSON schema are generated from the models and kept in sync; every stack
file in the repo validates against the schema with a JSON-schema validator."""

from __future__ import annotations

import copy

import jsonschema
import pytest
import yaml

from components.config import PlatformConfig, docs
from tests.conftest import PROJECT_DIR


def _fields(model: type, seen: set | None = None) -> list[tuple[str, str, object]]:
    """(model, field, FieldInfo) for every field of every model reachable from `model`."""
    seen = seen if seen is not None else set()
    if model in seen:
        return []
    seen.add(model)
    found = []
    for name, info in model.model_fields.items():
        found.append((model.__name__, name, info))
        stack = [info.annotation]
        while stack:
            t = stack.pop()
            stack += list(getattr(t, "__args__", ()))
            if isinstance(t, type) and hasattr(t, "model_fields"):
                found += _fields(t, seen)
    return found


def test_every_config_field_is_documented_on_the_field():
    missing = [f"{m}.{n}" for m, n, info in _fields(PlatformConfig) if not (info.description or "").strip()]
    assert not missing, f"fields without Field(description=...): {missing}"


def test_generated_reference_and_schema_match_the_models():
    stale = [str(path.relative_to(docs.ROOT)) for path, text in docs.generated().items()
             if not path.exists() or path.read_text() != text]
    assert not stale, f"regenerate with `python -m components.config.docs`: {stale}"


def test_the_sync_check_sees_a_changed_description(monkeypatch):
    """Mutation: a description changed in the models makes the reference and the schema differ from the shipped ones."""
    schema = docs.model_schema()
    changed = copy.deepcopy(schema)
    changed["properties"]["environment"]["description"] = "something else"
    monkeypatch.setattr(docs, "model_schema", lambda: changed)
    stale = {path for path, text in docs.generated().items() if path.read_text() != text}
    assert stale == {docs.REFERENCE, docs.SCHEMA}
    assert docs.main(["--check"]) == 1


def test_the_reference_lists_every_key_path():
    text = docs.REFERENCE.read_text()
    for path in ("`teams[].gpuQuota`", "`gpu.nodePools[].sharing.migLayout`", "`datasets[].sizeGiB`",
                 "`notebooks.auth.clientSecret`", "`teams[].models[].canary.trafficPercent`"):
        assert path in text


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = docs.stack_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("stack_file", sorted(p.name for p in PROJECT_DIR.glob("Pulumi.*.yaml")))
def test_every_stack_file_validates_against_the_schema(validator, stack_file):
    document = yaml.safe_load((PROJECT_DIR / stack_file).read_text())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]
    assert not errors


MINIMAL = {"config": {
    "aws:region": "us-east-1",
    "mlops-platform:environment": "dev",
    "mlops-platform:protectData": "false",
    "mlops-platform:teams": [{"name": "risk-lab", "gpuQuota": 2}],
    "mlops-platform:notebooks": {"auth": {"type": "github", "clientId": "abc", "allowedOrganizations": ["acme"],
                                          "callbackUrl": "https://hub.example.com/hub/oauth_callback",
                                          "clientSecret": {"secure": "v1:c2FsdA==:Y2lwaGVy"}}},
}}


def _with(path: list, value: object) -> dict:
    document = copy.deepcopy(MINIMAL)
    node = document["config"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return document


def test_a_minimal_stack_with_a_secure_client_secret_is_valid(validator):
    assert not list(validator.iter_errors(MINIMAL))


@pytest.mark.parametrize("path, value", [
    (["mlops-platform:nodes"], 3),                                          # unknown key of the project
    (["mlops-platform:teams", 0, "gpuQuta"], 3),                           # typo in a nested key
    (["mlops-platform:teams", 0, "gpuQuota"], -1),                         # out of range
    (["mlops-platform:teams", 0, "name"], {"secure": "v1:abc"}),           # a secret where none is allowed
    (["mlops-platform:network"], {"natGateways": "one"}),                  # not one of the choices
    (["mlops-platform:environment"], "staging"),
])
def test_the_schema_refuses_each_mistake(validator, path, value):
    assert list(validator.iter_errors(_with(path, value)))


def test_other_namespaces_are_allowed_but_not_a_bare_key(validator):
    assert not list(validator.iter_errors(_with(["kubernetes:context"], "dev")))
    assert list(validator.iter_errors(_with(["region"], "us-east-1")))

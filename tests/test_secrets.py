"""No secret reaches anything the offline preview records or writes: every value the mocks generate for a `random:`
resource (passwords, hashes), every `secure:` config value (its ciphertext and the placeholder the program is given
for it), searched in every recorded input, the stack outputs and every file `preview render` writes. Mutations
below show the search finds them once the masking is off or a secret is passed on in plain text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from components.config.secrets import is_placeholder
from preview import engine, render
from tests.conftest import PROJECT_DIR, SHIPPED_STACKS, Rendered, rendered_shipped, run_capturing


def ciphertexts(value: Any) -> list[str]:
    """Every secret text a stack file holds: `secure:` ciphertexts and `[placeholder]` values (config/secrets.py),
    both of which the offline preview replaces with engine.OFFLINE_SECRET."""
    if is_placeholder(value):
        return [value]
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return [value["secure"]]
        return [c for v in value.values() for c in ciphertexts(v)]
    if isinstance(value, list):
        return [c for v in value for c in ciphertexts(v)]
    return []


def secret_values(stack: str, rendered: Rendered) -> dict[str, str]:
    found = dict(rendered.generated)
    config = yaml.safe_load((PROJECT_DIR / f"Pulumi.{stack}.yaml").read_text())["config"]
    found.update({f"ciphertext of {k}": c for k, v in config.items() for c in ciphertexts(v)})
    if rendered.run.config_secret_keys:
        found["the offline value of secure config"] = engine.OFFLINE_SECRET
    return found


def leaks(stack: str, rendered: Rendered, out_dir: Path) -> list[str]:
    render.write(rendered.run, out_dir, [])
    places = {f"inputs of {r.urn}": json.dumps(r.inputs) for r in rendered.run.resources}
    places["stack outputs"] = json.dumps(rendered.run.outputs)
    places.update({str(p.relative_to(out_dir)): p.read_text() for p in sorted(out_dir.rglob("*")) if p.is_file()})
    return [f"{name} in {place}" for name, value in secret_values(stack, rendered).items()
            for place, text in places.items() if value in text]


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_no_secret_reaches_any_recorded_input_output_or_written_file(stack, tmp_path):
    assert leaks(stack, rendered_shipped(stack), tmp_path) == []


def test_the_shipped_stacks_have_secrets_to_look_for():
    """Without any, the test above would pass having searched for nothing."""
    assert any(rendered_shipped(s).generated for s in SHIPPED_STACKS)
    assert any(secret_values(s, rendered_shipped(s)) for s in SHIPPED_STACKS)


def render_mutated(stack: str) -> Rendered:
    return Rendered(*run_capturing(lambda: engine.run_stack(stack)))


@pytest.fixture(scope="module")
def stack_with_generated_secrets() -> str:
    return next(s for s in SHIPPED_STACKS if rendered_shipped(s).generated)


def test_mutation_without_masking_the_leak_search_fails(monkeypatch, tmp_path, stack_with_generated_secrets):
    stack = stack_with_generated_secrets
    monkeypatch.setattr(engine, "masked", lambda value: value)
    found = leaks(stack, render_mutated(stack), tmp_path)
    assert any(".result in inputs of" in leak for leak in found), found
    assert any(".result in plan.json" in leak for leak in found), found


def test_mutation_a_secret_passed_on_in_plain_text_fails_the_leak_search(monkeypatch, tmp_path,
                                                                        stack_with_generated_secrets):
    """As if a component forgot `pulumi.Output.secret` around a generated password."""
    stack = stack_with_generated_secrets
    monkeypatch.setattr(pulumi.Output, "secret", staticmethod(lambda value: pulumi.Output.from_input(value)))
    found = leaks(stack, render_mutated(stack), tmp_path)
    assert any(".result in manifests.yaml" in leak for leak in found), found

"""Every Helm release the plan declares, rendered through its real upstream chart with a real helm, and everything it
renders strictly valid: what `helm install` would send to the cluster. A values key the chart does not declare fails.

The charts come from the upstream charts folder (tests/upstream.py, `make test-data`); helm from `make helm`.
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from preview import render
from tests import charts, schemas, upstream

STACKS = ("dev", "prod")


@pytest.fixture(scope="session")
def helm() -> str:
    return upstream.tool("helm", charts.HELM_HOW)


@pytest.fixture(scope="session")
def releases(request, charts_dir: Path) -> dict[tuple[str, str], tuple[dict[str, Any], Path]]:
    """(stack, release name) -> (release inputs, chart archive), for both shipped stacks."""
    found = {}
    for stack in STACKS:
        run = request.getfixturevalue(stack).run
        for r in render.helm_releases(run):
            found[(stack, r.inputs["name"])] = (r.inputs, charts.archive(charts_dir, r.inputs))
    return found


@pytest.fixture(scope="session")
def rendered(helm: str, releases) -> dict[tuple[str, str], tuple[int, str, str]]:
    """(stack, release) -> helm's (exit code, stdout, stderr); every distinct release rendered once, in parallel."""
    keys = list(releases)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(lambda k: charts.template(helm, releases[k][1], releases[k][0]), keys)
        return dict(zip(keys, results))


def stack_objects(rendered, stack: str) -> dict[str, list[dict[str, Any]]]:
    return {release: charts.objects(out) for (s, release), (code, out, _) in rendered.items() if s == stack and code == 0}


@pytest.mark.parametrize("stack", STACKS)
def test_every_release_renders_with_its_real_chart(rendered, releases, stack):
    failed = {release: err.strip()[-600:] for (s, release), (code, _, err) in rendered.items() if s == stack and code}
    assert not failed, f"helm template failed: {failed}"
    names = [release for s, release in releases if s == stack]
    assert names and all(stack_objects(rendered, stack)[n] for n in names), "a release rendered no object"


def test_everything_rendered_validates_strictly(rendered, schemas_dir):
    """Core kinds with kubernetes-validate (strict), custom resources against the CRDs the charts themselves ship
    (else the shared upstream schemas), unknown fields rejected. An object both stacks render alike (the same parsed
    document, tests/charts.objects) is checked once."""
    checked, problems = set(), []
    for stack in STACKS:
        by_release = stack_objects(rendered, stack)
        crds = schemas.crd_object_validators([o for objs in by_release.values() for o in objs])
        for release, objs in by_release.items():
            for o in objs:
                if id(o) not in checked:
                    checked.add(id(o))
                    problems += [f"{stack} {release}: {e}" for e in schemas.errors(o, schemas_dir, crds)]
    assert not problems, "\n".join(problems[:40])
    # A mutation the validation must catch: an unknown field in a rendered Deployment's pod spec.
    deployment = next(copy.deepcopy(o) for objs in by_release.values() for o in objs if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["nodeSelecter"] = {}
    assert schemas.errors(deployment, schemas_dir, crds)


@pytest.mark.parametrize("stack", STACKS)
def test_every_values_key_is_declared_by_its_chart(releases, stack):
    problems = {}
    for (s, release), (inputs, archive) in releases.items():
        if s == stack:
            undeclared = charts.undeclared_keys(inputs.get("values") or {}, charts.default_values(archive))
            if undeclared:
                problems[release] = undeclared
    assert not problems, f"values keys the charts do not declare: {problems}"


def _misspelled(values: dict[str, Any], defaults: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The values with their deepest key that the chart's defaults declare misspelled, and its new dotted path."""
    mutated = copy.deepcopy(values)
    node, declared, path = mutated, defaults, []
    while True:
        key = next(iter(node))
        here = ".".join(path + [key])
        if not (isinstance(node[key], dict) and node[key] and isinstance(declared.get(key), dict) and declared[key]
                and key not in charts.FREE_FORM_KEYS and here not in charts.FREE_FORM_PATHS):
            break
        path.append(key)
        node, declared = node[key], declared[key]
    node[key + "x"] = node.pop(key)
    return mutated, ".".join(path + [key + "x"])


def test_a_misspelled_values_key_fails(releases, rendered, helm):
    """Mutation: misspell one key in every release's values; the key check names it. For the JupyterHub chart, whose
    values schema forbids unknown keys, helm itself refuses to render it too."""
    for (stack, release), (inputs, archive) in releases.items():
        if stack == "dev" and inputs.get("values"):
            defaults = charts.default_values(archive)
            mutated, path = _misspelled(inputs["values"], defaults)
            assert path in charts.undeclared_keys(mutated, defaults), (release, path)
    inputs, archive = next(v for (s, _), v in releases.items() if s == "dev" and charts.chart_name(v[0]) == "jupyterhub")
    values = copy.deepcopy(inputs["values"])
    values["singleuser"]["profileLists"] = values["singleuser"].pop("profileList")
    code, _, err = charts.template(helm, archive, {**inputs, "values": values})
    assert code != 0 and "profileLists" in err


def test_the_api_versions_passed_to_helm_are_served(rendered):
    """Each CRD group passed with --api-versions is served by a CRD that a release of the plan installs."""
    for stack in STACKS:
        served = charts.served_crd_versions([o for objs in stack_objects(rendered, stack).values() for o in objs])
        for api in charts.API_VERSIONS:
            group_version = "/".join(api.split("/")[:2])
            if group_version.split("/")[0] not in charts.BUILT_IN_GROUPS:
                assert group_version in served, f"{stack}: {api} is passed to helm but no chart of the plan serves it"

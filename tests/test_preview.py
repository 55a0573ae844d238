"""The offline preview's build output: shapes users and CI rely on."""

from __future__ import annotations

import json

import pytest
import yaml

from preview import engine
from tests.conftest import PROJECT_DIR, SHIPPED_STACKS, cli_with_render

PLAN_KEYS = {"urn", "type", "name", "custom", "parent", "provider", "dependencies", "protect", "retainOnDelete",
             "inputs"}


@pytest.fixture(scope="module", params=SHIPPED_STACKS)
def build(request, tmp_path_factory):
    """`python -m preview render <stack> --out <dir>` of the shipped stack: (stack, output folder, what it printed)."""
    stack, out = request.param, tmp_path_factory.mktemp(f"render-{request.param}")
    code, printed = cli_with_render(["render", stack, "--out", str(out)], stack, engine.stack_file(stack))
    assert code == 0, printed
    return stack, out, printed


def test_render_writes_plan_with_engine_shapes(build):
    stack, out, _ = build
    plan = json.loads((out / "plan.json").read_text())
    assert plan["stack"] == stack
    assert plan["resources"] and all(set(r) == PLAN_KEYS for r in plan["resources"])
    urns = {r["urn"] for r in plan["resources"]}
    for r in plan["resources"]:
        assert r["parent"] == "" or r["parent"] in urns or "::pulumi:pulumi:Stack::" in r["parent"]
        assert set(r["dependencies"]) <= urns
    cluster = next(r for r in plan["resources"] if r["type"] == "aws:eks/cluster:Cluster")
    assert "accessConfig" in cluster["inputs"]  # camelCase wire form, as a policy pack sees it
    assert plan["outputs"]["clusterName"] == f"mlops-{stack}"


def test_every_kubernetes_object_has_a_name_and_namespace_when_namespaced(build):
    _, out, _ = build
    objects = [o for o in yaml.safe_load_all((out / "manifests.yaml").read_text()) if o]
    assert objects
    cluster_scoped = {"Namespace", "StorageClass", "PriorityClass", "ClusterRole", "ClusterRoleBinding",
                      "CustomResourceDefinition", "PersistentVolume", "ValidatingAdmissionPolicy",
                      "ValidatingAdmissionPolicyBinding", "NodePool", "NodeOverlay", "EC2NodeClass", "ClusterPolicy",
                      "ClusterServingRuntime", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
                      "ClusterQueue", "ResourceFlavor"}
    for o in objects:
        assert o["metadata"].get("name"), o
        if o["kind"] not in cluster_scoped:
            assert o["metadata"].get("namespace"), f"{o['kind']} {o['metadata']['name']} has no namespace"


def test_render_prints_summary_with_gpu_pools(build):
    stack, out, stdout = build
    assert f"stack {stack}:" in stdout and "GPU pools:" in stdout and "policy check:" in stdout
    assert (out / "summary.md").read_text().startswith(f"# Offline preview of stack `{stack}`")


def test_secure_config_never_reaches_the_build_output(build):
    """Neither a `secure:` value's ciphertext nor the value the program is given for it (the render succeeded, so
    the program did receive it) appears in what `preview render` prints or writes."""
    from tests.test_secrets import ciphertexts

    stack, out, stdout = build
    config = yaml.safe_load((PROJECT_DIR / f"Pulumi.{stack}.yaml").read_text())["config"]
    secrets = [c for v in config.values() for c in ciphertexts(v)]
    secrets += [engine.OFFLINE_SECRET] if secrets else []
    texts = [stdout] + [p.read_text() for p in out.rglob("*") if p.is_file()]
    assert [s for s in secrets for text in texts if s in text] == []


def test_a_shipped_stack_has_secure_config_to_look_for():
    from tests.test_secrets import ciphertexts

    assert any(ciphertexts(yaml.safe_load((PROJECT_DIR / f"Pulumi.{s}.yaml").read_text())["config"])
               for s in SHIPPED_STACKS)


def test_kubeconfig_output_is_masked_in_plan(build):
    _, out, _ = build
    assert json.loads((out / "plan.json").read_text())["outputs"]["kubeconfig"] == "[secret]"

"""Every rendered Kubernetes object validates strictly: core kinds against Kubernetes' OpenAPI schema,
custom resources against their upstream CRD schema (unknown fields are errors)."""

from __future__ import annotations

import pytest
import yaml

from preview import render
from tests import schemas
from tests.conftest import SHIPPED_STACKS, rendered_shipped


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_manifest_validates_strictly(stack, schemas_dir):
    rendered = rendered_shipped(stack)
    assert rendered.manifests
    problems = [p for m in rendered.manifests for p in schemas.errors(m, schemas_dir)]
    assert problems == []


def test_validation_rejects_unknown_fields_and_bad_values(schemas_dir):
    storage_class = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "x"},
                     "provisioner": "ebs.csi.aws.com", "volumeBindingMode": "WaitForFirstConsumer"}
    assert schemas.errors(storage_class, schemas_dir) == []
    assert schemas.errors({**storage_class, "bogus": 1}, schemas_dir)
    node_pool = {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "gpu"}, "spec": {
        "template": {"spec": {"nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "gpu"},
                              "requirements": []}}}}
    assert schemas.errors(node_pool, schemas_dir) == []
    assert schemas.errors({**node_pool, "spec": {**node_pool["spec"], "limitz": {}}}, schemas_dir)
    assert schemas.errors({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}, schemas_dir)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_object_in_manifests_yaml_validates_strictly(stack, request, schemas_dir, tmp_path):
    """The build output as written (`build/<stack>/manifests.yaml`): masked Secrets keep their shape
    (`stringData: {key: "[secret]"}`), so every object, Secrets included, is a valid object."""
    render.write(request.getfixturevalue(stack).run, tmp_path, [])
    written = [o for o in yaml.safe_load_all((tmp_path / "manifests.yaml").read_text()) if o]
    secrets = [o for o in written if o["kind"] == "Secret"]
    masked = [s for s in secrets if "stringData" in s]
    assert masked and all(isinstance(s[k], dict) for s in secrets for k in ("data", "stringData") if k in s)
    assert all(set(s["stringData"].values()) == {"[secret]"} for s in masked)
    assert [p for o in written for p in schemas.errors(o, schemas_dir)] == []
    # The old masking (a Secret's whole stringData as one string) is what this catches.
    assert schemas.errors({**masked[0], "stringData": "[secret]"}, schemas_dir)

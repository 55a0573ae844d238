"""Image rules of the policy pack: compliant workloads pass, one-property mutations are caught, and the dev and
prod renders pass (every image the platform itself runs is allowed and pinned)."""

from __future__ import annotations

import copy
import json

import pytest

from components import labels
from components.config import DEFAULT_ALLOWED_REGISTRIES
from policies import POLICIES
from policies.images import (ADMISSION_POLICY, HELM_RELEASE, UNKNOWN, helm_image_problems, workload_images,
                             workload_image_from_allowed_registry as registry_policy,
                             workload_image_pinned as pinned_policy)
from tests.policy_harness import mutated, resource, violations

ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com/mlops-dev/"
DEPLOYMENT_TYPE = "kubernetes:apps/v1:Deployment"
DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "trainer", "namespace": "team-a"},
              "spec": {"template": {"spec": {
                  "initContainers": [{"name": "fetch", "image": "public.ecr.aws/docker/library/busybox:1.37"}],
                  "containers": [{"name": "main", "image": f"{ECR}team-a:training-1f3e"}]}}}}
ALLOWLIST = {"prefixes": [ECR, *DEFAULT_ALLOWED_REGISTRIES], "namespaces": {"team-a": ["ghcr.io/acme/"]}}
VAP = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
       "metadata": {"name": "mlops-team-images", "annotations": {labels.IMAGE_ALLOWLIST: json.dumps(ALLOWLIST)}},
       "spec": {}}
PYTORCHJOB = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "j", "namespace": "team-a"},
              "spec": {"pytorchReplicaSpecs": {
                  "Master": {"template": {"spec": {"containers": [{"name": "pytorch", "image": f"{ECR}team-a:v1"}]}}},
                  "Worker": {"template": {"spec": {"containers": [{"name": "pytorch", "image": f"{ECR}team-a:v1"}]}}},
              }}}


def vap():
    return resource(ADMISSION_POLICY, VAP, name="vap")


def deployment(props=DEPLOYMENT):
    return resource(DEPLOYMENT_TYPE, props, name="deploy")


def _main(p):
    return p["spec"]["template"]["spec"]["containers"][0]


def test_policies_are_in_the_pack():
    assert registry_policy in POLICIES and pinned_policy in POLICIES


def test_compliant_workloads_pass():
    assert violations(registry_policy, vap(), deployment()) == []
    assert violations(pinned_policy, deployment()) == []
    job = resource("kubernetes:kubeflow.org/v1:PyTorchJob", PYTORCHJOB, name="job")
    assert violations(registry_policy, vap(), job) == [] and violations(pinned_policy, job) == []


@pytest.mark.parametrize("image", ["docker.io/library/python:3.12", "python:3.12",
                                   "nvcr.io.evil.example/nvidia/pytorch:24.05-py3",
                                   "999999999999.dkr.ecr.us-west-2.amazonaws.com/mlops-dev/team-a:1"])
def test_image_from_outside_the_allowlist_is_a_violation(image):
    bad = mutated(DEPLOYMENT, lambda p: _main(p).update(image=image))
    (found,) = violations(registry_policy, vap(), deployment(bad))
    assert found.startswith(f"Deployment 'team-a/trainer' runs image '{image}' (container 'main' at "
                            "spec.template.spec), which is not from an allowed registry")


def test_init_containers_and_replica_specs_are_checked():
    bad = mutated(DEPLOYMENT, lambda p: p["spec"]["template"]["spec"]["initContainers"][0].update(image="busybox"))
    assert len(violations(registry_policy, vap(), deployment(bad))) == 1
    assert violations(pinned_policy, deployment(bad)) == [
        "Deployment 'team-a/trainer' runs image 'busybox' (container 'fetch' at spec.template.spec), which has no "
        "tag or digest (the runtime would pull 'latest'); pin a version tag or a digest."]
    job = mutated(PYTORCHJOB, lambda p: p["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
                  .update(image="docker.io/pytorch/pytorch:latest"))
    (found,) = violations(pinned_policy, resource("kubernetes:kubeflow.org/v1:PyTorchJob", job))
    assert "at spec.pytorchReplicaSpecs.Worker.template.spec" in found and "uses the mutable tag 'latest'" in found


def test_team_exception_applies_in_its_namespace_only():
    image = "ghcr.io/acme/trainer:1.0"
    in_team = mutated(DEPLOYMENT, lambda p: _main(p).update(image=image))
    elsewhere = mutated(in_team, lambda p: p["metadata"].update(namespace="team-b"))
    assert violations(registry_policy, vap(), deployment(in_team)) == []
    assert len(violations(registry_policy, vap(), deployment(elsewhere))) == 1


def test_policy_config_extends_the_allowlist():
    bad = mutated(DEPLOYMENT, lambda p: _main(p).update(image="registry.example.com/ml/x:1"))
    assert len(violations(registry_policy, vap(), deployment(bad))) == 1
    assert violations(registry_policy, vap(), deployment(bad),
                      config={"allowedRegistries": ["registry.example.com/ml/"]}) == []


def test_without_an_admission_policy_the_default_allowlist_applies():
    public = mutated(DEPLOYMENT, lambda p: _main(p).update(image="nvcr.io/nvidia/pytorch:24.05-py3"))
    assert violations(registry_policy, deployment(public)) == []
    (found,) = violations(registry_policy, deployment())   # ECR is unknown without the stack's policy
    assert "mlops-dev/team-a:training-1f3e" in found


@pytest.mark.parametrize("image, expected", [
    ("nvcr.io/nvidia/pytorch", "has no tag or digest"),
    ("nvcr.io/nvidia/pytorch:latest", "uses the mutable tag 'latest'"),
    ("registry.example.com:5000/ml/x", "has no tag or digest"),
])
def test_unpinned_images_are_violations(image, expected):
    bad = mutated(DEPLOYMENT, lambda p: _main(p).update(image=image))
    (found,) = violations(pinned_policy, deployment(bad))
    assert expected in found


@pytest.mark.parametrize("image", ["nvcr.io/nvidia/pytorch@sha256:" + "a" * 64, "registry.example.com:5000/x:1.2",
                                   UNKNOWN])
def test_digests_tags_with_a_port_and_unknown_images_pass(image):
    ok = mutated(DEPLOYMENT, lambda p: _main(p).update(image=image))
    assert violations(pinned_policy, deployment(ok)) == []


def test_helm_values_with_latest_are_violations():
    values = {"controller": {"image": {"repository": "ghcr.io/x/controller", "tag": "latest"}},
              "sidecars": [{"name": "s", "image": "quay.io/x/sidecar:latest"}],
              "webhook": {"image": {"repository": "ghcr.io/x/webhook", "tag": ""}},     # chart appVersion: pinned
              "singleuser": {"image": {"name": "quay.io/jupyter/scipy-notebook", "tag": "2025-01-13"}}}
    assert helm_image_problems(values) == ["values.controller.image.tag is 'latest'",
                                           "values.sidecars[0].image is 'quay.io/x/sidecar:latest'"]
    release = resource(HELM_RELEASE, {"name": "thing", "chart": "thing", "version": "1.0.0", "values": values})
    found = violations(pinned_policy, release)
    assert found[0] == ("The Helm release 'thing' sets a mutable image tag: values.controller.image.tag is "
                        "'latest'; pin a version.") and len(found) == 2
    clean = copy.deepcopy(values)
    clean["controller"]["image"]["tag"] = "v1.2.3"
    clean["sidecars"][0]["image"] = "quay.io/x/sidecar:v4"
    assert violations(pinned_policy, resource(HELM_RELEASE, {"name": "thing", "values": clean})) == []


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_platform_own_workloads_pass_in_dev_and_prod(stack, request):
    rendered = request.getfixturevalue(stack)
    workloads = [r for r in rendered.resources if r.custom]
    assert any(r.type == ADMISSION_POLICY for r in workloads)
    assert any(list(workload_images(r.type, r.inputs)) for r in workloads)   # the check saw real images
    assert violations(registry_policy, *workloads) == []
    assert violations(pinned_policy, *workloads) == []

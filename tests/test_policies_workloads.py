"""The one pod-template walker (policies/workloads.py): every kind that carries a pod template is opened, with the
pod's labels and namespace; what it cannot read is skipped, never a crash."""

from __future__ import annotations

import pytest

from policies.workloads import containers, kind_of, pod_templates

SPEC = {"containers": [{"name": "c", "image": "x:1"}]}
TEMPLATE = {"metadata": {"labels": {"job-type": "training"}}, "spec": SPEC}
META = {"name": "w", "namespace": "team-a", "labels": {"app": "w"}}

CASES = {
    "kubernetes:core/v1:Pod": ({"metadata": META, "spec": SPEC}, [("spec", {"app": "w"})]),
    "kubernetes:apps/v1:Deployment": ({"metadata": META, "spec": {"template": TEMPLATE}},
                                      [("spec.template.spec", {"job-type": "training"})]),
    "kubernetes:apps/v1:DeploymentPatch": ({"metadata": META, "spec": {"template": TEMPLATE}},
                                           [("spec.template.spec", {"job-type": "training"})]),
    "kubernetes:apps/v1:StatefulSet": ({"metadata": META, "spec": {"template": TEMPLATE}},
                                       [("spec.template.spec", {"job-type": "training"})]),
    "kubernetes:apps/v1:DaemonSet": ({"metadata": META, "spec": {"template": TEMPLATE}},
                                     [("spec.template.spec", {"job-type": "training"})]),
    "kubernetes:apps/v1:ReplicaSet": ({"metadata": META, "spec": {"template": TEMPLATE}},
                                      [("spec.template.spec", {"job-type": "training"})]),
    "kubernetes:batch/v1:Job": ({"metadata": META, "spec": {"template": TEMPLATE}},
                                [("spec.template.spec", {"job-type": "training"})]),
    "kubernetes:batch/v1:CronJob": ({"metadata": META, "spec": {"jobTemplate": {"spec": {"template": TEMPLATE}}}},
                                    [("spec.jobTemplate.spec.template.spec", {"job-type": "training"})]),
    "kubernetes:kubeflow.org/v1:PyTorchJob": (
        {"metadata": META, "spec": {"pytorchReplicaSpecs": {"Master": {"template": TEMPLATE},
                                                            "Worker": {"template": TEMPLATE}}}},
        [("spec.pytorchReplicaSpecs.Master.template.spec", {"job-type": "training"}),
         ("spec.pytorchReplicaSpecs.Worker.template.spec", {"job-type": "training"})]),
    "kubernetes:kubeflow.org/v1:TFJob": ({"metadata": META, "spec": {"tfReplicaSpecs": {"PS": {"template": TEMPLATE}}}},
                                         [("spec.tfReplicaSpecs.PS.template.spec", {"job-type": "training"})]),
    "kubernetes:kubeflow.org/v2beta1:MPIJob": (
        {"metadata": META, "spec": {"mpiReplicaSpecs": {"Launcher": {"template": TEMPLATE}}}},
        [("spec.mpiReplicaSpecs.Launcher.template.spec", {"job-type": "training"})]),
    "kubernetes:trainer.kubeflow.org/v1alpha1:TrainJob": (
        {"metadata": META, "spec": {"trainer": {"image": "x:1", "resourcesPerNode": {"limits": {"nvidia.com/gpu": 1}}},
                                    "labels": {"job-type": "training"},
                                    "podSpecOverrides": [{"targetJobs": [{"name": "node"}], "hostNetwork": True}]}},
        [("spec.trainer", {"app": "w", "job-type": "training"}),
         ("spec.podSpecOverrides[0]", {"app": "w", "job-type": "training"})]),
    "kubernetes:trainer.kubeflow.org/v1alpha1:ClusterTrainingRuntime": (
        {"metadata": META, "spec": {"template": {"spec": {"replicatedJobs": [
            {"name": "node", "template": {"spec": {"template": TEMPLATE}}}]}}}},
        [("spec.template.spec.replicatedJobs[0].template.spec.template.spec", {"job-type": "training"})]),
    "kubernetes:jobset.x-k8s.io/v1alpha2:JobSet": (
        {"metadata": META, "spec": {"replicatedJobs": [{"template": {"spec": {"template": TEMPLATE}}}]}},
        [("spec.replicatedJobs[0].template.spec.template.spec", {"job-type": "training"})]),
    "kubernetes:ray.io/v1:RayCluster": (
        {"metadata": META, "spec": {"headGroupSpec": {"template": TEMPLATE},
                                    "workerGroupSpecs": [{"template": TEMPLATE}, {"template": TEMPLATE}]}},
        [("spec.headGroupSpec.template.spec", {"job-type": "training"}),
         ("spec.workerGroupSpecs[0].template.spec", {"job-type": "training"}),
         ("spec.workerGroupSpecs[1].template.spec", {"job-type": "training"})]),
    "kubernetes:ray.io/v1:RayJob": (
        {"metadata": META, "spec": {"rayClusterSpec": {"headGroupSpec": {"template": TEMPLATE}}}},
        [("spec.rayClusterSpec.headGroupSpec.template.spec", {"job-type": "training"})]),
    "kubernetes:ray.io/v1:RayService": (
        {"metadata": META, "spec": {"rayClusterConfig": {"workerGroupSpecs": [{"template": TEMPLATE}]}}},
        [("spec.rayClusterConfig.workerGroupSpecs[0].template.spec", {"job-type": "training"})]),
    "kubernetes:serving.kserve.io/v1beta1:InferenceService": (
        {"metadata": META, "spec": {"predictor": {"labels": {"job-type": "inference"}, "model": {"image": "m:1"}},
                                    "transformer": {"containers": [{"name": "t", "image": "t:1"}]},
                                    "explainer": {"alibi": {"image": "a:1"}}}},
        [("spec.predictor", {"app": "w", "job-type": "inference"}), ("spec.transformer", {"app": "w"}),
         ("spec.explainer", {"app": "w"})]),
    "kubernetes:kubeflow.org/v1:Notebook": ({"metadata": META, "spec": {"template": TEMPLATE}},
                                            [("spec.template.spec", {"job-type": "training"})]),
    "kubernetes:serving.knative.dev/v1:Service": ({"metadata": META, "spec": {"template": TEMPLATE}},
                                                  [("spec.template.spec", {"job-type": "training"})]),
}


@pytest.mark.parametrize("typ", sorted(CASES))
def test_every_kind_is_opened_with_labels_and_namespace(typ):
    props, expected = CASES[typ]
    found = list(pod_templates(typ, props))
    assert [(t.where, t.labels) for t in found] == expected
    assert all(t.namespace == "team-a" and t.kind == kind_of(typ) for t in found)
    assert all(containers(t.spec) or t.spec.get("hostNetwork") for t in found)


def test_kserve_framework_entries_become_containers():
    (predictor,) = pod_templates("kubernetes:serving.kserve.io/v1beta1:InferenceService", {
        "spec": {"predictor": {"xgboost": {"image": "x:1", "resources": {"limits": {"cpu": "1"}}}}}})
    assert containers(predictor.spec) == [{"name": "kserve-xgboost", "image": "x:1",
                                           "resources": {"limits": {"cpu": "1"}}}]


def test_init_and_ephemeral_containers_count():
    spec = {"containers": [{"name": "a"}], "initContainers": [{"name": "b"}], "ephemeralContainers": [{"name": "c"}]}
    assert [c["name"] for c in containers(spec)] == ["a", "b", "c"]


@pytest.mark.parametrize("props", [{}, {"spec": None}, {"spec": "[unknown]"}, {"spec": {"template": None}},
                                   {"spec": {"pytorchReplicaSpecs": "x"}}, {"spec": {"workerGroupSpecs": [None]}}])
def test_unknown_values_are_skipped(props):
    for typ in CASES:
        assert all(isinstance(t.spec, dict) for t in pod_templates(typ, props))


def test_core_services_and_non_kubernetes_resources_carry_no_pods():
    assert list(pod_templates("kubernetes:core/v1:Service", {"spec": {"template": TEMPLATE}})) == []
    assert list(pod_templates("aws:ecs/taskDefinition:TaskDefinition", {"spec": {"template": TEMPLATE}})) == []

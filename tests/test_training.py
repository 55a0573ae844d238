"""The Kubeflow training operator and what team training jobs need: the rendered install, per-team job defaults,
the example PyTorchJob (schema, policy pack, rendered from the same template), and the `training` config rules.

Regenerate the example after changing the template:
    UPDATE_EXAMPLES=1 .venv/bin/python -m pytest tests/test_training.py
"""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from components import labels
from components.config import ConfigError, parse_config, training_pool
from components.endpoints import PRIORITY_CLASSES, TeamAccess
from components.training import (
    CRD_URL,
    NAMESPACE,
    INIT_TEMPLATE_CONFIGMAP,
    INIT_TEMPLATE_DIR,
    INIT_TEMPLATE_FILE,
    OPERATOR_IMAGE,
    TRAINING_OPERATOR_VERSION,
    WEBHOOK_CONFIGURATION,
)
from components.training_jobs import DEFAULTS_CONFIGMAP, example_pytorchjob
from policies import POLICIES
from preview.check import evaluate
from tests import schemas
from tests.conftest import PROJECT_DIR, assert_example_is_current, run_config, stack_yaml
from tests.example_stack import stack_with_team
from tests.policy_harness import resource

EXAMPLE = PROJECT_DIR / "examples" / "pytorchjob.yaml"
# The example is written for a team of the shipped dev stack, named in the file itself (no test names a shipped team).
EXAMPLE_TEAM = yaml.safe_load(EXAMPLE.read_text())["metadata"]["namespace"]
EXAMPLE_IMAGE = f"123456789012.dkr.ecr.us-west-2.amazonaws.com/mlops-dev/{EXAMPLE_TEAM}:train-3f2a9c1"
EXAMPLE_HEADER = f"""\
# A distributed PyTorch training job for team {EXAMPLE_TEAM} in the dev stack: one master and one worker, one T4
# each, on the spot training pool. Everything a job needs comes from the platform:
# - pods select the GPU NodePool `training` (spot) and tolerate its nvidia.com/gpu taint;
# - `job-type: training` gives them the team's training egress (MLflow, S3, FSx, each other) and nothing else;
# - service account `training`: IRSA read of the team's datasets, read/write of its DVC prefix;
# - the dataset claim `dataset-transactions` is mounted read-only at /datasets/transactions;
# - priority class `mlops-training`; the image comes from the team's ECR repository (pushed by the scanning CI);
# - label `kueue.x-k8s.io/queue-name: training`: Kueue admits the job whole through the team's LocalQueue;
# - Pod Security `restricted`: non-root (uid 1000), no privilege escalation, no capabilities, seccomp RuntimeDefault.
# - label `mlops.platform/mlflow-run-id`: the MLflow run this job logs to (create it first; its id replaces this one);
#   the pods get it as MLFLOW_RUN_ID, and the training dashboard links the job's GPU-hours and cost to that run.
# The same pod template is in the team namespace's ConfigMap `training-job-defaults` (components/training.py).
# Rendered by components.training_jobs.example_pytorchjob; tests/test_training.py checks this file against it, against
# the upstream PyTorchJob schema and with the policy pack.
#   kubectl apply -f examples/pytorchjob.yaml && kubectl -n {EXAMPLE_TEAM} get pytorchjob fraud-train -w
"""


def _config(stack: str, **changes):
    raw = {k.split(":", 1)[1]: v for k, v in stack_yaml(stack).items() if k.startswith("mlops-platform:")}
    raw.update(changes)
    return parse_config(raw)


def rendered_example() -> dict:
    team = TeamAccess(name=EXAMPLE_TEAM, namespace=EXAMPLE_TEAM, notebook_service_account="notebook",
                      training_service_account="training", serving_service_account="serving",
                      namespace_resource=None)
    return example_pytorchjob(team, training_pool(_config("dev")), image=EXAMPLE_IMAGE)


def test_example_file_is_the_rendered_job():
    assert_example_is_current(EXAMPLE, EXAMPLE_HEADER, rendered_example())


def test_example_validates_against_the_upstream_pytorchjob_schema(schemas_dir):
    job = yaml.safe_load(EXAMPLE.read_text())
    assert schemas.errors(job, schemas_dir) == []
    broken = yaml.safe_load(EXAMPLE.read_text())
    broken["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = "two"
    assert schemas.errors(broken, schemas_dir), "the schema check must be able to fail"


def test_example_runs_like_the_seed_job():
    job = yaml.safe_load(EXAMPLE.read_text())
    assert job["metadata"]["labels"]["mlops.platform/team"] == job["metadata"]["namespace"]
    for role, replica in job["spec"]["pytorchReplicaSpecs"].items():
        spec, meta = replica["template"]["spec"], replica["template"]["metadata"]
        assert meta["labels"][labels.JOB_TYPE] == "training", role
        assert spec["serviceAccountName"] == "training"
        assert spec["priorityClassName"] == PRIORITY_CLASSES.training
        assert spec["nodeSelector"] == {labels.NODE_POOL: "training", labels.GPU_TYPE: "t4"}
        assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"} \
            in spec["tolerations"]
        (container,) = spec["containers"]
        assert container["name"] == "pytorch"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_the_example_pool_is_spot():
    pool = training_pool(_config("dev"))
    assert pool.name == "training" and "spot" in pool.capacity_types and pool.sharing == "none"


def test_example_passes_the_policy_pack_with_the_dev_stack():
    dev = stack_with_team("dev", EXAMPLE_TEAM, 4)        # the fixture dev stack with the example's team
    job = yaml.safe_load(EXAMPLE.read_text())
    example = resource("kubernetes:kubeflow.org/v1:PyTorchJob", job, name="example")
    found = evaluate(POLICIES, [*dev.resources, example])
    assert [v.message for v in found if v.mandatory] == []
    # ... and the pack does look at it: without the toleration, or with an image from Docker Hub, it fails.
    bad = yaml.safe_load(EXAMPLE.read_text())
    bad["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["tolerations"] = []
    bad["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["image"] = "someone/pytorch:2.5"
    found = evaluate(POLICIES, [*dev.resources, resource("kubernetes:kubeflow.org/v1:PyTorchJob", bad, name="bad")])
    policies = {v.policy for v in found if v.mandatory}
    assert {"gpu-workload-requires-limit-toleration-and-pool", "workload-image-from-allowed-registry"} <= policies


# ---- the operator install ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_operator_installed_pinned(stack, request):
    r = request.getfixturevalue(stack)
    (group,) = [c for c in r.of_type("kubernetes:yaml/v2:ConfigGroup") if c.name == "training-crds"]
    crds = group.inputs["files"]
    assert sorted(crds) == sorted(CRD_URL.format(version=TRAINING_OPERATOR_VERSION, plural=p)
                                  for p in ("pytorchjobs", "tfjobs", "mpijobs"))
    assert all(f"/{TRAINING_OPERATOR_VERSION}/" in url for url in crds)
    deployment = r.obj("Deployment", "training-operator", NAMESPACE)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == OPERATOR_IMAGE and not OPERATOR_IMAGE.endswith(":latest")
    args = container["args"]
    assert {"--enable-scheme=pytorchjob", "--enable-scheme=tfjob", "--enable-scheme=mpijob"} <= set(args)
    assert "--pytorch-init-container-image=public.ecr.aws/docker/library/alpine:3.22" in args
    assert deployment["spec"]["template"]["spec"]["nodeSelector"][labels.NODE_ROLE] == "system"
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert volumes[0]["secret"]["secretName"] == "training-operator-webhook-cert"
    assert r.obj("Secret", "training-operator-webhook-cert", NAMESPACE)
    service = r.obj("Service", "training-operator", NAMESPACE)
    assert {(p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {(8080, 8080), (443, 9443)}


def test_webhooks_point_at_the_operator_and_keep_its_ca(dev):
    config = dev.obj("ValidatingWebhookConfiguration", WEBHOOK_CONFIGURATION)
    paths = {w["clientConfig"]["service"]["path"] for w in config["webhooks"]}
    assert paths == {"/validate-kubeflow-org-v1-pytorchjob", "/validate-kubeflow-org-v1-tfjob"}
    assert all(w["clientConfig"]["service"]["name"] == "training-operator" for w in config["webhooks"])
    registration = next(r for r in dev.resources if r.type.endswith("ValidatingWebhookConfiguration"))
    assert "webhooks[*].clientConfig.caBundle" in registration.ignore_changes
    secret = next(r for r in dev.resources if r.type == "kubernetes:core/v1:Secret"
                  and r.inputs["metadata"]["name"] == "training-operator-webhook-cert")
    assert "data" in secret.ignore_changes


def test_operator_rbac_covers_the_job_kinds(dev):
    role = dev.obj("ClusterRole", "training-operator")
    granted = {(g, res) for rule in role["rules"] for g in rule["apiGroups"] for res in rule["resources"]}
    for plural in ("pytorchjobs", "tfjobs", "mpijobs"):
        assert ("kubeflow.org", plural) in granted and ("kubeflow.org", f"{plural}/status") in granted
    assert ("", "pods") in granted and ("", "services") in granted
    binding = dev.obj("ClusterRoleBinding", "training-operator")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "training-operator", "namespace": NAMESPACE}]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_team_gets_job_defaults(stack, request):
    r = request.getfixturevalue(stack)
    teams = [t["name"] for t in stack_yaml(stack)["mlops-platform:teams"]]
    for team in teams:
        cm = r.obj("ConfigMap", DEFAULTS_CONFIGMAP, team)
        template = yaml.safe_load(cm["data"]["podTemplate.yaml"])
        assert template["metadata"]["labels"][labels.JOB_TYPE] == "training"
        assert template["spec"]["serviceAccountName"] == "training"
        assert template["spec"]["priorityClassName"] == PRIORITY_CLASSES.training
        assert template["spec"]["nodeSelector"][labels.NODE_POOL] == cm["data"]["pool"]
        assert "spot" in cm["data"]["capacityTypes"]
    assert r.obj("ConfigMap", DEFAULTS_CONFIGMAP, "risk-lab")["data"]["pool"] == "training"


def test_training_disabled_declares_nothing():
    config = stack_yaml("dev")
    config["mlops-platform:training"] = {"enabled": False}
    run = run_config(config)
    assert not [r for r in run.resources if r.type == "mlops:training:Training"]


# ---- config rules ------------------------------------------------------------------------------------------


def test_training_pool_must_name_a_pool_of_whole_gpus():
    with pytest.raises(ConfigError, match=r"training\.pool: names no GPU pool of whole GPUs"):
        _config("dev", training={"pool": "inference"})       # time-sliced
    with pytest.raises(ConfigError, match=r"training\.pool: names no GPU pool"):
        _config("dev", training={"pool": "nonexistent"})
    assert training_pool(_config("dev", training={"pool": "t4"})).name == "t4"   # the managed node group


def test_training_pool_required_without_a_spot_pool():
    gpu = {"nodePools": [{"name": "inference", "instanceTypes": ["g4dn.xlarge"], "gpuLimit": 1}]}
    with pytest.raises(ConfigError, match=r"training\.pool: is required"):
        _config("dev", gpu=gpu, cluster={"gpuNodeGroups": []}, teams=[])


def test_injected_images_must_be_pinned_and_allowed():
    with pytest.raises(ConfigError, match=r"training\.initContainerImage: must be pinned"):
        _config("dev", training={"initContainerImage": "public.ecr.aws/docker/library/alpine:latest"})
    with pytest.raises(ConfigError, match=r"training\.mpiKubectlDeliveryImage: is not from a registry"):
        _config("dev", training={"mpiKubectlDeliveryImage": "docker.io/someone/kubectl-delivery:v1"})


# ---- security: Secrets only in the operator's namespace, restricted pods (issue 18) -------------------------------

RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def assert_restricted(spec: dict, where: str) -> None:
    """What Pod Security `restricted` asks of a pod spec (pod-level settings inherited by containers)."""
    pod = spec.get("securityContext", {})
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        sc = {**pod, **c.get("securityContext", {})}
        assert sc.get("runAsNonRoot") is True and sc.get("runAsUser", 1) != 0, (where, c["name"])
        assert sc.get("seccompProfile", {}).get("type") in ("RuntimeDefault", "Localhost"), (where, c["name"])
        for key, value in RESTRICTED_CONTAINER.items():
            assert sc.get(key) == value, (where, c["name"], key)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_operator_reads_secrets_only_in_its_own_namespace(stack, request):
    r = request.getfixturevalue(stack)
    cluster_rules = r.obj("ClusterRole", "training-operator")["rules"]
    assert not [rule for rule in cluster_rules if {"secrets", "*"} & set(rule["resources"])]
    webhook_writes = [rule for rule in cluster_rules if "validatingwebhookconfigurations" in rule["resources"]
                      and "update" in rule["verbs"]]
    assert [rule.get("resourceNames") for rule in webhook_writes] == [[WEBHOOK_CONFIGURATION]]
    role = r.obj("Role", "training-operator", NAMESPACE)
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "update"]}]
    binding = r.obj("RoleBinding", "training-operator", NAMESPACE)
    assert binding["roleRef"]["kind"] == "Role"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "training-operator", "namespace": NAMESPACE}]
    # The namespace holds the webhook certificate and nothing else the platform declares.
    assert [s["metadata"]["name"] for s in r.objects("Secret", NAMESPACE)] == ["training-operator-webhook-cert"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_operator_and_its_worker_init_container_are_restricted(stack, request):
    r = request.getfixturevalue(stack)
    spec = r.obj("Deployment", "training-operator", NAMESPACE)["spec"]["template"]["spec"]
    assert_restricted(spec, "operator")
    (container,) = spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # The exact release tag (digests cannot be resolved offline; the tag is the release's, never a moving one).
    assert re.fullmatch(r"docker\.io/kubeflow/training-operator:v\d+\.\d+\.\d+", container["image"])
    template_file = f"{INIT_TEMPLATE_DIR}/{INIT_TEMPLATE_FILE}"
    assert f"--pytorch-init-container-template-file={template_file}" in container["args"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == INIT_TEMPLATE_DIR)
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    data = r.obj("ConfigMap", volume["configMap"]["name"], NAMESPACE)["data"]
    assert volume["configMap"]["name"] == INIT_TEMPLATE_CONFIGMAP
    # The operator renders it as a Go template, then reads a list of containers.
    filled = (data[INIT_TEMPLATE_FILE].replace("{{.InitContainerImage}}", "alpine:3.22")
              .replace("{{.MaxTries}}", "100").replace("{{.MasterAddr}}", "job-master-0"))
    (init,) = yaml.safe_load(filled)
    assert init["name"] == "init-pytorch" and "nslookup job-master-0" in init["command"][-1]
    assert_restricted({"containers": [init]}, "init-pytorch")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_job_templates_and_the_example_are_restricted(stack, request):
    r = request.getfixturevalue(stack)
    for cm in r.objects("ConfigMap"):
        if cm["metadata"]["name"] == DEFAULTS_CONFIGMAP:
            assert_restricted(yaml.safe_load(cm["data"]["podTemplate.yaml"])["spec"], cm["metadata"]["namespace"])
    example = yaml.safe_load(EXAMPLE.read_text())
    for role, replica in example["spec"]["pytorchReplicaSpecs"].items():
        assert_restricted(replica["template"]["spec"], role)


def test_the_restricted_check_fails_on_a_root_or_escalating_template():
    spec = rendered_example()["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    assert_restricted(spec, "worker")
    for breaks in (lambda s: s["securityContext"].pop("runAsNonRoot"),
                   lambda s: s["securityContext"].update(runAsUser=0),
                   lambda s: s["securityContext"].pop("seccompProfile"),
                   lambda s: s["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
                   lambda s: s["containers"][0]["securityContext"].pop("capabilities")):
        broken = copy.deepcopy(spec)
        breaks(broken)
        with pytest.raises(AssertionError):
            assert_restricted(broken, "mutated")

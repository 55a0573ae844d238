"""Spot-safe training: the seed's 1 master + 7 workers PyTorchJob on spot with checkpointing
(`examples/pytorchjob-spot.yaml`, rendered from components/training_jobs.py), the teams' checkpoint prefix in their
job defaults, and the spot-only training pool with its named on-demand fallback.

Regenerate the example after changing the template:
    UPDATE_EXAMPLES=1 .venv/bin/python -m pytest tests/test_spot_training.py
"""

from __future__ import annotations

import json

import pytest
import yaml

from components import labels
from components.config import ConfigError, parse_config, training_pool
from components.endpoints import TeamAccess
from components.tenancy import dvc_statements
from components.training_jobs import (CHECKPOINT_DIR_ENV, CHECKPOINT_ROOT_ENV, DEFAULTS_CONFIGMAP, SPOT_GRACE_SECONDS,
                                      example_spot_pytorchjob)
from policies import POLICIES
from preview.check import evaluate
from tests import schemas
from tests.conftest import Rendered, assert_example_is_current, raw_config
from tests.example_stack import EXAMPLE_TEAM, SPOT_EXAMPLE, example_stack
from tests.policy_harness import resource

SPOT_IMAGE = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops-prod/{EXAMPLE_TEAM}:train-3f2a9c1"
SPOT_HEADER = f"""\
# The seed's distributed job for team {EXAMPLE_TEAM} in the prod stack: one master and seven workers, one A100 each,
# on the spot-only training pool, and how it survives a spot interruption (docs/capacity.md, "Spot-safe training"):
# - Kueue admits it whole (label kueue.x-k8s.io/queue-name: training, the team's LocalQueue) or not at all;
# - on the two-minute spot notice Karpenter drains the node; each pod gets SIGTERM and has {SPOT_GRACE_SECONDS} s
#   (terminationGracePeriodSeconds) to write a checkpoint to CHECKPOINT_DIR = s3://<dvc bucket>/{EXAMPLE_TEAM}/
#   checkpoints/fraud-train-spot/ (CHECKPOINT_ROOT is checkpointUri of the ConfigMap training-job-defaults; only the
#   team's `training` and `notebook` roles may write there); train.py also checkpoints every 10 minutes;
# - the pod ends with a signal exit code (128 + n), which restartPolicy ExitCode retries (1-127, a bug, fails the job
#   at once) up to backoffLimit; Karpenter starts a spot node for the new pod, the other pods' torchrun agents
#   (--max-restarts, c10d rendezvous on the master) restart their workers and wait for it, and training resumes
#   from the newest checkpoint (--resume latest).
# Jobs that must not wait for spot select the named on-demand pool instead (training.fallbackPool, also in the
# ConfigMap as fallbackPool): nodeSelector mlops.platform/node-pool: training-on-demand.
# Rendered by components.training_jobs.example_spot_pytorchjob; tests/test_spot_training.py checks this file against
# it, the upstream PyTorchJob schema and the policy pack; tests/test_kueue.py checks that its queue admits it whole.
#   kubectl apply -f examples/pytorchjob-spot.yaml && kubectl -n {EXAMPLE_TEAM} get workloads,pytorchjobs -w
"""


@pytest.fixture(scope="module")
def stack() -> Rendered:
    return example_stack()


def team_access(name: str) -> TeamAccess:
    return TeamAccess(name=name, namespace=name, notebook_service_account="notebook",
                      training_service_account="training", serving_service_account="serving",
                      namespace_resource=None)


def rendered_spot_example() -> dict:
    return example_spot_pytorchjob(team_access(EXAMPLE_TEAM), training_pool(parse_config(raw_config("prod"))),
                                   image=SPOT_IMAGE)


def test_spot_example_file_is_the_rendered_job():
    assert_example_is_current(SPOT_EXAMPLE, SPOT_HEADER, rendered_spot_example())


def test_spot_example_validates_strictly_against_the_upstream_pytorchjob_schema(schemas_dir):
    assert schemas.errors(yaml.safe_load(SPOT_EXAMPLE.read_text()), schemas_dir) == []
    broken = yaml.safe_load(SPOT_EXAMPLE.read_text())
    broken["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["terminationGracePeriodSeconds"] = "90s"
    broken["spec"]["runPolicy"]["retries"] = 3
    assert len(schemas.errors(broken, schemas_dir)) >= 2, "the schema check must be able to fail"


def test_spot_example_is_the_seeds_job_made_spot_safe(stack):
    job = yaml.safe_load(SPOT_EXAMPLE.read_text())
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 7
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "training"
    assert job["spec"]["runPolicy"]["backoffLimit"] >= 10           # room for reclaims; bugs fail fast (ExitCode)
    pools = {p["metadata"]["name"]: p for p in stack.objects("NodePool")}
    for role, replica in replicas.items():
        assert replica["restartPolicy"] == "ExitCode", role
        spec = replica["template"]["spec"]
        # The spot-only pool: the job never silently runs at on-demand prices.
        pool = pools[spec["nodeSelector"][labels.NODE_POOL]]
        capacity = next(r["values"] for r in pool["spec"]["template"]["spec"]["requirements"]
                        if r["key"] == labels.CAPACITY_TYPE)
        assert capacity == ["spot"], role
        # SIGTERM to kill within the two-minute notice.
        assert 30 <= spec["terminationGracePeriodSeconds"] < 120
        (container,) = spec["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env[CHECKPOINT_ROOT_ENV]["valueFrom"]["configMapKeyRef"] == {
            "name": DEFAULTS_CONFIGMAP, "key": "checkpointUri"}
        assert env[CHECKPOINT_DIR_ENV]["value"] == f"$({CHECKPOINT_ROOT_ENV}){job['metadata']['name']}/"
        command = container["command"][-1]
        assert f"--checkpoint-dir ${CHECKPOINT_DIR_ENV}" in command and "--resume latest" in command
        # torchrun: a fixed-size c10d rendezvous of all 8 pods, restarting in place when a peer is lost.
        assert "--nnodes=8 " in command and "--rdzv-backend=c10d" in command and "--max-restarts=" in command


def test_each_team_gets_its_own_checkpoint_prefix_and_the_fallback_pool(stack):
    for ns in [n["metadata"]["name"] for n in stack.objects("Namespace")
               if labels.TEAM in (n["metadata"].get("labels") or {})]:
        defaults = stack.obj("ConfigMap", DEFAULTS_CONFIGMAP, ns)["data"]
        uri = defaults["checkpointUri"]
        assert uri.startswith("s3://") and uri.endswith(f"/{ns}/checkpoints/"), uri
        assert defaults["fallbackPool"] == "training-on-demand"
        assert defaults["queueLabel"] == "kueue.x-k8s.io/queue-name=training"
        template = yaml.safe_load(defaults["podTemplate.yaml"])
        assert 30 <= template["spec"]["terminationGracePeriodSeconds"] < 120      # within the spot notice


def test_the_checkpoint_prefix_is_written_by_the_teams_own_role_only():
    """The training role's DVC statements cover `<team>/checkpoints/...` and no other team's prefix."""
    statements = dvc_statements(EXAMPLE_TEAM, "arn:aws:s3:::dvc", "arn:aws:kms:us-east-1:1:key/k")
    objects = next(s for s in statements if "s3:PutObject" in s["Action"])
    assert objects["Resource"] == f"arn:aws:s3:::dvc/{EXAMPLE_TEAM}/*"
    listing = next(s for s in statements if s["Action"] == "s3:ListBucket")
    assert listing["Condition"]["StringLike"]["s3:prefix"] == [f"{EXAMPLE_TEAM}/", f"{EXAMPLE_TEAM}/*"]


def test_the_checkpoint_prefix_is_in_the_training_roles_policy(stack):
    """Rendered: the team's `training` IRSA role may write the ConfigMap's checkpoint prefix."""
    uri = stack.obj("ConfigMap", DEFAULTS_CONFIGMAP, EXAMPLE_TEAM)["data"]["checkpointUri"]
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    policies = [json.loads(r.inputs["policy"]) for r in stack.resources
                if r.type == "aws:iam/rolePolicy:RolePolicy" and r.name.startswith(f"team-{EXAMPLE_TEAM}")
                and "training" in r.name]
    writes = [s for p in policies for s in p["Statement"] if "s3:PutObject" in s["Action"]]
    assert any(f"arn:aws:s3:::{bucket}/{EXAMPLE_TEAM}/*" == s["Resource"] for s in writes), policies
    assert key.startswith(f"{EXAMPLE_TEAM}/")


def test_spot_example_passes_the_policy_pack(stack):
    job = yaml.safe_load(SPOT_EXAMPLE.read_text())
    found = evaluate(POLICIES, [*stack.resources, resource("kubernetes:kubeflow.org/v1:PyTorchJob", job, name="spot")])
    assert [v.message for v in found if v.mandatory] == []
    # ... and the pack does look at it: 31 workers are more than the team's queue and quota can ever admit.
    bad = yaml.safe_load(SPOT_EXAMPLE.read_text())
    bad["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = 31
    found = evaluate(POLICIES, [*stack.resources, resource("kubernetes:kubeflow.org/v1:PyTorchJob", bad, name="bad")])
    assert any(v.policy == "workload-fits-declared-capacity" and f"{EXAMPLE_TEAM}/fraud-train-spot" in v.message
               for v in found if v.mandatory)


def test_the_training_pool_is_spot_only_and_the_fallback_is_named_on_demand():
    config = raw_config("prod")
    assert training_pool(parse_config(config)).capacity_types == ("spot",)
    pools = config["gpu"]["nodePools"]
    mixed = [{**p, "capacityTypes": ["spot", "on-demand"]} if p["name"] == "training" else p for p in pools]
    with pytest.raises(ConfigError, match=r"training\.pool: pool 'training' mixes spot and on-demand"):
        parse_config({**config, "gpu": {**config["gpu"], "nodePools": mixed}})
    with pytest.raises(ConfigError, match=r"training\.fallbackPool: must be an on-demand-only pool"):
        parse_config({**config, "training": {"fallbackPool": "training"}})

"""What a team's training job looks like: the pod template of its replicas, the team's `training-job-defaults`
ConfigMap data, and the two examples (`examples/pytorchjob.yaml`, `examples/pytorchjob-spot.yaml`).

A job survives a spot interruption (docs/capacity.md, "Spot-safe training"):
- its replicas run on the spot-only training pool (or, opting in, on the named on-demand `training.fallbackPool`);
- Kueue admits it whole through the team's LocalQueue (label `kueue.x-k8s.io/queue-name`);
- on the two-minute spot notice Karpenter drains the node: each pod gets SIGTERM and `SPOT_GRACE_SECONDS` to write a
  checkpoint under `CHECKPOINT_DIR` = the team's checkpoint prefix (`checkpointUri` of the ConfigMap: the team's own
  DVC prefix, which only its `training` and `notebook` IRSA roles write) + the job's name;
- the pod ends with a signal exit code (128 + n), which `restartPolicy: ExitCode` retries (1-127, a bug, fails the
  job at once) up to `backoffLimit`; the operator recreates the pod, Karpenter starts a spot node, the other
  replicas' torchrun agents (`--max-restarts`, c10d rendezvous) restart their workers and wait in the rendezvous,
  and training resumes from the newest checkpoint.
"""

from __future__ import annotations

import copy
from typing import Any

import pulumi
import yaml

from components import labels, mlflow_auth
from components.endpoints import PRIORITY_CLASSES, TeamAccess
from components.kueue import LOCAL_QUEUE, QUEUE_LABEL
from components.planning.gpu_supply import GpuPool

DEFAULTS_CONFIGMAP = "training-job-defaults"
# What Pod Security `restricted` asks of every pod a team runs (the team namespaces warn and audit at that level):
# non-root, no privilege escalation, no capabilities, the runtime's seccomp profile. A job image whose user is root
# runs as uid/gid 1000 instead (the notebooks' uid); an image with its own non-root user may set runAsUser itself.
JOB_POD_SECURITY_CONTEXT = {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
                            "seccompProfile": {"type": "RuntimeDefault"}}
JOB_CONTAINER_SECURITY_CONTEXT = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
# EC2 gives two minutes' notice before it reclaims a spot instance; Karpenter drains on the notice, a little later.
# 90 s lets the trainer write a checkpoint and still ends the pod before the instance goes.
SPOT_GRACE_SECONDS = 90
CHECKPOINT_ROOT_ENV = "CHECKPOINT_ROOT"     # from the ConfigMap's checkpointUri: s3://<dvc bucket>/<team>/checkpoints/
CHECKPOINT_DIR_ENV = "CHECKPOINT_DIR"       # CHECKPOINT_ROOT + the job's name
TORCHRUN_MAX_RESTARTS = 10                  # worker-group restarts torchrun's agent makes in place (lost peers)
SPOT_BACKOFF_LIMIT = 20                     # pod recreations (reclaims) before the job fails


def checkpoint_uri(bucket: str, team: str) -> str:
    """A team's checkpoint prefix: under its own DVC prefix `s3://<bucket>/<team>/` (tenancy.dvc_statements: read and
    write for the team's `training` and `notebook` roles, nobody else's)."""
    return f"s3://{bucket}/{team}/checkpoints/"


def job_pod_template(team: TeamAccess, pool: GpuPool, priority_class: str, image: str, command: list[str],
                     gpus: int = 1, cpu: str = "3", memory: str = "12Gi", datasets: tuple[str, ...] = (),
                     mlflow_run_id: str | None = None, job_name: str | None = None) -> dict[str, Any]:
    """A training replica's pod template: the team's `training` identity and label, the GPU pool, its taint, and a
    read-only mount of each dataset claim (`dataset-<name>`, tenancy) at `/datasets/<name>`. With `mlflow_run_id`
    (a run created beforehand) the pods carry it as a label, which the cost rules join the job's GPU-hours and cost
    to, and as MLFLOW_RUN_ID, so `mlflow.start_run()` in the job logs to that very run. Spot safety: a grace period
    within the spot notice, and (with `job_name`) the job's checkpoint directory as CHECKPOINT_DIR."""
    resource = next(iter(pool.resources))
    pod_labels = {labels.JOB_TYPE: "training", labels.TEAM: team.name}
    if mlflow_run_id:
        pod_labels[labels.MLFLOW_RUN_ID] = mlflow_run_id
    # From the pod's own label: one place to set the run (empty without it: MLflow starts a new run).
    env: list[dict[str, Any]] = [{"name": "MLFLOW_RUN_ID", "valueFrom": {"fieldRef": {
        "fieldPath": f"metadata.labels['{labels.MLFLOW_RUN_ID}']"}}}]
    if job_name:
        env += [{"name": CHECKPOINT_ROOT_ENV, "valueFrom": {"configMapKeyRef": {
                    "name": DEFAULTS_CONFIGMAP, "key": "checkpointUri"}}},
                {"name": CHECKPOINT_DIR_ENV, "value": f"$({CHECKPOINT_ROOT_ENV}){job_name}/"}]
    template: dict[str, Any] = {
        "metadata": {"labels": pod_labels},
        "spec": {
            "serviceAccountName": team.training_service_account,
            "priorityClassName": priority_class,
            "securityContext": copy.deepcopy(JOB_POD_SECURITY_CONTEXT),
            # No Kubernetes API token in training pods (IRSA projects its own AWS token regardless).
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": SPOT_GRACE_SECONDS,
            "nodeSelector": {labels.NODE_POOL: pool.name, labels.GPU_TYPE: pool.gpu_type},
            "tolerations": [{"key": labels.GPU_TAINT["key"], "operator": "Equal", "value": labels.GPU_TAINT["value"],
                             "effect": labels.GPU_TAINT["effect"]}],
            "containers": [{
                "name": "pytorch",            # the PyTorchJob controller looks for a container of this name
                "image": image,
                "command": list(command),
                # MLFLOW_TRACKING_URI / _USERNAME / _PASSWORD: the team's own MLflow user (components/mlflow_auth.py)
                "envFrom": [{"secretRef": {"name": mlflow_auth.TEAM_SECRET}}],
                "securityContext": copy.deepcopy(JOB_CONTAINER_SECURITY_CONTEXT),
                "env": env,
                "resources": {"requests": {"cpu": cpu, "memory": memory, resource: gpus},
                              "limits": {"memory": memory, resource: gpus}},
            }],
        },
    }
    if datasets:
        template["spec"]["containers"][0]["volumeMounts"] = [
            {"name": f"dataset-{d}", "mountPath": f"/datasets/{d}", "readOnly": True} for d in datasets]
        template["spec"]["volumes"] = [
            {"name": f"dataset-{d}", "persistentVolumeClaim": {"claimName": f"dataset-{d}", "readOnly": True}}
            for d in datasets]
    return template


def job_defaults_data(team: TeamAccess, pool: GpuPool, priority_class: str, fallback: GpuPool | None = None,
                      checkpoint_bucket: pulumi.Input[str] | None = None) -> dict[str, Any]:
    """The team's `training-job-defaults` ConfigMap: where jobs run, the queue label, the checkpoint prefix
    (`checkpointUri`, from the DVC bucket's name) and the replica pod template."""
    template = job_pod_template(team, pool, priority_class, image="<your image>", command=["<your command>"],
                                mlflow_run_id="<your MLflow run id>", job_name="<job name>")
    data: dict[str, Any] = {
        "pool": pool.name,
        "gpuType": pool.gpu_type,
        "capacityTypes": ",".join(pool.capacity_types),
        "gpuResource": next(iter(pool.resources)),
        "serviceAccount": team.training_service_account,
        "priorityClass": priority_class,
        "queueLabel": f"{QUEUE_LABEL}={LOCAL_QUEUE}",
        "terminationGracePeriodSeconds": str(SPOT_GRACE_SECONDS),
        "podTemplate.yaml": yaml.safe_dump(template, sort_keys=False),
    }
    if fallback is not None:
        data["fallbackPool"] = fallback.name
    if checkpoint_bucket is not None:
        data["checkpointUri"] = pulumi.Output.from_input(checkpoint_bucket).apply(
            lambda bucket: checkpoint_uri(bucket, team.name))
    return data


def _job(team: TeamAccess, name: str, run_policy: dict[str, Any], replicas: dict[str, tuple[int, str]],
         template: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "namespace": team.namespace,
                     "labels": {labels.TEAM: team.name, QUEUE_LABEL: LOCAL_QUEUE}},
        "spec": {
            "runPolicy": run_policy,
            "pytorchReplicaSpecs": {role: {"replicas": n, "restartPolicy": restart, "template": copy.deepcopy(template)}
                                    for role, (n, restart) in replicas.items()},
        },
    }


def example_pytorchjob(team: TeamAccess, pool: GpuPool, image: str, workers: int = 1, name: str = "fraud-train",
                       dataset: str = "transactions", mlflow_run_id: str = "4c1e9a7f2b8d4e6a9f0c3b5d7e1a2c4f",
                       priority_class: str = PRIORITY_CLASSES.training) -> dict[str, Any]:
    """The example PyTorchJob (`examples/pytorchjob.yaml`): one master and `workers` workers, one GPU each, on the
    spot training pool; torchrun reads the rendezvous settings the operator sets (MASTER_ADDR, WORLD_SIZE, ...)."""
    command = ["sh", "-c", f"dvc pull -r platform && torchrun train.py --data /datasets/{dataset}"]
    template = job_pod_template(team, pool, priority_class, image, command, datasets=(dataset,),
                                mlflow_run_id=mlflow_run_id)
    return _job(team, name, {"cleanPodPolicy": "None", "backoffLimit": 3, "ttlSecondsAfterFinished": 86400},
                {"Master": (1, "OnFailure"), "Worker": (workers, "OnFailure")}, template)


def example_spot_pytorchjob(team: TeamAccess, pool: GpuPool, image: str, workers: int = 7,
                            name: str = "fraud-train-spot", dataset: str = "transactions",
                            mlflow_run_id: str = "9b2d4f6a8c0e4a1b3d5f7a9c1e3b5d7f",
                            priority_class: str = PRIORITY_CLASSES.training) -> dict[str, Any]:
    """The spot example (`examples/pytorchjob-spot.yaml`): the seed's job, one master and `workers` workers with one
    GPU each on the spot pool, made to survive reclaims (module docstring). torchrun's rendezvous is c10d on the
    master (the operator's MASTER_ADDR/MASTER_PORT) with a fixed size: no `elasticPolicy`, which would drop the
    master and change the job's shape; a lost replica is waited for, not trained without."""
    nodes = 1 + workers
    command = ["sh", "-c",
               f"dvc pull -r platform && torchrun --nnodes={nodes} --nproc-per-node=1 "
               f"--max-restarts={TORCHRUN_MAX_RESTARTS} --rdzv-backend=c10d "
               "--rdzv-endpoint=$MASTER_ADDR:$MASTER_PORT "
               f"train.py --data /datasets/{dataset} --checkpoint-dir ${CHECKPOINT_DIR_ENV} --resume latest "
               "--checkpoint-every 10m --checkpoint-on-sigterm"]
    template = job_pod_template(team, pool, priority_class, image, command, datasets=(dataset,),
                                mlflow_run_id=mlflow_run_id, job_name=name)
    # ExitCode: signal exits (128 + n: a reclaim, an eviction) are retried, 1-127 (a bug) fail the job at once, so
    # a generous backoffLimit only ever counts reclaims.
    return _job(team, name, {"cleanPodPolicy": "None", "backoffLimit": SPOT_BACKOFF_LIMIT,
                             "ttlSecondsAfterFinished": 86400},
                {"Master": (1, "ExitCode"), "Worker": (workers, "ExitCode")}, template)

"""Kueue: training jobs admitted all-or-nothing, GPU quota per team, idle GPUs shared in one cohort.

- The upstream chart (pinned in components/data/versions.yaml, its CRDs in `templates/crd/`) on the system nodes, configured to manage only
  the Kubeflow training jobs (PyTorchJob, TFJob) in team namespaces (`managedJobsNamespaceSelector` on the team
  label, `manageJobsWithoutQueueName: false`), with `waitForPodsReady`: an admitted job whose pods do not all run
  within the timeout is evicted and requeued, so a job never holds GPUs with half its workers.
- A ResourceFlavor per GPU pool training may use (the default spot pool and the named on-demand fallback), told
  apart by the node labels `mlops.platform/node-pool` and `karpenter.sh/capacity-type`.
- Per team a ClusterQueue in the cohort `mlops-gpu`: nominal GPU quota = the team's `gpuQuota` on each flavor, a
  borrowing limit so idle GPUs of other teams can be used, and `reclaimWithinCohort: Any` so a team gets its own
  quota back by preempting borrowers; and a LocalQueue `training` in the team namespace pointing at it.
- A ValidatingAdmissionPolicy: a PyTorchJob or TFJob in a team namespace must name a LocalQueue
  (`kueue.x-k8s.io/queue-name`), so no training job bypasses the queue (Kueue ignores unlabelled jobs).

Notebooks and InferenceServices stay outside the queue: they are long-running, interactive or serving traffic,
and are held to the namespace ResourceQuota only (docs/capacity.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components import catalog, labels

PINNED = catalog.chart("kueue")
CHART, CHART_VERSION, CHART_REPO = PINNED["chart"], PINNED["version"], PINNED["repo"]
IMAGE = catalog.image("kueue")
NAMESPACE = "kueue-system"
API = "kueue.x-k8s.io/v1beta2"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
COHORT = "mlops-gpu"
LOCAL_QUEUE = "training"                   # each team's LocalQueue, in its namespace
FRAMEWORKS = ("kubeflow.org/pytorchjob", "kubeflow.org/tfjob")
QUEUED_KINDS = {"pytorchjobs": "PyTorchJob", "tfjobs": "TFJob"}
ADMISSION_POLICY_NAME = "mlops-training-queue"
PODS_READY_TIMEOUT = "10m"                 # GPU nodes start in ~2-5 min; a job not running by then gives its GPUs back
RESOURCES = {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}


@dataclass(frozen=True)
class Flavor:
    """A GPU pool as Kueue sees it: the nodes its pods land on."""

    name: str                               # the pool's name (ResourceFlavor name)
    node_labels: dict[str, str]             # every node of the pool carries these


@dataclass(frozen=True)
class TeamQueue:
    """One team's training quota: whole GPUs (one number, `gpuQuota`), with the CPU and memory that go with them."""

    team: str
    namespace: str
    gpus: int                               # nominal quota on each flavor
    gpu_borrowing_limit: int                # GPUs it may borrow from the cohort beyond `gpus`
    cpu: int
    memory_gib: int


@dataclass(frozen=True)
class KueueArgs:
    access: Any                             # ClusterAccess
    flavors: list[Flavor]
    queues: list[TeamQueue]
    team_namespaces: dict[str, pulumi.Resource]   # team -> its Namespace resource (queues depend on it)
    replicas: int = 1


class Kueue(pulumi.ComponentResource):
    namespace: str
    cluster_queues: list[str]
    local_queues: list[str]                 # "<namespace>/<name>"
    flavors: list[str]
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: KueueArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:kueue:Kueue", name, None, opts)
        if not args.flavors:
            raise ValueError("Kueue needs at least one GPU pool (ResourceFlavor) for training")
        provider = args.access.provider

        def after(*deps: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, provider=provider, depends_on=list(deps))

        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace", metadata=k8s.meta.v1.ObjectMetaArgs(name=NAMESPACE, labels={
                "pod-security.kubernetes.io/enforce": "restricted"}),
            opts=after(*args.access.depends_on))
        self.release = k8s.helm.v3.Release(
            f"{name}-release", name=CHART, chart=CHART, version=CHART_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPO),
            namespace=NAMESPACE, values=helm_values(args.replicas), opts=after(namespace))

        for flavor in args.flavors:
            k8s.apiextensions.CustomResource(
                f"{name}-flavor-{flavor.name}", api_version=API, kind="ResourceFlavor",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=flavor.name), spec=resource_flavor_spec(flavor),
                opts=after(self.release))
        for queue in args.queues:
            cq = k8s.apiextensions.CustomResource(
                f"{name}-{queue.team}-cluster-queue", api_version=API, kind="ClusterQueue",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=queue.team, labels={labels.TEAM: queue.team}),
                spec=cluster_queue_spec(queue, args.flavors), opts=after(self.release))
            k8s.apiextensions.CustomResource(
                f"{name}-{queue.team}-local-queue", api_version=API, kind="LocalQueue",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=LOCAL_QUEUE, namespace=queue.namespace,
                                                    labels={labels.TEAM: queue.team}),
                spec=local_queue_spec(queue),
                opts=after(cq, *[r for t, r in args.team_namespaces.items() if t == queue.team]))

        policy = k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
            f"{name}-queue-required", metadata=k8s.meta.v1.ObjectMetaArgs(name=ADMISSION_POLICY_NAME),
            spec=admission_policy_spec(), opts=after(*args.access.depends_on))
        k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
            f"{name}-queue-required", metadata=k8s.meta.v1.ObjectMetaArgs(name=ADMISSION_POLICY_NAME),
            spec=admission_binding_spec(), opts=after(policy))

        self.namespace = NAMESPACE
        self.cluster_queues = [q.team for q in args.queues]
        self.local_queues = [f"{q.namespace}/{LOCAL_QUEUE}" for q in args.queues]
        self.flavors = [f.name for f in args.flavors]
        self.register_outputs({"namespace": self.namespace, "cluster_queues": self.cluster_queues,
                               "local_queues": self.local_queues, "flavors": self.flavors})


# ---------------------------------------------------------------------------------------------------
# Pure builders (tests, the admission model and the policy pack read the same shapes)


def manager_config() -> dict[str, Any]:
    """Kueue's Configuration (config.kueue.x-k8s.io/v1beta2): the chart's defaults plus the platform's choices."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "health": {"healthProbeBindAddress": ":8081"},
        "metrics": {"bindAddress": ":8443"},
        "webhook": {"port": 9443},
        "leaderElection": {"leaderElect": True, "resourceName": "c1f6bfd2.kueue.x-k8s.io"},
        "controller": {"groupKindConcurrency": {
            "Workload.kueue.x-k8s.io": 10, "LocalQueue.kueue.x-k8s.io": 5, "ClusterQueue.kueue.x-k8s.io": 5,
            "ResourceFlavor.kueue.x-k8s.io": 1}},
        "clientConnection": {"qps": 300, "burst": 500},
        # All-or-nothing: an admitted job whose pods are not all ready in time is evicted and requeued
        # (blockAdmission: one job at a time gets its pods started, so two half-started jobs never deadlock).
        "waitForPodsReady": {"timeout": PODS_READY_TIMEOUT, "blockAdmission": True,
                             "requeuingStrategy": {"timestamp": "Eviction", "backoffLimitCount": 5,
                                                   "backoffBaseSeconds": 60, "backoffMaxSeconds": 1800}},
        # Only labelled jobs are queued (the admission policy makes every training job carry the label), and only in
        # team namespaces: notebooks, inference and platform workloads are never suspended by Kueue.
        "manageJobsWithoutQueueName": False,
        "managedJobsNamespaceSelector": {"matchExpressions": [{"key": labels.TEAM, "operator": "Exists"}]},
        "integrations": {"frameworks": list(FRAMEWORKS)},
        # EFA interfaces are per node, not a shared budget: not counted against quotas.
        "resources": {"excludeResourcePrefixes": ["vpc.amazonaws.com/"]},
    }


def helm_values(replicas: int = 1) -> dict[str, Any]:
    repository, tag = IMAGE.rsplit(":", 1)
    return {
        "controllerManager": {
            "replicas": replicas,
            "manager": {"image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
                        "resources": RESOURCES},
            # On the system node group, like every controller of the platform.
            "nodeSelector": {"kubernetes.io/os": "linux", labels.NODE_ROLE: "system"},
            "podDisruptionBudget": {"enabled": replicas > 1, "minAvailable": 1},
        },
        "managerConfig": {"controllerManagerConfigYaml": yaml.safe_dump(manager_config(), sort_keys=False)},
        "enableKueueViz": False,
        "enablePrometheus": False,
    }


def resource_flavor_spec(flavor: Flavor) -> dict[str, Any]:
    # The GPU taint is tolerated by the jobs themselves (their pod template), so the flavor does not inject it.
    return {"nodeLabels": dict(flavor.node_labels)}


def covered_resources() -> list[str]:
    return ["cpu", "memory", labels.GPU_RESOURCE]


def cluster_queue_spec(queue: TeamQueue, flavors: list[Flavor]) -> dict[str, Any]:
    def quota(resource: str, nominal: int | str, borrow: int | None) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": resource, "nominalQuota": nominal}
        if borrow is not None:
            entry["borrowingLimit"] = borrow
        return entry

    return {
        "cohortName": COHORT,
        "namespaceSelector": {"matchLabels": {labels.TEAM: queue.team}},   # only the team's own LocalQueue
        "queueingStrategy": "BestEffortFIFO",     # a big job waiting does not block smaller ones that fit
        "resourceGroups": [{
            "coveredResources": covered_resources(),
            "flavors": [{"name": f.name, "resources": [
                # CPU and memory borrow without limit: the namespace ResourceQuota caps them anyway.
                quota("cpu", queue.cpu, None),
                quota("memory", f"{queue.memory_gib}Gi", None),
                quota(labels.GPU_RESOURCE, queue.gpus, queue.gpu_borrowing_limit),
            ]} for f in flavors],
        }],
        "preemption": {
            # A team below its nominal quota takes GPUs back from borrowers (any priority); within the team,
            # higher-priority jobs may preempt lower ones. Borrowing never preempts.
            "reclaimWithinCohort": "Any",
            "withinClusterQueue": "LowerPriority",
            "borrowWithinCohort": {"policy": "Never"},
        },
        # Try the next flavor (the on-demand fallback) before borrowing in the preferred one only when the job
        # selects both; a job selects one pool by node selector, which Kueue matches to the flavor's labels.
        "flavorFungibility": {"whenCanBorrow": "MayStopSearch", "whenCanPreempt": "TryNextFlavor"},
    }


def local_queue_spec(queue: TeamQueue) -> dict[str, Any]:
    return {"clusterQueue": queue.team}


ADMISSION_EXPRESSION = (f"has(object.metadata.labels) && '{QUEUE_LABEL}' in object.metadata.labels && "
                        f"object.metadata.labels['{QUEUE_LABEL}'] != ''")


def admission_policy_spec() -> dict[str, Any]:
    return {
        "failurePolicy": "Fail",
        "matchConstraints": {"resourceRules": [{
            "apiGroups": ["kubeflow.org"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
            "resources": list(QUEUED_KINDS)}]},
        "validations": [{
            "expression": ADMISSION_EXPRESSION,
            "message": f"Training jobs in team namespaces go through Kueue: set the label {QUEUE_LABEL}: "
                       f"{LOCAL_QUEUE} (the team's LocalQueue), so the job starts only when all its workers fit.",
            "reason": "Invalid"}],
    }


def admission_binding_spec() -> dict[str, Any]:
    return {"policyName": ADMISSION_POLICY_NAME, "validationActions": ["Deny", "Audit"],
            "matchResources": {"namespaceSelector": {"matchExpressions": [
                {"key": labels.TEAM, "operator": "Exists"}]}}}


def borrowing_limit(own: int, room: int, percent: int = 100) -> int:
    """GPUs a team may borrow: at most `percent` of its own quota, and never more than `room` (what the GPU pools
    supply beyond its own quota)."""
    return max(0, min(room, own * percent // 100))

"""What one component offers another: small typed records passed through `__main__.py`.

Build order (no cycles): network -> cluster -> GPU capacity -> MLflow, datasets -> teams -> notebooks,
training, serving, observability. A later component receives these records, never a whole earlier component.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components.iam import Oidc


@dataclass(frozen=True)
class ClusterAccess:
    """Everything a component needs to put objects into the cluster and give pods AWS roles."""

    cluster_name: pulumi.Output[str]
    provider: k8s.Provider
    oidc: Oidc
    node_role_name: pulumi.Output[str]
    cluster_security_group_id: pulumi.Output[str]
    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    depends_on: list[pulumi.Resource] = field(default_factory=list)


@dataclass(frozen=True)
class ServiceEndpoint:
    """A platform service pods talk to, as NetworkPolicies must select it."""

    namespace: str
    pod_labels: dict[str, str]
    port: int
    url: str


@dataclass(frozen=True)
class PodSource:
    """Pods in another namespace that may open connections to a team's pods."""

    namespace: str
    pod_labels: dict[str, str]


# MLflow's tracking server, as the MLflow component declares it and as team egress policies select it.
# Clients use `url` (port 80 on the Service); NetworkPolicies see the pod port after the Service's DNAT.
MLFLOW = ServiceEndpoint(
    namespace="mlflow",
    pod_labels={"app.kubernetes.io/name": "mlflow"},
    port=5000,
    url="http://mlflow.mlflow.svc.cluster.local",
)

# Where requests to InferenceServices come from in KServe's Serverless mode: the Kourier gateway, and
# Knative's activator (which holds requests while a model scales up from its minimum).
SERVING_INGRESS = (
    PodSource(namespace="kourier-system", pod_labels={"app": "3scale-kourier-gateway"}),
    PodSource(namespace="knative-serving", pod_labels={"app": "activator"}),
)

# JupyterHub (zero-to-jupyterhub) as notebook pods in team namespaces meet it: single-user servers call the
# hub's API (pod port 8081); the hub and the proxy connect to the servers. Team NetworkPolicies select these.
JUPYTERHUB_API = ServiceEndpoint(
    namespace="jupyterhub",
    pod_labels={"app": "jupyterhub", "component": "hub"},
    port=8081,
    url="http://hub.jupyterhub.svc.cluster.local:8081",
)
# The identity that creates notebook pods (KubeSpawner in the hub). Only it may label a pod `job-type: notebook`,
# the label that opens the notebook egress (package indexes) in team namespaces.
NOTEBOOK_SPAWNER = "system:serviceaccount:jupyterhub:hub"
NOTEBOOK_INGRESS = (
    PodSource(namespace="jupyterhub", pod_labels={"app": "jupyterhub", "component": "proxy"}),
    PodSource(namespace="jupyterhub", pod_labels={"app": "jupyterhub", "component": "hub"}),
)


@dataclass(frozen=True)
class MetricsScraper:
    """Prometheus as team NetworkPolicies admit it: its pods, and the ports it may scrape on inference pods only."""

    source: PodSource
    inference_ports: tuple[int, ...]


# The platform's Prometheus (components/observability/, kube-prometheus-stack in `monitoring`; the Prometheus
# operator labels its pods with these two). In a team namespace it scrapes only the queue-proxy sidecar of
# InferenceService pods, on Knative's user-metrics port (`http-usermetric`, 9091).
PROMETHEUS = MetricsScraper(
    source=PodSource(namespace="monitoring", pod_labels={"app.kubernetes.io/name": "prometheus",
                                                         "app.kubernetes.io/managed-by": "prometheus-operator"}),
    inference_ports=(9091,),
)


@dataclass(frozen=True)
class PriorityClasses:
    """The platform's PriorityClass names (declared by the tenancy component), for workloads to set."""

    inference: str
    notebook: str
    training: str
    batch: str          # preemptible batch work: below every other pod, never preempts


PRIORITY_CLASSES = PriorityClasses(
    inference="mlops-inference",
    notebook="mlops-notebook",
    training="mlops-training",
    batch="mlops-batch-preemptible",
)


@dataclass(frozen=True)
class DvcRemote:
    """The versioned, encrypted bucket holding every team's DVC remote under `s3://<bucket>/<team>/`."""

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str]


@dataclass(frozen=True)
class DatasetAccess:
    """One dataset's FSx for Lustre file system, as one team that may read it needs it.

    A PersistentVolume binds to exactly one claim, so the Datasets component declares one ReadOnlyMany PV per
    (dataset, team), pre-bound (`claimRef`) to the claim `claim_name` in the team namespace: the team's
    PersistentVolumeClaim must use that name, `volumeName=persistent_volume_name`, `accessModes=[ReadOnlyMany]`,
    `storageClassName=storage_class_name` ("" keeps the default StorageClass from provisioning a gp3 volume
    instead) and a request of `capacity_gib` Gi.
    """

    name: str
    persistent_volume_name: str
    capacity_gib: int
    lustre_cidrs: pulumi.Output[list[str]]   # where the file system's network interfaces live
    s3_uri: str
    claim_name: str = ""                     # the PVC name in the team namespace ("dataset-<name>")
    storage_class_name: str = ""


@dataclass(frozen=True)
class TeamAccess:
    """A team's namespace and identities, as notebooks, training and serving need them."""

    name: str
    namespace: str                      # equal to the team name
    notebook_service_account: str       # "notebook", "training", "serving" in the team namespace
    training_service_account: str
    serving_service_account: str
    namespace_resource: pulumi.Resource

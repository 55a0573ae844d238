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


@dataclass(frozen=True)
class DvcRemote:
    """The versioned, encrypted bucket holding every team's DVC remote under `s3://<bucket>/<team>/`."""

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str]


@dataclass(frozen=True)
class DatasetAccess:
    """One dataset's FSx for Lustre file system, as a team that may read it needs it."""

    name: str
    persistent_volume_name: str
    capacity_gib: int
    lustre_cidrs: pulumi.Output[list[str]]   # where the file system's network interfaces live
    s3_uri: str


@dataclass(frozen=True)
class TeamAccess:
    """A team's namespace and identities, as notebooks, training and serving need them."""

    name: str
    namespace: str                      # equal to the team name
    notebook_service_account: str       # "notebook", "training", "serving" in the team namespace
    training_service_account: str
    serving_service_account: str
    namespace_resource: pulumi.Resource

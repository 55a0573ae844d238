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
    namespace: str
    notebook_service_account: str
    training_service_account: str
    serving_service_account: str
    namespace_resource: pulumi.Resource

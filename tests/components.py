"""Component-level harness: one ComponentResource under the offline mocks, with the minimal world it needs.

A whole-stack render (`run_config`) declares every component of the platform (~2-4 s on this machine); a unit test of
one component's behaviour needs only that component. `render_component(build)` runs `build()` under the same mocks
and runtime as `python -m preview render` (preview/engine.py) and returns the usual `Rendered`, so assertions read
the same. Inside `build`, `cluster_access()` and `team_access(name)` stand in for what the Cluster and Tenancy
components hand the others.
"""

from __future__ import annotations

from typing import Any, Callable

import pulumi
import pulumi_kubernetes as k8s

from components.endpoints import ClusterAccess, TeamAccess
from components.iam import Oidc
from preview import engine
from tests.conftest import Rendered

ACCOUNT_ID = "123456789012"


def render_component(build: Callable[[], Any], region: str = "us-west-2", stack: str = "test",
                     config: dict[str, Any] | None = None) -> Rendered:
    """`build()` declares the component (and whatever stand-ins it needs); everything registered, rendered."""
    return Rendered(engine.run_program(stack, {"aws:region": region, **(config or {})}, body=build))


def cluster_access(name: str = "test") -> ClusterAccess:
    """A cluster as components see it: a Kubernetes provider and the cluster's AWS identifiers."""
    return ClusterAccess(
        cluster_name=pulumi.Output.from_input(name),
        provider=k8s.Provider(f"{name}-k8s", kubeconfig="{}"),
        oidc=Oidc(provider_arn=pulumi.Output.from_input(
                      f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/TEST"),
                  issuer_url=pulumi.Output.from_input("https://oidc.eks.us-west-2.amazonaws.com/id/TEST")),
        node_role_name=pulumi.Output.from_input(f"{name}-nodes"),
        cluster_security_group_id=pulumi.Output.from_input("sg-0123456789abcdef0"),
        vpc_id=pulumi.Output.from_input("vpc-0123456789abcdef0"),
        private_subnet_ids=pulumi.Output.from_input(["subnet-a", "subnet-b"]),
    )


def team_access(team: str, access: ClusterAccess) -> TeamAccess:
    """A team's namespace (declared here) and its three service accounts' names, as Tenancy hands them on."""
    namespace = k8s.core.v1.Namespace(f"ns-{team}", metadata={"name": team},
                                      opts=pulumi.ResourceOptions(provider=access.provider))
    return TeamAccess(name=team, namespace=team, notebook_service_account="notebook",
                      training_service_account="training", serving_service_account="serving",
                      namespace_resource=namespace)

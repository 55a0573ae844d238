"""Secrets: no ClusterRole the platform declares reads or writes Secrets.

A ClusterRole bound cluster-wide that reads Secrets reads every credential of the cluster (MLflow's database URI, the
teams' MLflow passwords, Grafana's admin, the OAuth client secret). Operators that keep a certificate or a token in
a Secret of their own namespace get a namespaced Role there instead (the training operator does,
components/training.py). A rule grants Secrets when its apiGroups hold "" or "*" and its resources "secrets" or "*";
`allowed` (config) lists ClusterRoles that must keep such a rule, each with its reason in the stack's policy config.
"""

from __future__ import annotations

from typing import Any

from policies.declare import resource_policy
from policies.workloads import as_dict, as_list

CLUSTER_ROLE = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"


def secret_rules(props: dict[str, Any]) -> list[dict[str, Any]]:
    """The rules of a role that grant any verb on Secrets."""
    return [rule for rule in map(as_dict, as_list(props.get("rules")))
            if {"", "*"} & {str(g) for g in as_list(rule.get("apiGroups"))}
            and {"secrets", "*"} & {str(r) for r in as_list(rule.get("resources"))}]


def cluster_role_secret_problems(resource_type: str, props: dict[str, Any], allowed: list[str]) -> list[str]:
    if resource_type != CLUSTER_ROLE:
        return []
    name = as_dict(props.get("metadata")).get("name")
    if name in allowed:
        return []
    return [f"The ClusterRole '{name}' must not grant {sorted({str(v) for v in as_list(rule.get('verbs'))})} on "
            f"Secrets in every namespace." for rule in secret_rules(props)]


@resource_policy(
    "cluster-role-no-secrets",
    "No ClusterRole declared by the platform grants access to Secrets (cluster-wide credentials).",
    types=(CLUSTER_ROLE,),
    config={"allowed": {"type": "array", "items": {"type": "string"}, "default": [],
                        "description": "ClusterRole names allowed a Secrets rule (state the reason beside the "
                                       "entry)."}},
    remediation="Grant Secrets in a namespaced Role of the component's own namespace (bound to its service "
                "account), or with resourceNames for get/update of the one Secret it owns.",
)
def cluster_roles_no_secrets(r, config):
    return cluster_role_secret_problems(r.resource_type, r.props, list(config.get("allowed") or []))


POLICIES = [cluster_roles_no_secrets]

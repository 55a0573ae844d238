"""`cluster-role-no-secrets`: a compliant ClusterRole, then one-property mutations that grant Secrets."""

from __future__ import annotations

import pytest

from policies.access import cluster_roles_no_secrets
from tests.policy_harness import mutated, resource, violations

CLUSTER_ROLE = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
COMPLIANT = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "operator"},
             "rules": [{"apiGroups": [""], "resources": ["pods", "configmaps"], "verbs": ["get", "list"]},
                       {"apiGroups": ["apps"], "resources": ["secrets"], "verbs": ["get"]}]}   # not core secrets


def test_compliant_cluster_role_passes():
    assert violations(cluster_roles_no_secrets, resource(CLUSTER_ROLE, COMPLIANT)) == []


@pytest.mark.parametrize("change", [
    lambda r: r["rules"][0]["resources"].append("secrets"),
    lambda r: r["rules"][0].update(resources=["*"]),
    lambda r: r["rules"][1].update(apiGroups=["*"]),
    lambda r: r["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["watch"]}),
])
def test_a_secrets_rule_is_a_violation(change):
    found = violations(cluster_roles_no_secrets, resource(CLUSTER_ROLE, mutated(COMPLIANT, change)))
    assert len(found) == 1 and "Secrets in every namespace" in found[0]


def test_namespaced_roles_and_allowed_cluster_roles_pass():
    secrets = mutated(COMPLIANT, lambda r: r["rules"][0]["resources"].append("secrets"))
    assert violations(cluster_roles_no_secrets, resource(ROLE, secrets)) == []
    assert violations(cluster_roles_no_secrets, resource(CLUSTER_ROLE, secrets),
                      config={"allowed": ["operator"]}) == []


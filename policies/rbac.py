"""RBAC: no team identity gets a wildcard role.

A role is a wildcard role when one of its rules has `*` in verbs, resources or apiGroups (or it is a built-in
superuser role such as `cluster-admin`). A team identity is a Group or User subject (people come in through the
groups EKS access entries map them to) or a ServiceAccount of a team namespace. Bindings are followed by name:
ClusterRoleBinding -> ClusterRole, RoleBinding -> ClusterRole or Role of its namespace; aggregated ClusterRoles
count their aggregation labels as a wildcard (what they gather is decided in the cluster, not in the plan).
"""

from __future__ import annotations

from typing import Any

from components import labels
from policies.declare import stack_policy
from policies.pod_security import team_namespaces
from policies.workloads import as_dict, as_list

RBAC = "kubernetes:rbac.authorization.k8s.io/v1:"
BUILT_IN_WILDCARD_ROLES = ["cluster-admin", "admin", "edit", "system:aggregate-to-admin"]


def wildcard_rules(props: dict[str, Any]) -> list[str]:
    found = []
    for rule in map(as_dict, as_list(props.get("rules"))):
        for field in ("verbs", "resources", "apiGroups"):
            if "*" in [str(v) for v in as_list(rule.get(field))]:
                found.append(f"{field} '*'")
    if as_dict(props.get("aggregationRule")):
        found.append("an aggregationRule")
    return found


def rbac_problems(resources: list[tuple[str, dict[str, Any]]], allowed_groups: list[str],
                  team_label: str = labels.TEAM) -> list[str]:
    teams = team_namespaces(resources, team_label)
    roles: dict[tuple[str, str | None, str], list[str]] = {}
    for typ, props in resources:
        kind = typ.removeprefix(RBAC)
        if kind in ("ClusterRole", "Role"):
            meta = as_dict(props.get("metadata"))
            roles[(kind, meta.get("namespace") if kind == "Role" else None, str(meta.get("name")))] = \
                wildcard_rules(props)
    problems = []
    for typ, props in resources:
        kind = typ.removeprefix(RBAC)
        if kind not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        meta = as_dict(props.get("metadata"))
        ref = as_dict(props.get("roleRef"))
        ref_kind, ref_name = str(ref.get("kind")), str(ref.get("name"))
        key = (ref_kind, meta.get("namespace") if ref_kind == "Role" else None, ref_name)
        wild = roles.get(key) or ([f"the built-in role {ref_name}"] if ref_kind == "ClusterRole"
                                  and ref_name in BUILT_IN_WILDCARD_ROLES else [])
        if not wild:
            continue
        for subject in map(as_dict, as_list(props.get("subjects"))):
            s_kind, s_name = subject.get("kind"), str(subject.get("name"))
            team_identity = (s_kind in ("Group", "User") and s_name not in allowed_groups) or (
                s_kind == "ServiceAccount" and (subject.get("namespace") or meta.get("namespace")) in teams)
            if team_identity:
                problems.append(f"{kind} '{meta.get('name')}' grants {ref_kind} '{ref_name}' ({', '.join(wild)}) to "
                                f"{s_kind} '{s_name}'; a team identity gets named verbs on named resources.")
    return problems


@stack_policy(
    "rbac-no-wildcard-role-for-teams",
    "No ClusterRoleBinding or RoleBinding gives a Group, a User or a team namespace's ServiceAccount a role with '*' "
    "in verbs, resources or apiGroups, an aggregated role, or cluster-admin/admin/edit.",
    config={"allowedGroups": {"type": "array", "items": {"type": "string"}, "default": [],
                              "description": "Groups that may hold a wildcard role (platform administrators)."},
            "teamLabel": {"type": "string", "default": labels.TEAM}},
    remediation="Bind the team's group to the tenancy component's team-member Role (named verbs on named resources "
                "in its namespace); cluster administrators come in through EKS access policies "
                "(cluster.adminRoleArns), not Kubernetes bindings.",
)
def no_wildcard_role_for_teams(resources, config):
    return rbac_problems(resources, list(config.get("allowedGroups") or []), config.get("teamLabel") or labels.TEAM)


POLICIES = [no_wildcard_role_for_teams]

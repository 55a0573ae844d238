"""Egress rules: default deny, NetworkPolicies only where enforced, security groups closed to the internet.

What each workload kind may reach is judged in policies/workload_egress.py.

The NetworkPolicy semantics (selectors, policy types, peers) come from `policies/netpol.py`, the evaluator the
tenancy tests use too.
"""

from __future__ import annotations

import json
from typing import Any

from components import labels
from policies import netpol
from policies.declare import resource_policy, stack_policy

NAMESPACE = "kubernetes:core/v1:Namespace"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
ADDON = "aws:eks/addon:Addon"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
ENFORCING_CNI_CHARTS = ["cilium", "tigera-operator", "calico"]


def _meta(props: dict[str, Any]) -> dict[str, Any]:
    meta = props.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _where(props: dict[str, Any]) -> str:
    meta = _meta(props)
    return f"{meta.get('namespace')}/{meta.get('name')}"


# ---- every team namespace has a default-deny egress NetworkPolicy ---------------------------------------


def default_deny_problems(resources: list[tuple[str, dict[str, Any]]], team_label: str = labels.TEAM) -> list[str]:
    team_namespaces = [_meta(p).get("name") for t, p in resources
                       if t == NAMESPACE and (_meta(p).get("labels") or {}).get(team_label)]
    denied = {netpol.namespace_of(p) for t, p in resources
              if t == NETWORK_POLICY and netpol.default_deny(p, netpol.EGRESS)}
    return [f"Team namespace '{ns}' must have a default-deny egress NetworkPolicy (podSelector {{}}, policyTypes "
            f"including Egress, no egress rules)." for ns in team_namespaces if isinstance(ns, str) and ns not in denied]


@stack_policy(
    "team-namespace-default-deny-egress",
    "Every team namespace has a NetworkPolicy that denies all egress not explicitly allowed.",
    config={"teamLabel": {"type": "string", "default": labels.TEAM,
                          "description": "The namespace label that marks a team namespace."}},
    remediation="Declare the namespace through the tenancy component (components/tenancy.py), which adds the "
                "`default-deny` NetworkPolicy; or add a NetworkPolicy with `podSelector: {}` and `policyTypes: "
                "[Ingress, Egress]` and no rules to the namespace.",
)
def team_namespace_default_deny_egress(resources, config):
    return default_deny_problems(resources, config.get("teamLabel") or labels.TEAM)


# ---- NetworkPolicies only where something enforces them -------------------------------------------------


def _vpc_cni_enforces(props: dict[str, Any]) -> bool | None:
    """True/False from the vpc-cni add-on's configurationValues; None when unknown during a preview."""
    raw = props.get("configurationValues")
    if raw is None:
        return False
    try:
        values = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return None
    if not isinstance(values, dict):
        return None
    return str(values.get("enableNetworkPolicy", "")).lower() == "true"


def enforcement_problems(resources: list[tuple[str, dict[str, Any]]], enforcing_charts: list[str],
                         declared_elsewhere: bool = False) -> list[str]:
    policies = [p for t, p in resources if t == NETWORK_POLICY]
    if not policies or declared_elsewhere:
        return []
    vpc_cni = [_vpc_cni_enforces(p) for t, p in resources if t == ADDON and p.get("addonName") == "vpc-cni"]
    if any(v is None or v for v in vpc_cni):
        return []
    if any(t == HELM_RELEASE and p.get("chart") in enforcing_charts for t, p in resources):
        return []
    where = "the vpc-cni add-on does not set enableNetworkPolicy to \"true\"" if vpc_cni \
        else "the stack declares no vpc-cni add-on and no enforcing CNI"
    return [f"{len(policies)} NetworkPolicies are declared but nothing enforces them: {where}."]


@stack_policy(
    "network-policies-require-enforcement",
    "NetworkPolicies are declared only where they are enforced: the vpc-cni add-on with network policy enabled, or "
    "another enforcing CNI.",
    config={
        "enforcingCniCharts": {"type": "array", "items": {"type": "string"}, "default": ENFORCING_CNI_CHARTS,
                               "description": "Helm charts whose release counts as an enforcing CNI."},
        "enforcementDeclaredElsewhere": {"type": "boolean", "default": False,
                                         "description": "The cluster (and its CNI) is managed by another "
                                                        "stack that enforces NetworkPolicies."},
    },
    remediation="Set the vpc-cni add-on's configurationValues to {\"enableNetworkPolicy\": \"true\"} "
                "(components/cluster.py does), or install an enforcing CNI; otherwise the NetworkPolicies isolate "
                "nothing.",
)
def network_policies_require_enforcement(resources, config):
    return enforcement_problems(resources, list(config.get("enforcingCniCharts") or ENFORCING_CNI_CHARTS),
                                bool(config.get("enforcementDeclaredElsewhere")))


# ---- no security group admits the whole internet --------------------------------------------------------

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
WORLD = ("0.0.0.0/0", "::/0")


def open_ingress_problems(resource_type: str, props: dict[str, Any]) -> list[str]:
    """Ingress from anywhere to the security groups of nodes, FSx, the database or endpoints."""
    def world(rule: dict[str, Any]) -> list[str]:
        cidrs = [*(rule.get("cidrBlocks") or []), *(rule.get("ipv6CidrBlocks") or []),
                 *[c for c in (rule.get("cidrIpv4"), rule.get("cidrIpv6")) if c]]
        return [c for c in cidrs if c in WORLD]

    if resource_type == SECURITY_GROUP:
        rules = [r for r in props.get("ingress") or [] if isinstance(r, dict)]
    elif resource_type == SECURITY_GROUP_RULE and props.get("type") == "ingress":
        rules = [props]
    elif resource_type == INGRESS_RULE:
        rules = [props]
    else:
        return []
    return [f"ports {r.get('fromPort')}-{r.get('toPort')} are open to {cidr}" for r in rules for cidr in world(r)]


@resource_policy(
    "security-groups-closed-to-internet",
    "No security group allows ingress from 0.0.0.0/0 or ::/0 (nodes, FSx, the database, endpoints).",
    remediation="Admit the cluster security group (source_security_group_id) or the VPC CIDR instead; public "
                "traffic reaches the platform only through load balancers.",
)
def security_groups_closed_to_internet(r, config):
    return [f"The security group rule admits the whole internet: {problem}."
            for problem in open_ingress_problems(r.resource_type, r.props)]


POLICIES: list = [team_namespace_default_deny_egress, network_policies_require_enforcement,
                  security_groups_closed_to_internet]

"""Egress policies and the NetworkPolicy evaluator they share with the tenancy tests."""

from __future__ import annotations

import json

import pytest

from policies import POLICIES, egress, netpol
from policies.netpol import EGRESS, INGRESS, Peer, Port, Reach, Selector
from preview.check import evaluate
from tests.policy_harness import mutated, resource, violations

NP = egress.NETWORK_POLICY
TRAINING = {"job-type": "training"}


def policy(name: str, spec: dict, namespace: str = "team-a") -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


DEFAULT_DENY = policy("default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
TRAINING_EGRESS = policy("training-egress", {
    "podSelector": {"matchLabels": TRAINING},
    "policyTypes": ["Egress"],
    "egress": [
        {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mlflow"}},
                 "podSelector": {"matchLabels": {"app.kubernetes.io/name": "mlflow"}}}],
         "ports": [{"protocol": "TCP", "port": 5000}]},
        {"to": [{"ipBlock": {"cidr": "52.218.128.0/17"}}], "ports": [{"protocol": "TCP", "port": 443}]},
        {"to": [{"ipBlock": {"cidr": "10.20.0.0/19"}}],
         "ports": [{"protocol": "TCP", "port": 988}, {"protocol": "TCP", "port": 1018, "endPort": 1023}]},
    ],
})
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": "team-a", "labels": {"mlops.platform/team": "team-a"}}}
VPC_CNI = {"addonName": "vpc-cni", "clusterName": "mlops-dev",
           "configurationValues": json.dumps({"enableNetworkPolicy": "true"})}


# ---- the evaluator -------------------------------------------------------------------------------------


def test_a_pod_no_policy_selects_may_reach_everything():
    assert netpol.allowed([TRAINING_EGRESS], "team-a", {"app": "x"}, EGRESS) == netpol.EVERYTHING
    assert netpol.allowed([TRAINING_EGRESS], "team-b", TRAINING, EGRESS) == netpol.EVERYTHING


def test_selected_pods_reach_the_union_of_their_policies_rules():
    got = netpol.allowed([DEFAULT_DENY, TRAINING_EGRESS], "team-a", {**TRAINING, "x": "y"}, EGRESS)
    assert got == {
        Reach(Peer.pods_in("mlflow", {"app.kubernetes.io/name": "mlflow"}), Port("TCP", 5000)),
        Reach(Peer.ip_block("52.218.128.0/17"), Port("TCP", 443)),
        Reach(Peer.ip_block("10.20.0.0/19"), Port("TCP", 988)),
        Reach(Peer.ip_block("10.20.0.0/19"), Port("TCP", 1018, 1023)),
    }
    assert netpol.allowed([DEFAULT_DENY, TRAINING_EGRESS], "team-a", {"app": "x"}, EGRESS) == frozenset()


def test_policy_types_default_to_ingress_plus_egress_when_egress_rules_exist():
    ingress_only = policy("i", {"podSelector": {}})
    assert netpol.policy_types(ingress_only) == {INGRESS}
    assert not netpol.isolated([ingress_only], "team-a", {}, EGRESS)
    both = policy("b", {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]})
    assert netpol.policy_types(both) == {INGRESS, EGRESS}


def test_a_rule_without_peers_or_ports_matches_everything():
    open_rule = policy("o", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]})
    got = netpol.allowed([open_rule], "team-a", {}, EGRESS)
    assert got == netpol.EVERYTHING and netpol.open_to_internet(next(iter(got)))
    ports_only = policy("p", {"podSelector": {}, "policyTypes": ["Egress"],
                              "egress": [{"ports": [{"port": 443}]}]})
    assert netpol.allowed([ports_only], "team-a", {}, EGRESS) == {Reach(Peer(), Port("TCP", 443))}


def test_pod_peers_without_namespace_selector_mean_the_policys_namespace():
    peers = policy("p", {"podSelector": {}, "policyTypes": ["Egress"],
                         "egress": [{"to": [{"podSelector": {"matchLabels": TRAINING}}]},
                                    {"to": [{"namespaceSelector": {}}]}]})
    got = netpol.allowed([peers], "team-a", {}, EGRESS)
    assert Reach(Peer.pods_in("team-a", TRAINING)) in got
    assert Reach(Peer(namespaces=Selector(), pods=Selector())) in got


@pytest.mark.parametrize("selector, labels, matches", [
    ({"matchLabels": TRAINING}, TRAINING, True),
    ({"matchLabels": TRAINING}, {"job-type": "notebook"}, False),
    ({"matchExpressions": [{"key": "job-type", "operator": "In", "values": ["training", "batch"]}]}, TRAINING, True),
    ({"matchExpressions": [{"key": "job-type", "operator": "NotIn", "values": ["training"]}]}, TRAINING, False),
    ({"matchExpressions": [{"key": "job-type", "operator": "Exists"}]}, {}, False),
    ({"matchExpressions": [{"key": "job-type", "operator": "DoesNotExist"}]}, {}, True),
    ({}, {"anything": "x"}, True),
])
def test_label_selectors(selector, labels, matches):
    assert Selector.parse(selector).matches(labels) is matches


@pytest.mark.parametrize("selector, may", [
    ({}, True), ({"matchLabels": {"app": "x"}}, True), ({"matchLabels": {"job-type": "notebook"}}, False),
    ({"matchExpressions": [{"key": "job-type", "operator": "NotIn", "values": ["inference"]}]}, True),
    ({"matchExpressions": [{"key": "job-type", "operator": "DoesNotExist"}]}, False),
])
def test_may_a_selector_pick_training_pods(selector, may):
    assert Selector.parse(selector).may_match(TRAINING) is may


def test_cidrs_are_judged_against_an_allowlist_as_whole_blocks():
    assert netpol.within("10.20.0.0/19", ["10.0.0.0/8"])
    assert not netpol.within("10.0.0.0/7", ["10.0.0.0/8"])
    assert not netpol.within("2001:db8::/32", ["10.0.0.0/8"])
    assert netpol.open_to_internet(Reach(Peer.ip_block("::/0")))
    reaches = [Reach(Peer.ip_block("10.1.0.0/16")), Reach(Peer.ip_block("8.8.8.8/32")), Reach(Peer.pods_in("x"))]
    assert netpol.outside_allowlist(reaches, ["10.0.0.0/8"]) == [Reach(Peer.ip_block("8.8.8.8/32"))]


# ---- team-namespace-default-deny-egress ----------------------------------------------------------------


def test_a_team_namespace_with_default_deny_passes():
    p = egress.team_namespace_default_deny_egress
    assert violations(p, resource(egress.NAMESPACE, NAMESPACE, "ns"), resource(NP, DEFAULT_DENY, "deny")) == []


@pytest.mark.parametrize("change", [
    lambda d: d["spec"].update(policyTypes=["Ingress"]),
    lambda d: d["spec"].update(podSelector={"matchLabels": TRAINING}),
    lambda d: d["spec"].update(egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]),
    lambda d: d["metadata"].update(namespace="other"),
])
def test_a_team_namespace_without_default_deny_egress_fails(change):
    p = egress.team_namespace_default_deny_egress
    found = violations(p, resource(egress.NAMESPACE, NAMESPACE, "ns"), resource(NP, mutated(DEFAULT_DENY, change)))
    assert found == ["Team namespace 'team-a' must have a default-deny egress NetworkPolicy (podSelector {}, "
                     "policyTypes including Egress, no egress rules)."]


def test_namespaces_without_the_team_label_need_no_default_deny():
    plain = mutated(NAMESPACE, lambda n: n["metadata"].pop("labels"))
    assert violations(egress.team_namespace_default_deny_egress, resource(egress.NAMESPACE, plain)) == []


# ---- network-policies-require-enforcement --------------------------------------------------------------


def test_network_policies_with_enforcing_vpc_cni_pass():
    p = egress.network_policies_require_enforcement
    assert violations(p, resource(NP, DEFAULT_DENY), resource(egress.ADDON, VPC_CNI, "vpc-cni")) == []
    assert violations(p, resource(egress.ADDON, mutated(VPC_CNI, lambda a: a.pop("configurationValues")))) == []


@pytest.mark.parametrize("change", [
    lambda a: a.pop("configurationValues"),
    lambda a: a.update(configurationValues=json.dumps({"enableNetworkPolicy": "false"})),
    lambda a: a.update(configurationValues=json.dumps({"env": {"ENABLE_PREFIX_DELEGATION": "true"}})),
])
def test_network_policies_without_enforcement_fail(change):
    p = egress.network_policies_require_enforcement
    found = violations(p, resource(NP, DEFAULT_DENY), resource(egress.ADDON, mutated(VPC_CNI, change), "vpc-cni"))
    assert found == ["1 NetworkPolicies are declared but nothing enforces them: the vpc-cni add-on does not set "
                     "enableNetworkPolicy to \"true\"."]


def test_another_enforcing_cni_or_config_satisfies_the_enforcement_rule():
    p = egress.network_policies_require_enforcement
    assert violations(p, resource(NP, DEFAULT_DENY)) == [
        "1 NetworkPolicies are declared but nothing enforces them: the stack declares no vpc-cni add-on and no "
        "enforcing CNI."]
    cilium = resource(egress.HELM_RELEASE, {"chart": "cilium", "name": "cilium"}, "cilium")
    assert violations(p, resource(NP, DEFAULT_DENY), cilium) == []
    assert violations(p, resource(NP, DEFAULT_DENY), config={"enforcementDeclaredElsewhere": True}) == []


# ---- the pack on the shipped stacks --------------------------------------------------------------------


def test_the_egress_rules_are_in_the_pack():
    names = {p.name for p in POLICIES}
    assert {"team-namespace-default-deny-egress", "workload-egress-allowlist",
            "network-policies-require-enforcement"} <= names
    for p in egress.POLICIES:
        assert p.description and p.remediation_steps and p.enforcement_level.value == "mandatory"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_shipped_stacks_pass_the_egress_rules(stack, request):
    rendered = request.getfixturevalue(stack)
    assert rendered.objects("NetworkPolicy")
    assert evaluate(egress.POLICIES, rendered.resources) == []


def test_dropping_a_default_deny_from_a_rendered_stack_is_caught(dev):
    kept = [r for r in dev.resources if not (r.type == NP and r.inputs["metadata"]["name"] == "default-deny"
                                             and r.inputs["metadata"]["namespace"] == "reco-lab")]
    found = evaluate([egress.team_namespace_default_deny_egress], kept)
    assert [v.message for v in found] == [
        "Team namespace 'reco-lab' must have a default-deny egress NetworkPolicy (podSelector {}, "
        "policyTypes including Egress, no egress rules)."]


# ---- security groups ------------------------------------------------------------------------------------

from policies.egress import security_groups_closed_to_internet  # noqa: E402
from tests.policy_harness import resource as _resource  # noqa: E402
from tests.policy_harness import violations as _violations  # noqa: E402

_SG = {"vpcId": "vpc-1", "ingress": [{"protocol": "tcp", "fromPort": 5432, "toPort": 5432,
                                      "securityGroups": ["sg-cluster"], "cidrBlocks": []}]}


@pytest.mark.parametrize("typ, props", [
    ("aws:ec2/securityGroup:SecurityGroup", _SG),
    ("aws:ec2/securityGroupRule:SecurityGroupRule", {"type": "ingress", "fromPort": 988, "toPort": 988,
                                                     "sourceSecurityGroupId": "sg-cluster"}),
    ("aws:ec2/securityGroupRule:SecurityGroupRule", {"type": "egress", "fromPort": 0, "toPort": 0,
                                                     "cidrBlocks": ["0.0.0.0/0"]}),
    ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", {"fromPort": 443, "toPort": 443,
                                                                   "cidrIpv4": "10.0.0.0/16"}),
])
def test_security_groups_admitting_private_sources_pass(typ, props):
    assert _violations(security_groups_closed_to_internet, _resource(typ, props)) == []


@pytest.mark.parametrize("typ, props", [
    ("aws:ec2/securityGroup:SecurityGroup", {**_SG, "ingress": [{**_SG["ingress"][0], "cidrBlocks": ["0.0.0.0/0"]}]}),
    ("aws:ec2/securityGroup:SecurityGroup", {**_SG, "ingress": [{**_SG["ingress"][0], "ipv6CidrBlocks": ["::/0"]}]}),
    ("aws:ec2/securityGroupRule:SecurityGroupRule", {"type": "ingress", "fromPort": 988, "toPort": 988,
                                                     "cidrBlocks": ["0.0.0.0/0"]}),
    ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", {"fromPort": 443, "toPort": 443,
                                                                   "cidrIpv4": "0.0.0.0/0"}),
])
def test_security_groups_open_to_the_internet_fail(typ, props):
    found = _violations(security_groups_closed_to_internet, _resource(typ, props))
    assert len(found) == 1 and found[0].startswith("The security group rule admits the whole internet: ports ")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_shipped_security_groups_are_closed_to_the_internet(stack, request):
    rendered = request.getfixturevalue(stack)
    assert _violations(security_groups_closed_to_internet, *rendered.resources) == []

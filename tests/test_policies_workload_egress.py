"""workload-egress-allowlist against what engineers write: every workload kind, label spellings, selector forms
(matchLabels, matchExpressions In/NotIn/Exists), CIDR splits, ipBlock with except, port ranges, named ports.

The world is hand-written (tests/plan_fixtures.py): a team namespace, a VPC 10.40.0.0/16 with three private /19
subnets. The compliant policies are the ones a platform needs; every violating one is a single realistic rule."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from policies import POLICIES
from policies.workload_egress import kinds_selected, remaining, workload_egress_allowlist
from policies.netpol import Peer, Selector
from tests import plan_fixtures as plan
from tests.policy_harness import resource, violations

NP = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
S3 = "52.216.0.0/15"
LUSTRE = [{"protocol": "TCP", "port": 988}, {"protocol": "TCP", "port": 1018, "endPort": 1023}]
HTTPS = [{"protocol": "TCP", "port": 443}]


def ns_peer(namespace: str, pod_labels: dict | None = None) -> dict:
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
    if pod_labels is not None:
        peer["podSelector"] = {"matchLabels": pod_labels}
    return peer


MLFLOW = {"to": [ns_peer("mlflow", {"app.kubernetes.io/name": "mlflow"})], "ports": [{"protocol": "TCP", "port": 5000}]}
HUB = {"to": [ns_peer("jupyterhub", {"app": "jupyterhub", "component": "hub"})],
       "ports": [{"protocol": "TCP", "port": 8081}]}
DNS = {"to": [ns_peer("kube-system", {"k8s-app": "kube-dns"})],
       "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
DATA = [{"to": [{"ipBlock": {"cidr": S3}}], "ports": HTTPS},
        {"to": [{"ipBlock": {"cidr": "10.40.0.63/32"}}], "ports": HTTPS},          # the STS interface endpoint
        {"to": [{"ipBlock": {"cidr": "10.40.32.0/19"}}], "ports": LUSTRE}]


def netpol(name: str, selector: dict, egress: list, namespace: str = "team-a") -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"podSelector": selector, "policyTypes": ["Egress"], "egress": egress}}


def job(kind: str) -> dict:
    return {"matchLabels": {"job-type": kind}}


PLATFORM = [
    netpol("allow-dns", {}, [DNS]),
    netpol("training-egress", job("training"), [MLFLOW, *DATA]),
    netpol("training-peers", job("training"), [{"to": [{"podSelector": job("training")}]}]),
    netpol("notebook-egress", job("notebook"), [MLFLOW, HUB, *DATA]),
    netpol("inference-egress", job("inference"), DATA[:2]),
]


def s3_endpoint(region: str) -> Any:
    return resource("aws:ec2/vpcEndpoint:VpcEndpoint", {"serviceName": f"com.amazonaws.{region}.s3",
                                                        "vpcEndpointType": "Gateway"}, name="s3")


def check(*policies: dict, config: dict | None = None, world: tuple = ()) -> list[str]:
    world = (plan.team_namespace("team-a"), *plan.subnets("10.40"), *world)
    return violations(workload_egress_allowlist, *world,
                      *[resource(NP, p, name=f"np-{i}") for i, p in enumerate(policies)], config=config)


def test_in_the_pack():
    assert workload_egress_allowlist in POLICIES


def test_the_egress_the_platform_needs_passes():
    assert check(*PLATFORM) == []


def test_a_namespace_that_is_not_a_team_namespace_is_not_judged():
    assert check(netpol("any", {}, [{}], namespace="monitoring")) == []


def _one(found: list[str], *needles: str) -> None:
    assert len(found) == 1, found
    assert all(n in found[0] for n in needles), found


# ---- every workload kind is judged, whatever the selector form ---------------------------------------------

WIDE = [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": HTTPS}]


@pytest.mark.parametrize("selector, kinds", [
    (job("notebook"), "notebook"),
    (job("inference"), "inference"),
    ({}, "training/notebook/inference/other"),                                          # every pod
    ({"matchLabels": {"app": "scraper"}}, "training/notebook/inference/other"),         # may carry any job-type
    ({"matchExpressions": [{"key": "job-type", "operator": "In", "values": ["notebook", "inference"]}]},
     "notebook/inference"),
    ({"matchExpressions": [{"key": "job-type", "operator": "NotIn", "values": ["training"]}]},
     "notebook/inference/other"),
    ({"matchExpressions": [{"key": "job-type", "operator": "DoesNotExist"}]}, "other"),  # unlabelled pods
    ({"matchLabels": {"jobType": "training"}}, "training/notebook/inference/other"),    # misspelt key
    ({"matchLabels": {"job-type": "Training"}}, "other"),                               # another value
])
def test_internet_egress_is_caught_for_every_kind_a_selector_may_pick(selector, kinds):
    _one(check(netpol("open", selector, WIDE)), f"lets {kinds} pods reach 0.0.0.0/0")


@pytest.mark.parametrize("selector, kinds", [
    ({"matchLabels": {"job-type": "training"}}, ["training"]),
    ({"matchExpressions": [{"key": "job-type", "operator": "Exists"}]}, ["training", "notebook", "inference", "other"]),
    ({"matchExpressions": [{"key": "job-type", "operator": "NotIn", "values": ["training", "notebook"]}]},
     ["inference", "other"]),
])
def test_kinds_selected(selector, kinds):
    assert kinds_selected(Selector.parse(selector)) == kinds


# ---- private ranges are not "allowed because private" -------------------------------------------------------

@pytest.mark.parametrize("block, ports", [
    ({"cidr": "10.40.0.0/16"}, HTTPS),                                     # the whole VPC
    ({"cidr": "10.0.0.0/8"}, LUSTRE),                                      # "anything private"
    ({"cidr": "172.16.0.0/12"}, HTTPS),
    ({"cidr": "10.40.0.0/17"}, LUSTRE),                                    # half the VPC: one split of it ...
    ({"cidr": "10.40.0.0/16", "except": ["10.40.224.0/19"]}, LUSTRE),     # the VPC with a hole is still wide
    ({"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}, HTTPS),             # the internet minus private space
    ({"cidr": "10.40.32.0/19"}, [{"protocol": "TCP", "port": 22}]),      # a right subnet on a wrong port
    ({"cidr": "10.40.32.0/19"}, None),                                     # ... or on every port
    ({"cidr": "10.40.32.0/19"}, [{"protocol": "TCP", "port": 900, "endPort": 1023}]),   # a port range too wide
    ({"cidr": "10.40.224.0/24"}, LUSTRE),                                  # the public subnet
    ({"cidr": "10.40.0.0/24"}, HTTPS),                                     # an endpoint port on a whole /24
    ({"cidr": "52.216.0.0/14"}, HTTPS),                                    # S3 plus its neighbour
    ({"cidr": S3}, [{"protocol": "TCP", "port": 80}]),                    # S3 on plain HTTP
    ({"cidr": S3}, [{"protocol": "TCP", "port": "https"}]),               # a named port the plan cannot resolve
])
def test_wide_or_wrong_ip_blocks_are_caught(block, ports):
    rule = {"to": [{"ipBlock": block}], **({"ports": ports} if ports else {})}
    _one(check(netpol("data", job("training"), [rule])), "lets training pods reach")


def test_a_cidr_split_is_judged_piece_by_piece():
    halves = [{"to": [{"ipBlock": {"cidr": "10.40.0.0/17"}}, {"ipBlock": {"cidr": "10.40.128.0/17"}}],
               "ports": LUSTRE}]
    found = check(netpol("split", job("training"), halves))
    assert len(found) == 2 and all("not needed" in f for f in found), found
    exact = [{"to": [{"ipBlock": {"cidr": c}} for c in ("10.40.0.0/19", "10.40.64.0/19")], "ports": LUSTRE}]
    assert check(netpol("subnets", job("training"), exact)) == []


def test_except_carving_a_block_down_to_what_is_needed_passes():
    carved = [{"to": [{"ipBlock": {"cidr": "10.40.32.0/19", "except": ["10.40.32.0/24"]}}], "ports": LUSTRE}]
    assert check(netpol("carved", job("training"), carved)) == []


def test_remaining_subtracts_excepts():
    assert [str(n) for n in remaining(Peer(cidr="10.0.0.0/8", excepts=frozenset({"10.0.0.0/9"})))] == ["10.128.0.0/9"]
    assert remaining(Peer(cidr="10.0.0.0/16", excepts=frozenset({"10.0.0.0/8"}))) == []


def test_lustre_is_for_training_and_notebooks_only():
    _one(check(netpol("fsx", job("inference"), [DATA[2]])), "lets inference pods reach 10.40.32.0/19")


def test_unlabelled_pods_reach_only_dns():
    _one(check(netpol("sidecar", {"matchLabels": {"app": "cron"},
                                  "matchExpressions": [{"key": "job-type", "operator": "DoesNotExist"}]}, [DATA[0]])),
         "lets other pods reach 52.216.0.0/15")


# ---- pod peers ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("peer, ports", [
    ({"namespaceSelector": {}}, None),                                                    # every namespace
    ({"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "mlflow"}}},
     [{"protocol": "TCP", "port": 5000}]),                                                # mlflow-like pods anywhere
    ({"namespaceSelector": {"matchLabels": {"mlops.platform/team": "team-b"}}}, None),    # by label, not by name
    ({"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                                                  "values": ["kube-system"]}]}}, None),
    (ns_peer("mlflow"), [{"protocol": "TCP", "port": 5000}]),                              # every pod of mlflow
    (ns_peer("mlflow", {"app.kubernetes.io/name": "mlflow"}), [{"protocol": "TCP", "port": 5432}]),   # wrong port
    (ns_peer("mlflow", {"app.kubernetes.io/name": "mlflow"}), None),                      # every port
    (ns_peer("kube-system"), [{"protocol": "UDP", "port": 53}]),                          # all of kube-system
    ({"podSelector": {}}, None),                                                           # the whole own namespace
    ({"podSelector": job("notebook")}, None),                                             # notebooks' ports
    (ns_peer("team-b", {"job-type": "training"}), None),                                  # another team's trainers
])
def test_pod_peers_must_name_namespace_pods_and_ports(peer, ports):
    rule = {"to": [peer], **({"ports": ports} if ports else {})}
    _one(check(netpol("peer", job("training"), [rule])), "lets training pods reach")


def test_namespace_selector_by_name_with_match_expressions_passes():
    by_expression = {"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name",
                                                                 "operator": "In", "values": ["mlflow"]}]},
                     "podSelector": {"matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In",
                                                           "values": ["mlflow"]}]}}
    assert check(netpol("mlflow", job("notebook"), [{"to": [by_expression], "ports": MLFLOW["ports"]}])) == []


def test_the_hub_is_for_notebooks_and_training_peers_for_training():
    _one(check(netpol("hub", job("training"), [HUB])), "pods {app=jupyterhub, component=hub} in namespace jupyterhub")
    _one(check(netpol("peers", job("notebook"), [{"to": [{"podSelector": job("training")}]}])),
         "lets notebook pods reach")


def test_an_empty_rule_is_every_destination():
    _one(check(netpol("all", job("inference"), [{}])), "lets inference pods reach every destination on any port")


# ---- config --------------------------------------------------------------------------------------------------

def test_the_s3_ranges_follow_the_region_of_the_plans_s3_endpoint():
    """us-west-2's S3 range: allowed in a us-west-2 plan, refused in a us-east-1 one (no copy in policy config)."""
    west = [{"to": [{"ipBlock": {"cidr": "52.218.128.0/17"}}], "ports": HTTPS}]
    assert check(netpol("s3", job("training"), west)) == []        # no endpoint in the plan: every known region
    assert check(netpol("s3", job("training"), west), world=(s3_endpoint("us-west-2"),)) == []
    _one(check(netpol("s3", job("training"), west), world=(s3_endpoint("us-east-1"),)), "52.218.128.0/17")
    assert check(*PLATFORM, world=(s3_endpoint("us-east-1"),)) == []     # S3 is us-east-1's range


def test_a_region_without_prefix_list_data_is_reported():
    found = check(*PLATFORM, world=(s3_endpoint("eu-north-1"),))
    assert any("eu-north-1" in f and "s3-prefix-lists.yaml" in f for f in found), found


def test_extra_destinations_come_from_config():
    index = [{"to": [{"ipBlock": {"cidr": "198.51.100.10/32"}}], "ports": HTTPS}]
    _one(check(netpol("pypi", job("notebook"), index)), "198.51.100.10/32")
    extra = {"notebook": [{"cidr": "198.51.100.10/32", "ports": ["TCP/443"]}]}
    assert check(netpol("pypi", job("notebook"), index), config={"extraDestinations": extra}) == []
    _one(check(netpol("pypi", job("training"), index), config={"extraDestinations": extra}), "training")


def test_a_mutation_of_the_allowlist_is_seen():
    """Kill the judgement (everything allowed): the realistic violations above would all pass."""
    from policies import workload_egress
    original = workload_egress.reach_problem
    try:
        workload_egress.reach_problem = lambda *a, **k: None
        assert check(netpol("open", {}, WIDE)) == []
    finally:
        workload_egress.reach_problem = original
    assert check(netpol("open", {}, WIDE)) != []


def test_platform_policies_are_not_mutated_by_checking():
    before = copy.deepcopy(PLATFORM)
    check(*PLATFORM)
    assert PLATFORM == before

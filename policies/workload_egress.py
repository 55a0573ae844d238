"""Egress of every workload kind in team namespaces, judged against what the platform needs and nothing more.

Each NetworkPolicy in a team namespace is read with the evaluator (policies/netpol.py); for every workload kind
whose pods its podSelector may select (training, notebook and inference pods by their `job-type` label, and
"other" pods: no `job-type` label, another value, or a misspelt key such as `jobType`), every (peer, port) its
egress rules allow must be one the kind needs:

- every kind: DNS (kube-dns in kube-system, port 53);
- training and notebook: MLflow's server pods on its port; FSx for Lustre on the Lustre ports, inside one private
  subnet of the plan's VPC (never the whole VPC, never "anything private"); notebooks also the hub API;
  training pods the team's own training pods (distributed training), on any port;
- training, notebook and inference: S3 (the S3 prefix-list CIDRs of the stack's region, read from
  components/data/s3-prefix-lists.yaml for the region the plan's S3 gateway endpoint names) and interface VPC
  endpoints (single addresses inside a private subnet) on 443;
- `extraDestinations` of the policy config, per kind (a team's package index, for example).

A pod peer must name its namespace (`kubernetes.io/metadata.name`) and select the allowed pods: a
`namespaceSelector: {}` (every namespace) or a label-only namespace selector is a violation. An ipBlock is judged
by what it leaves after its `except` entries, so a wide block with holes is still wide.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable

from components import catalog, labels
from components.endpoints import JUPYTERHUB_API, MLFLOW
from policies import netpol
from policies.declare import stack_policy
from policies.pod_security import team_namespaces
from policies.workloads import as_dict, as_list

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
SUBNET = "aws:ec2/subnet:Subnet"
KINDS = ("training", "notebook", "inference", "other")
OTHER_VALUE = "(another value)"
HTTPS = [netpol.Port("TCP", 443)]
DNS_PORTS = [netpol.Port("UDP", 53), netpol.Port("TCP", 53)]
LUSTRE_PORTS = [netpol.Port("TCP", 988), netpol.Port("TCP", 1018, 1023)]
VPC_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
SAME_NAMESPACE = "(same namespace)"


@dataclass(frozen=True)
class PodDestination:
    namespace: str                   # SAME_NAMESPACE: the policy's own namespace
    pod_labels: dict[str, str]
    ports: list[netpol.Port] | None  # None: every port


def pod_destinations(kind: str) -> list[PodDestination]:
    found = [PodDestination("kube-system", {"k8s-app": "kube-dns"}, DNS_PORTS)]
    if kind in ("training", "notebook"):
        found.append(PodDestination(MLFLOW.namespace, MLFLOW.pod_labels, [netpol.Port("TCP", MLFLOW.port)]))
    if kind == "notebook":
        found.append(PodDestination(JUPYTERHUB_API.namespace, JUPYTERHUB_API.pod_labels,
                                    [netpol.Port("TCP", JUPYTERHUB_API.port)]))
    if kind == "training":
        found.append(PodDestination(SAME_NAMESPACE, {labels.JOB_TYPE: "training"}, None))
    return found


# ---- the plan's network -----------------------------------------------------------------------------------

def private_subnets(resources: Iterable[tuple[str, dict[str, Any]]]) -> list[ipaddress.IPv4Network]:
    """CIDRs of the plan's subnets that hand out no public addresses and are not tagged for public load balancers."""
    found = []
    for typ, props in resources:
        if typ != SUBNET or props.get("mapPublicIpOnLaunch") is True \
                or "kubernetes.io/role/elb" in as_dict(props.get("tags")):
            continue
        net = _net(props.get("cidrBlock"))
        if net is not None:
            found.append(net)
    return found


def _net(cidr: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(str(cidr), strict=False) if cidr else None
    except ValueError:
        return None


def remaining(peer: netpol.Peer) -> list:
    """The networks an ipBlock peer really admits: its CIDR minus its `except` blocks."""
    pieces = [_net(peer.cidr)]
    if pieces[0] is None:
        return []
    for hole in (_net(e) for e in peer.excepts):
        next_pieces = []
        for piece in pieces:
            if hole is None or hole.version != piece.version or not hole.overlaps(piece):
                next_pieces.append(piece)
            elif not piece.subnet_of(hole):
                next_pieces.extend(piece.address_exclude(hole) if hole.subnet_of(piece) else [piece])
        pieces = next_pieces
    return pieces


# ---- ports and selectors --------------------------------------------------------------------------------

def port_covered(port: netpol.Port | None, allowed: list[netpol.Port] | None) -> bool:
    if allowed is None:
        return True
    if port is None or port.port is None or not isinstance(port.port, int):
        return False          # every port, or a named port the plan cannot resolve
    low, high = port.port, port.end_port or port.port
    return any(a.protocol == port.protocol and isinstance(a.port, int) and a.port <= low
               and high <= (a.end_port or a.port) for a in allowed)


def named_namespaces(selector: netpol.Selector) -> set[str] | None:
    """The namespaces a namespace selector names by `kubernetes.io/metadata.name`; None when it does not name them."""
    names = None
    for key, value in selector.match_labels:
        if key == netpol.NAMESPACE_NAME_LABEL:
            names = {value}
    for key, op, values in selector.expressions:
        if key == netpol.NAMESPACE_NAME_LABEL and op == "In":
            names = set(values) if names is None else names & set(values)
    return names


def requires(selector: netpol.Selector, wanted: dict[str, str]) -> bool:
    """Does every pod the selector picks carry all of `wanted`?"""
    return all((k, v) in selector.match_labels or any(key == k and op == "In" and vals == frozenset({v})
                                                      for key, op, vals in selector.expressions)
               for k, v in wanted.items())


def kinds_selected(selector: netpol.Selector) -> list[str]:
    """The workload kinds whose pods this podSelector may select."""
    found = [k for k in KINDS[:3] if selector.may_match({labels.JOB_TYPE: k})]
    unlabelled = not any(k == labels.JOB_TYPE for k, _ in selector.match_labels) and not any(
        key == labels.JOB_TYPE and op in ("In", "Exists") for key, op, _ in selector.expressions)
    named = {v for k, v in selector.match_labels if k == labels.JOB_TYPE} | {
        v for key, op, values in selector.expressions if key == labels.JOB_TYPE and op == "In" for v in values}
    other_values = [v for v in named if v not in KINDS] or [OTHER_VALUE]
    if unlabelled or any(selector.may_match({labels.JOB_TYPE: v}) for v in other_values):
        found.append("other")
    return found


# ---- judging one reach ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Allowlist:
    public_cidrs: list[str]
    private_subnets: list
    extra: dict[str, list[dict[str, Any]]]      # kind -> [{"cidr": ..., "ports": [443, "UDP/53", "TCP/1018-1023"]}]


def parse_port(value: Any) -> netpol.Port:
    text = str(value)
    protocol, _, number = text.rpartition("/")
    low, _, high = number.partition("-")
    return netpol.Port(protocol or "TCP", int(low), int(high) if high else None)


def ip_allowed(net, port: netpol.Port | None, kind: str, allow: Allowlist) -> bool:
    if kind == "other":
        candidates: list[tuple[Any, list[netpol.Port] | None]] = []
    else:
        candidates = [(_net(c), HTTPS) for c in allow.public_cidrs]
        # An interface endpoint is one address inside a private subnet.
        if net.num_addresses == 1:
            candidates += [(s, HTTPS) for s in allow.private_subnets]
        if kind in ("training", "notebook"):
            candidates += [(s, LUSTRE_PORTS) for s in allow.private_subnets]
    for entry in allow.extra.get(kind, []):
        candidates.append((_net(as_dict(entry).get("cidr")),
                           [parse_port(p) for p in as_list(as_dict(entry).get("ports"))] or None))
    return any(outer is not None and outer.version == net.version and net.subnet_of(outer)
               and port_covered(port, ports) for outer, ports in candidates)


def reach_problem(reach: netpol.Reach, kind: str, namespace: str, allow: Allowlist) -> str | None:
    peer = reach.peer
    if peer.everywhere:
        return "every destination"
    if peer.cidr is not None:
        pieces = remaining(peer)
        if not pieces:
            return f"the unreadable ipBlock {peer.cidr}"
        wide = [str(p) for p in pieces if not ip_allowed(p, reach.port, kind, allow)]
        return f"{peer} ({', '.join(wide[:3])}{'...' if len(wide) > 3 else ''} not needed)" if wide else None
    names = named_namespaces(peer.namespaces or netpol.Selector())
    if names is None:
        return f"{peer}: the namespace selector names no namespace (every namespace it labels could be reached)"
    for name in sorted(names):
        if not any((d.namespace == name or (d.namespace == SAME_NAMESPACE and name == namespace))
                   and requires(peer.pods or netpol.Selector(), d.pod_labels) and port_covered(reach.port, d.ports)
                   for d in pod_destinations(kind)):
            return f"pods {netpol._show(peer.pods)} in namespace {name}"
    return None


def s3_cidrs(resources: list[tuple[str, dict[str, Any]]]) -> tuple[list[str], list[str]]:
    """(CIDRs, problems): the S3 prefix list of the region the plan's S3 gateway endpoint names
    (`com.amazonaws.<region>.s3`), so the allowlist follows the stack's region without a copy in policy config.
    A plan without that endpoint is judged against every known region's list."""
    known = catalog.s3_prefix_lists()
    regions = sorted({str(props.get("serviceName")).split(".")[2] for typ, props in resources
                      if typ == VPC_ENDPOINT and str(props.get("serviceName", "")).startswith("com.amazonaws.")
                      and str(props.get("serviceName")).endswith(".s3")})
    if not regions:
        return [c for _, cidrs in known.values() for c in cidrs], []
    unknown = [r for r in regions if r not in known]
    problems = [f"The S3 gateway endpoint is in region {r}, whose S3 prefix list is not in "
                f"components/data/s3-prefix-lists.yaml: add it (aws ec2 get-managed-prefix-list-entries)."
                for r in unknown]
    return [c for r in regions if r in known for c in known[r][1]], problems


def egress_problems(resources: list[tuple[str, dict[str, Any]]], public_cidrs: list[str],
                    extra: dict[str, list[dict[str, Any]]] | None = None, team_label: str = labels.TEAM) -> list[str]:
    teams = team_namespaces(resources, team_label)
    allow = Allowlist(list(public_cidrs), private_subnets(resources), extra or {})
    problems = []
    for typ, props in resources:
        namespace = netpol.namespace_of(props) if typ == NETWORK_POLICY else None
        if namespace not in teams:
            continue
        kinds = kinds_selected(netpol.pod_selector(props))
        found: dict[str, tuple[list[str], list[str]]] = {}     # problem -> (kinds, ports)
        for reach in sorted(netpol.rule_reaches(props, netpol.EGRESS), key=str):
            for kind in kinds:
                problem = reach_problem(reach, kind, namespace, allow)
                if problem:
                    which, ports = found.setdefault(problem, ([], []))
                    which.append(kind) if kind not in which else None
                    port = str(reach.port or "any port")
                    ports.append(port) if port not in ports else None
        for what, (which, ports) in found.items():
            problems.append(f"NetworkPolicy '{namespace}/{as_dict(props.get('metadata')).get('name')}' lets "
                            f"{'/'.join(which)} pods reach {what} on {', '.join(ports)}, which they do not need.")
    return problems


@stack_policy(
    "workload-egress-allowlist",
    "In team namespaces, every NetworkPolicy egress rule, for every workload kind it may select (training, notebook, "
    "inference, other/unlabelled), reaches only what that kind needs: DNS, MLflow, the hub API, S3 prefix lists, "
    "interface endpoints, Lustre in one private subnet, its training peers. No `namespaceSelector: {}`, no VPC-wide "
    "or private-range CIDR.",
    config={"extraDestinations": {"type": "object", "default": {},
                                  "description": "kind (training|notebook|inference|other) -> [{cidr, ports: "
                                                 "[\"TCP/443\", ...]}] allowed on top (a team's package index)."},
            "teamLabel": {"type": "string", "default": labels.TEAM}},
    remediation="Name the destination exactly: the namespace by kubernetes.io/metadata.name and the pods by their "
                "labels, the port; an ipBlock of the S3 prefix list or of one subnet, never the VPC or 10.0.0.0/8. A "
                "destination the platform does not know (a package index) goes into this policy's "
                "`extraDestinations` in policies/config.<stack>.json, a reviewed change.",
)
def workload_egress_allowlist(resources, config):
    public_cidrs, problems = s3_cidrs(resources)
    return problems + egress_problems(resources, public_cidrs, as_dict(config.get("extraDestinations")),
                                      config.get("teamLabel") or labels.TEAM)


POLICIES = [workload_egress_allowlist]

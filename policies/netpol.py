"""A small Kubernetes NetworkPolicy evaluator: where may a pod connect to, and who may connect to it.

Pure functions over NetworkPolicy objects as camelCase dicts (rendered manifests, or CrossGuard props), with
the semantics of the NetworkPolicy API (networking.k8s.io/v1):

- a pod is isolated for a direction once any policy in its namespace selects it with that policy type
  (`policyTypes` defaults to Ingress, plus Egress when the policy has `egress` rules);
- what an isolated pod may do is the union of the rules of every policy selecting it; a rule without
  `to`/`from` matches every peer, a rule without `ports` every port;
- a peer is an `ipBlock`, or pods chosen by `namespaceSelector` and/or `podSelector` (no namespaceSelector:
  the policy's own namespace; no podSelector: every pod of the chosen namespaces).

The tests and the egress policies (`policies/egress.py`) both use it, so "what a training pod can reach" is
computed one way everywhere.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"   # set by the API server on every namespace
OPEN_INTERNET = ("0.0.0.0/0", "::/0")
INGRESS, EGRESS = "Ingress", "Egress"


@dataclass(frozen=True)
class Selector:
    """A label selector in canonical form (order-free, hashable)."""

    match_labels: frozenset[tuple[str, str]] = frozenset()
    expressions: frozenset[tuple[str, str, frozenset[str]]] = frozenset()

    @classmethod
    def parse(cls, spec: dict[str, Any] | None) -> Selector:
        spec = spec or {}
        return cls(
            frozenset((spec.get("matchLabels") or {}).items()),
            frozenset((e.get("key"), e.get("operator"), frozenset(e.get("values") or ()))
                      for e in spec.get("matchExpressions") or []),
        )

    @classmethod
    def of(cls, labels: dict[str, str]) -> Selector:
        return cls(frozenset(labels.items()))

    @classmethod
    def namespace(cls, name: str) -> Selector:
        return cls.of({NAMESPACE_NAME_LABEL: name})

    @property
    def everything(self) -> bool:
        return not self.match_labels and not self.expressions

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels):
            return False
        for key, op, values in self.expressions:
            present = key in labels
            if op == "In" and not (present and labels[key] in values):
                return False
            if op == "NotIn" and present and labels[key] in values:
                return False
            if op == "Exists" and not present:
                return False
            if op == "DoesNotExist" and present:
                return False
        return True

    def may_match(self, labels: dict[str, str]) -> bool:
        """Could a pod carrying at least `labels` (and any others) be selected? Other keys are assumed settable."""
        for k, v in self.match_labels:
            if k in labels and labels[k] != v:
                return False
        for key, op, values in self.expressions:
            if key not in labels:
                continue
            if (op == "In" and labels[key] not in values) or (op == "NotIn" and labels[key] in values) \
                    or op == "DoesNotExist":
                return False
        return True


@dataclass(frozen=True)
class Peer:
    """The other end of a connection: an IP block, pods chosen by selectors, or (neither) everywhere."""

    cidr: str | None = None
    excepts: frozenset[str] = frozenset()
    namespaces: Selector | None = None      # set for pod peers (the policy's own namespace made explicit)
    pods: Selector | None = None

    @property
    def everywhere(self) -> bool:
        return self.cidr is None and self.namespaces is None

    @classmethod
    def ip_block(cls, cidr: str) -> Peer:
        return cls(cidr=cidr)

    @classmethod
    def pods_in(cls, namespace: str, labels: dict[str, str] | None = None) -> Peer:
        return cls(namespaces=Selector.namespace(namespace), pods=Selector.of(labels or {}))

    def __str__(self) -> str:
        if self.everywhere:
            return "everywhere"
        if self.cidr is not None:
            return self.cidr + (f" except {sorted(self.excepts)}" if self.excepts else "")
        return f"pods {_show(self.pods)} in namespaces {_show(self.namespaces)}"


@dataclass(frozen=True)
class Port:
    """A protocol and a port or port range; `port=None` means every port of the protocol."""

    protocol: str = "TCP"
    port: int | str | None = None
    end_port: int | None = None

    def __str__(self) -> str:
        if self.port is None:
            return f"{self.protocol}/*"
        return f"{self.protocol}/{self.port}" + (f"-{self.end_port}" if self.end_port else "")


ANY_PORT: None = None


@dataclass(frozen=True)
class Reach:
    """One allowed (peer, port) pair; `port=None` means every port and protocol."""

    peer: Peer
    port: Port | None = ANY_PORT

    def __str__(self) -> str:
        return f"{self.peer} on {self.port or 'any port'}"


EVERYTHING = frozenset({Reach(Peer())})


def _show(selector: Selector | None) -> str:
    if selector is None or selector.everything:
        return "(all)"
    parts = [f"{k}={v}" for k, v in sorted(selector.match_labels)]
    parts += [f"{k} {op} {sorted(v)}" for k, op, v in sorted(selector.expressions, key=str)]
    return "{" + ", ".join(parts) + "}"


# ---- reading policies ----------------------------------------------------------------------------------


def namespace_of(policy: dict[str, Any]) -> str | None:
    return (policy.get("metadata") or {}).get("namespace")


def spec_of(policy: dict[str, Any]) -> dict[str, Any]:
    spec = policy.get("spec")
    return spec if isinstance(spec, dict) else {}


def policy_types(policy: dict[str, Any]) -> set[str]:
    spec = spec_of(policy)
    if spec.get("policyTypes"):
        return set(spec["policyTypes"])
    return {INGRESS} | ({EGRESS} if spec.get("egress") else set())


def pod_selector(policy: dict[str, Any]) -> Selector:
    return Selector.parse(spec_of(policy).get("podSelector"))


def _peers(entries: list[dict[str, Any]] | None, namespace: str | None) -> list[Peer]:
    if not entries:
        return [Peer()]
    peers = []
    for e in entries:
        if isinstance(e.get("ipBlock"), dict):
            block = e["ipBlock"]
            peers.append(Peer(cidr=block.get("cidr"), excepts=frozenset(block.get("except") or ())))
            continue
        ns = Selector.parse(e["namespaceSelector"]) if e.get("namespaceSelector") is not None \
            else Selector.namespace(namespace or "")
        peers.append(Peer(namespaces=ns, pods=Selector.parse(e.get("podSelector"))))
    return peers


def _ports(entries: list[dict[str, Any]] | None) -> list[Port | None]:
    if not entries:
        return [ANY_PORT]
    return [Port(p.get("protocol") or "TCP", p.get("port"), p.get("endPort")) for p in entries]


def rule_reaches(policy: dict[str, Any], direction: str) -> frozenset[Reach]:
    """Every (peer, port) the policy's rules of one direction allow, for the pods it selects."""
    if direction not in policy_types(policy):
        return frozenset()
    key, peer_key = ("egress", "to") if direction == EGRESS else ("ingress", "from")
    found: set[Reach] = set()
    for rule in spec_of(policy).get(key) or []:
        for peer in _peers(rule.get(peer_key), namespace_of(policy)):
            for port in _ports(rule.get("ports")):
                found.add(Reach(peer, port))
    return frozenset(found)


# ---- evaluating a pod ----------------------------------------------------------------------------------


def selecting(policies: Iterable[dict[str, Any]], namespace: str, pod_labels: dict[str, str],
              direction: str) -> list[dict[str, Any]]:
    """The policies that select this pod for `direction`."""
    return [p for p in policies if namespace_of(p) == namespace and direction in policy_types(p)
            and pod_selector(p).matches(pod_labels)]


def isolated(policies: Iterable[dict[str, Any]], namespace: str, pod_labels: dict[str, str], direction: str) -> bool:
    return bool(selecting(policies, namespace, pod_labels, direction))


def allowed(policies: Iterable[dict[str, Any]], namespace: str, pod_labels: dict[str, str],
            direction: str) -> frozenset[Reach]:
    """What a pod with these labels in this namespace may reach (Egress) or be reached from (Ingress)."""
    chosen = selecting(policies, namespace, pod_labels, direction)
    if not chosen:
        return EVERYTHING
    return frozenset().union(*(rule_reaches(p, direction) for p in chosen))


def default_deny(policy: dict[str, Any], direction: str) -> bool:
    """Does this policy select every pod of its namespace for `direction` and allow nothing in it?"""
    key = "egress" if direction == EGRESS else "ingress"
    return pod_selector(policy).everything and direction in policy_types(policy) and not spec_of(policy).get(key)


# ---- judging destinations ------------------------------------------------------------------------------


def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except (TypeError, ValueError):
        return None


def within(cidr: str, allowlist: Iterable[str]) -> bool:
    """Is the whole block inside one of the allowlisted blocks?"""
    net = _network(cidr)
    if net is None:
        return False
    for allowed_cidr in allowlist:
        outer = _network(allowed_cidr)
        if outer is not None and outer.version == net.version and net.subnet_of(outer):
            return True
    return False


def open_to_internet(reach: Reach) -> bool:
    """Everywhere, or an IP block of the whole IPv4/IPv6 space."""
    net = _network(reach.peer.cidr) if reach.peer.cidr else None
    return reach.peer.everywhere or (net is not None and net.prefixlen == 0)


def outside_allowlist(reaches: Iterable[Reach], allowlist: Iterable[str]) -> list[Reach]:
    """IP-block (or everywhere) reaches not inside the allowlist; pod peers are judged elsewhere."""
    allowlist = list(allowlist)
    return sorted((r for r in reaches if r.peer.everywhere
                   or (r.peer.cidr is not None and not within(r.peer.cidr, allowlist))), key=str)

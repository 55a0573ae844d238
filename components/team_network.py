"""A team namespace's NetworkPolicies (see components/tenancy.py for what each admits and why): default deny, DNS,
and per job type (training, notebook, inference) only the peers and CIDRs that job needs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pulumi

from components import labels
from components.config import TeamConfig
from components.endpoints import MetricsScraper

if TYPE_CHECKING:
    from components.tenancy import TeamArgs

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
DNS = {"namespace": "kube-system", "pod_labels": {"k8s-app": "kube-dns"}, "port": 53}
S3_PORT = 443
STS_PORT = 443
LUSTRE_PORTS = [{"protocol": "TCP", "port": 988}, {"protocol": "TCP", "port": 1018, "endPort": 1023}]


def _ns_peer(namespace: str, pod_labels: dict[str, str]) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}},
            "podSelector": {"matchLabels": dict(pod_labels)}}


def _tcp(port: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port}]



def network_policy_specs(cfg: TeamConfig, args: TeamArgs) -> dict[str, pulumi.Input[dict[str, Any]]]:
    """The team namespace's NetworkPolicy specs by object name (camelCase, as the API takes them)."""
    training = {labels.JOB_TYPE: "training"}
    notebook = {labels.JOB_TYPE: "notebook"}
    inference = {labels.JOB_TYPE: "inference"}
    mlflow = {"to": [_ns_peer(args.mlflow.namespace, args.mlflow.pod_labels)], "ports": _tcp(args.mlflow.port)}
    hub_api = {"to": [_ns_peer(args.jupyterhub_api.namespace, args.jupyterhub_api.pod_labels)],
               "ports": _tcp(args.jupyterhub_api.port)}
    package_index = _package_index_rules(cfg)
    lustre = pulumi.Output.all(*[d.lustre_cidrs for d in args.datasets]).apply(
        lambda per_dataset: sorted({c for cidrs in per_dataset for c in cidrs}))

    def data_rules(s3_cidrs: list[str], sts_cidrs: list[str], lustre_cidrs: list[str]) -> list[dict[str, Any]]:
        # STS: IRSA exchanges the pod's service-account token for the role's credentials there.
        rules = [{"to": [{"ipBlock": {"cidr": c}} for c in sorted(s3_cidrs)], "ports": _tcp(S3_PORT)},
                 {"to": [{"ipBlock": {"cidr": c}} for c in sorted(sts_cidrs)], "ports": _tcp(STS_PORT)}]
        if lustre_cidrs:
            rules.append({"to": [{"ipBlock": {"cidr": c}} for c in lustre_cidrs], "ports": LUSTRE_PORTS})
        return rules

    data = pulumi.Output.all(args.s3_cidrs, args.sts_cidrs, lustre).apply(lambda a: data_rules(*a))
    s3_only = pulumi.Output.all(args.s3_cidrs, args.sts_cidrs).apply(lambda a: data_rules(a[0], a[1], []))

    return {
        "default-deny": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        "allow-dns": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [_ns_peer(DNS["namespace"], DNS["pod_labels"])],
                        "ports": [{"protocol": "UDP", "port": DNS["port"]}, {"protocol": "TCP", "port": DNS["port"]}]}],
        },
        "training-egress": data.apply(lambda rules: {
            "podSelector": {"matchLabels": training},
            "policyTypes": ["Egress"],
            "egress": [mlflow, *rules],
        }),
        # Distributed training (PyTorchJob, MPIJob): workers of the team reach each other on any port.
        "training-peers": {
            "podSelector": {"matchLabels": training},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": training}}]}],
            "egress": [{"to": [{"podSelector": {"matchLabels": training}}]}],
        },
        "notebook-egress": data.apply(lambda rules: {
            "podSelector": {"matchLabels": notebook},
            "policyTypes": ["Egress"],
            "egress": [mlflow, hub_api, *rules, *package_index],
        }),
        "notebook-ingress": {
            "podSelector": {"matchLabels": notebook},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [_ns_peer(s.namespace, s.pod_labels) for s in args.notebook_ingress]}],
        },
        "inference-ingress": {
            "podSelector": {"matchLabels": inference},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [_ns_peer(s.namespace, s.pod_labels) for s in args.serving_ingress]}],
        },
        # The storage initializer downloads the model from S3; nothing else leaves an inference pod.
        "inference-egress": s3_only.apply(lambda rules: {
            "podSelector": {"matchLabels": inference},
            "policyTypes": ["Egress"],
            "egress": rules,
        }),
        **_metrics_scrape_policies(args.metrics_scraper, inference),
    }


def _metrics_scrape_policies(scraper: MetricsScraper | None, inference: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Prometheus may scrape inference pods' queue-proxy metrics port(s), and nothing else in the namespace."""
    if scraper is None:
        return {}
    return {"inference-metrics-ingress": {
        "podSelector": {"matchLabels": inference},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [_ns_peer(scraper.source.namespace, scraper.source.pod_labels)],
                     "ports": [p for port in scraper.inference_ports for p in _tcp(port)]}],
    }}


def _package_index_rules(cfg: TeamConfig) -> list[dict[str, Any]]:
    index = cfg.package_index
    if index is None:
        return []
    if index.proxy is None:
        return [{"to": [{"ipBlock": {"cidr": c}} for c in index.cidrs], "ports": _tcp(index.port)}]
    proxy = index.proxy
    peer = _ns_peer(proxy.namespace, proxy.pod_labels) if proxy.namespace else {"ipBlock": {"cidr": proxy.cidr}}
    return [{"to": [peer], "ports": _tcp(proxy.port)}]

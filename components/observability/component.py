"""The Observability component: kube-prometheus-stack, Grafana's admin secret, monitors, rules and dashboards."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from components.config import ObservabilityConfig, TeamConfig
from components.endpoints import PROMETHEUS, ClusterAccess, MetricsScraper
from components.observability import alertmanager
from components.observability.dashboards import dashboards
from components.observability.helm import (KUBE_PROMETHEUS_STACK, helm_values, karpenter_service_monitor_spec,
                                           queue_proxy_pod_monitor_spec)
from components.observability.metrics import (DASHBOARD_LABEL, GRAFANA_ADMIN_SECRET, GRAFANA_ADMIN_USER, GRAFANA_URL,
                                              NAMESPACE, NAMESPACE_LABELS, RELEASE)
from components.observability.rules import prometheus_rules
from components.observability.workloads import workload_rule_groups
from components.planning.gpu_supply import GpuPool

@dataclass(frozen=True)
class ObservabilityArgs:
    config: ObservabilityConfig
    access: ClusterAccess
    is_prod: bool
    teams: list[TeamConfig]                    # namespaces, GPU quotas and models (latency targets)
    gpu_pools: list[GpuPool]                   # planning.gpu_supply.gpu_pools(cfg): prices and GPU shares
    gpu_idle_percent: int                      # gpu.alerts.idleUtilizationPercent: what "idle" means here too
    scraper: MetricsScraper = PROMETHEUS       # what the team NetworkPolicies admit; must be this Prometheus


class Observability(pulumi.ComponentResource):
    namespace: str
    chart_version: str
    grafana_url: str
    grafana_admin_secret: str
    dashboards: list[str]                      # dashboard uids
    alert_names: list[str]
    alert_receivers: list[str]                 # Alertmanager receiver names (the platform's, team-<name>)
    recording_rules: list[str]
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:observability:Observability", name, None, opts)
        _check_scraper(args.scraper)
        cfg = args.config
        provider = args.access.provider

        def after(*deps: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, provider=provider, depends_on=list(deps))

        ns_labels = dict(NAMESPACE_LABELS)
        if cfg.node_exporter:   # host network, PID and paths
            ns_labels["pod-security.kubernetes.io/enforce"] = "privileged"
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace", metadata=k8s.meta.v1.ObjectMetaArgs(name=NAMESPACE, labels=ns_labels),
            opts=after(*args.access.depends_on))

        password = random.RandomPassword(f"{name}-grafana-admin", length=32, special=False,
                                         opts=pulumi.ResourceOptions(parent=self))
        admin = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=GRAFANA_ADMIN_SECRET, namespace=NAMESPACE),
            type="Opaque",
            string_data={"admin-user": GRAFANA_ADMIN_USER, "admin-password": pulumi.Output.secret(password.result)},
            opts=after(namespace))

        # Alertmanager's configuration holds the receivers' webhook URLs and SMTP password: a secret Output in a
        # Secret, which the operator reads (the chart's values are recorded in plain text).
        routing = [admin]
        if cfg.alertmanager.enabled:
            routing.append(k8s.core.v1.Secret(
                f"{name}-alertmanager-config",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=alertmanager.CONFIG_SECRET, namespace=NAMESPACE),
                type="Opaque",
                string_data={alertmanager.CONFIG_KEY: pulumi.Output.secret(yaml.safe_dump(
                    alertmanager.alertmanager_config(cfg.alertmanager, args.teams), sort_keys=False))},
                opts=after(namespace)))

        self.release = k8s.helm.v3.Release(
            f"{name}-stack", name=RELEASE, chart=KUBE_PROMETHEUS_STACK["chart"],
            version=KUBE_PROMETHEUS_STACK["version"],
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=KUBE_PROMETHEUS_STACK["repo"]),
            namespace=NAMESPACE, values=helm_values(cfg, args.is_prod), opts=after(namespace, *routing))
        crds = after(self.release)      # ServiceMonitor, PodMonitor, PrometheusRule: the chart's CRDs

        def custom(role: str, kind: str, object_name: str, spec: dict[str, Any]) -> None:
            k8s.apiextensions.CustomResource(
                f"{name}-{role}", api_version="monitoring.coreos.com/v1", kind=kind,
                metadata=k8s.meta.v1.ObjectMetaArgs(name=object_name, namespace=NAMESPACE), spec=spec, opts=crds)

        custom("karpenter", "ServiceMonitor", "karpenter", karpenter_service_monitor_spec(cfg.scrape_interval))
        team_namespaces = [t.name for t in args.teams]
        if team_namespaces:
            custom("queue-proxy", "PodMonitor", "knative-queue-proxy",
                   queue_proxy_pod_monitor_spec(team_namespaces, cfg.scrape_interval))

        rules = prometheus_rules(args.teams, args.gpu_pools, args.gpu_idle_percent, cfg.alerts)
        rules["mlops-workload-cost"] = workload_rule_groups()
        for rule_name, groups in rules.items():
            custom(rule_name, "PrometheusRule", rule_name, {"groups": groups})

        boards = dashboards(args.teams, args.gpu_pools, args.gpu_idle_percent, cfg.alerts)
        for uid, board in boards.items():
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard-{uid}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=f"dashboard-{uid}", namespace=NAMESPACE,
                                                    labels={DASHBOARD_LABEL: "1"}),
                data={f"{uid}.json": json.dumps(board, indent=1, sort_keys=True)},
                opts=after(namespace))

        all_rules = [r for groups in rules.values() for g in groups for r in g["rules"]]
        self.namespace = NAMESPACE
        self.chart_version = KUBE_PROMETHEUS_STACK["version"]
        self.grafana_url = GRAFANA_URL
        self.grafana_admin_secret = GRAFANA_ADMIN_SECRET
        self.dashboards = list(boards)
        self.alert_names = sorted({r["alert"] for r in all_rules if "alert" in r})
        self.recording_rules = sorted({r["record"] for r in all_rules if "record" in r})
        self.alert_receivers = ([r["name"] for r in alertmanager.alertmanager_config(cfg.alertmanager, args.teams)
                                 ["receivers"]] if cfg.alertmanager.enabled else [])
        self.register_outputs({
            "namespace": self.namespace,
            "chart_version": self.chart_version,
            "grafana_url": self.grafana_url,
            "grafana_admin_secret": self.grafana_admin_secret,
            "dashboards": self.dashboards,
            "alert_names": self.alert_names,
            "recording_rules": self.recording_rules,
            "alert_receivers": self.alert_receivers,
        })


def _check_scraper(scraper: MetricsScraper) -> None:
    """The team NetworkPolicies admit `scraper`; this install must run Prometheus exactly there."""
    if scraper.source.namespace != NAMESPACE or \
            scraper.source.pod_labels.get("app.kubernetes.io/name") != "prometheus":
        raise ValueError(f"ObservabilityArgs.scraper names pods {scraper.source.pod_labels} in "
                         f"'{scraper.source.namespace}', but this Prometheus runs in '{NAMESPACE}' with "
                         "app.kubernetes.io/name=prometheus")

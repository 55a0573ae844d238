"""Model promotion: the MLflow registry drives KServe canaries (docs/model-promotion.md).

For every model whose `rollout.mode` is `registry`, setting the configured alias (e.g. `champion`) on a model version
in MLflow starts a canary of that version on the team's InferenceService; the rollout service analyses the canary
revision's error rate and p99 latency in Prometheus for the window and then promotes it or rolls it back.

Declared here, in MLflow's namespace (the registry's automation sits beside the registry):
- the rollout service (`services/model_rollout/rollout.py`, shipped in a ConfigMap, run by the MLflow image's own
  Python: no extra image), its Service, and an HMAC secret the stack generates, shared with MLflow's webhook;
- a Job that registers the webhook in MLflow (idempotent; re-run when the configuration changes);
- RBAC: get/patch on exactly the registry-mode InferenceServices (by name) and Events in their namespaces;
- NetworkPolicies: MLflow -> service (webhook), Prometheus -> service (metrics); service -> MLflow, Prometheus,
  the API server and DNS; nothing else.
Pulumi stays the source of truth: for registry-mode models the Serving component ignores exactly the two fields this
service owns (`spec.predictor.model.storageUri`, `spec.predictor.canaryTrafficPercent`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import mlflow_auth
from components.config import TeamConfig, duration_seconds
from components.endpoints import ClusterAccess, ServiceEndpoint
from components.network import lookup_subnet_cidrs

SERVICE_DIR = Path(__file__).resolve().parent.parent / "services" / "model_rollout"
NAME = "model-rollout"
PORT = 8080
POD_LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "mlops-platform"}
SERVICE_LABELS = {**POD_LABELS, "app.kubernetes.io/component": "service"}
REGISTER_LABELS = {**POD_LABELS, "app.kubernetes.io/component": "register-webhook"}
KSERVE_GROUP = "serving.kserve.io"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
DNS = {"namespace": "kube-system", "pod_labels": {"k8s-app": "kube-dns"}, "port": 53}
API_SERVER_PORT = 443
# A high uid of no host user (the MLflow image's user is root); the service writes nothing to disk.
RESTRICTED = k8s.core.v1.SecurityContextArgs(
    allow_privilege_escalation=False, read_only_root_filesystem=True, run_as_non_root=True,
    run_as_user=mlflow_auth.RUN_AS, run_as_group=mlflow_auth.RUN_AS, capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
    seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"))


@dataclass(frozen=True)
class RegistryRollout:
    """One registry-mode model, as the rollout service reads it (ROLLOUT_CONFIG)."""

    namespace: str
    inference_service: str
    registered_model: str
    alias: str
    canary_percent: int
    window_seconds: int
    max_error_rate: float          # a fraction: 0.01 is 1% of requests answered 5xx
    max_latency_p99_ms: int
    min_requests: int

    def to_json(self) -> dict:
        return {"namespace": self.namespace, "inferenceService": self.inference_service,
                "registeredModel": self.registered_model, "alias": self.alias, "canaryPercent": self.canary_percent,
                "windowSeconds": self.window_seconds, "maxErrorRate": self.max_error_rate,
                "maxLatencyP99Ms": self.max_latency_p99_ms, "minRequests": self.min_requests}


def registry_rollouts(teams: list[TeamConfig]) -> list[RegistryRollout]:
    """The registry-mode models of the stack config, as the rollout service reads them. A team's namespace is its
    name (components/tenancy.py); the InferenceService is named after the model (components/serving.py)."""
    return [RegistryRollout(
        namespace=team.name, inference_service=m.name, registered_model=m.rollout.registered_model or "",
        alias=m.rollout.alias, canary_percent=m.rollout.canary_percent,
        window_seconds=duration_seconds(m.rollout.analysis_window),
        max_error_rate=m.rollout.max_error_rate_percent / 100,
        max_latency_p99_ms=m.rollout.max_latency_p99_ms or m.latency_p99_ms, min_requests=m.rollout.min_requests,
    ) for team in teams for m in team.models if m.registry_driven]


@dataclass(frozen=True)
class ModelRolloutArgs:
    access: ClusterAccess
    rollouts: list[RegistryRollout]
    mlflow: ServiceEndpoint             # the service runs in MLflow's namespace and calls its API
    prometheus: ServiceEndpoint
    image: str                          # the MLflow image (its Python runs the service: no extra image)
    mlflow_namespace: pulumi.Resource
    # The release that installs the Prometheus operator's CRDs (Observability.release): the service's /metrics
    # (deployed version, registry metrics, rollouts) is scraped through a ServiceMonitor; None: not scraped.
    monitoring: pulumi.Resource | None = None


class ModelRollout(pulumi.ComponentResource):
    webhook_url: str
    webhook_secret: pulumi.Output[str]
    models: list[str]

    def __init__(self, name: str, args: ModelRolloutArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:rollout:ModelRollout", name, None, opts)
        if not args.rollouts:
            raise ValueError("ModelRollout needs at least one registry-mode model")
        ns = args.mlflow.namespace
        child = pulumi.ResourceOptions(parent=self)
        in_ns = pulumi.ResourceOptions(parent=self, provider=args.access.provider,
                                       depends_on=[args.mlflow_namespace, *args.access.depends_on])

        def meta(object_name: str, namespace: str = ns) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(name=object_name, namespace=namespace, labels=dict(POD_LABELS))

        # The HMAC secret MLflow signs deliveries with; the service refuses anything else.
        secret_value = random.RandomPassword(f"{name}-webhook-secret", length=48, special=False, opts=child)
        secret = k8s.core.v1.Secret(f"{name}-secret", metadata=meta(NAME), type="Opaque",
                                    string_data={"webhook-secret": secret_value.result}, opts=in_ns)
        config = {"models": [r.to_json() for r in sorted(args.rollouts, key=lambda r: (r.namespace,
                                                                                           r.inference_service))]}
        files = {"rollout.py": (SERVICE_DIR / "rollout.py").read_text(),
                 "register_webhook.py": (SERVICE_DIR / "register_webhook.py").read_text(),
                 "rollout.json": json.dumps(config, indent=2, sort_keys=True)}
        # The content hash in the pod template restarts the service when its code or configuration changes.
        digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:12]
        config_map = k8s.core.v1.ConfigMap(f"{name}-code", metadata=meta(NAME), data=files, opts=in_ns)
        account = k8s.core.v1.ServiceAccount(f"{name}-service-account", metadata=meta(NAME), opts=in_ns)

        # ---- RBAC: the registry-mode InferenceServices by name, Events beside them; nothing else
        by_namespace: dict[str, list[str]] = {}
        for r in args.rollouts:
            by_namespace.setdefault(r.namespace, []).append(r.inference_service)
        for team_ns, services in sorted(by_namespace.items()):
            role = k8s.rbac.v1.Role(
                f"{name}-{team_ns}", metadata=meta(NAME, team_ns),
                rules=[k8s.rbac.v1.PolicyRuleArgs(api_groups=[KSERVE_GROUP], resources=["inferenceservices"],
                                                  resource_names=sorted(services), verbs=["get", "patch"]),
                       k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["events"], verbs=["create"])],
                opts=in_ns)
            k8s.rbac.v1.RoleBinding(
                f"{name}-{team_ns}", metadata=meta(NAME, team_ns),
                role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name=NAME),
                subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=NAME, namespace=ns)],
                opts=pulumi.ResourceOptions(parent=self, provider=args.access.provider, depends_on=[role]))

        env = [
            _env("ROLLOUT_CONFIG", "/app/rollout.json"),
            _env("MLFLOW_TRACKING_URI", args.mlflow.url),
            _env("PROMETHEUS_URL", args.prometheus.url),
            _env("PORT", str(PORT)),
            _env("RECONCILE_SECONDS", "30"),
        ]
        # MLflow's basic auth: the rollout service's own user (components/mlflow_auth.py: EDIT on these models only).
        credentials = [k8s.core.v1.EnvVarArgs(name=key, value_from=k8s.core.v1.EnvVarSourceArgs(
            secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=mlflow_auth.ROLLOUT_SECRET, key=key)))
            for key in (mlflow_auth.USERNAME_KEY, mlflow_auth.PASSWORD_KEY)]
        webhook_secret = k8s.core.v1.EnvVarArgs(name="WEBHOOK_SECRET", value_from=k8s.core.v1.EnvVarSourceArgs(
            secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=NAME, key="webhook-secret")))
        env += [*credentials, webhook_secret]
        code = k8s.core.v1.VolumeArgs(name="code", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=NAME))
        mount = [k8s.core.v1.VolumeMountArgs(name="code", mount_path="/app", read_only=True)]
        pod_security = k8s.core.v1.PodSecurityContextArgs(
            run_as_non_root=True, seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"))
        probe = k8s.core.v1.ProbeArgs(http_get=k8s.core.v1.HTTPGetActionArgs(path="/healthz", port="http"),
                                      period_seconds=10, failure_threshold=3)
        k8s.apps.v1.Deployment(
            f"{name}-service", metadata=meta(NAME),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                # One replica: decisions are serialized in one process; state lives in the cluster, so a
                # rescheduled pod resumes every canary where it was (Recreate: never two deciders at once).
                replicas=1, strategy=k8s.apps.v1.DeploymentStrategyArgs(type="Recreate"),
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(SERVICE_LABELS)),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=dict(SERVICE_LABELS),
                                                        annotations={"mlops.platform/config-hash": digest}),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=NAME, security_context=pod_security, volumes=[code],
                        containers=[k8s.core.v1.ContainerArgs(
                            name="rollout", image=args.image, command=["python", "/app/rollout.py"], env=env,
                            ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=PORT, protocol="TCP")],
                            readiness_probe=probe, liveness_probe=probe, volume_mounts=mount,
                            security_context=RESTRICTED,
                            resources=k8s.core.v1.ResourceRequirementsArgs(
                                requests={"cpu": "50m", "memory": "128Mi"}, limits={"memory": "256Mi"}))]))),
            opts=pulumi.ResourceOptions(parent=self, provider=args.access.provider,
                                        depends_on=[secret, config_map, account]))
        service = k8s.core.v1.Service(
            f"{name}-service", metadata=meta(NAME),
            spec=k8s.core.v1.ServiceSpecArgs(selector=dict(SERVICE_LABELS), ports=[k8s.core.v1.ServicePortArgs(
                name="http", port=80, target_port="http", protocol="TCP")]),
            opts=in_ns)
        self.webhook_url = f"http://{NAME}.{ns}.svc.cluster.local/webhook"
        if args.monitoring is not None:
            k8s.apiextensions.CustomResource(
                f"{name}-service-monitor", api_version="monitoring.coreos.com/v1", kind="ServiceMonitor",
                metadata=meta(NAME), spec=service_monitor_spec(ns),
                opts=pulumi.ResourceOptions(parent=self, provider=args.access.provider,
                                            depends_on=[service, args.monitoring]))

        # ---- the webhook in MLflow, registered by a Job (MLflow keeps webhooks in its database, not in Kubernetes)
        k8s.batch.v1.Job(
            f"{name}-register-webhook", metadata=meta(f"{NAME}-register-{digest}"),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=6, ttl_seconds_after_finished=86400,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=dict(REGISTER_LABELS)),
                    spec=k8s.core.v1.PodSpecArgs(
                        restart_policy="OnFailure", security_context=pod_security, volumes=[code],
                        automount_service_account_token=False,
                        containers=[k8s.core.v1.ContainerArgs(
                            name="register", image=args.image, command=["python", "/app/register_webhook.py"],
                            env=[_env("MLFLOW_TRACKING_URI", args.mlflow.url), _env("WEBHOOK_NAME", NAME),
                                 _env("WEBHOOK_URL", self.webhook_url), *credentials, webhook_secret],
                            volume_mounts=mount, security_context=RESTRICTED,
                            resources=k8s.core.v1.ResourceRequirementsArgs(
                                requests={"cpu": "10m", "memory": "64Mi"}, limits={"memory": "128Mi"}))]))),
            opts=pulumi.ResourceOptions(parent=self, provider=args.access.provider,
                                        depends_on=[secret, config_map], custom_timeouts=pulumi.CustomTimeouts(
                                            create="10m")))

        # The EKS API server's network interfaces live in the cluster's (private) subnets.
        api_server_cidrs = lookup_subnet_cidrs(args.access.private_subnet_ids,
                                               pulumi.InvokeOutputOptions(parent=self))
        for policy_name, spec in network_policy_specs(args.mlflow, args.prometheus, api_server_cidrs).items():
            k8s.networking.v1.NetworkPolicy(f"{name}-netpol-{policy_name}", metadata=meta(policy_name), spec=spec,
                                            opts=in_ns)

        self.webhook_secret = pulumi.Output.secret(secret_value.result)
        self.models = sorted(f"{r.namespace}/{r.inference_service}" for r in args.rollouts)
        self.register_outputs({"webhook_url": self.webhook_url, "webhook_secret": self.webhook_secret,
                               "models": self.models})


def service_monitor_spec(namespace: str) -> dict:
    """The service's /metrics on its Service port `http`. honorLabels: its series name the model's team namespace in
    `namespace`, which must not be overwritten by the target's (MLflow's) namespace. The ingress NetworkPolicy admits
    Prometheus on this port only."""
    return {"selector": {"matchLabels": dict(POD_LABELS)}, "namespaceSelector": {"matchNames": [namespace]},
            "endpoints": [{"port": "http", "path": "/metrics", "honorLabels": True}]}


def _env(name: str, value: str) -> k8s.core.v1.EnvVarArgs:
    return k8s.core.v1.EnvVarArgs(name=name, value=value)


def network_policy_specs(mlflow: ServiceEndpoint, prometheus: ServiceEndpoint,
                         api_server_cidrs: pulumi.Input[list[str]]) -> dict[str, pulumi.Input[dict]]:
    """The rollout pods' NetworkPolicies (MLflow's namespace is default-deny): exactly the four peers it needs."""
    service = {"matchLabels": dict(SERVICE_LABELS)}
    register = {"matchLabels": dict(REGISTER_LABELS)}
    mlflow_pods = {"podSelector": {"matchLabels": dict(mlflow.pod_labels)}}
    prometheus_pods = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: prometheus.namespace}},
                       "podSelector": {"matchLabels": dict(prometheus.pod_labels)}}
    tcp = lambda port: [{"protocol": "TCP", "port": port}]           # noqa: E731
    return {
        f"{NAME}-ingress": {
            "podSelector": service, "policyTypes": ["Ingress"],
            "ingress": [{"from": [mlflow_pods, prometheus_pods], "ports": tcp(PORT)}],
        },
        f"{NAME}-egress": pulumi.Output.from_input(api_server_cidrs).apply(lambda cidrs: {
            "podSelector": service, "policyTypes": ["Egress"],
            "egress": [{"to": [mlflow_pods], "ports": tcp(mlflow.port)},
                       {"to": [prometheus_pods], "ports": tcp(prometheus.port)},
                       {"to": [{"ipBlock": {"cidr": c}} for c in sorted(cidrs)], "ports": tcp(API_SERVER_PORT)},
                       _dns()],
        }),
        f"{NAME}-register-egress": {
            "podSelector": register, "policyTypes": ["Egress"],
            "egress": [{"to": [mlflow_pods], "ports": tcp(mlflow.port)}, _dns()],
        },
        # MLflow delivers the webhooks (server -> service) and serves the service and the Job (-> server).
        "mlflow-webhook-egress": {
            "podSelector": {"matchLabels": dict(mlflow.pod_labels)}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": service}], "ports": tcp(PORT)}],
        },
        "mlflow-ingress-from-rollout": {
            "podSelector": {"matchLabels": dict(mlflow.pod_labels)}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": service}, {"podSelector": register}], "ports": tcp(mlflow.port)}],
        },
    }


def _dns() -> dict:
    return {"to": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: DNS["namespace"]}},
                    "podSelector": {"matchLabels": DNS["pod_labels"]}}],
            "ports": [{"protocol": "UDP", "port": DNS["port"]}, {"protocol": "TCP", "port": DNS["port"]}]}

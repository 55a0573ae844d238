"""Model serving: KServe in Serverless mode on Knative Serving with Kourier, and one InferenceService per model.

Why Serverless (Knative) and not RawDeployment: the seed rolls new model versions out as 5% canaries, and KServe's
`canaryTrafficPercent` is implemented by Knative's revision traffic split only. CPU-based scaling (`scaleMetric:
cpu`, `scaleTarget: 80`) then runs through Knative's HPA autoscaler class, which needs the `serving-hpa`
extension and metrics-server, both installed here.

Installed, all pinned (module constants below):
- cert-manager (Helm): certificates for KServe's webhooks;
- metrics-server (Helm): CPU metrics for the HPAs Knative creates per model revision;
- Knative Serving core, CRDs and HPA extension, and net-kourier, from their release manifests (`yaml/v2`
  ConfigFile). Not through the Knative operator: the operator places Kourier's gateway in the KnativeServing's
  own namespace, while `endpoints.SERVING_INGRESS` (which the team NetworkPolicies trust) names the gateway in
  `kourier-system`, where the net-kourier release puts it. Knative's settings are ConfigMap patches;
- KServe (Helm, OCI; version in components/data/versions.yaml): `kserve-crd`, `kserve-resources` (the controller) and `kserve-runtime-configs`
  (the ClusterServingRuntimes the InferenceServices name).

Per model of a team (`teams[].models[]`), in the team namespace, with the team's `serving` service account:
an InferenceService sized by `ModelDeploymentConfig.sizing` (docs/serving-and-tracking.md, "the sizing rule").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components import catalog, labels
from components.config import ModelDeploymentConfig, TeamConfig
from components.endpoints import PRIORITY_CLASSES, SERVING_INGRESS, ClusterAccess, PodSource, TeamAccess

# ---- pinned versions: components/data/versions.yaml
CERT_MANAGER = catalog.chart("cert-manager")
METRICS_SERVER = catalog.chart("metrics-server")
KNATIVE_SERVING_VERSION = catalog.versions()["manifests"]["knative-serving"]
KNATIVE_KOURIER_VERSION = catalog.versions()["manifests"]["net-kourier"]
KSERVE_VERSION = catalog.chart("kserve")["version"]
KSERVE_CHARTS = catalog.chart("kserve")["charts"]
# For `rollout.mode: registry` models the rollout service (components/model_rollout.py) owns these two fields: the
# version serving and the canary's share. Pulumi declares everything else and never reverts a promotion.
ROLLOUT_OWNED_FIELDS = ["spec.predictor.model.storageUri", "spec.predictor.canaryTrafficPercent"]

KNATIVE_RELEASES = "https://github.com/knative/serving/releases/download"
KOURIER_RELEASES = "https://github.com/knative-extensions/net-kourier/releases/download"
KNATIVE_NAMESPACE = "knative-serving"
KOURIER_NAMESPACE = "kourier-system"
KSERVE_NAMESPACE = "kserve"
CERT_MANAGER_NAMESPACE = "cert-manager"
KOURIER_INTERNAL = f"kourier-internal.{KOURIER_NAMESPACE}.svc.cluster.local"
KOURIER_INGRESS_CLASS = "kourier.ingress.networking.knative.dev"
HPA_CLASS = "hpa.autoscaling.knative.dev"
PATCH_FORCE = {"pulumi.com/patchForce": "true"}

# Pod-spec fields Knative rejects unless enabled: GPU models need tolerations and node affinity; every model
# runs at the platform's inference priority.
KNATIVE_FEATURES = {
    "kubernetes.podspec-affinity": "enabled",
    "kubernetes.podspec-tolerations": "enabled",
    "kubernetes.podspec-nodeselector": "enabled",
    "kubernetes.podspec-priorityclassname": "enabled",
}
# Request path components that must survive a node loss in prod: (namespace, HPA name, upstream maxReplicas).
HA_AUTOSCALERS = [(KNATIVE_NAMESPACE, "activator", 20), (KOURIER_NAMESPACE, "3scale-kourier-gateway", 10)]
SYSTEM_NAMESPACE_LABELS = {
    "pod-security.kubernetes.io/enforce": "baseline",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}


@dataclass(frozen=True)
class ServingArgs:
    access: ClusterAccess
    is_prod: bool
    teams: list[TeamConfig]                          # their `models` are deployed
    team_access: list[TeamAccess]                    # namespaces and `serving` service accounts (tenancy)
    ingress: tuple[PodSource, ...] = field(default=SERVING_INGRESS)
    priority_class: str = PRIORITY_CLASSES.inference


class Serving(pulumi.ComponentResource):
    kserve_version: str
    knative_version: str
    inference_services: list[str]                    # "<namespace>/<name>"
    model_urls: dict[str, str]                       # "<namespace>/<name>" -> cluster-local URL

    def __init__(self, name: str, args: ServingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:serving:Serving", name, None, opts)
        _check_ingress(args.ingress)
        provider = args.access.provider
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=list(args.access.depends_on))

        def after(*deps: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, provider=provider, depends_on=list(deps))

        # ---- cert-manager and metrics-server
        cert_ns = self._namespace(name, CERT_MANAGER_NAMESPACE, k8s_opts)
        cert_manager = k8s.helm.v3.Release(
            f"{name}-cert-manager", name="cert-manager", chart=CERT_MANAGER["chart"], version=CERT_MANAGER["version"],
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CERT_MANAGER["repo"]),
            namespace=CERT_MANAGER_NAMESPACE, values=cert_manager_values(args.is_prod), opts=after(cert_ns))
        k8s.helm.v3.Release(
            f"{name}-metrics-server", name="metrics-server", chart=METRICS_SERVER["chart"],
            version=METRICS_SERVER["version"],
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=METRICS_SERVER["repo"]),
            namespace="kube-system", values=metrics_server_values(args.is_prod), opts=k8s_opts)

        # ---- Knative Serving + Kourier, from the pinned release manifests
        knative_crds = k8s.yaml.v2.ConfigFile(
            f"{name}-knative-crds", file=f"{KNATIVE_RELEASES}/{KNATIVE_SERVING_VERSION}/serving-crds.yaml",
            opts=k8s_opts)
        knative_core = k8s.yaml.v2.ConfigFile(
            f"{name}-knative-core", file=f"{KNATIVE_RELEASES}/{KNATIVE_SERVING_VERSION}/serving-core.yaml",
            opts=after(knative_crds))
        knative_hpa = k8s.yaml.v2.ConfigFile(
            f"{name}-knative-hpa", file=f"{KNATIVE_RELEASES}/{KNATIVE_SERVING_VERSION}/serving-hpa.yaml",
            opts=after(knative_core))
        kourier = k8s.yaml.v2.ConfigFile(
            f"{name}-kourier", file=f"{KOURIER_RELEASES}/{KNATIVE_KOURIER_VERSION}/kourier.yaml",
            opts=after(knative_core))
        knative_settings = [
            k8s.core.v1.ConfigMapPatch(
                f"{name}-knative-{cm}", metadata=k8s.meta.v1.ObjectMetaArgs(name=cm, namespace=KNATIVE_NAMESPACE),
                data=data, opts=after(knative_core))
            for cm, data in knative_config().items()
        ]
        # The net-kourier release exposes the gateway as a LoadBalancer Service; keep that load balancer inside
        # the VPC (models are not published to the internet by default).
        k8s.core.v1.ServicePatch(
            f"{name}-kourier-internal-lb",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="kourier", namespace=KOURIER_NAMESPACE, annotations={
                "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
                "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}),
            opts=after(kourier))
        if args.is_prod:
            for namespace, hpa, max_replicas in HA_AUTOSCALERS:
                k8s.autoscaling.v2.HorizontalPodAutoscalerPatch(
                    f"{name}-ha-{hpa}",
                    metadata=k8s.meta.v1.ObjectMetaArgs(name=hpa, namespace=namespace, annotations=PATCH_FORCE),
                    spec=k8s.autoscaling.v2.HorizontalPodAutoscalerSpecPatchArgs(
                        min_replicas=2, max_replicas=max_replicas,
                        scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferencePatchArgs(
                            api_version="apps/v1", kind="Deployment", name=hpa)),
                    opts=after(kourier if namespace == KOURIER_NAMESPACE else knative_core))

        # ---- KServe: CRDs, controller (Knative mode, Kourier), runtimes
        kserve_ns = self._namespace(name, KSERVE_NAMESPACE, k8s_opts)
        kserve_crd = k8s.helm.v3.Release(
            f"{name}-kserve-crd", name="kserve-crd", chart=f"{KSERVE_CHARTS}/kserve-crd", version=KSERVE_VERSION,
            namespace=KSERVE_NAMESPACE, opts=after(kserve_ns))
        kserve = k8s.helm.v3.Release(
            f"{name}-kserve", name="kserve", chart=f"{KSERVE_CHARTS}/kserve-resources", version=KSERVE_VERSION,
            namespace=KSERVE_NAMESPACE, values=kserve_values(region),
            opts=after(kserve_crd, cert_manager, knative_core, knative_hpa, kourier, *knative_settings))
        runtimes = k8s.helm.v3.Release(
            f"{name}-kserve-runtimes", name="kserve-runtime-configs", chart=f"{KSERVE_CHARTS}/kserve-runtime-configs",
            version=KSERVE_VERSION, namespace=KSERVE_NAMESPACE, values=runtime_values(), opts=after(kserve))

        # ---- one InferenceService per model
        access_by_team = {t.name: t for t in args.team_access}
        self.inference_services, self.model_urls = [], {}
        for team in args.teams:
            if not team.models:
                continue
            if team.name not in access_by_team:
                raise ValueError(f"team '{team.name}' has models but no TeamAccess was passed to Serving")
            access = access_by_team[team.name]
            for model in team.models:
                manifest = inference_service(model, access, args.is_prod, args.priority_class)
                k8s.apiextensions.CustomResource(
                    f"{name}-{access.namespace}-{model.name}",
                    api_version=manifest["apiVersion"], kind=manifest["kind"],
                    metadata=manifest["metadata"], spec=manifest["spec"],
                    opts=pulumi.ResourceOptions.merge(after(runtimes, access.namespace_resource), pulumi.ResourceOptions(
                        ignore_changes=ROLLOUT_OWNED_FIELDS if model.registry_driven else None)))
                key = f"{access.namespace}/{model.name}"
                self.inference_services.append(key)
                self.model_urls[key] = f"http://{model.name}.{access.namespace}.svc.cluster.local"

        self.kserve_version = KSERVE_VERSION
        self.knative_version = KNATIVE_SERVING_VERSION
        self.register_outputs({
            "kserve_version": self.kserve_version,
            "knative_version": self.knative_version,
            "inference_services": self.inference_services,
            "model_urls": self.model_urls,
        })

    def _namespace(self, name: str, namespace: str, opts: pulumi.ResourceOptions) -> k8s.core.v1.Namespace:
        return k8s.core.v1.Namespace(
            f"{name}-namespace-{namespace}",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=namespace, labels=dict(SYSTEM_NAMESPACE_LABELS)), opts=opts)


def _check_ingress(ingress: tuple[PodSource, ...]) -> None:
    """The team NetworkPolicies trust `ingress`; this install must put its gateway and activator exactly there."""
    expected = {(KOURIER_NAMESPACE, "3scale-kourier-gateway"), (KNATIVE_NAMESPACE, "activator")}
    got = {(s.namespace, s.pod_labels.get("app")) for s in ingress}
    if got != expected:
        raise ValueError(f"ServingArgs.ingress names {sorted(got)}, but Knative/Kourier run as {sorted(expected)}")


def knative_config() -> dict[str, dict[str, str]]:
    """Knative Serving ConfigMaps (knative-serving namespace) -> the keys the platform sets."""
    return {
        "config-network": {"ingress-class": KOURIER_INGRESS_CLASS},
        "config-features": dict(KNATIVE_FEATURES),
        # Knative Serving 1.21 exports no request metrics unless told to (knative.dev/pkg default protocol
        # "none"); the queue-proxy then serves them on `http-usermetric` (9091) for the observability PodMonitor.
        "config-observability": {"request-metrics-protocol": "prometheus"},
    }


def cert_manager_values(is_prod: bool) -> dict[str, Any]:
    replicas = 2 if is_prod else 1
    ha = {"replicaCount": replicas, "podDisruptionBudget": {"enabled": is_prod}}
    return {
        "crds": {"enabled": True, "keep": True},
        **ha,
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
        "webhook": {**ha, "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}},
        "cainjector": {**ha, "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}}},
    }


def metrics_server_values(is_prod: bool) -> dict[str, Any]:
    return {
        "replicas": 2 if is_prod else 1,
        "podDisruptionBudget": {"enabled": is_prod, "minAvailable": 1},
        "resources": {"requests": {"cpu": "100m", "memory": "200Mi"}},
    }


def kserve_values(region: pulumi.Input[str]) -> dict[str, Any]:
    return {"kserve": {
        "controller": {
            "deploymentMode": "Knative",          # v0.20's name for Serverless (the chart's default, made explicit)
            "gateway": {
                # No Istio: Kourier routes the Knative services, KServe creates no Istio VirtualService.
                "disableIstioVirtualHost": True,
                "localGateway": {"gatewayService": KOURIER_INTERNAL, "knativeGatewayService": KOURIER_INTERNAL},
            },
        },
        # Model downloads authenticate with the pod's IRSA role (the team's `serving` service account).
        "storage": {"s3": {"region": region, "useHttps": "1", "verifySSL": "1"}},
    }}


def runtime_values() -> dict[str, Any]:
    return {"kserve": {"servingruntime": {"enabled": True}}}


def inference_service(model: ModelDeploymentConfig, team: TeamAccess, is_prod: bool,
                      priority_class: str) -> dict[str, Any]:
    """The InferenceService (as the API takes it) for one model of a team."""
    fw = catalog.serving_frameworks()[model.framework]
    size = model.sizing(is_prod)
    resources = {"cpu": fw.cpu, "memory": f"{fw.memory_gib}Gi"}
    requests, limits = dict(resources), dict(resources)          # Guaranteed QoS: no throttling, no eviction
    if model.gpu:
        requests[labels.GPU_RESOURCE] = limits[labels.GPU_RESOURCE] = "1"
    predictor: dict[str, Any] = {
        "serviceAccountName": team.serving_service_account,
        "minReplicas": size.min_replicas,
        "maxReplicas": size.max_replicas,
        "scaleMetric": size.scale_metric,
        "scaleTarget": size.scale_target,
        "priorityClassName": priority_class,
        # Pod labels: the team's inference NetworkPolicies select `job-type: inference`.
        "labels": {labels.JOB_TYPE: "inference", labels.TEAM: team.name},
        # CPU scaling is Knative's HPA class (the default KPA class scales on concurrency only).
        "annotations": {"autoscaling.knative.dev/class": HPA_CLASS},
        "model": {
            "modelFormat": {"name": fw.model_format},
            "runtime": model.runtime or fw.runtime,
            "storageUri": model.canary.location if model.canary else model.location,
            "resources": {"requests": requests, "limits": limits},
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        },
        # Pod Security `restricted` (the team namespaces warn at that level); the runtimes' images run as uid 1000.
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
                            "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if model.canary is not None:
        # KServe gives the latest revision (this spec: the canary's location) this share; the previously rolled-out
        # revision (the model at `location`) keeps the rest until the canary block is removed (promotion).
        predictor["canaryTrafficPercent"] = model.canary.traffic_percent
    if model.gpu:
        predictor["tolerations"] = [{"key": labels.GPU_TAINT["key"], "operator": "Exists",
                                     "effect": labels.GPU_TAINT["effect"]}]
        predictor["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": labels.GPU_TYPE, "operator": "Exists"}]}]}}}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": model.name, "namespace": team.namespace,
                     "labels": {labels.TEAM: team.name, "mlops.platform/model": model.name}},
        "spec": {"predictor": predictor},
    }

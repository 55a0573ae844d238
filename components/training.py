"""The Kubeflow training operator v1 (PyTorchJob, TFJob, MPIJob), and what a team's training job needs.

How it is installed (so a real `pulumi up` applies it and the offline preview shows it):
- the three CRDs come from the release's own files at the pinned tag, as one `yaml/v2` ConfigGroup of their URLs
  (kubeflow/trainer at the pinned tag, `manifests/base/crds/kubeflow.org_<kind>s.yaml`): the provider fetches them at
  `pulumi up`; offline the ConfigGroup shows the URLs. They are large, which is why the provider's server-side apply
  (its default) is needed. The objects this program renders of these kinds are validated against the same files'
  schemas (shared schemas, tests);
- the controller is declared here with typed resources, transcribed from the release's standalone overlay
  (`manifests/overlays/standalone` at the pinned tag: namespace `kubeflow`, ServiceAccount, ClusterRole, Secret, Service,
  Deployment, ValidatingWebhookConfiguration), so every object is in the preview and checked by the policy pack.
  Differences from upstream: only the three job kinds are enabled (`--enable-scheme`), the images the operator puts
  into team pods are pinned and from allowed registries (`training.initContainerImage`,
  `training.mpiKubectlDeliveryImage`; upstream's defaults are `alpine:3.22` and an unpinned kubectl-delivery),
  the controller runs on the system nodes with resource requests and a restricted security context.
  The operator generates its webhook certificate into the Secret and its CA into the webhook configuration at start
  (cert-controller); Pulumi ignores those two fields.

Per team (`TeamAccess` from tenancy): a ConfigMap `training-job-defaults` with the pod template a job's replicas
use (the spot training pool's node selector, the GPU toleration, the `job-type: training` label the team's egress
NetworkPolicies key on, the team's `training` service account, priority class `mlops-training`, the spot grace
period), the Kueue queue label, the named on-demand fallback pool and the team's checkpoint prefix: the template the
examples are rendered from (components/training_jobs.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components import catalog, labels
from components.config import TrainingConfig
from components.endpoints import PRIORITY_CLASSES, ClusterAccess, TeamAccess
from components.planning.gpu_supply import GpuPool
from components.training_jobs import (DEFAULTS_CONFIGMAP, JOB_CONTAINER_SECURITY_CONTEXT, JOB_POD_SECURITY_CONTEXT,
                                      job_defaults_data)

# ---- pinned versions: components/data/versions.yaml
TRAINING_OPERATOR_VERSION = catalog.versions()["manifests"]["training-operator"]
OPERATOR_IMAGE = catalog.image("training-operator")
CRD_URL = "https://raw.githubusercontent.com/kubeflow/trainer/{version}/manifests/base/crds/kubeflow.org_{plural}.yaml"
# scheme flag -> (kind, plural, webhook path or None). The v1.9 operator validates PyTorchJob and TFJob by webhook;
# MPIJob v1 has no validating webhook.
JOB_KINDS = {
    "pytorchjob": ("PyTorchJob", "pytorchjobs", "/validate-kubeflow-org-v1-pytorchjob"),
    "tfjob": ("TFJob", "tfjobs", "/validate-kubeflow-org-v1-tfjob"),
    "mpijob": ("MPIJob", "mpijobs", None),
}

NAMESPACE = "kubeflow"
NAME = "training-operator"
SELECTOR = {"control-plane": "kubeflow-training-operator"}
WEBHOOK_SECRET = "training-operator-webhook-cert"
WEBHOOK_CONFIGURATION = "validator.training-operator.kubeflow.org"   # the name the operator's cert-controller patches
WEBHOOK_PORT = 9443
METRICS_PORT = 8080
METRICS_PORT_NAME = "monitoring-port"
HEALTH_PORT = 8081
SYSTEM_NODES = {"kubernetes.io/os": "linux", labels.NODE_ROLE: "system"}
NAMESPACE_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}
RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
# The operator adds an init container (waits for the master's DNS name) to every PyTorchJob worker; its built-in
# template has no securityContext. This replacement is read through `--pytorch-init-container-template-file`; the
# operator fills the Go template fields (pkg/controller.v1/pytorch/initcontainer.go).
INIT_TEMPLATE_CONFIGMAP = "pytorch-init-container"
INIT_TEMPLATE_DIR = "/etc/training-operator/pytorch-init"
INIT_TEMPLATE_FILE = "initContainer.yaml"
ALL = ["create", "delete", "get", "list", "patch", "update", "watch"]
# The v1.9.4 ClusterRole (manifests/base/rbac/role.yaml, generated from the controller's kubebuilder markers).
JOB_PLURALS = ["jaxjobs", "mpijobs", "paddlejobs", "pytorchjobs", "tfjobs", "xgboostjobs"]
CLUSTER_ROLE_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ALL},
    {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "delete", "get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ALL},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "list", "update", "watch"]},
    {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["create", "get", "list", "watch"]},
    {"apiGroups": ["kubeflow.org"],
     "resources": [f"{p}{s}" for p in JOB_PLURALS for s in ("", "/status", "/finalizers")], "verbs": ALL},
    {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"],
     "verbs": ["create", "list", "update", "watch"]},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": ALL},
    {"apiGroups": ["scheduling.volcano.sh"], "resources": ["podgroups"], "verbs": ALL},
    {"apiGroups": ["scheduling.x-k8s.io"], "resources": ["podgroups"], "verbs": ALL},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ALL},
    # The cert-controller reads webhook configurations through a cache (list/watch) and writes only its own.
    {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"],
     "verbs": ["list", "watch"]},
    {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"],
     "resourceNames": [WEBHOOK_CONFIGURATION], "verbs": ["get", "update"]},
]
# Upstream's ClusterRole also reads and updates Secrets in every namespace. Its only user is the webhook certificate
# rotator (pkg/cert/cert.go: `+kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;update`), which
# keeps the certificate in one Secret of the operator's own namespace and reads it through a cache scoped to that
# namespace (open-policy-agent/cert-controller `addNamespacedCache`); no job controller of v1.9 (PyTorch, TF, MPI v1:
# hostfile in a ConfigMap, kubectl exec, no SSH keys) touches Secrets. So Secrets move to a Role in `kubeflow`, which
# holds nothing but that certificate. A cache lists the whole namespace, so `resourceNames` cannot narrow list/watch.
NAMESPACE_ROLE_RULES = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "update"]}]


@dataclass(frozen=True)
class TrainingArgs:
    config: TrainingConfig
    access: ClusterAccess
    pool: GpuPool                                   # config.training_pool: where jobs run by default
    team_access: list[TeamAccess] = field(default_factory=list)
    priority_class: str = PRIORITY_CLASSES.training
    # The release that installs the Prometheus operator's CRDs (Observability.release); without one, the operator's
    # metrics are not scraped (no ServiceMonitor could be accepted).
    monitoring: pulumi.Resource | None = None
    fallback_pool: GpuPool | None = None            # training.fallbackPool: on-demand, jobs opt in by node selector
    checkpoint_bucket: pulumi.Input[str] | None = None   # the DVC bucket: checkpoints under <team>/checkpoints/


class Training(pulumi.ComponentResource):
    namespace: str
    version: str
    crd_urls: list[str]
    pool: str
    job_defaults: list[str]                         # "<namespace>/training-job-defaults"

    def __init__(self, name: str, args: TrainingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:training:Training", name, None, opts)
        cfg, provider = args.config, args.access.provider

        def after(*deps: pulumi.Resource, **kw: Any) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, provider=provider, depends_on=list(deps), **kw)

        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace", metadata=k8s.meta.v1.ObjectMetaArgs(name=NAMESPACE, labels=dict(NAMESPACE_LABELS)),
            opts=after(*args.access.depends_on))
        crds = [k8s.yaml.v2.ConfigGroup(f"{name}-crds", files=list(crd_urls().values()),
                                        opts=after(*args.access.depends_on))]

        meta = k8s.meta.v1.ObjectMetaArgs(name=NAME, namespace=NAMESPACE, labels=dict(SELECTOR))
        account = k8s.core.v1.ServiceAccount(f"{name}-account", metadata=meta, opts=after(namespace))
        role = k8s.rbac.v1.ClusterRole(f"{name}-role", metadata=k8s.meta.v1.ObjectMetaArgs(name=NAME),
                                       rules=CLUSTER_ROLE_RULES, opts=after(*crds))
        subjects = [k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=NAME, namespace=NAMESPACE)]
        binding = k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-role", metadata=k8s.meta.v1.ObjectMetaArgs(name=NAME),
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=NAME),
            subjects=subjects, opts=after(role, account))
        ns_role = k8s.rbac.v1.Role(f"{name}-certificate-role", metadata=meta, rules=NAMESPACE_ROLE_RULES,
                                   opts=after(namespace))
        ns_binding = k8s.rbac.v1.RoleBinding(
            f"{name}-certificate-role", metadata=meta,
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name=NAME),
            subjects=subjects, opts=after(ns_role, account))
        # Filled by the operator's cert-controller at start (certificate and key); Pulumi leaves the data alone.
        secret = k8s.core.v1.Secret(
            f"{name}-webhook-cert", metadata=k8s.meta.v1.ObjectMetaArgs(name=WEBHOOK_SECRET, namespace=NAMESPACE),
            type="Opaque", opts=after(namespace, ignore_changes=["data", "stringData"]))
        service = k8s.core.v1.Service(f"{name}-service", metadata=meta, spec=service_spec(), opts=after(namespace))
        init_template = k8s.core.v1.ConfigMap(
            f"{name}-pytorch-init", metadata=k8s.meta.v1.ObjectMetaArgs(name=INIT_TEMPLATE_CONFIGMAP, namespace=NAMESPACE),
            data={INIT_TEMPLATE_FILE: pytorch_init_container_template()}, opts=after(namespace))
        deployment = k8s.apps.v1.Deployment(
            f"{name}-controller", metadata=meta, spec=deployment_spec(cfg),
            opts=after(*crds, binding, ns_binding, secret, service, init_template))
        k8s.admissionregistration.v1.ValidatingWebhookConfiguration(
            f"{name}-webhooks", metadata=k8s.meta.v1.ObjectMetaArgs(name=WEBHOOK_CONFIGURATION),
            webhooks=webhooks(),
            opts=after(deployment, ignore_changes=["webhooks[*].clientConfig.caBundle"]))

        if args.monitoring is not None:
            k8s.apiextensions.CustomResource(
                f"{name}-service-monitor", api_version="monitoring.coreos.com/v1", kind="ServiceMonitor",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=NAME, namespace=NAMESPACE), spec=service_monitor_spec(),
                opts=after(service, args.monitoring))

        # ---- per team: the pod template of a training job's replicas
        self.job_defaults = []
        for team in args.team_access:
            k8s.core.v1.ConfigMap(
                f"{name}-{team.name}-defaults",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=DEFAULTS_CONFIGMAP, namespace=team.namespace,
                                                    labels={labels.TEAM: team.name}),
                data=job_defaults_data(team, args.pool, args.priority_class, args.fallback_pool, args.checkpoint_bucket),
                opts=after(team.namespace_resource))
            self.job_defaults.append(f"{team.namespace}/{DEFAULTS_CONFIGMAP}")

        self.namespace = NAMESPACE
        self.version = TRAINING_OPERATOR_VERSION
        self.crd_urls = list(crd_urls().values())
        self.pool = args.pool.name
        self.register_outputs({
            "namespace": self.namespace,
            "version": self.version,
            "crd_urls": self.crd_urls,
            "pool": self.pool,
            "job_defaults": self.job_defaults,
        })


# ---------------------------------------------------------------------------------------------------
# Pure builders (tests, the example and the policy pack read the same shapes)


def crd_urls(version: str = TRAINING_OPERATOR_VERSION) -> dict[str, str]:
    return {scheme: CRD_URL.format(version=version, plural=plural) for scheme, (_, plural, _) in JOB_KINDS.items()}


def service_spec() -> dict[str, Any]:
    return {
        "selector": dict(SELECTOR),
        "ports": [{"name": METRICS_PORT_NAME, "port": METRICS_PORT, "targetPort": METRICS_PORT, "protocol": "TCP"},
                  {"name": "webhook-server", "port": 443, "targetPort": WEBHOOK_PORT, "protocol": "TCP"}],
    }


def service_monitor_spec() -> dict[str, Any]:
    """The operator's job counters (components/data/metrics.yaml), on the Service's metrics port."""
    return {"selector": {"matchLabels": dict(SELECTOR)}, "namespaceSelector": {"matchNames": [NAMESPACE]},
            "endpoints": [{"port": METRICS_PORT_NAME, "path": "/metrics"}]}


def controller_args(cfg: TrainingConfig) -> list[str]:
    args = [f"--enable-scheme={scheme}" for scheme in JOB_KINDS]
    args += [f"--pytorch-init-container-image={cfg.init_container_image}",
             f"--mpi-kubectl-delivery-image={cfg.mpi_kubectl_delivery_image}",
             f"--pytorch-init-container-template-file={INIT_TEMPLATE_DIR}/{INIT_TEMPLATE_FILE}",
             f"--webhook-server-port={WEBHOOK_PORT}"]
    if cfg.controller_replicas > 1:
        args.append("--leader-elect")
    return args


def deployment_spec(cfg: TrainingConfig) -> dict[str, Any]:
    probe = {"initialDelaySeconds": 15, "periodSeconds": 20, "timeoutSeconds": 3}
    return {
        "replicas": cfg.controller_replicas,
        "selector": {"matchLabels": dict(SELECTOR)},
        "template": {
            "metadata": {"labels": dict(SELECTOR), "annotations": {"sidecar.istio.io/inject": "false"}},
            "spec": {
                "serviceAccountName": NAME,
                "nodeSelector": dict(SYSTEM_NODES),
                "terminationGracePeriodSeconds": 10,
                # The image's default user is root (distroless/static); the controller needs no file writes.
                "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": NAME,
                    "image": OPERATOR_IMAGE,
                    "command": ["/manager"],
                    "args": controller_args(cfg),
                    "env": [{"name": "MY_POD_NAMESPACE",
                             "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                            {"name": "MY_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "ports": [{"containerPort": METRICS_PORT, "name": "metrics", "protocol": "TCP"},
                              {"containerPort": WEBHOOK_PORT, "name": "webhook-server", "protocol": "TCP"}],
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": HEALTH_PORT}, **probe},
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": HEALTH_PORT},
                                       **probe, "initialDelaySeconds": 10, "periodSeconds": 15},
                    "resources": RESOURCES,
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                        "readOnlyRootFilesystem": True},
                    "volumeMounts": [{"name": "cert", "mountPath": "/tmp/k8s-webhook-server/serving-certs",
                                      "readOnly": True},
                                     {"name": "pytorch-init", "mountPath": INIT_TEMPLATE_DIR, "readOnly": True}],
                }],
                "volumes": [{"name": "cert", "secret": {"secretName": WEBHOOK_SECRET, "defaultMode": 420}},
                            {"name": "pytorch-init", "configMap": {"name": INIT_TEMPLATE_CONFIGMAP}}],
            },
        },
    }


def pytorch_init_container_template() -> str:
    """The PyTorchJob workers' init container (a list of one container, as the operator reads it), restricted."""
    wait = ("err=1; for i in $(seq {{.MaxTries}}); do if nslookup {{.MasterAddr}}; then err=0 && break; fi; "
            "echo waiting for master; sleep 2; done; exit $err")
    return yaml.safe_dump([{
        "name": "init-pytorch",
        "image": "{{.InitContainerImage}}",
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", wait],
        "resources": {"requests": {"cpu": "50m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "32Mi"}},
        "securityContext": {**copy.deepcopy(JOB_CONTAINER_SECURITY_CONTEXT), **copy.deepcopy(JOB_POD_SECURITY_CONTEXT),
                            "readOnlyRootFilesystem": True},
    }], sort_keys=False)


def webhooks() -> list[dict[str, Any]]:
    return [{
        "name": f"validator.{scheme}.training-operator.kubeflow.org",
        "admissionReviewVersions": ["v1"],
        "clientConfig": {"service": {"name": NAME, "namespace": NAMESPACE, "path": path, "port": 443}},
        "failurePolicy": "Fail",
        "sideEffects": "None",
        "rules": [{"apiGroups": ["kubeflow.org"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                   "resources": [plural]}],
    } for scheme, (_, plural, path) in JOB_KINDS.items() if path]

"""The one walker of pod templates: every pod a Kubernetes resource will create, in every kind that carries one.

Built-in kinds (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob, and their
Pulumi `...Patch` forms, which patch a live object and so can add a privileged container just as well) and the
custom kinds the platform runs or an engineer would apply in a team namespace: Kubeflow training jobs
(PyTorchJob, TFJob, MPIJob, XGBoostJob, PaddleJob, JAXJob: `spec.<x>ReplicaSpecs.<role>.template`), TrainJob
(its trainer container and `podSpecOverrides` / `podTemplateOverrides`), TrainingRuntime / ClusterTrainingRuntime
and JobSet (`replicatedJobs[].template.spec.template`), RayCluster / RayJob / RayService (head and worker
groups), KServe InferenceService (predictor, transformer, explainer: an inline pod spec plus the `model` or
framework container), Kubeflow Notebook and Knative Service (`spec.template`).

Props are camelCase wire-form dicts, as CrossGuard hands them to a policy. During a real preview any value may be
unknown (None or a placeholder string): the walker skips what it cannot read instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from components.planning.declared_pools import as_dict, as_list  # noqa: F401  (re-exported to the policies)

K8S = "kubernetes:"
TEMPLATE_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job",
                  "Notebook", "Service")      # Service: the Knative serving.knative.dev Service only (see below)
KUBEFLOW_JOBS = ("PyTorchJob", "TFJob", "MPIJob", "XGBoostJob", "PaddleJob", "JAXJob")
RAY_KINDS = {"RayCluster": (), "RayJob": ("rayClusterSpec",), "RayService": ("rayClusterConfig",)}
KSERVE_COMPONENTS = ("predictor", "transformer", "explainer")
# KServe framework shorthands: each is a container spec (image, resources, env...) of the component.
KSERVE_FRAMEWORKS = ("model", "sklearn", "xgboost", "lightgbm", "tensorflow", "pytorch", "triton", "onnx", "pmml",
                     "paddle", "huggingface", "alibi", "art")


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


@dataclass(frozen=True)
class PodTemplate:
    """One pod template: where it sits in the resource, its pod spec and the labels its pods carry."""

    kind: str
    where: str                       # path inside the resource, e.g. "spec.template.spec" or "Worker replicas"
    spec: dict[str, Any]
    labels: dict[str, str] = field(default_factory=dict)
    namespace: str | None = None


def kind_of(resource_type: str) -> str:
    """The Kubernetes kind of a Pulumi type token; `...Patch` types count as the kind they patch."""
    kind = resource_type.rsplit(":", 1)[-1]
    return kind[:-len("Patch")] if kind.endswith("Patch") and kind != "Patch" else kind


def _labels(*sources: Any) -> dict[str, str]:
    merged: dict[str, str] = {}
    for source in sources:
        merged.update({k: v for k, v in as_dict(source).items() if isinstance(k, str) and isinstance(v, str)})
    return merged


def _template(kind: str, where: str, template: Any, namespace: str | None, extra_labels: Any = None
              ) -> Iterator[PodTemplate]:
    template = as_dict(template)
    spec = template.get("spec")
    if isinstance(spec, dict):
        yield PodTemplate(kind, f"{where}.spec", spec, _labels(extra_labels, _get(template, "metadata", "labels")),
                          namespace)


def _kserve(kind: str, props: dict, namespace: str | None) -> Iterator[PodTemplate]:
    for component in KSERVE_COMPONENTS:
        part = _get(props, "spec", component)
        if not isinstance(part, dict):
            continue
        # KServe inlines the pod spec in the component; the model/framework entry is its main container.
        containers_ = [c for c in as_list(part.get("containers")) if isinstance(c, dict)]
        containers_ += [{"name": f"kserve-{k}", **part[k]} for k in KSERVE_FRAMEWORKS if isinstance(part.get(k), dict)]
        yield PodTemplate(kind, f"spec.{component}", {**part, "containers": containers_},
                          _labels(_get(props, "metadata", "labels"), part.get("labels")), namespace)


def _train_job(kind: str, props: dict, namespace: str | None) -> Iterator[PodTemplate]:
    spec = as_dict(props.get("spec"))
    trainer = as_dict(spec.get("trainer"))
    labels = _labels(spec.get("labels"), _get(props, "metadata", "labels"))
    if trainer:
        container = {"name": "trainer", **{k: trainer[k] for k in ("image", "command", "args", "env") if k in trainer},
                     "resources": as_dict(trainer.get("resourcesPerNode"))}
        yield PodTemplate(kind, "spec.trainer", {"containers": [container]}, labels, namespace)
    for key in ("podSpecOverrides", "podTemplateOverrides"):
        for i, override in enumerate(as_list(spec.get(key))):
            override = as_dict(override)
            pod = as_dict(override.get("spec")) if key == "podTemplateOverrides" else override
            if pod:
                yield PodTemplate(kind, f"spec.{key}[{i}]", pod,
                                  _labels(labels, _get(override, "metadata", "labels")), namespace)


def _replicated_jobs(kind: str, jobset_spec: Any, where: str, namespace: str | None) -> Iterator[PodTemplate]:
    for i, job in enumerate(as_list(as_dict(jobset_spec).get("replicatedJobs"))):
        yield from _template(kind, f"{where}.replicatedJobs[{i}].template.spec.template",
                             _get(job, "template", "spec", "template"), namespace)


def pod_templates(resource_type: str, props: dict[str, Any]) -> Iterator[PodTemplate]:
    """Every pod template a Kubernetes resource carries (nothing for other resources)."""
    if not resource_type.startswith(K8S) or not isinstance(props, dict):
        return
    kind = kind_of(resource_type)
    namespace = _get(props, "metadata", "namespace")
    namespace = namespace if isinstance(namespace, str) else None
    spec = as_dict(props.get("spec"))
    if kind == "Pod":
        if spec:
            yield PodTemplate(kind, "spec", spec, _labels(_get(props, "metadata", "labels")), namespace)
    elif kind in TEMPLATE_KINDS:
        if kind == "Service" and "serving.knative.dev" not in resource_type:
            return
        yield from _template(kind, "spec.template", spec.get("template"), namespace)
    elif kind == "CronJob":
        yield from _template(kind, "spec.jobTemplate.spec.template", _get(spec, "jobTemplate", "spec", "template"),
                             namespace)
    elif kind in KUBEFLOW_JOBS:
        for key, replicas in spec.items():
            if key.endswith("ReplicaSpecs"):
                for role, replica in as_dict(replicas).items():
                    yield from _template(kind, f"spec.{key}.{role}.template", as_dict(replica).get("template"),
                                         namespace)
    elif kind == "TrainJob":
        yield from _train_job(kind, props, namespace)
    elif kind in ("TrainingRuntime", "ClusterTrainingRuntime"):
        yield from _replicated_jobs(kind, _get(spec, "template", "spec"), "spec.template.spec", namespace)
    elif kind == "JobSet":
        yield from _replicated_jobs(kind, spec, "spec", namespace)
    elif kind in RAY_KINDS:
        cluster = spec
        for key in RAY_KINDS[kind]:
            cluster = as_dict(cluster.get(key))
        prefix = ".".join(("spec",) + RAY_KINDS[kind])
        yield from _template(kind, f"{prefix}.headGroupSpec.template", _get(cluster, "headGroupSpec", "template"),
                             namespace)
        for i, group in enumerate(as_list(cluster.get("workerGroupSpecs"))):
            yield from _template(kind, f"{prefix}.workerGroupSpecs[{i}].template", as_dict(group).get("template"),
                                 namespace)
    elif kind == "InferenceService":
        yield from _kserve(kind, props, namespace)


def pod_specs(resource_type: str, props: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod spec) for every pod template a Kubernetes resource carries."""
    for template in pod_templates(resource_type, props):
        yield template.where, template.spec


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Containers, init containers and ephemeral containers of a pod spec."""
    return [c for key in ("containers", "initContainers", "ephemeralContainers")
            for c in as_list(spec.get(key)) if isinstance(c, dict)]

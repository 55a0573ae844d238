"""Pod security: what a pod in a team namespace may do on its node, and how platform Deployments run.

Every pod template (the one walker, policies/workloads.py) of a workload in a team namespace (a Namespace the plan
labels `mlops.platform/team`) is judged for what the Pod Security "baseline" level forbids and a tenant could use
to leave its sandbox: privileged containers, the node's network / PID / IPC namespaces, hostPath volumes, host
ports and added Linux capabilities (NET_BIND_SERVICE aside). The team namespace's own Pod Security label must not
be weakened below the configured level, and platform Deployments run with a read-only root file system
(upstream: kubernetes-apps-v1-deployment-enable-read-only-root-filesystem).
"""

from __future__ import annotations

from typing import Any

from components import labels
from policies.declare import stack_policy
from policies.workloads import PodTemplate, as_dict, as_list, containers, kind_of, pod_templates

NAMESPACE = "kubernetes:core/v1:Namespace"
PSA_ENFORCE = "pod-security.kubernetes.io/enforce"
PSA_LEVELS = ["privileged", "baseline", "restricted"]
ALLOWED_ADDED_CAPABILITIES = ["NET_BIND_SERVICE"]      # the one capability the restricted level allows adding


def team_namespaces(resources: list[tuple[str, dict[str, Any]]], team_label: str = labels.TEAM) -> dict[str, dict]:
    """Team namespace name -> its labels, for every Namespace (or NamespacePatch) the plan labels a team's."""
    found: dict[str, dict] = {}
    for typ, props in resources:
        if typ.startswith(NAMESPACE):
            meta = as_dict(props.get("metadata"))
            ns_labels = as_dict(meta.get("labels"))
            if isinstance(meta.get("name"), str) and team_label in ns_labels:
                found.setdefault(meta["name"], {}).update(ns_labels)
    return found


def template_problems(template: PodTemplate, allowed_caps: list[str]) -> list[str]:
    spec = template.spec
    problems = [f"uses the node's {ns} namespace ({key}: true)" for key, ns in
                (("hostNetwork", "network"), ("hostPID", "PID"), ("hostIPC", "IPC")) if spec.get(key) is True]
    problems += [f"mounts the node's path {as_dict(v.get('hostPath')).get('path', '?')} (volume '{v.get('name')}')"
                 for v in as_list(spec.get("volumes")) if isinstance(v, dict) and v.get("hostPath") is not None]
    for c in containers(spec):
        context = as_dict(c.get("securityContext"))
        name = c.get("name", "?")
        if context.get("privileged") is True:
            problems.append(f"runs container '{name}' privileged")
        added = [str(cap) for cap in as_list(as_dict(context.get("capabilities")).get("add"))]
        extra = [cap for cap in added if cap.upper().removeprefix("CAP_") not in allowed_caps]
        if extra:
            problems.append(f"adds the capabilities {extra} to container '{name}'")
        ports = [p.get("hostPort") for p in as_list(c.get("ports")) if isinstance(p, dict) and p.get("hostPort")]
        if ports:
            problems.append(f"binds host ports {ports} in container '{name}'")
    return problems


def pod_security_problems(resources: list[tuple[str, dict[str, Any]]], team_label: str = labels.TEAM,
                          allowed_caps: list[str] | None = None) -> list[str]:
    teams = team_namespaces(resources, team_label)
    caps = [c.upper() for c in (allowed_caps if allowed_caps is not None else ALLOWED_ADDED_CAPABILITIES)]
    problems = []
    for typ, props in resources:
        for template in pod_templates(typ, props):
            if template.namespace not in teams:
                continue
            name = as_dict(props.get("metadata")).get("name", "?")
            for problem in template_problems(template, caps):
                problems.append(f"{template.kind} '{template.namespace}/{name}' (pod template at {template.where}) "
                                f"{problem}; team namespaces run no pod that can reach into its node.")
    return problems


def namespace_level_problems(resources: list[tuple[str, dict[str, Any]]], minimum: str,
                             team_label: str = labels.TEAM) -> list[str]:
    problems = []
    for name, ns_labels in team_namespaces(resources, team_label).items():
        level = ns_labels.get(PSA_ENFORCE)
        if level not in PSA_LEVELS or PSA_LEVELS.index(level) < PSA_LEVELS.index(minimum):
            problems.append(f"Team namespace '{name}' enforces Pod Security level '{level or '(none)'}' "
                            f"({PSA_ENFORCE}); it must enforce '{minimum}' or stricter.")
    return problems


TEAM_LABEL_CONFIG = {"teamLabel": {"type": "string", "default": labels.TEAM,
                                   "description": "The namespace label that marks a team namespace."}}


@stack_policy(
    "team-pod-security",
    "No pod template in a team namespace (any kind: Pods, Deployments, Jobs, CronJobs, training jobs, TrainJobs, "
    "RayClusters, InferenceServices, Notebooks...) is privileged, uses the host's network/PID/IPC, mounts a "
    "hostPath, binds a host port or adds a capability.",
    config={**TEAM_LABEL_CONFIG,
            "allowedAddedCapabilities": {"type": "array", "items": {"type": "string"},
                                         "default": ALLOWED_ADDED_CAPABILITIES,
                                         "description": "Capabilities a team container may add."}},
    remediation="Remove privileged, hostNetwork/hostPID/hostIPC, hostPath volumes, hostPort and capabilities.add "
                "from the pod template; data comes from PVCs (FSx datasets) and S3. A workload that truly needs the "
                "node (a device plugin, a log agent) belongs in a platform namespace, declared by the platform.",
)
def team_pods_stay_off_the_node(resources, config):
    return pod_security_problems(resources, config.get("teamLabel") or labels.TEAM,
                                 config.get("allowedAddedCapabilities"))


@stack_policy(
    "team-namespace-pod-security-level",
    "Every team namespace enforces a Pod Security level of at least minimumLevel "
    "(pod-security.kubernetes.io/enforce).",
    config={**TEAM_LABEL_CONFIG,
            "minimumLevel": {"type": "string", "enum": ["baseline", "restricted"], "default": "baseline",
                             "description": "The weakest Pod Security level a team namespace may enforce."}},
    remediation="Keep the label the tenancy component sets (pod-security.kubernetes.io/enforce: baseline or "
                "restricted); do not relabel a team namespace to privileged, by a NamespacePatch or by hand.",
)
def team_namespace_pod_security_level(resources, config):
    return namespace_level_problems(resources, config.get("minimumLevel") or "baseline",
                                    config.get("teamLabel") or labels.TEAM)


# ---- platform Deployments: read-only root file system (upstream compliance rule) -------------------------------

def read_only_root_problems(resource_type: str, props: dict[str, Any], exempt: list[str],
                            team_namespaces_: dict | None = None) -> list[str]:
    """Platform Deployments (outside team namespaces) whose containers can write their root file system."""
    if kind_of(resource_type) != "Deployment" or not resource_type.startswith("kubernetes:apps/"):
        return []
    meta = as_dict(props.get("metadata"))
    where = f"{meta.get('namespace')}/{meta.get('name')}"
    if where in exempt or meta.get("namespace") in (team_namespaces_ or {}):
        return []
    return [f"Deployment '{where}' runs container '{c.get('name', '?')}' with a writable root file system."
            for t in pod_templates(resource_type, props) for c in as_list(t.spec.get("containers"))
            if isinstance(c, dict) and as_dict(c.get("securityContext")).get("readOnlyRootFilesystem") is not True]


@stack_policy(
    "deployment-read-only-root-filesystem",
    "Every container of a platform Deployment (outside team namespaces) has securityContext.readOnlyRootFilesystem "
    "(upstream kubernetes-apps-v1-deployment-enable-read-only-root-filesystem).",
    policy_resources=True,
    config={**TEAM_LABEL_CONFIG,
            "exempt": {"type": "array", "items": {"type": "string"}, "default": [],
                       "description": "namespace/name of Deployments allowed a writable root (state the reason)."}},
    remediation="Set readOnlyRootFilesystem: true in the container's securityContext and mount an emptyDir where the "
                "program writes (e.g. /tmp).",
)
def deployment_read_only_root_filesystem(resources, config):
    teams = team_namespaces([(r.resource_type, r.props) for r in resources], config.get("teamLabel") or labels.TEAM)
    return [(r.urn, problem) for r in resources
            for problem in read_only_root_problems(r.resource_type, r.props, list(config.get("exempt") or []), teams)]


POLICIES = [team_pods_stay_off_the_node, team_namespace_pod_security_level, deployment_read_only_root_filesystem]

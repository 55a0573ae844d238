"""JupyterHub (zero-to-jupyterhub, pinned) in its own namespace, spawning notebooks into the teams' namespaces.

Where user pods run (the choice, and why): each notebook runs **in the namespace of the team** whose profile the user
picked, with the team's `notebook` service account (IRSA: the team's datasets and DVC prefix), the labels
`job-type: notebook` and `mlops.platform/team: <team>`, and the priority class `mlops-notebook`. So the team's
ResourceQuota counts its notebooks' GPUs, CPU, memory and home volumes, its NetworkPolicies (keyed on `job-type`)
apply as they do to every other team pod, and its image admission policy checks the notebook image. KubeSpawner's
`enable_user_namespaces` makes the hub watch pods in every namespace; each profile's `kubespawner_override` sets
the team namespace; the hub's service account may list/watch pods and events cluster-wide and create/delete pods
and PVCs only in the namespaces of teams that have notebook profiles (a Role per team, below).

Who sees which profile: a profile `<team>-<profile>` is shown only to members of the team's JupyterHub group
(`notebooks.teamGroups`, default the team's Kubernetes `group`, `team:<name>`), which the authenticator fills from
the identity provider (OIDC groups claim; GitHub `org:team`; the `dummyUsers` map in dev). The hub refuses a spawn
into a namespace whose group the user is not in (defence in depth behind the filtered list).
Idle culling: the hub's culler (jupyterhub-idle-culler) stops any server idle for `idleTimeout` or older than
`maxAge`; every profile also starts its server with jupyter-server's own culling: idle kernels and terminals are
culled, and the server shuts itself down after its profile's idle timeout (GPU profiles: `gpuIdleTimeout`).
GPU pods also get `activeDeadlineSeconds` = `gpuMaxAge`, so Kubernetes ends them however busy they are. An open
browser tab counts as activity, so the GPU-utilization culler (components/gpu_culler.py) stops GPU servers whose
GPUs stayed idle, from the DCGM series in Prometheus.

Authentication: GitHub or OIDC; the `secure:` client secret reaches the hub as `OAUTH_CLIENT_SECRET` from a Secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import catalog, gpu_culler, labels, mlflow_auth
from components.config import NotebooksConfig, TeamConfig, duration_seconds
from components.endpoints import (
    JUPYTERHUB_API,
    NOTEBOOK_INGRESS,
    NOTEBOOK_SPAWNER,
    PRIORITY_CLASSES,
    ClusterAccess,
    PodSource,
    ServiceEndpoint,
    TeamAccess,
)
from components.hub_auth import authenticator_config
from components.planning.notebook_profiles import NotebookProfile

# ---- pinned versions: components/data/versions.yaml (Jupyter Docker Stacks images of one date, so CPU and GPU
# notebooks share a Jupyter base)
JUPYTERHUB_CHART = catalog.chart("jupyterhub")
CPU_IMAGE = dict(zip(("name", "tag"), catalog.image("notebook-cpu").rsplit(":", 1)))
GPU_IMAGE = dict(zip(("name", "tag"), catalog.image("notebook-gpu").rsplit(":", 1)))

NAMESPACE = "jupyterhub"
RELEASE = "jupyterhub"
HUB_SERVICE_ACCOUNT = "hub"
HUB_PORT = 8081
OAUTH_SECRET = "jupyterhub-oauth"
OAUTH_SECRET_KEY = "client-secret"
STORAGE_CLASS = "gp3"             # the cluster's default StorageClass (components/cluster.py): encrypted gp3
SPAWNER_ROLE = "jupyterhub-spawner"
HUB_ACCESS_LABEL = "hub.jupyter.org/network-access-hub"
SYSTEM_NODES = {"kubernetes.io/os": "linux", labels.NODE_ROLE: "system"}
NAMESPACE_LABELS = {
    "pod-security.kubernetes.io/enforce": "baseline",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}
# What the hub does to pods and home volumes in a team namespace (KubeSpawner), and may read cluster-wide.
SPAWNER_RULES = [
    {"apiGroups": [""], "resources": ["pods", "persistentvolumeclaims"],
     "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
]
WATCH_RULES = [{"apiGroups": [""], "resources": ["pods", "events"], "verbs": ["get", "list", "watch"]}]

# Hub-side Python (hub.extraConfig). Reads the maps this component writes under `custom.mlops`.
PROFILE_FILTER = '''\
from kubespawner import KubeSpawner
from tornado import web
from z2jh import get_config

_PROFILES = get_config("singleuser.profileList", [])
_PROFILE_GROUPS = get_config("custom.mlops.profileGroups", {})
_NAMESPACE_GROUPS = get_config("custom.mlops.namespaceGroups", {})


def _groups(spawner):
    return {g.name for g in spawner.user.groups}


def _team_profiles(spawner):
    """Only the profiles of the teams whose JupyterHub group the user is in."""
    mine = _groups(spawner)
    return [p for p in _PROFILES if mine & set(_PROFILE_GROUPS.get(p["slug"], []))]


def _only_team_namespaces(spawner, pod):
    """Refuse a pod in a namespace whose team the user is not a member of."""
    if _NAMESPACE_GROUPS.get(spawner.namespace) not in _groups(spawner):
        raise web.HTTPError(403, f"{spawner.user.name} may not start a notebook in {spawner.namespace}")
    return pod


class TeamNamespaceSpawner(KubeSpawner):
    """Team namespaces are declared by the platform (Pulumi): never create one."""

    async def _ensure_namespace(self):
        return None


c.JupyterHub.spawner_class = TeamNamespaceSpawner
c.KubeSpawner.profile_list = _team_profiles
c.KubeSpawner.modify_pod_hook = _only_team_namespaces
'''


@dataclass(frozen=True)
class NotebooksArgs:
    config: NotebooksConfig
    profiles: dict[str, NotebookProfile]          # config.notebook_profiles(cfg): every profile of the stack
    teams: list[TeamConfig]                       # their `notebookProfiles`
    team_access: dict[str, TeamAccess]            # tenancy: namespaces (and the `notebook` service accounts)
    team_groups: dict[str, str]                   # team -> JupyterHub group (config.team_notebook_group)
    access: ClusterAccess
    cpu_pools: list[str] = field(default_factory=list)   # Karpenter CPU NodePools for CPU notebooks
    api: ServiceEndpoint = JUPYTERHUB_API         # what team NetworkPolicies let notebooks reach
    ingress: tuple[PodSource, ...] = NOTEBOOK_INGRESS     # what team NetworkPolicies let into notebooks
    priority_class: str = PRIORITY_CLASSES.notebook
    prometheus: ServiceEndpoint | None = None     # the GPU-utilization culler's Prometheus (None: no observability)
    monitoring: pulumi.Resource | None = None     # the Prometheus release (its ServiceMonitor CRD)


class Notebooks(pulumi.ComponentResource):
    namespace: str
    chart_version: str
    hub_url: str
    profiles: list[str]                           # "<team>-<profile>" slugs
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: NotebooksArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:notebooks:Notebooks", name, None, opts)
        check_endpoints(args.api, args.ingress)
        cfg, provider = args.config, args.access.provider
        teams = [t for t in args.teams if t.notebook_profiles]
        missing = [t.name for t in teams if t.name not in args.team_access]
        if missing:
            raise ValueError(f"teams {missing} have notebook profiles but no TeamAccess was passed to Notebooks")

        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace", metadata=k8s.meta.v1.ObjectMetaArgs(name=NAMESPACE, labels=dict(NAMESPACE_LABELS)),
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=list(args.access.depends_on)))
        after_ns = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[namespace])
        hub_subject = k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=HUB_SERVICE_ACCOUNT, namespace=NAMESPACE)

        # ---- the hub's access to team namespaces
        rbac: list[pulumi.Resource] = []
        watch = k8s.rbac.v1.ClusterRole(f"{name}-watch", metadata=k8s.meta.v1.ObjectMetaArgs(name="jupyterhub-watch"),
                                        rules=WATCH_RULES, opts=after_ns)
        rbac.append(k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-watch", metadata=k8s.meta.v1.ObjectMetaArgs(name="jupyterhub-watch"),
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="ClusterRole",
                                             name="jupyterhub-watch"),
            subjects=[hub_subject], opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[watch])))
        for team in teams:
            access = args.team_access[team.name]
            in_team = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[access.namespace_resource])
            meta = k8s.meta.v1.ObjectMetaArgs(name=SPAWNER_ROLE, namespace=access.namespace,
                                              labels={labels.TEAM: team.name})
            role = k8s.rbac.v1.Role(f"{name}-{team.name}-spawner", metadata=meta, rules=SPAWNER_RULES, opts=in_team)
            rbac.append(k8s.rbac.v1.RoleBinding(
                f"{name}-{team.name}-spawner", metadata=meta,
                role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name=SPAWNER_ROLE),
                subjects=[hub_subject],
                opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[role])))

        # ---- the OAuth client secret: a Secret from a secret Output, read by the hub as OAUTH_CLIENT_SECRET
        deps: list[pulumi.Resource] = [namespace, *rbac, *(args.team_access[t.name].namespace_resource for t in teams)]
        if cfg.auth.type != "dummy":
            deps.append(k8s.core.v1.Secret(
                f"{name}-oauth", metadata=k8s.meta.v1.ObjectMetaArgs(name=OAUTH_SECRET, namespace=NAMESPACE),
                type="Opaque", string_data={OAUTH_SECRET_KEY: pulumi.Output.secret(cfg.auth.client_secret or "")},
                opts=after_ns))

        # The GPU culler runs unless switched off, where there is a Prometheus to read (config rules: no `true` without)
        culler = cfg.culling.utilization.enabled is not False and args.prometheus is not None
        if culler and args.monitoring is None:
            raise ValueError("the GPU culler's ServiceMonitor needs the Prometheus release: pass monitoring")
        values = hub_values(cfg, args.profiles, teams, args.team_groups, args.cpu_pools, args.priority_class,
                            args.api, args.prometheus if culler else None)
        self.release = k8s.helm.v3.Release(
            f"{name}-hub", name=RELEASE, chart=JUPYTERHUB_CHART["chart"], version=JUPYTERHUB_CHART["version"],
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=JUPYTERHUB_CHART["repo"]),
            namespace=NAMESPACE, values=values,
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=deps))

        if culler:
            gpu_culler.service_monitor(name, NAMESPACE, pulumi.ResourceOptions(
                parent=self, provider=provider, depends_on=[self.release, args.monitoring]))

        self.namespace = NAMESPACE
        self.chart_version = JUPYTERHUB_CHART["version"]
        self.hub_url = args.api.url
        self.profiles = [p["slug"] for p in values["singleuser"]["profileList"]]
        self.register_outputs({
            "namespace": self.namespace,
            "chart_version": self.chart_version,
            "hub_url": self.hub_url,
            "profiles": self.profiles,
        })


def check_endpoints(api: ServiceEndpoint, ingress: tuple[PodSource, ...]) -> None:
    """The team NetworkPolicies trust `api` and `ingress`: this release must put the hub and proxy exactly there
    (z2jh labels its pods `app: jupyterhub` and `component: hub|proxy`; the hub API listens on 8081)."""
    expected_api = (NAMESPACE, {"app": "jupyterhub", "component": "hub"}, HUB_PORT)
    if (api.namespace, dict(api.pod_labels), api.port) != expected_api:
        raise ValueError(f"JUPYTERHUB_API {api} does not match the hub this chart runs: {expected_api}")
    got = {(s.namespace, s.pod_labels.get("app"), s.pod_labels.get("component")) for s in ingress}
    if got != {(NAMESPACE, "jupyterhub", "hub"), (NAMESPACE, "jupyterhub", "proxy")}:
        raise ValueError(f"NOTEBOOK_INGRESS {ingress} must name the hub and proxy pods in '{NAMESPACE}'")
    if NOTEBOOK_SPAWNER != f"system:serviceaccount:{NAMESPACE}:{HUB_SERVICE_ACCOUNT}":
        raise ValueError(f"NOTEBOOK_SPAWNER {NOTEBOOK_SPAWNER} is not this hub's service account")


# ---------------------------------------------------------------------------------------------------
# Pure builders (tests and the policy pack read the same shapes)


def culling_args(idle_seconds: int) -> list[str]:
    """jupyter-server's own culling, as single-user server arguments: idle kernels and terminals are culled after
    `idle_seconds` (even with a browser tab connected, never while a cell runs) and the server shuts itself down
    after `idle_seconds` without activity, so JupyterHub sees it stop."""
    interval = max(60, min(300, idle_seconds // 4))
    return [
        f"--ServerApp.shutdown_no_activity_timeout={idle_seconds}",
        f"--MappingKernelManager.cull_idle_timeout={idle_seconds}",
        f"--MappingKernelManager.cull_interval={interval}",
        "--MappingKernelManager.cull_connected=True",
        "--MappingKernelManager.cull_busy=False",
        f"--TerminalManager.cull_inactive_timeout={idle_seconds}",
        f"--TerminalManager.cull_interval={interval}",
    ]


def profile_entry(team: str, profile: NotebookProfile, cfg: NotebooksConfig, cpu_pools: list[str],
                  priority_class: str) -> dict[str, Any]:
    """One z2jh `singleuser.profileList` entry: the profile in the team's namespace."""
    gpu = profile.resource is not None
    culling = cfg.culling
    idle = duration_seconds(culling.gpu_idle_timeout if gpu else culling.idle_timeout)
    image = profile.image or ":".join((GPU_IMAGE if gpu else CPU_IMAGE).values())
    pod_config: dict[str, Any] = {"priorityClassName": priority_class}
    if gpu:
        node_selector = {labels.GPU_TYPE: profile.gpu_type, labels.NODE_POOL: profile.pool}
        tolerations = [{"key": labels.GPU_TAINT["key"], "operator": "Equal", "value": labels.GPU_TAINT["value"],
                        "effect": labels.GPU_TAINT["effect"]}]
        # Kubernetes ends the pod (and so the server) after gpuMaxAge, however busy it is.
        pod_config["activeDeadlineSeconds"] = duration_seconds(culling.gpu_max_age)
    else:
        node_selector = {labels.KARPENTER_NODEPOOL: cpu_pools[0]} if cpu_pools else {}
        tolerations = []
    override: dict[str, Any] = {
        "namespace": team,
        "image": image,
        "cpu_guarantee": profile.cpu,
        "cpu_limit": profile.cpu,
        # memoryGB is decimal (planning fits memory_gb * 1e9 on the nodes); KubeSpawner reads a "G" suffix as 2^30
        # (jupyterhub.traitlets.ByteSpecification), so give it bytes. tests/test_notebook_pods.py checks the real pod.
        "mem_guarantee": profile.memory_gb * 10**9,
        "mem_limit": profile.memory_gb * 10**9,
        "extra_labels": {labels.JOB_TYPE: "notebook", labels.TEAM: team, HUB_ACCESS_LABEL: "true"},
        "node_selector": node_selector,
        "tolerations": tolerations,
        "args": culling_args(idle),
        "extra_pod_config": pod_config,
    }
    if gpu:
        override["extra_resource_guarantees"] = {profile.resource: profile.units}
        override["extra_resource_limits"] = {profile.resource: profile.units}
    idle_text = (culling.gpu_idle_timeout if gpu else culling.idle_timeout)
    return {
        "display_name": f"{team}: {profile.display_name}",
        "slug": f"{team}-{profile.name}",
        "description": profile.description or f"Stops after {idle_text} idle. Runs in namespace {team}.",
        "kubespawner_override": override,
    }


def hub_values(cfg: NotebooksConfig, profiles: dict[str, NotebookProfile], teams: list[TeamConfig],
               team_groups: dict[str, str], cpu_pools: list[str], priority_class: str,
               api: ServiceEndpoint = JUPYTERHUB_API, prometheus: ServiceEndpoint | None = None) -> dict[str, Any]:
    """The zero-to-jupyterhub values (validated against the chart's values schema in tests); with `prometheus`, the
    GPU-utilization culler runs in the hub."""
    culling = cfg.culling
    groups = [(t.name, team_groups.get(t.name, t.kubernetes_group)) for t in teams]
    profile_list = [profile_entry(t.name, profiles[p], cfg, cpu_pools, priority_class)
                    for t in teams for p in t.notebook_profiles]
    hub_config, auth_snippets = authenticator_config(cfg, groups)
    extra_env: dict[str, Any] = {}
    if cfg.auth.type != "dummy":
        extra_env["OAUTH_CLIENT_SECRET"] = {"valueFrom": {"secretKeyRef": {"name": OAUTH_SECRET,
                                                                           "key": OAUTH_SECRET_KEY}}}
    team_group = dict(groups)
    values = {
        "hub": {
            "config": hub_config,
            "extraConfig": {"00-team-profiles.py": PROFILE_FILTER, **auth_snippets},
            "extraEnv": extra_env,
            "serviceAccount": {"create": True, "name": HUB_SERVICE_ACCOUNT},
            "nodeSelector": dict(SYSTEM_NODES),
            "resources": {"requests": {"cpu": "200m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
            # Notebooks in team namespaces call the hub API (the team NetworkPolicies allow that egress).
            "networkPolicy": {"enabled": True, "ingress": [{
                "from": [{"namespaceSelector": {"matchExpressions": [{"key": labels.TEAM, "operator": "Exists"}]},
                          "podSelector": {"matchLabels": {labels.JOB_TYPE: "notebook"}}}],
                "ports": [{"port": api.port, "protocol": "TCP"}]}]},
        },
        "proxy": {
            "chp": {"nodeSelector": dict(SYSTEM_NODES)},
            # Reached through your own ingress or `kubectl port-forward`; never a public load balancer by default.
            "service": {"type": "ClusterIP"},
        },
        "singleuser": {
            "image": dict(CPU_IMAGE),
            "profileList": profile_list,
            "serviceAccountName": "notebook",           # the team's notebook identity (IRSA), in every team namespace
            "extraLabels": {labels.JOB_TYPE: "notebook"},
            "storage": {"type": "dynamic", "capacity": f"{cfg.home_gib}Gi", "homeMountPath": "/home/jovyan",
                        "dynamic": {"storageClass": STORAGE_CLASS, "storageAccessModes": ["ReadWriteOnce"]}},
            # The team NetworkPolicies block the metadata service (default deny); the chart's privileged iptables
            # init container would be refused by the team namespaces' Pod Security `baseline`.
            "cloudMetadata": {"blockWithIptables": False, "ip": "169.254.169.254"},
            # User pods live in team namespaces, where the team NetworkPolicies apply instead.
            "networkPolicy": {"enabled": False},
            "allowPrivilegeEscalation": False,
            # The team's own MLflow user: a secretKeyRef resolves in the pod's namespace, the team's.
            "extraEnv": mlflow_auth.team_env(),
            "startTimeout": 600,                         # a GPU node may have to start first
            "extraPodConfig": {"priorityClassName": priority_class},
        },
        "cull": {
            "enabled": True,
            "users": False,
            "adminUsers": True,
            "removeNamedServers": False,
            "timeout": duration_seconds(culling.idle_timeout),
            "every": duration_seconds(culling.every),
            "maxAge": duration_seconds(culling.max_age),
            "concurrency": 10,
        },
        "scheduling": {
            # Karpenter packs and scales nodes; the chart's scheduler, placeholders and priority are not needed.
            "userScheduler": {"enabled": False},
            "userPlaceholder": {"enabled": False},
            "podPriority": {"enabled": False},
            "userPods": {"nodeAffinity": {"matchNodePurpose": "ignore"}},
            "corePods": {"nodeAffinity": {"matchNodePurpose": "ignore"}},
        },
        # The image pullers would run on every node (GPU nodes included); nodes pull on first use instead.
        "prePuller": {"hook": {"enabled": False}, "continuous": {"enabled": False}},
        "custom": {"mlops": {
            "profileGroups": {p["slug"]: [team_group[p["kubespawner_override"]["namespace"]]] for p in profile_list},
            "namespaceGroups": team_group,
        }},
    }
    return values if prometheus is None else gpu_culler.add_to_hub_values(values, cfg, profiles, teams, prometheus)

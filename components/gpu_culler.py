"""The GPU-utilization culler in the hub (docs/gpu-waste.md): what the JupyterHub chart gets to run it.

The service (`services/gpu_culler/gpu_culler.py`, standard library only) runs as a JupyterHub-managed service in the
hub pod, with the hub image's own Python: no extra image, nothing installed at start. The chart ships it and its
configuration as `hub.extraFiles` (the hub Secret, mounted beside the chart's own config), starts it through
`hub.services` (`command`), and gives its token exactly the scopes it uses through `hub.loadRoles`. It reaches the hub
API on localhost (same pod: no NetworkPolicy hop) and Prometheus through one egress rule (Prometheus' pods, port 9090);
Prometheus scrapes its metrics through one ingress rule and a ServiceMonitor on the hub Service's extra port. A hub
`template_vars` hook shows a stopped user why, on the hub's home page.

What it is told: per GPU profile slug (`<team>-<profile>`) the team namespace, the busy threshold, the optional
memory threshold and the idle window (the profile's own or `gpuIdleTimeout`, never longer: the time-based settings
stay the outer bound); per team its off-hours; and the PromQL it runs, built here so the tests check the metric and
label names against the exporters (components/data/metrics.yaml).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import labels
from components.config import NotebooksConfig, TeamConfig, duration_seconds
from components.endpoints import ServiceEndpoint
from components.observability.metrics import ksm_annotation
from components.planning.notebook_profiles import NotebookProfile

SERVICE_FILE = Path(__file__).resolve().parent.parent / "services" / "gpu_culler" / "gpu_culler.py"
SERVICE = "gpu-culler"
MOUNT_DIR = "/usr/local/etc/jupyterhub/gpu-culler"    # beside the chart's z2jh.py (the notice hook finds it there)
METRICS_PORT = 9102
METRICS_PORT_NAME = "gpu-culler"
NOTICE_FILE = "/srv/jupyterhub/gpu-culler-notices.json"   # the hub's data volume: notices survive a hub restart
HUB_API_URL = "http://localhost:8081/hub/api"           # the hub in the same pod (chart: hub.baseUrl "/")
# JupyterHub 5 scopes, and why each: list the users (list:users), see their servers with start time and profile
# (read:servers: `servers`, `started`, `user_options`), stop one (delete:servers). Not read:users:activity: activity
# is what an open browser tab fakes; not admin:users or admin:server_state.
SCOPES = ["list:users", "read:servers", "delete:servers"]
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

# Shows a stopped user why, on the hub's home page (JupyterHub calls a callable template var with the user).
NOTICE_HOOK = f'''\
import json
import os
import sys

import z2jh

_GPU_CULLER_DIR = os.path.join(os.path.dirname(z2jh.__file__), "{Path(MOUNT_DIR).name}")
sys.path.insert(0, _GPU_CULLER_DIR)
from gpu_culler import notice_html  # noqa: E402

with open(os.path.join(_GPU_CULLER_DIR, "config.json")) as _f:
    _GPU_CULLER_NOTICES = json.load(_f)["noticeFile"]


def _gpu_culler_notice(user):
    return notice_html(_GPU_CULLER_NOTICES, user.name) if user is not None else None


c.JupyterHub.template_vars.update({{"announcement_home": _gpu_culler_notice}})
'''


def queries() -> dict[str, str]:
    """PromQL per (namespace, user): the highest GPU busy-ness (%) and GPU memory used (MiB) of the user's notebook
    pods over `$WINDOW`. DCGM series carry the pod holding the GPU (namespace, pod); kube-state-metrics'
    kube_pod_annotations carries the JupyterHub user KubeSpawner annotates the pod with."""
    user = ksm_annotation(labels.NOTEBOOK_USER)
    held = '{namespace!="",pod!=""}'
    pods = f'max by (namespace, pod, {user}) (kube_pod_annotations{{{user}!=""}})'

    def per_user(expr: str) -> str:
        return f"max by (namespace, {user}) (({expr}) * on (namespace, pod) group_left ({user}) {pods})"

    # Engine activity (also reported for MIG devices), else the coarser GPU utilisation (as the waste alerts).
    busy = (f"max_over_time(DCGM_FI_PROF_GR_ENGINE_ACTIVE{held}[$WINDOW]) * 100"
            f" or max_over_time(DCGM_FI_DEV_GPU_UTIL{held}[$WINDOW])")
    return {"gpuBusyPercent": per_user(busy),
            "gpuMemoryUsedMiB": per_user(f"max_over_time(DCGM_FI_DEV_FB_USED{held}[$WINDOW])")}


def culler_config(cfg: NotebooksConfig, profiles: dict[str, NotebookProfile], teams: list[TeamConfig],
                  prometheus_url: str) -> dict[str, Any]:
    """The service's configuration file: every GPU profile of every team, the teams' off-hours, the queries."""
    util, culling = cfg.culling.utilization, cfg.culling
    watched: dict[str, Any] = {}
    for team in teams:
        for name in team.notebook_profiles:
            if profiles[name].resource is None:
                continue                              # CPU profiles: the time-based culling only
            own = util.profiles.get(name)
            memory_gib = own.gpu_memory_busy_gib if own and own.gpu_memory_busy_gib else util.gpu_memory_busy_gib
            watched[f"{team.name}-{name}"] = {
                "team": team.name,
                "busyPercent": (own.gpu_busy_percent if own and own.gpu_busy_percent else util.gpu_busy_percent),
                "memoryBusyMiB": None if memory_gib is None else round(memory_gib * 1024),
                "idleSeconds": duration_seconds(own.idle_timeout if own and own.idle_timeout
                                                else culling.gpu_idle_timeout),
            }
    off_hours = {t.name: {"timeZone": t.notebook_off_hours.time_zone,
                          "windows": [{"start": w.start, "end": w.end} for w in t.notebook_off_hours.windows],
                          "idleSeconds": duration_seconds(t.notebook_off_hours.gpu_idle_timeout)}
                 for t in teams if t.notebook_off_hours is not None}
    return {"hubApiUrl": HUB_API_URL, "prometheusUrl": prometheus_url, "everySeconds": duration_seconds(util.every),
            "metricsPort": METRICS_PORT, "noticeFile": NOTICE_FILE, "userLabel": ksm_annotation(labels.NOTEBOOK_USER),
            "queries": queries(), "profiles": watched, "offHours": off_hours}


def prometheus_peer(prometheus: ServiceEndpoint) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: prometheus.namespace}},
            "podSelector": {"matchLabels": dict(prometheus.pod_labels)}}


def add_to_hub_values(values: dict[str, Any], cfg: NotebooksConfig, profiles: dict[str, NotebookProfile],
                      teams: list[TeamConfig], prometheus: ServiceEndpoint) -> dict[str, Any]:
    """`values` (the chart's) with the culler: files, service, role, notice hook, metrics port, NetworkPolicy rules."""
    hub = values["hub"]
    config = culler_config(cfg, profiles, teams, prometheus.url)
    hub["extraFiles"] = {
        "gpu-culler": {"mountPath": f"{MOUNT_DIR}/gpu_culler.py", "stringData": SERVICE_FILE.read_text()},
        "gpu-culler-config": {"mountPath": f"{MOUNT_DIR}/config.json",
                              "stringData": json.dumps(config, indent=1, sort_keys=True)},
    }
    hub["services"] = {SERVICE: {"command": ["python3", f"{MOUNT_DIR}/gpu_culler.py", f"{MOUNT_DIR}/config.json"]}}
    hub["loadRoles"] = {SERVICE: {"description": "Stop servers whose GPUs stayed idle (docs/gpu-waste.md)",
                                  "scopes": list(SCOPES), "services": [SERVICE]}}
    hub["extraConfig"]["30-gpu-culler-notice.py"] = NOTICE_HOOK
    hub["service"] = {"extraPorts": [{"name": METRICS_PORT_NAME, "port": METRICS_PORT, "targetPort": METRICS_PORT,
                                      "protocol": "TCP"}]}
    policy = hub["networkPolicy"]
    policy["egress"] = [{"to": [prometheus_peer(prometheus)], "ports": [{"port": prometheus.port, "protocol": "TCP"}]}]
    policy["ingress"] = [*policy.get("ingress", []), {
        "from": [prometheus_peer(prometheus)], "ports": [{"port": METRICS_PORT, "protocol": "TCP"}]}]
    return values


def service_monitor(name: str, namespace: str, opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
    """Prometheus scrapes the culler's metrics through the hub Service's extra port."""
    return k8s.apiextensions.CustomResource(
        f"{name}-gpu-culler-metrics", api_version="monitoring.coreos.com/v1", kind="ServiceMonitor",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=SERVICE, namespace=namespace),
        spec={"selector": {"matchLabels": {"app": "jupyterhub", "component": "hub"}},
              "endpoints": [{"port": METRICS_PORT_NAME, "path": "/metrics"}]},
        opts=opts)

"""Notebook rules: a GPU notebook left running (on a Friday evening) must stop within a bounded idle time.

A JupyterHub (zero-to-jupyterhub) release's GPU profiles (`singleuser.profileList[]` entries whose
`kubespawner_override` asks for `nvidia.com/gpu`, `nvidia.com/gpu.shared` or `nvidia.com/mig-*`) are covered by
idle culling when either the single-user server stops itself (`--ServerApp.shutdown_no_activity_timeout=<s>` in the
profile's `args`, as components/notebooks.py sets it) or the hub's culler is on (`cull.enabled`, the chart's
default) with `cull.timeout`, within the maximum this policy's config allows.

Props are camelCase wire-form dicts; during a real preview a value may be unknown: helpers skip what they cannot read.
"""

from __future__ import annotations

import re
from typing import Any

from policies.declare import resource_policy
from policies.gpu_workloads import gpu_resources
from policies.workloads import as_dict

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
SERVER_SHUTDOWN = "ServerApp.shutdown_no_activity_timeout"
CHART_CULL_DEFAULTS = {"enabled": True, "timeout": 3600}      # zero-to-jupyterhub's values.yaml


def server_arg(args: Any, name: str) -> int | None:
    """The integer value of `--<name>=<n>` in a single-user server's arguments (the last one wins), if set."""
    found = None
    for arg in args if isinstance(args, list) else []:
        m = re.fullmatch(rf"--{re.escape(name)}=(\d+)", str(arg))
        if m:
            found = int(m.group(1))
    return found


def gpu_profiles(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The `singleuser.profileList` entries that ask for a GPU resource."""
    profiles = as_dict(values.get("singleuser")).get("profileList")
    found = []
    for p in profiles if isinstance(profiles, list) else []:
        override = as_dict(as_dict(p).get("kubespawner_override"))
        asked = override.get("extra_resource_limits"), override.get("extra_resource_guarantees")
        if gpu_resources(asked[0]) | gpu_resources(asked[1]):
            found.append(p)
    return found


def culling_problems(values: dict[str, Any], max_idle_seconds: int) -> list[str]:
    cull = {**CHART_CULL_DEFAULTS, **as_dict(values.get("cull"))}
    hub_timeout = cull.get("timeout") if cull.get("enabled") is True else None
    hub_ok = isinstance(hub_timeout, int) and 0 < hub_timeout <= max_idle_seconds
    problems = []
    for p in gpu_profiles(values):
        name = p.get("slug") or p.get("display_name")
        server = server_arg(as_dict(p.get("kubespawner_override")).get("args"), SERVER_SHUTDOWN)
        if (server is not None and 0 < server <= max_idle_seconds) or hub_ok:
            continue
        server_text = f"stops itself after {server}s idle" if server else "never stops itself when idle"
        hub_text = (f"the hub's culler waits {hub_timeout}s" if cull.get("enabled") is True
                    else "the hub's culler is off")
        problems.append(f"The GPU notebook profile '{name}' must be culled within {max_idle_seconds}s of idleness, "
                        f"but its server {server_text} and {hub_text}.")
    return problems


@resource_policy(
    "gpu-notebook-idle-culling",
    "Every GPU notebook profile of a JupyterHub release is covered by idle culling (the server's own shutdown timeout "
    "or the hub's culler) with a timeout of at most maxGpuIdleSeconds.",
    types=(HELM_RELEASE,),
    config={"maxGpuIdleSeconds": {"type": "integer", "minimum": 60, "default": 3600,
                                  "description": "The longest a GPU notebook may sit idle before it is stopped."}},
    remediation="Set notebooks.culling.gpuIdleTimeout (components/notebooks.py passes it to each GPU profile as "
                "--ServerApp.shutdown_no_activity_timeout), or turn on the hub's culler (cull.enabled) with "
                "cull.timeout at most the maximum.",
)
def gpu_notebook_idle_culling(r, config):
    return culling_problems(as_dict(r.props.get("values")), int(config.get("maxGpuIdleSeconds", 3600)))


POLICIES = [gpu_notebook_idle_culling]

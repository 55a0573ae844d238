"""Run inside the real-clients venv (JupyterHub 5.5, KubeSpawner 7.0, as the z2jh 4.4.0 hub image): load the hub's
configuration exactly as the hub container does and build every notebook profile's pod.

Usage: python notebook_pods.py HUB_DIR OUT_JSON USERS_JSON ({user: [JupyterHub group, ...]}). HUB_DIR holds what the chart mounts at /usr/local/etc/jupyterhub (the hub
ConfigMap's jupyterhub_config.py and z2jh.py with that path pointed at HUB_DIR, `config/` and `secret/`), and the
environment holds the hub container's variables. Writes JSON to OUT_JSON: one entry per (user, profile slug) with the pod
manifest KubeSpawner builds (after the configured modify_pod_hook), or the error it raises.
"""

import asyncio
import json
import sys
from pathlib import Path

from jupyterhub.utils import maybe_future
from kubernetes_asyncio.client import ApiClient
from traitlets.config.loader import PyFileConfigLoader


class Group:
    def __init__(self, name):
        self.name = name


class User:
    """What KubeSpawner reads of a JupyterHub user (name, id, url, groups)."""

    def __init__(self, name, groups, uid):
        self.name, self.id, self.url = name, uid, f"/user/{name}/"
        self.groups = [Group(g) for g in groups]


async def build(config, spawner_class, user, slug):
    spawner = spawner_class(config=config, user=user, _mock=True)
    spawner.user_options = {"profile": slug}
    try:
        await spawner.load_user_options()
        pod = await spawner.get_pod_manifest()
        if spawner.modify_pod_hook:     # as KubeSpawner's _start applies it
            pod = await maybe_future(spawner.modify_pod_hook(spawner, pod))
        # KubeSpawner creates the pod in spawner.namespace (the manifest itself names none).
        return {"namespace": spawner.namespace, "pod": ApiClient().sanitize_for_serialization(pod)}
    except Exception as e:  # what the hub would answer the user with
        return {"error": f"{type(e).__name__}: {e}"}


async def main(hub_dir, out_file, members):
    config = PyFileConfigLoader("jupyterhub_config.py", path=str(hub_dir)).load_config()
    spawner_class = config.JupyterHub.spawner_class
    from z2jh import get_config
    slugs = [p["slug"] for p in get_config("singleuser.profileList", [])]
    out = []
    for uid, (name, user_groups) in enumerate(sorted(members.items()), start=1):
        for slug in slugs:
            result = await build(config, spawner_class, User(name, user_groups, uid), slug)
            out.append({"user": name, "groups": user_groups, "profile": slug, **result})
    out_file.write_text(json.dumps({"spawner": f"{spawner_class.__module__}.{spawner_class.__name__}", "results": out}))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])))

"""Run inside the real-clients venv (JupyterHub 5.5 as the z2jh 4.4.0 hub image): load the hub configuration exactly
as the hub container does, then run the hub's own start-up steps that accept or refuse services and roles (database,
role creation, users and groups, services, their tokens, role assignment), as `jupyterhub` does before it serves.

Usage: python hub_services.py HUB_DIR OUT_JSON. HUB_DIR is laid out as for notebook_pods.py; the database goes into a
fresh SQLite file there. Writes JSON: per managed service its command, whether it has an API token, and the scopes
its roles grant (expanded by JupyterHub); or {"error": ...} with what the hub refused.
"""

import asyncio
import json
import sys
from pathlib import Path

from jupyterhub import orm, scopes
from jupyterhub.app import JupyterHub
from traitlets.config.loader import PyFileConfigLoader


async def main(hub_dir, out_file):
    config = PyFileConfigLoader("jupyterhub_config.py", path=str(hub_dir)).load_config()
    config.JupyterHub.db_url = f"sqlite:///{hub_dir}/jupyterhub.sqlite"
    hub = JupyterHub(config=config)
    try:
        hub.init_logging()
        hub.init_db()
        hub.init_hub()
        hub.init_oauth()
        await hub.init_role_creation()
        await hub.init_users()
        await hub.init_groups()
        hub.init_services()
        await hub.init_api_tokens()
        await hub.init_role_assignment()
    except Exception as e:  # what the hub would refuse to start with
        out_file.write_text(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return
    out = {}
    for service in hub.db.query(orm.Service):
        spec = hub._service_map[service.name]
        out[service.name] = {
            "command": spec.command,
            "roles": sorted(r.name for r in service.roles),
            "scopes": sorted(scopes.get_scopes_for(service)),
            "has_token": bool(service.api_tokens),
        }
    out_file.write_text(json.dumps({"services": out}))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))

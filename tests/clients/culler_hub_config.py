"""jupyterhub_config.py for tests/test_gpu_culler.py, run by the real JupyterHub 5 of the real-clients venv.

A hub on loopback with two stand-ins for what only a cluster has: an in-memory Proxy (no configurable-http-proxy, no
routing; the tests talk to the hub API directly) and an in-process spawner (each server a tiny tornado app in the
hub's own loop, so the hub's start, readiness check, poll and stop all really run). Everything else comes from
HUB_TEST_SPEC (JSON), taken from the chart values the platform renders: the managed services (the GPU culler's
`command`) and roles (its scopes), and the hub.extraConfig snippet that shows the culler's notice, executed here as
the chart's jupyterhub_config.py executes hub.extraConfig.
"""

import json
import os
import sys

from jupyterhub.proxy import Proxy
from jupyterhub.spawner import Spawner
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

spec = json.load(open(os.environ["HUB_TEST_SPEC"]))


class MemoryProxy(Proxy):
    """Routes kept in memory: the hub adds and checks them as with a real proxy."""

    should_start = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.routes = {}

    async def start(self):
        pass

    async def stop(self):
        pass

    async def add_route(self, routespec, target, data):
        self.routes[routespec] = {"routespec": routespec, "target": target, "data": data}

    async def delete_route(self, routespec):
        self.routes.pop(routespec, None)

    async def get_all_routes(self):
        return dict(self.routes)


class _Ok(web.RequestHandler):
    def get(self, *args):
        self.write("ok")


class InProcessSpawner(Spawner):
    """A single-user "server" answering 200 on a loopback port, in the hub's process."""

    running = {}

    async def start(self):
        sockets = bind_sockets(0, "127.0.0.1")
        server = HTTPServer(web.Application([(r".*", _Ok)]))
        server.add_sockets(sockets)
        self.running[(self.user.name, self.name)] = server
        return ("127.0.0.1", sockets[0].getsockname()[1])

    async def poll(self):
        return None if (self.user.name, self.name) in self.running else 0

    async def stop(self, now=False):
        server = self.running.pop((self.user.name, self.name), None)
        if server is not None:
            server.stop()


c.JupyterHub.proxy_class = MemoryProxy                       # noqa: F821 (traitlets config file)
c.JupyterHub.spawner_class = InProcessSpawner                # noqa: F821
c.JupyterHub.authenticator_class = "dummy"                   # noqa: F821
c.Authenticator.allow_all = True                             # noqa: F821
c.Authenticator.allowed_users = set(spec["users"])           # noqa: F821 (created at start: roles name them)
c.JupyterHub.hub_ip = "127.0.0.1"                            # noqa: F821
c.JupyterHub.hub_port = spec["port"]                         # noqa: F821
c.JupyterHub.ip = "127.0.0.1"                                # noqa: F821
c.JupyterHub.port = spec["proxyPort"]                        # noqa: F821 (nothing listens: MemoryProxy)
c.JupyterHub.db_url = f"sqlite:///{spec['dir']}/jupyterhub.sqlite"   # noqa: F821
c.JupyterHub.cookie_secret_file = f"{spec['dir']}/cookie_secret"     # noqa: F821
c.JupyterHub.services = spec["services"]                     # noqa: F821
c.JupyterHub.load_roles = spec["roles"]                      # noqa: F821

sys.path.insert(0, spec["dir"])         # a z2jh.py beside gpu-culler/, as in the chart's config directory
exec(open(spec["extraConfig"]).read())  # noqa: S102 (as the chart's jupyterhub_config.py runs hub.extraConfig)

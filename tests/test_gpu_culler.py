"""The GPU-utilization culler end to end: a real JupyterHub 5.5 (the real-clients venv) runs the culler as the managed
service the platform's chart values declare (its `command`, its role's scopes, its files, the notice hook), against a
fake Prometheus HTTP API serving DCGM-shaped series joined to the notebook pods' users.

Stand-ins (tests/clients/culler_hub_config.py): an in-memory proxy and an in-process spawner; the hub, its API, its
token scopes, its service management and its pages are real. Timings are shortened through the culler's own
configuration file (idle windows of seconds, a sub-second cycle); nothing waits longer than a condition needs.
"""

from __future__ import annotations

import json
import os
import re
import http.cookiejar
import importlib.util
import signal
import subprocess
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

import pytest

from components import gpu_culler, labels, notebooks
from components.config import NotebooksConfig, TeamConfig
from components.endpoints import PROMETHEUS_API, ServiceEndpoint
from components.planning.notebook_profiles import NotebookProfile
from tests import upstream
from tests.fake_apis import FakePrometheus
from tests.test_rollout_service import free_port, wait_for
from tests.test_rollout_service import http as request

HUB_CONFIG = Path(__file__).parent / "clients" / "culler_hub_config.py"
ADMIN_TOKEN = "test-admin-token"
IDLE = 3                         # seconds: the shortened idle window of the watched profiles
USER_LABEL = "annotation_hub_jupyter_org_username"
PROFILES = {
    "cpu": NotebookProfile("cpu", "CPU", "", 2, 4, None, None, "none", None, None, 0),
    "gpu-t4": NotebookProfile("gpu-t4", "T4", "", 4, 16, None, "t4", "none", "gpu-t4", labels.GPU_RESOURCE, 1),
}
# team -> user -> (profile, GPU busy %, GPU memory MiB); None: Prometheus has no GPU series for the pod.
SERVERS: dict[str, dict[str, tuple[str, float | None, float | None]]] = {
    "vision": {"alice": ("gpu-t4", 0, 7800),       # forgotten: idle GPU, a model left in memory
               "bob": ("gpu-t4", 85, 30000),       # training in the notebook
               "carol": ("gpu-t4", 1, 2000),       # idle GPU, but an open browser tab reports activity
               "dave": ("gpu-t4", None, None),     # the exporter has no series for this pod
               "erin": ("cpu", None, None)},       # a CPU profile: time-based culling only
    "nlp": {"frank": ("gpu-t4", 0, 500)},          # long idle window, but the team's off-hours are now
    "speech": {"grace": ("gpu-t4", 0, 500)},       # long idle window, no off-hours
}
EXPECTED_STOPS = {"alice", "carol", "frank"}


def off_hours_now(zone: str) -> dict[str, Any]:
    """A weekly window around the current time in `zone`."""
    now = datetime.now(ZoneInfo(zone))
    fmt = lambda t: f"{('mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun')[t.weekday()]} {t:%H:%M}"  # noqa: E731
    window = {"start": fmt(now - timedelta(hours=2)), "end": fmt(now + timedelta(hours=2))}
    return {"timeZone": zone, "windows": [window]}


def hub_values(prometheus_url: str) -> dict[str, Any]:
    """The chart values the platform renders for these teams (components/notebooks.py hub_values)."""
    teams = [TeamConfig(name="vision", gpuQuota=4, notebookProfiles=["cpu", "gpu-t4"]),
             TeamConfig(name="nlp", gpuQuota=2, notebookProfiles=["gpu-t4"],
                        notebookOffHours=off_hours_now("Pacific/Auckland")),
             TeamConfig(name="speech", gpuQuota=2, notebookProfiles=["gpu-t4"])]
    prometheus = ServiceEndpoint(PROMETHEUS_API.namespace, PROMETHEUS_API.pod_labels, PROMETHEUS_API.port,
                                 prometheus_url)
    return notebooks.hub_values(NotebooksConfig(), PROFILES, teams, {t.name: f"team:{t.name}" for t in teams}, [],
                                "mlops-notebook", prometheus=prometheus)


class Dcgm:
    """Prometheus' answer to the culler's two queries, from per-pod DCGM-shaped figures joined to the pod's user."""

    def __init__(self) -> None:
        self.mode = "recorded"          # or "empty": Prometheus up, no series at all
        self.servers = {team: dict(users) for team, users in SERVERS.items()}
        self.windows: set[int] = set()

    def __call__(self, query: str) -> list[tuple[dict[str, str], float]] | None:
        self.windows |= {int(w) for w in re.findall(r"\[(\d+)s\]", query)}
        if self.mode == "empty":
            return []
        memory = "DCGM_FI_DEV_FB_USED" in query
        return [({"namespace": team, USER_LABEL: user}, mem if memory else busy)
                for team, users in self.servers.items() for user, (_, busy, mem) in users.items() if busy is not None]


class Hub:
    def __init__(self, work: Path, prometheus: FakePrometheus) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{self.port}/hub/api"
        values = hub_values(prometheus.url)["hub"]
        self.values = values
        # The chart's extraFiles at their mount paths (the config directory relocated to `work`).
        mount = Path(gpu_culler.MOUNT_DIR)
        for item in values["extraFiles"].values():
            target = work / Path(item["mountPath"]).relative_to(mount.parent)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(item["stringData"])
        (work / "z2jh.py").write_text("")
        config_file = work / mount.name / "config.json"
        config = json.loads(config_file.read_text())
        self.config = config
        config.update(hubApiUrl=self.api, everySeconds=0.3, metricsPort=self.metrics_port,
                      noticeFile=str(work / "notices.json"))
        for slug, profile in config["profiles"].items():
            profile["idleSeconds"] = IDLE if profile["team"] == "vision" else 3600
        config["offHours"]["nlp"]["idleSeconds"] = IDLE
        config_file.write_text(json.dumps(config))
        python = upstream.clients_python()
        services = [{"name": name, **service, "command": [
            python if arg == "python3" else arg.replace(str(mount.parent), str(work)) for arg in service["command"]]}
            for name, service in values["services"].items()]
        roles = [{"name": name, **role} for name, role in values["loadRoles"].items()]
        services.append({"name": "test-admin", "api_token": ADMIN_TOKEN})
        roles.append({"name": "test-admin", "scopes": ["admin:users", "admin:servers", "users:activity", "tokens"],
                      "services": ["test-admin"]})
        # Users holding the culler's role, and the role less one scope each (tests/minimal scopes).
        self.probes = {"probe-all": list(gpu_culler.SCOPES), **{
            f"probe-without-{scope.replace(':', '-')}": [s for s in gpu_culler.SCOPES if s != scope]
            for scope in gpu_culler.SCOPES}}
        roles += [{"name": user, "scopes": scopes, "users": [user]} for user, scopes in self.probes.items()]
        (work / "extra_config.py").write_text(values["extraConfig"]["30-gpu-culler-notice.py"])
        (work / "spec.json").write_text(json.dumps({
            "port": self.port, "proxyPort": free_port(), "dir": str(work), "services": services, "roles": roles,
            "users": list(self.probes),
            "extraConfig": str(work / "extra_config.py")}))
        self.log = work / "hub.log"
        self.process = subprocess.Popen(
            [python, "-m", "jupyterhub", "-f", str(HUB_CONFIG)], cwd=work, start_new_session=True,
            env={**os.environ, "HUB_TEST_SPEC": str(work / "spec.json")},
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT)

    def call(self, method: str, path: str, body: Any = None, token: str = ADMIN_TOKEN) -> tuple[int, Any]:
        status, reply = request(method, self.api + path, body, {"Authorization": f"token {token}"})
        return status, json.loads(reply) if isinstance(reply, str) and reply.startswith("[") else reply

    def up(self) -> bool:
        try:
            return self.call("GET", "/")[0] == 200
        except OSError:
            return False

    def login(self, user: str) -> Callable[[str], tuple[int, str]]:
        """A browser session of `user` (the dummy authenticator's login form, with its XSRF token)."""
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        base = f"http://127.0.0.1:{self.port}"
        form = opener.open(f"{base}/hub/login", timeout=10).read().decode()
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', form).group(1)
        opener.open(f"{base}/hub/login?next=%2Fhub%2Fhome", urllib.parse.urlencode(
            {"username": user, "password": "any", "_xsrf": xsrf}).encode(), timeout=10).read()

        def get(path: str) -> tuple[int, str]:
            with opener.open(base + path, timeout=10) as page:
                return page.status, page.read().decode()
        return get

    def running(self) -> set[str]:
        status, users = self.call("GET", "/users?state=active")
        assert status == 200, users
        return {u["name"] for u in users if u["servers"].get("", {}).get("ready")}

    def windows_passed(self) -> bool:
        """Every running server has run for IDLE seconds (the short windows' servers are all candidates)."""
        users = self.call("GET", "/users?state=active")[1]
        started = [datetime.fromisoformat(u["servers"][""]["started"].replace("Z", "+00:00")) for u in users]
        return all(datetime.now(timezone.utc) - t > timedelta(seconds=IDLE) for t in started)

    def metrics(self) -> dict[str, float]:
        text = request("GET", f"http://127.0.0.1:{self.metrics_port}/metrics")[1]
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line and not line.startswith("#")}

    def cycles(self, outcome: str) -> float:
        try:
            return self.metrics().get(f'mlops_gpu_culler_cycles_total{{outcome="{outcome}"}}', 0)
        except OSError:
            return 0

    def after_cycles(self, outcome: str, n: int = 2) -> None:
        start = self.cycles(outcome)
        wait_for(lambda: self.cycles(outcome) >= start + n, f"{n} more culler cycles ({outcome})")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(30)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """One hub for the module; every phase of the story recorded for the tests below."""
    upstream.clients_python()
    dcgm = Dcgm()
    prometheus = FakePrometheus(dcgm)
    prometheus.failing = True
    hub = Hub(tmp_path_factory.mktemp("hub"), prometheus)
    seen: dict[str, Any] = {"hub": hub, "dcgm": dcgm}
    try:
        wait_for(hub.up, "the hub API", timeout=120)
        users = [u for team in SERVERS.values() for u in team]
        assert hub.call("POST", "/users", {"usernames": users})[0] == 201
        for team, members in SERVERS.items():
            for user, (profile, _, _) in members.items():
                status, reply = hub.call("POST", f"/users/{user}/server", {"profile": f"{team}-{profile}"})
                assert status in (201, 202), reply
        wait_for(lambda: hub.running() == set(users), "every server ready")
        wait_for(hub.windows_passed, "every server running for a whole idle window")
        # 1. Prometheus down: the culler's queries fail (only once some server has run for a whole window).
        hub.after_cycles("prometheus_error")
        seen["while_prometheus_fails"] = hub.running()
        # 2. Prometheus up without any series.
        prometheus.failing, dcgm.mode = False, "empty"
        hub.after_cycles("ok")
        seen["without_data"] = hub.running()
        seen["without_data_metric"] = hub.metrics()["mlops_gpu_culler_servers_without_data"]
        # 3. The recorded series; carol's browser tab reports activity right now.
        now = datetime.now(timezone.utc).isoformat()
        assert hub.call("POST", "/users/carol/activity",
                        {"last_activity": now, "servers": {"": {"last_activity": now}}})[0] == 200
        dcgm.mode = "recorded"
        wait_for(lambda: not (EXPECTED_STOPS & hub.running()), "the idle GPU servers stopped")
        hub.after_cycles("ok")
        seen["after"] = hub.running()
        seen["metrics"] = hub.metrics()
        browser = hub.login("alice")
        seen["alice_home"] = browser("/hub/home")
        # 4. alice starts her server again: the notice goes.
        assert hub.call("POST", "/users/alice/server", {"profile": "vision-gpu-t4"})[0] in (201, 202)
        wait_for(lambda: "alice" in hub.running(), "alice's server again")
        hub.after_cycles("ok")
        seen["alice_home_again"] = browser("/hub/home")
        seen["queries"] = prometheus.queries()
        seen["probes"] = probe_scopes(hub, dcgm)
    finally:
        hub.stop()
        prometheus.close()
    seen["log"] = hub.log.read_text()
    return seen


def load_culler() -> Any:
    """The service's module, as shipped (standard library only), to run single cycles in this process."""
    spec = importlib.util.spec_from_file_location("gpu_culler_service", gpu_culler.SERVICE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def probe_scopes(hub: Hub, dcgm: Dcgm) -> dict[str, bool]:
    """Per probe user (the culler's scopes, or all but one): does one culler cycle with its token stop zoe's idle
    server? Zoe runs a CPU profile the managed culler ignores; the probe's configuration watches it."""
    module = load_culler()
    dcgm.servers["vision"]["zoe"] = ("cpu", 0, 100)
    assert hub.call("POST", "/users", {"usernames": ["zoe"]})[0] == 201
    config = {**hub.config, "profiles": {"vision-cpu": {**hub.config["profiles"]["vision-gpu-t4"]}},
              "noticeFile": hub.config["noticeFile"] + ".probe"}
    later = datetime.now(timezone.utc) + timedelta(seconds=IDLE + 1)
    stopped = {}
    for user in sorted(hub.probes, key=lambda u: u == "probe-all"):        # the full role last: it stops zoe
        if "zoe" not in hub.running():
            assert hub.call("POST", "/users/zoe/server", {"profile": "vision-cpu"})[0] in (201, 202)
            wait_for(lambda: "zoe" in hub.running(), "zoe's server")
        status, token = hub.call("POST", f"/users/{user}/tokens", {"note": "probe"})
        assert status == 201, token
        module.Culler(config, token["token"], module.Metrics()).cycle(now=later)
        stopped[user] = "zoe" not in hub.running()
    return stopped


def test_prometheus_errors_and_missing_data_stop_nothing(scenario):
    everyone = {u for team in SERVERS.values() for u in team}
    assert scenario["while_prometheus_fails"] == everyone
    assert scenario["without_data"] == everyone
    # the candidates (GPU servers whose window has passed: vision's four, frank's off-hours one), all without data
    assert scenario["without_data_metric"] == 5
    assert "did not answer" in scenario["log"] and "nothing stopped this cycle" in scenario["log"]


def test_idle_gpu_servers_are_stopped_whatever_the_browser_does(scenario):
    everyone = {u for team in SERVERS.values() for u in team}
    # alice (idle), carol (idle, open tab), frank (idle in his team's off-hours) are stopped; bob (busy), dave (no
    # series), erin (CPU profile) and grace (idle, but her profile's window has not passed) keep running.
    assert scenario["after"] == everyone - EXPECTED_STOPS
    metrics = scenario["metrics"]
    assert metrics['mlops_gpu_culler_stopped_servers_total{profile="vision-gpu-t4",rule="idle",team="vision"}'] == 2
    assert metrics['mlops_gpu_culler_stopped_servers_total{profile="nlp-gpu-t4",rule="off-hours",team="nlp"}'] == 1
    assert re.search(r"stopped user=alice server='' team=vision profile=vision-gpu-t4 rule=idle window=3s "
                     r"gpu_busy_max=0\.0 gpu_memory_mib_max=7800", scenario["log"])
    assert "stopped user=carol" in scenario["log"] and "stopped user=frank" in scenario["log"]
    # the queries asked for the profile's window and the off-hours window, never more
    assert scenario["dcgm"].windows == {IDLE}


def test_the_user_sees_why_on_the_hub_home_page(scenario):
    status, page = scenario["alice_home"]
    assert status == 200
    assert "Your server (profile vision-gpu-t4) was stopped" in page
    assert "its GPU stayed below 5% busy (at most 0%, 7.6 GiB of GPU memory held) for 3 s" in page
    status, page = scenario["alice_home_again"]
    assert status == 200 and "was stopped" not in page


def test_the_culler_token_has_exactly_the_scopes_it_needs(scenario):
    """With its role's scopes a cycle stops an idle server; without any one of them it cannot."""
    assert scenario["hub"].values["loadRoles"]["gpu-culler"]["services"] == ["gpu-culler"]
    assert scenario["probes"] == {user: user == "probe-all" for user in scenario["hub"].probes}, scenario["probes"]


@pytest.mark.parametrize("local, inside", [
    ("2026-11-27 18:00", True),      # Friday 18:00: the window opens
    ("2026-11-28 03:00", True),      # Saturday night
    ("2026-11-30 06:59", True),      # Monday, before 07:00
    ("2026-11-30 07:00", False),     # Monday 07:00: closed
    ("2026-11-27 17:59", False),     # Friday afternoon
    ("2026-11-25 12:00", False),     # Wednesday
])
def test_off_hours_windows_wrap_over_the_weekend_in_the_team_time_zone(local, inside):
    module = load_culler()
    rule = {"timeZone": "Europe/Berlin", "windows": [{"start": "fri 18:00", "end": "mon 07:00"}]}
    now = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo("Europe/Berlin")).astimezone(timezone.utc)
    assert module.in_off_hours(rule, now) is inside


def test_off_hours_are_read_in_the_team_time_zone():
    module = load_culler()
    friday = datetime(2026, 11, 27, 17, 30, tzinfo=timezone.utc)          # 18:30 in Berlin (CET, UTC+1)
    windows = [{"start": "fri 18:00", "end": "mon 07:00"}]
    assert module.in_off_hours({"timeZone": "Europe/Berlin", "windows": windows}, friday)
    assert not module.in_off_hours({"timeZone": "UTC", "windows": windows}, friday)

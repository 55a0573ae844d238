"""MLflow authentication (components/mlflow_auth.py): a team's pods hold that team's MLflow user and nothing else,
and that user opens no other team's experiments.

Two levels:
- the rendered config, with the offline mocks' generated passwords visible (a run whose secrets are not masked):
  which credentials each team namespace holds, which Secret a notebook server and a training job read, and what
  the server's auth config and bootstrap Job make of them;
- the real MLflow server (mlflow 3.x, the platform image's version, from the clients venv) with the rendered auth
  config on loopback, its users created by the rendered bootstrap Job's own script: team A's credentials cannot
  read team B's experiment or registered model.
"""

from __future__ import annotations

import base64
import configparser
import functools
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import yaml

from components import mlflow_auth as auth
from preview import engine
from tests import upstream
from tests.conftest import Rendered

ENV_KEYS = ("MLFLOW_TRACKING_URI", auth.USERNAME_KEY, auth.PASSWORD_KEY)


@pytest.fixture(scope="module", params=["dev", "prod"])
def revealed(request) -> Rendered:
    with pytest.MonkeyPatch.context() as patch:
        # The mocks' deterministic stand-ins for generated passwords, never real secrets.
        patch.setattr(engine, "from_wire", functools.partial(engine.from_wire, reveal=True))
        return Rendered(engine.run_stack(request.param))


def team_namespaces(r: Rendered) -> list[str]:
    return sorted(ns["metadata"]["name"] for ns in r.objects("Namespace")
                  if "mlops.platform/team" in ns["metadata"].get("labels", {}))


def server_side(r: Rendered) -> tuple[dict[str, str], configparser.SectionProxy, dict[str, Any]]:
    """What the server knows: team -> password (the bootstrap Job's sources), the auth ini, the Job."""
    users = r.obj("Secret", auth.TEAM_USERS_SECRET, "mlflow")["stringData"]
    (job,) = r.objects("Job", "mlflow")
    pod = job["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    volumes = {v["name"]: v["secret"] for v in pod["volumes"]}
    # The Job reads every team's password from the team-users Secret, the admin's from the auth Secret: as files.
    assert volumes["teams"] == {"secretName": auth.TEAM_USERS_SECRET, "defaultMode": 0o440}
    assert volumes["admin"]["secretName"] == auth.AUTH_SECRET
    passwords = {team: users[team] for team in json.loads(env["TEAMS"])}
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string(r.obj("Secret", auth.AUTH_SECRET, "mlflow")["stringData"][auth.AUTH_CONFIG_KEY])
    return passwords, ini["mlflow"], job


def env_sources(container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Variable -> (Secret name, key) for the MLflow variables a container reads (secretKeyRef or envFrom)."""
    found = {e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
             for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
    for source in container.get("envFrom", []):
        found |= {k: (source["secretRef"]["name"], k) for k in ENV_KEYS if "secretRef" in source}
    return {k: v for k, v in found.items() if k in ENV_KEYS}


def test_each_team_namespace_holds_its_own_user_and_no_one_elses(revealed):
    passwords, ini, _ = server_side(revealed)
    teams = team_namespaces(revealed)
    assert sorted(passwords) == teams and teams
    admin = ini["admin_password"]
    assert ini["default_permission"] == auth.NO_PERMISSIONS      # a user sees only what it created or was granted
    for team in teams:
        creds = revealed.obj("Secret", auth.TEAM_SECRET, team)["stringData"]
        assert creds[auth.USERNAME_KEY] == auth.username(team)
        assert creds[auth.PASSWORD_KEY] == passwords[team]
        # Nothing in the namespace opens another user: no other team's password, not the admin's.
        held = json.dumps([s.get("stringData") for s in revealed.objects("Secret", team)])
        for other, password in passwords.items():
            assert (password in held) == (other == team), (team, other)
        assert admin not in held
    assert len(set(passwords.values())) == len(passwords)


def test_notebook_servers_and_training_jobs_read_only_their_namespaces_credentials(revealed):
    values = revealed.helm("jupyterhub")["values"]
    singleuser = {"env": [{"name": k, **v} for k, v in values["singleuser"]["extraEnv"].items()]}
    # A secretKeyRef has no namespace: it resolves in the pod's own, and every profile spawns in its team's.
    assert env_sources(singleuser) == {k: (auth.TEAM_SECRET, k) for k in ENV_KEYS}
    for profile in values["singleuser"]["profileList"]:
        override = profile["kubespawner_override"]
        assert override["namespace"] in team_namespaces(revealed)
        assert not {"environment", "extra_containers", "volumes"} & set(override), profile["slug"]
    for team in team_namespaces(revealed):
        template = yaml.safe_load(revealed.obj("ConfigMap", "training-job-defaults", team)["data"]["podTemplate.yaml"])
        (container,) = template["spec"]["containers"]
        assert env_sources(container) == {k: (auth.TEAM_SECRET, k) for k in ENV_KEYS}


def test_the_check_sees_a_second_teams_password_planted_in_a_namespace(revealed):
    """Mutation: team A's namespace also holding team B's password (what a shared Secret would do) is caught."""
    passwords, _, _ = server_side(revealed)
    teams = team_namespaces(revealed)
    if len(teams) < 2:
        pytest.skip("needs two teams")
    a, b = teams[:2]
    held = json.dumps([revealed.obj("Secret", auth.TEAM_SECRET, a)["stringData"], {"x": passwords[b]}])
    assert passwords[b] in held


# ---- the real server -------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, url: str, user: str | None, password: str | None) -> None:
        self.url, self.auth = url, (base64.b64encode(f"{user}:{password}".encode()).decode() if user else None)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"}
        if self.auth:
            headers["Authorization"] = f"Basic {self.auth}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                text = response.read()
                return response.status, json.loads(text) if text.strip().startswith(b"{") else {}
        except urllib.error.HTTPError as error:
            return error.code, {}


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory, revealed):
    """`mlflow server --app-name basic-auth` on loopback with the rendered auth config (its database moved to a
    local SQLite file), users created by the rendered bootstrap Job's script."""
    if revealed.run.stack != "dev":
        pytest.skip("the real server runs once, on dev's rendered config")
    python = upstream.clients_python()
    passwords, ini, job = server_side(revealed)
    work = tmp_path_factory.mktemp("mlflow-auth")
    config = configparser.ConfigParser(interpolation=None)
    config["mlflow"] = {**ini, "database_uri": f"sqlite:///{work / 'auth.db'}"}
    with open(work / "basic_auth.ini", "w") as f:
        config.write(f)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(work / "basic_auth.ini"),
           auth.FLASK_SECRET_KEY: "test-only-secret-key", "MLFLOW_SERVER_ALLOWED_HOSTS": f"127.0.0.1:{port}"}
    server = subprocess.Popen(
        [python, "-m", "mlflow", "server", "--app-name", "basic-auth", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}", "--serve-artifacts",
         "--artifacts-destination", str(work / "artifacts"), "--workers", "1"],
        env=env, cwd=work, stdout=open(work / "server.log", "w"), stderr=subprocess.STDOUT)
    try:
        for _ in range(240):                      # a bounded wait for the server to start, not a timed assertion
            if server.poll() is not None:
                pytest.fail("mlflow server exited:\n" + (work / "server.log").read_text()[-3000:])
            try:
                if Client(url, None, None).call("GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not answer /health:\n" + (work / "server.log").read_text()[-3000:])
        container = job["spec"]["template"]["spec"]["containers"][0]
        secrets = work / "secrets"
        (secrets / "admin").mkdir(parents=True)
        (secrets / "teams").mkdir()
        (secrets / "admin" / auth.ADMIN_PASSWORD_KEY).write_text(ini["admin_password"])
        for team, password in passwords.items():
            (secrets / "teams" / team).write_text(password)
        job_env = {e["name"]: e.get("value") for e in container["env"]}
        job_env.update(MLFLOW_URL=url, SECRETS_DIR=str(secrets))
        for _ in range(2):                        # twice: the second run resets passwords of existing users
            done = subprocess.run([python, *container["command"][1:]], env={**os.environ, **job_env},
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr
        yield url, passwords
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_real_server_team_credentials_cannot_open_another_teams_experiment(mlflow_server, revealed):
    url, passwords = mlflow_server
    teams = sorted(passwords)
    creds = {t: revealed.obj("Secret", auth.TEAM_SECRET, t)["stringData"] for t in teams}
    client = {t: Client(url, creds[t][auth.USERNAME_KEY], creds[t][auth.PASSWORD_KEY]) for t in teams}
    assert Client(url, None, None).call("GET", "/api/2.0/mlflow/experiments/search?max_results=10")[0] == 401
    assert Client(url, teams[0], "wrong").call("GET", "/api/2.0/mlflow/experiments/search?max_results=10")[0] == 401
    owned = {}
    for t in teams:
        status, body = client[t].call("POST", "/api/2.0/mlflow/experiments/create", {"name": f"{t}-fraud-model"})
        assert status == 200, (t, status)
        owned[t] = body["experiment_id"]
        assert client[t].call("POST", "/api/2.0/mlflow/registered-models/create", {"name": f"{t}-model"})[0] == 200
    for t in teams:
        assert client[t].call("GET", f"/api/2.0/mlflow/experiments/get?experiment_id={owned[t]}")[0] == 200
        status, body = client[t].call("POST", "/api/2.0/mlflow/experiments/search", {"max_results": 100})
        assert {e["name"] for e in body.get("experiments", [])} == {f"{t}-fraud-model"}
        for other in teams:
            if other == t:
                continue
            assert client[t].call("GET", f"/api/2.0/mlflow/experiments/get?experiment_id={owned[other]}")[0] == 403
            assert client[t].call("POST", "/api/2.0/mlflow/runs/create",
                                  {"experiment_id": owned[other]})[0] == 403
            assert client[t].call("GET", f"/api/2.0/mlflow/registered-models/get?name={other}-model")[0] == 403

"""MLflow authentication (components/mlflow_auth.py): a team's pods hold that team's MLflow user and nothing else,
and that user opens no other team's experiments.

Two levels:
- the rendered config of the fixture stacks (tests/fixtures/stacks), with the offline mocks' generated passwords visible (a run whose secrets are not masked):
  which credentials each team namespace holds, which Secret a notebook server and a training job read, and what
  the server's auth config and bootstrap Job make of them;
- the real MLflow server (mlflow 3.x, the platform image's version, from the clients venv), started once for the
  module with the rendered auth config on loopback, its users created by the bootstrap Job's own script: team A's
  credentials cannot read or write team B's experiments, runs, artifacts or registered models; the rollout
  service's user can do what the service and its webhook Job do (read and tag the rolled-out model's versions,
  register the webhook) and nothing more (no other model, no delete, no team experiment).
"""

from __future__ import annotations

import base64
import configparser
import functools
import json
import os
import signal
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
from tests.conftest import Rendered, fixture_stack_file

ENV_KEYS = ("MLFLOW_TRACKING_URI", auth.USERNAME_KEY, auth.PASSWORD_KEY)


@pytest.fixture(scope="module", params=["dev", "prod"])
def revealed(request) -> Rendered:
    with pytest.MonkeyPatch.context() as patch:
        # The mocks' deterministic stand-ins for generated passwords, never real secrets.
        patch.setattr(engine, "from_wire", functools.partial(engine.from_wire, reveal=True))
        return Rendered(engine.run_program(request.param, *engine.read_stack_config(
            fixture_stack_file(request.param))))


def team_namespaces(r: Rendered) -> list[str]:
    return sorted(ns["metadata"]["name"] for ns in r.objects("Namespace")
                  if "mlops.platform/team" in ns["metadata"].get("labels", {}))


def server_side(r: Rendered) -> tuple[dict[str, str], configparser.SectionProxy, dict[str, Any]]:
    """What the server knows: team -> password (the bootstrap Job's sources), the auth ini, the Job."""
    users = r.obj("Secret", auth.TEAM_USERS_SECRET, "mlflow")["stringData"]
    (job,) = [j for j in r.objects("Job", "mlflow") if j["metadata"].get("labels") == auth.BOOTSTRAP_LABELS]
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
        assert not [s for s in revealed.objects("Secret", team) if s["metadata"]["name"] == auth.ROLLOUT_SECRET]
    assert len(set(passwords.values())) == len(passwords)
    rollout = [s for s in revealed.objects("Secret") if s["metadata"]["name"] == auth.ROLLOUT_SECRET]
    for secret in rollout:            # stacks with registry-mode models: the service's user, in MLflow's namespace
        assert secret["metadata"]["namespace"] == "mlflow"
        assert secret["stringData"][auth.USERNAME_KEY] == auth.ROLLOUT_USERNAME
        assert secret["stringData"][auth.PASSWORD_KEY] not in set(passwords.values()) | {admin}


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


ROLLOUT_PASSWORD = "rollout-user-test-password"


def rollout_model(team: str) -> str:
    return f"{team}-model"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory, revealed):
    """One `mlflow server --app-name basic-auth` for the module, on loopback, with the rendered auth config (its
    database moved to a local SQLite file) and the users made by the bootstrap Job's script, with the rollout user
    granted on the first team's model (a registry-mode model of a fixture config, not the shipped stacks')."""
    if revealed.run.stack != "dev":
        pytest.skip("the real server runs once, on the dev fixture's rendered config")
    python = upstream.clients_python()
    passwords, ini, _ = server_side(revealed)
    work = tmp_path_factory.mktemp("mlflow-auth")
    config = configparser.ConfigParser(interpolation=None)
    config["mlflow"] = {**ini, "database_uri": f"sqlite:///{work / 'auth.db'}"}
    with open(work / "basic_auth.ini", "w") as f:
        config.write(f)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    # No background job runner (MLflow's GenAI jobs): nothing here uses it and it only costs start-up time.
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(work / "basic_auth.ini"),
           auth.FLASK_SECRET_KEY: "test-only-secret-key", "MLFLOW_SERVER_ALLOWED_HOSTS": f"127.0.0.1:{port}",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "https,http",
           "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": base64.urlsafe_b64encode(b"k" * 32).decode()}
    server = subprocess.Popen(
        [python, "-m", "mlflow", "server", "--app-name", "basic-auth", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}", "--serve-artifacts",
         "--artifacts-destination", str(work / "artifacts"), "--workers", "1"],
        env=env, cwd=work, stdout=open(work / "server.log", "w"), stderr=subprocess.STDOUT,
        start_new_session=True)                   # its own process group: the uvicorn child stops with it
    try:
        for _ in range(1200):                     # a bounded wait for the server to start, not a timed assertion
            if server.poll() is not None:
                pytest.fail("mlflow server exited:\n" + (work / "server.log").read_text()[-3000:])
            try:
                if Client(url, None, None).call("GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.25)
        else:
            pytest.fail("mlflow server did not answer /health:\n" + (work / "server.log").read_text()[-3000:])
        teams = sorted(passwords)
        job = auth.bootstrap_job_spec(teams, "unused", url, [rollout_model(teams[0])])
        container = job["template"]["spec"]["containers"][0]
        secrets = work / "secrets"
        for sub in ("admin", "teams", "rollout"):
            (secrets / sub).mkdir(parents=True)
        (secrets / "admin" / auth.ADMIN_PASSWORD_KEY).write_text(ini["admin_password"])
        (secrets / "rollout" / "password").write_text(ROLLOUT_PASSWORD)
        for team, password in passwords.items():
            (secrets / "teams" / team).write_text(password)
        job_env = {e["name"]: e.get("value") for e in container["env"]}
        job_env.update(MLFLOW_URL=url, SECRETS_DIR=str(secrets))
        for _ in range(2):                        # twice: the second run resets passwords and grants of existing users
            done = subprocess.run([python, *container["command"][1:]], env={**os.environ, **job_env},
                                  capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stdout + done.stderr
        yield url, passwords, python
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def test_real_server_team_credentials_cannot_open_another_teams_experiment(mlflow_server, revealed):
    url, passwords, _ = mlflow_server
    teams = sorted(passwords)
    assert len(teams) >= 2
    creds = {t: revealed.obj("Secret", auth.TEAM_SECRET, t)["stringData"] for t in teams}
    client = {t: Client(url, creds[t][auth.USERNAME_KEY], creds[t][auth.PASSWORD_KEY]) for t in teams}
    assert Client(url, None, None).call("GET", "/api/2.0/mlflow/experiments/search?max_results=10")[0] == 401
    assert Client(url, teams[0], "wrong").call("GET", "/api/2.0/mlflow/experiments/search?max_results=10")[0] == 401
    owned = {}
    for t in teams:
        status, body = client[t].call("POST", "/api/2.0/mlflow/experiments/create", {"name": f"{t}-fraud-model"})
        assert status == 200, (t, status)
        owned[t] = body["experiment_id"]
        assert client[t].call("POST", "/api/2.0/mlflow/registered-models/create", {"name": rollout_model(t)})[0] == 200
    a, b = teams[:2]
    # An artifact of team b's experiment, through the server's artifact proxy (--serve-artifacts).
    artifact = f"/api/2.0/mlflow-artifacts/artifacts/{owned[b]}/notes.txt"
    assert client[b].call("PUT", artifact, None)[0] == 200
    assert client[b].call("GET", f"/api/2.0/mlflow/experiments/get?experiment_id={owned[b]}")[0] == 200
    status, body = client[b].call("POST", "/api/2.0/mlflow/experiments/search", {"max_results": 100})
    assert {e["name"] for e in body.get("experiments", [])} == {f"{b}-fraud-model"}
    # Team a, with its own valid credentials, reads and writes nothing of team b's.
    denied = [
        ("GET", f"/api/2.0/mlflow/experiments/get?experiment_id={owned[b]}", None),
        ("POST", "/api/2.0/mlflow/runs/create", {"experiment_id": owned[b]}),
        ("POST", "/api/2.0/mlflow/experiments/delete", {"experiment_id": owned[b]}),
        ("GET", artifact, None),
        ("PUT", artifact, None),
        ("GET", f"/api/2.0/mlflow/registered-models/get?name={rollout_model(b)}", None),
        ("POST", "/api/2.0/mlflow/registered-models/set-tag", {"name": rollout_model(b), "key": "k", "value": "v"}),
        ("DELETE", "/api/2.0/mlflow/registered-models/delete", {"name": rollout_model(b)}),
    ]
    assert [(m, p, client[a].call(m, p, body)[0]) for m, p, body in denied] == [(m, p, 403) for m, p, _ in denied]


def test_real_server_rollout_user_reads_and_tags_its_model_and_nothing_else(mlflow_server, revealed):
    url, passwords, python = mlflow_server
    teams = sorted(passwords)
    team, other = teams[:2]
    creds = revealed.obj("Secret", auth.TEAM_SECRET, team)["stringData"]
    owner = Client(url, creds[auth.USERNAME_KEY], creds[auth.PASSWORD_KEY])
    model = rollout_model(team)
    for t in (team, other):                          # already there when the other test ran first
        Client(url, *_team_login(revealed, t)).call("POST", "/api/2.0/mlflow/registered-models/create",
                                                    {"name": rollout_model(t)})
    status, body = owner.call("POST", "/api/2.0/mlflow/experiments/create", {"name": f"{team}-rollout-source"})
    assert status == 200
    status, body = owner.call("POST", "/api/2.0/mlflow/runs/create", {"experiment_id": body["experiment_id"]})
    run_id = body["run"]["info"]["run_id"]
    status, body = owner.call("POST", "/api/2.0/mlflow/model-versions/create",
                              {"name": model, "source": f"runs:/{run_id}/model", "run_id": run_id})
    assert status == 200, body
    version = body["model_version"]["version"]
    rollout = Client(url, auth.ROLLOUT_USERNAME, ROLLOUT_PASSWORD)
    allowed = [   # exactly the calls of services/model_rollout/rollout.py's Mlflow client
        ("GET", f"/api/2.0/mlflow/model-versions/get?name={model}&version={version}", None),
        ("GET", f"/api/2.0/mlflow/model-versions/get-download-uri?name={model}&version={version}", None),
        ("POST", "/api/2.0/mlflow/model-versions/set-tag",
         {"name": model, "version": version, "key": "rollout.status", "value": "canary"}),
    ]
    denied = [
        ("GET", f"/api/2.0/mlflow/registered-models/get?name={rollout_model(other)}", None),
        ("DELETE", "/api/2.0/mlflow/registered-models/delete", {"name": model}),
        ("DELETE", "/api/2.0/mlflow/model-versions/delete", {"name": model, "version": version}),
        ("POST", "/api/2.0/mlflow/registered-models/permissions/create",
         {"name": model, "username": auth.ROLLOUT_USERNAME, "permission": "MANAGE"}),
        ("GET", f"/api/2.0/mlflow/runs/get?run_id={run_id}", None),      # the team's to grant (rollout.py copes)
    ]
    assert [(m, p, rollout.call(m, p, body)[0]) for m, p, body in allowed] == [(m, p, 200) for m, p, _ in allowed]
    assert [(m, p, rollout.call(m, p, body)[0]) for m, p, body in denied] == [(m, p, 403) for m, p, _ in denied]
    # The webhook Job (services/model_rollout/register_webhook.py) registers with the rollout user's credentials.
    env = {**os.environ, "MLFLOW_TRACKING_URI": url, "WEBHOOK_NAME": "model-rollout", "WEBHOOK_SECRET": "s" * 32,
           "WEBHOOK_URL": "http://model-rollout.mlflow.svc.cluster.local/webhook",
           auth.USERNAME_KEY: auth.ROLLOUT_USERNAME, auth.PASSWORD_KEY: ROLLOUT_PASSWORD}
    script = str(upstream.PROJECT_DIR / "services" / "model_rollout" / "register_webhook.py")
    done = subprocess.run([python, script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "webhook" in done.stdout, done.stdout + done.stderr


def _team_login(revealed: Rendered, team: str) -> tuple[str, str]:
    creds = revealed.obj("Secret", auth.TEAM_SECRET, team)["stringData"]
    return creds[auth.USERNAME_KEY], creds[auth.PASSWORD_KEY]

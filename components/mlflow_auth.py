"""MLflow authentication and per-team permissions, with MLflow's own basic-auth app (`mlflow server --app-name
basic-auth`, MLflow docs "Basic HTTP authentication").

How teams are kept apart:
- the server runs with `default_permission = NO_PERMISSIONS`: a user sees only what it was granted;
- each team is one MLflow user named after the team, with a generated password; MLflow gives the user that creates
  an experiment or a registered model MANAGE on it, so a team's experiments, runs, models and (proxied) artifacts
  are its own, and another team's credentials open none of them;
- the team's credentials reach its pods only: a Secret `mlflow-credentials` in the team namespace (tenancy), read by
  the notebook servers and training jobs as MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD; team members may
  read Secrets of their own namespace only;
- the admin user (the platform's) exists only in the `mlflow` namespace: the server's auth config and the
  bootstrap Job, which creates every team's user (or resets its password to the Secret's) through the auth REST API
  (`/api/2.0/mlflow/users/create`, `.../users/update-password`). The Job is named after the team list, so adding a
  team runs it again.
"""

from __future__ import annotations

import configparser
import hashlib
import io
import json
from collections.abc import Mapping
from typing import Any

NO_PERMISSIONS = "NO_PERMISSIONS"
ADMIN_USERNAME = "platform-admin"
AUTH_SECRET = "mlflow-auth"                 # mlflow namespace: basic_auth.ini, Flask secret key, admin password
AUTH_CONFIG_KEY = "basic_auth.ini"
AUTH_CONFIG_DIR = "/etc/mlflow-auth"
FLASK_SECRET_KEY = "MLFLOW_FLASK_SERVER_SECRET_KEY"
ADMIN_PASSWORD_KEY = "admin-password"
TEAM_USERS_SECRET = "mlflow-team-users"     # mlflow namespace: one key per team, its password
TEAM_SECRET = "mlflow-credentials"          # team namespace: the team's own credentials
USERNAME_KEY = "MLFLOW_TRACKING_USERNAME"
PASSWORD_KEY = "MLFLOW_TRACKING_PASSWORD"
BOOTSTRAP_LABELS = {"app.kubernetes.io/name": "mlflow-users"}
RUN_AS = 10001                              # a high uid of no host user (the image's user is root)


def username(team: str) -> str:
    return team


def auth_config(database_uri: str, admin_password: str) -> str:
    """The basic-auth app's ini file (read from MLFLOW_AUTH_CONFIG_PATH). Users, passwords and permissions live in
    the tracking database's own auth tables (their own migration history, `alembic_version_auth`)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser["mlflow"] = {
        "default_permission": NO_PERMISSIONS,
        "database_uri": database_uri,
        "admin_username": ADMIN_USERNAME,
        "admin_password": admin_password,
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


# Runs in the MLflow image (python, standard library only): creates each team's user, or resets its password to the
# one in the team's Secret, so the Secret is always what opens the team's user. Passwords are read from mounted
# files (SECRETS_DIR/admin/admin-password, SECRETS_DIR/teams/<team>), never from the environment.
BOOTSTRAP_SCRIPT = '''\
import base64, json, os, pathlib, time, urllib.error, urllib.request

url = os.environ["MLFLOW_URL"].rstrip("/")
secrets = pathlib.Path(os.environ["SECRETS_DIR"])
admin = (secrets / "admin" / "admin-password").read_text()
basic = base64.b64encode(f"{os.environ['ADMIN_USERNAME']}:{admin}".encode()).decode()


def call(method, path, body=None):
    request = urllib.request.Request(url + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": f"Basic {basic}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


for attempt in range(60):
    try:
        if call("GET", "/health") == 200:
            break
    except OSError:
        pass
    time.sleep(5)
else:
    raise SystemExit(f"MLflow at {url} did not become healthy")

for team in json.loads(os.environ["TEAMS"]):
    password = (secrets / "teams" / team).read_text()
    status = call("POST", "/api/2.0/mlflow/users/create", {"username": team, "password": password})
    if status != 200:
        status = call("PATCH", "/api/2.0/mlflow/users/update-password", {"username": team, "password": password})
    if status != 200:
        raise SystemExit(f"could not create or update the MLflow user {team}: HTTP {status}")
    print(f"MLflow user {team}: ready")
'''


SECRETS_DIR = "/var/run/mlflow-users"


def bootstrap_job_name(teams: list[str], image: str) -> str:
    """Changes with the team list (and the image), so Pulumi replaces the Job and it runs again."""
    digest = hashlib.sha256(json.dumps([sorted(teams), image]).encode()).hexdigest()[:8]
    return f"mlflow-users-{digest}"


def bootstrap_job_spec(teams: list[str], image: str, url: str) -> dict[str, Any]:
    """The Job that makes each team's MLflow user; restricted pod (the mlflow namespace enforces it)."""
    env = [{"name": "MLFLOW_URL", "value": url}, {"name": "ADMIN_USERNAME", "value": ADMIN_USERNAME},
           {"name": "TEAMS", "value": json.dumps(sorted(teams))}, {"name": "SECRETS_DIR", "value": SECRETS_DIR}]
    return {
        "backoffLimit": 6,
        "template": {
            "metadata": {"labels": dict(BOOTSTRAP_LABELS)},
            "spec": {
                "restartPolicy": "OnFailure",
                "automountServiceAccountToken": False,
                "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                                    "fsGroup": RUN_AS, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "users",
                    "image": image,
                    "command": ["python", "-c", BOOTSTRAP_SCRIPT],
                    "env": env,
                    "resources": {"requests": {"cpu": "50m", "memory": "128Mi"},
                                  "limits": {"cpu": "500m", "memory": "256Mi"}},
                    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": [{"name": "admin", "mountPath": f"{SECRETS_DIR}/admin", "readOnly": True},
                                     {"name": "teams", "mountPath": f"{SECRETS_DIR}/teams", "readOnly": True}],
                }],
                "volumes": [
                    {"name": "admin", "secret": {"secretName": AUTH_SECRET, "defaultMode": 0o440, "items": [
                        {"key": ADMIN_PASSWORD_KEY, "path": ADMIN_PASSWORD_KEY}]}},
                    {"name": "teams", "secret": {"secretName": TEAM_USERS_SECRET, "defaultMode": 0o440}},
                ],
            },
        },
    }


def team_secret_data(team: str, password: Any, tracking_url: str) -> Mapping[str, Any]:
    """The team namespace's `mlflow-credentials`: everything an MLflow client needs, as environment variables."""
    return {"MLFLOW_TRACKING_URI": tracking_url, USERNAME_KEY: username(team), PASSWORD_KEY: password}

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
  (`/api/2.0/mlflow/users/create`, `.../users/update-password`). The Job is named after what it sets up, so adding
  a team runs it again;
- the model rollout service (components/model_rollout.py) is one more user, with EDIT (read, set tags; no delete,
  no permission changes) on exactly the registered models of registry-mode rollouts, granted by the same Job; its
  credentials are a Secret of the `mlflow` namespace, where the service runs. MLflow 3.9 checks no permission on
  webhooks (any authenticated user may manage them), so registering the webhook needs nothing more; reading a
  version's run metrics needs READ on the team's experiment, which only the team can grant (docs/security.md).
- the platform's users have dotted names (`platform.admin`), which no team can take: team names are DNS labels.
"""

from __future__ import annotations

import configparser
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

NO_PERMISSIONS = "NO_PERMISSIONS"
ADMIN_USERNAME = "platform.admin"          # dotted: never a team's name (team names are DNS labels)
AUTH_SECRET = "mlflow-auth"                 # mlflow namespace: basic_auth.ini, Flask secret key, admin password
AUTH_CONFIG_KEY = "basic_auth.ini"
AUTH_CONFIG_DIR = "/etc/mlflow-auth"
FLASK_SECRET_KEY = "MLFLOW_FLASK_SERVER_SECRET_KEY"
ADMIN_PASSWORD_KEY = "admin-password"
TEAM_USERS_SECRET = "mlflow-team-users"     # mlflow namespace: one key per team, its password
TEAM_SECRET = "mlflow-credentials"          # team namespace: the team's own credentials
USERNAME_KEY = "MLFLOW_TRACKING_USERNAME"
PASSWORD_KEY = "MLFLOW_TRACKING_PASSWORD"
ROLLOUT_USERNAME = "platform.model-rollout"
ROLLOUT_SECRET = "model-rollout-mlflow"     # mlflow namespace: the rollout service's credentials
ROLLOUT_PERMISSION = "EDIT"                 # read versions, set their tags; no delete, no permission changes
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



def user(name, password):
    status = call("POST", "/api/2.0/mlflow/users/create", {"username": name, "password": password})
    if status != 200:
        status = call("PATCH", "/api/2.0/mlflow/users/update-password", {"username": name, "password": password})
    if status != 200:
        raise SystemExit(f"could not create or update the MLflow user {name}: HTTP {status}")
    print(f"MLflow user {name}: ready")


for team in json.loads(os.environ["TEAMS"]):
    user(team, (secrets / "teams" / team).read_text())

# The rollout service: EDIT on the registered models it rolls out (granted by name, before or after they exist).
models = json.loads(os.environ.get("ROLLOUT_MODELS", "[]"))
if models:
    rollout = os.environ["ROLLOUT_USERNAME"]
    user(rollout, (secrets / "rollout" / "password").read_text())
    for model in models:
        grant = {"name": model, "username": rollout, "permission": os.environ["ROLLOUT_PERMISSION"]}
        status = call("POST", "/api/2.0/mlflow/registered-models/permissions/create", grant)
        if status != 200:
            status = call("PATCH", "/api/2.0/mlflow/registered-models/permissions/update", grant)
        if status != 200:
            raise SystemExit(f"could not grant {rollout} on the registered model {model}: HTTP {status}")
        print(f"MLflow user {rollout}: {grant['permission']} on {model}")
'''


SECRETS_DIR = "/var/run/mlflow-users"


def bootstrap_job_name(teams: Sequence[str], image: str, rollout_models: Sequence[str] = ()) -> str:
    """Changes with the team list, the rollout's models (and the image), so Pulumi replaces the Job and it runs
    again."""
    digest = hashlib.sha256(json.dumps([sorted(teams), image, sorted(rollout_models)]).encode()).hexdigest()[:8]
    return f"mlflow-users-{digest}"


def bootstrap_job_spec(teams: Sequence[str], image: str, url: str,
                       rollout_models: Sequence[str] = ()) -> dict[str, Any]:
    """The Job that makes each team's MLflow user (and the rollout service's, with its grants); restricted pod (the
    mlflow namespace enforces it)."""
    env = [{"name": "MLFLOW_URL", "value": url}, {"name": "ADMIN_USERNAME", "value": ADMIN_USERNAME},
           {"name": "TEAMS", "value": json.dumps(sorted(teams))}, {"name": "SECRETS_DIR", "value": SECRETS_DIR}]
    mounts = [{"name": "admin", "mountPath": f"{SECRETS_DIR}/admin", "readOnly": True},
              {"name": "teams", "mountPath": f"{SECRETS_DIR}/teams", "readOnly": True}]
    volumes = [{"name": "admin", "secret": {"secretName": AUTH_SECRET, "defaultMode": 0o440, "items": [
                   {"key": ADMIN_PASSWORD_KEY, "path": ADMIN_PASSWORD_KEY}]}},
               {"name": "teams", "secret": {"secretName": TEAM_USERS_SECRET, "defaultMode": 0o440}}]
    if rollout_models:
        env += [{"name": "ROLLOUT_USERNAME", "value": ROLLOUT_USERNAME},
                {"name": "ROLLOUT_MODELS", "value": json.dumps(sorted(rollout_models))},
                {"name": "ROLLOUT_PERMISSION", "value": ROLLOUT_PERMISSION}]
        mounts.append({"name": "rollout", "mountPath": f"{SECRETS_DIR}/rollout", "readOnly": True})
        volumes.append({"name": "rollout", "secret": {"secretName": ROLLOUT_SECRET, "defaultMode": 0o440, "items": [
            {"key": PASSWORD_KEY, "path": "password"}]}})
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
                    "volumeMounts": mounts,
                }],
                "volumes": volumes,
            },
        },
    }


def team_env() -> dict[str, Any]:
    """MLFLOW_TRACKING_URI / _USERNAME / _PASSWORD from the team namespace's `mlflow-credentials` (a secretKeyRef
    resolves in the pod's own namespace: a notebook server's is its team's)."""
    return {key: {"valueFrom": {"secretKeyRef": {"name": TEAM_SECRET, "key": key}}}
            for key in ("MLFLOW_TRACKING_URI", USERNAME_KEY, PASSWORD_KEY)}


def team_secret_data(team: str, password: Any, tracking_url: str) -> Mapping[str, Any]:
    """The team namespace's `mlflow-credentials`: everything an MLflow client needs, as environment variables."""
    return {"MLFLOW_TRACKING_URI": tracking_url, USERNAME_KEY: username(team), PASSWORD_KEY: password}


@dataclass(frozen=True)
class AuthSecrets:
    """What `declare_secrets` made: the server's auth Secret (its Deployment depends on it), the Secrets the users
    Job reads, and each team's password (tenancy writes it into the team's namespace)."""

    auth_secret: k8s.core.v1.Secret
    user_secrets: list[k8s.core.v1.Secret]
    team_passwords: dict[str, pulumi.Output[str]]


def declare_secrets(name: str, meta: Any, backend_uri: pulumi.Output[str], teams: Sequence[str],
                    rollout_models: Sequence[str], tracking_url: str, child: pulumi.ResourceOptions,
                    in_ns: pulumi.ResourceOptions) -> AuthSecrets:
    """The generated passwords and the `mlflow` namespace's Secrets: the server's auth config, the teams'
    passwords and, with registry-mode rollouts, the rollout service's credentials. `meta(name)` is the namespace's
    object metadata."""
    def password(suffix: str) -> pulumi.Output[str]:
        return pulumi.Output.secret(random.RandomPassword(f"{name}-{suffix}", length=40, special=False,
                                                          opts=child).result)

    admin_password = password("admin")
    flask_key = random.RandomPassword(f"{name}-flask-key", length=48, special=False, opts=child)
    team_passwords = {t: password(f"team-{t}") for t in teams}
    auth_secret = k8s.core.v1.Secret(
        f"{name}-auth-secret", metadata=meta(AUTH_SECRET), type="Opaque",
        string_data=pulumi.Output.secret(pulumi.Output.all(backend_uri, admin_password, flask_key.result).apply(
            lambda a: {AUTH_CONFIG_KEY: auth_config(a[0], a[1]), ADMIN_PASSWORD_KEY: a[1], FLASK_SECRET_KEY: a[2]})),
        opts=in_ns)
    user_secrets = [k8s.core.v1.Secret(
        f"{name}-team-users", metadata=meta(TEAM_USERS_SECRET), type="Opaque",
        string_data=pulumi.Output.secret(pulumi.Output.all(**team_passwords)), opts=in_ns)]
    if rollout_models:
        user_secrets.append(k8s.core.v1.Secret(
            f"{name}-rollout-user", metadata=meta(ROLLOUT_SECRET), type="Opaque",
            string_data={"MLFLOW_TRACKING_URI": tracking_url, USERNAME_KEY: ROLLOUT_USERNAME,
                         PASSWORD_KEY: password("rollout-user")}, opts=in_ns))
    return AuthSecrets(auth_secret, user_secrets, team_passwords)

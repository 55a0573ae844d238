"""Register (or update) the MLflow webhook that calls the model rollout service on model-version alias events.

Run by the stack as a Job after each change of the rollout configuration; idempotent: the webhook is found by name
and updated in place, so MLflow keeps exactly one. Standard library only (the MLflow image's Python).
Environment: MLFLOW_TRACKING_URI, WEBHOOK_NAME, WEBHOOK_URL, WEBHOOK_SECRET, optional MLFLOW_TRACKING_USERNAME/PASSWORD.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.request

EVENTS = [{"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"}]


def call(method: str, path: str, body: dict | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if os.environ.get("MLFLOW_TRACKING_USERNAME"):
        basic = f"{os.environ['MLFLOW_TRACKING_USERNAME']}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
    request = urllib.request.Request(os.environ["MLFLOW_TRACKING_URI"].rstrip("/") + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else {}


def register() -> str:
    name, url, secret = os.environ["WEBHOOK_NAME"], os.environ["WEBHOOK_URL"], os.environ["WEBHOOK_SECRET"]
    hooks = call("GET", "/api/2.0/mlflow/webhooks").get("webhooks", [])
    wanted = {"name": name, "url": url, "events": EVENTS, "secret": secret, "status": "ACTIVE",
              "description": "Model registry alias -> canary rollout (managed by the platform stack)"}
    existing = [h for h in hooks if h.get("name") == name]
    for extra in existing[1:]:                      # a duplicate from an interrupted earlier run
        call("DELETE", f"/api/2.0/mlflow/webhooks/{extra['webhook_id']}")
    if existing:
        call("PATCH", f"/api/2.0/mlflow/webhooks/{existing[0]['webhook_id']}", wanted)
        return f"updated webhook {existing[0]['webhook_id']}"
    return f"created webhook {call('POST', '/api/2.0/mlflow/webhooks', wanted)['webhook']['webhook_id']}"


if __name__ == "__main__":
    for attempt in range(30):                       # MLflow may still be starting (first install, schema migration)
        try:
            print(register())
            break
        except urllib.error.HTTPError:                  # MLflow answered (401: wrong credentials): no retry helps
            raise
        except (urllib.error.URLError, ConnectionError) as e:
            print(f"MLflow not reachable yet ({e}); retrying")
            time.sleep(10)
    else:
        raise SystemExit("MLflow never became reachable")

"""The model rollout service end to end against a real MLflow server: registry alias -> signed webhook -> 5% canary
on the InferenceService -> analysis on Prometheus series -> promotion or rollback, tagged on the model version.

Real: the MLflow server (the version the platform's image runs, from `.venv-clients`, SQLite backend), its webhook
delivery and HMAC signing, and the rollout service as its own process (`services/model_rollout/rollout.py`, the file
the stack ships). Fakes: the Kubernetes API (objects, merge patches) playing KServe's status, and Prometheus.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests import upstream
from tests.fake_apis import FakeKubernetes, FakePrometheus

SERVICE = upstream.PROJECT_DIR / "services" / "model_rollout" / "rollout.py"
NAMESPACE, ISVC, MODEL = "team-fraud", "fraud", "fraud-detector"
ISVC_PATH = f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices/{ISVC}"
SECRET = "webhook-hmac-secret"
TOKEN = "service-account-token"
WINDOW = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw.startswith(b"{") else raw.decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_for(check, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def mlflow(tmp_path_factory) -> str:
    python = upstream.clients_python()
    work = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    env = {**os.environ, "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http",     # the in-cluster hop (docs/model-promotion.md)
           "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": base64.urlsafe_b64encode(b"k" * 32).decode(),
           "MLFLOW_WEBHOOK_CACHE_TTL": "0", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen([python, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{work}/db.sqlite",
                               "--default-artifact-root", f"file://{work}/artifacts", "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"],
                              env=env, stdout=subprocess.DEVNULL, stderr=open(work / "server.log", "w"),
                              start_new_session=True)        # its own process group: uvicorn workers stop with it
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(url), "the MLflow server", timeout=300)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


def _healthy(url: str) -> bool:
    try:
        return http("GET", url + "/health")[0] == 200
    except OSError:
        return False


def mlflow_api(url: str, method: str, path: str, body: Any = None) -> Any:
    status, reply = http(method, f"{url}/api/2.0/mlflow/{path}", body)
    assert status == 200, f"{method} {path}: {status} {reply}"
    return reply


def version_tags(url: str, version: str) -> dict[str, str]:
    mv = mlflow_api(url, "GET", f"model-versions/get?name={MODEL}&version={version}")["model_version"]
    return {t["key"]: t["value"] for t in mv.get("tags", [])}


class Cluster:
    """The fake Kubernetes API with one InferenceService, and KServe's part: each new generation gets a new
    revision, and the status sends the canary percent to it (Knative traffic split)."""

    def __init__(self) -> None:
        self.kube = FakeKubernetes(TOKEN, on_patch=self.kserve)
        self.kube.objects[ISVC_PATH] = {
            "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": ISVC, "namespace": NAMESPACE, "generation": 1},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://models/v1"}}},
        }
        self.kserve(self.kube.objects[ISVC_PATH])

    def kserve(self, isvc: dict[str, Any]) -> None:
        generation = isvc["metadata"]["generation"]
        percent = isvc["spec"]["predictor"].get("canaryTrafficPercent")
        latest = f"{ISVC}-predictor-{generation:05d}"
        traffic = [{"revisionName": latest, "percent": 100 if percent is None else percent, "latestRevision": True}]
        if percent is not None:
            traffic.append({"revisionName": f"{ISVC}-predictor-{generation - 1:05d}", "percent": 100 - percent,
                            "latestRevision": False})
        isvc["status"] = {"observedGeneration": generation, "components": {"predictor": {"traffic": traffic}}}

    @property
    def isvc(self) -> dict[str, Any]:
        return self.kube.objects[ISVC_PATH]

    def state(self) -> dict[str, str]:
        prefix = "rollout.mlops.platform/"
        return {k[len(prefix):]: v for k, v in (self.isvc["metadata"].get("annotations") or {}).items()
                if k.startswith(prefix)}


class Traffic:
    """What Prometheus reports for the canary revision: requests, 5xx responses, p99 seconds (None: no data)."""

    def __init__(self) -> None:
        self.requests: float | None = None
        self.errors = 0.0
        self.p99 = 0.05

    def answer(self, query: str) -> float | None:
        if self.requests is None:
            return None
        if "histogram_quantile" in query:
            return self.p99
        return self.errors if 'http_response_status_code=~"5.."' in query else self.requests


@pytest.fixture
def world(tmp_path, mlflow):
    cluster, traffic = Cluster(), Traffic()
    prometheus = FakePrometheus(traffic.answer)
    port = free_port()
    config = tmp_path / "rollout.json"
    config.write_text(json.dumps({"models": [{
        "registeredModel": MODEL, "alias": "champion", "namespace": NAMESPACE, "inferenceService": ISVC,
        "canaryPercent": 5, "windowSeconds": WINDOW, "maxErrorRate": 0.02, "maxLatencyP99Ms": 250, "minRequests": 50,
    }]}))
    token = tmp_path / "token"
    token.write_text(TOKEN)
    env = {**os.environ, "ROLLOUT_CONFIG": str(config), "WEBHOOK_SECRET": SECRET, "MLFLOW_TRACKING_URI": mlflow,
           "PROMETHEUS_URL": prometheus.url, "KUBE_API_URL": cluster.kube.url, "KUBE_TOKEN_FILE": str(token),
           "RECONCILE_SECONDS": "1", "PORT": str(port)}

    class World:
        url = f"http://127.0.0.1:{port}"

        def __init__(self) -> None:
            self.cluster, self.traffic, self.prometheus, self.mlflow = cluster, traffic, prometheus, mlflow
            self.process: subprocess.Popen | None = None

        def start(self) -> None:
            self.process = subprocess.Popen([sys.executable, str(SERVICE)], env=env,
                                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "rollout.log", "a"))
            wait_for(lambda: _up(self.url), "the rollout service")

        def stop(self) -> None:
            self.process.terminate()
            self.process.wait(10)

    w = World()
    # A fresh registered model per test, with versions whose sources are the S3 locations KServe loads.
    name = MODEL
    for path in ("registered-models/delete",):
        http("DELETE", f"{mlflow}/api/2.0/mlflow/{path}", {"name": name})
    mlflow_api(mlflow, "POST", "registered-models/create", {"name": name})
    run = mlflow_api(mlflow, "POST", "runs/create", {"experiment_id": "0"})["run"]["info"]["run_id"]
    mlflow_api(mlflow, "POST", "runs/log-metric", {"run_id": run, "key": "accuracy", "value": 0.942,
                                                   "timestamp": 0, "step": 0})
    for v in (1, 2, 3):                          # version 2 was trained by `run`, which logged its accuracy
        mlflow_api(mlflow, "POST", "model-versions/create", {"name": name, "source": f"s3://models/v{v}",
                                                             **({"run_id": run} if v == 2 else {})})
    register_webhook(mlflow, f"{w.url}/webhook")
    w.start()
    yield w
    w.stop()
    prometheus.close()
    cluster.kube.close()


def register_webhook(mlflow: str, url: str) -> str:
    """The stack's registration Job, run as it runs in the cluster (its own process, its environment)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow, "WEBHOOK_NAME": "model-rollout", "WEBHOOK_URL": url,
           "WEBHOOK_SECRET": SECRET}
    return subprocess.run([sys.executable, str(SERVICE.parent / "register_webhook.py")], env=env, check=True,
                          capture_output=True, text=True, timeout=60).stdout


def _up(url: str) -> bool:
    try:
        return http("GET", url + "/healthz")[0] == 200
    except OSError:
        return False


def set_alias(world, version: str) -> None:
    mlflow_api(world.mlflow, "POST", "registered-models/alias", {"name": MODEL, "alias": "champion",
                                                                 "version": version})


def test_alias_starts_a_5_percent_canary_then_healthy_series_promote_it(world):
    set_alias(world, "2")
    wait_for(lambda: world.cluster.state().get("phase") == "canary", "the canary")
    predictor = world.cluster.isvc["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 5
    assert predictor["model"]["storageUri"] == "s3://models/v2"
    assert world.cluster.state()["previous-uri"] == "s3://models/v1"
    # The service patches the InferenceService, then tags the version: the tag may land a moment later.
    assert wait_for(lambda: version_tags(world.mlflow, "2").get("rollout.status") == "canary", "the canary tag")

    world.traffic.requests = 400                     # healthy: no 5xx, p99 50 ms
    wait_for(lambda: world.cluster.state().get("phase") == "promoted", "the promotion")
    assert "canaryTrafficPercent" not in world.cluster.isvc["spec"]["predictor"]
    assert world.cluster.isvc["spec"]["predictor"]["model"]["storageUri"] == "s3://models/v2"
    assert wait_for(lambda: version_tags(world.mlflow, "2").get("rollout.status") == "promoted", "the tag")
    wait_for(lambda: len(world.cluster.kube.events) == 2, "the promotion event")
    assert [e["reason"] for e in world.cluster.kube.events] == ["CanaryStarted", "CanaryPromoted"]
    # The analysis looked at the canary revision only, never at the whole service.
    assert all('revision="fraud-predictor-00002"' in q for q in world.prometheus.queries())
    # One row for the dashboard: the deployed version, since when, and its registry metrics.
    metrics = wait_for(lambda: (m := http("GET", world.url + "/metrics")[1]) and 'metric="accuracy"' in m and m,
                       "the registry metrics")
    assert 'mlops_model_rollouts_total{namespace="team-fraud",inferenceservice="fraud",outcome="promoted"} 1' in metrics
    labels = 'namespace="team-fraud",inferenceservice="fraud",registered_model="fraud-detector",version="2"'
    assert f'mlops_model_registry_metric{{{labels},metric="accuracy"}} 0.942' in metrics
    assert f"mlops_model_deployed_since_timestamp_seconds{{{labels}}}" in metrics


def test_an_error_rate_rise_rolls_back_to_the_previous_version(world):
    set_alias(world, "3")
    wait_for(lambda: world.cluster.state().get("phase") == "canary", "the canary")
    world.traffic.requests, world.traffic.errors = 200, 30           # 15% 5xx > 2%
    wait_for(lambda: world.cluster.state().get("phase") == "rolled-back", "the rollback")
    predictor = world.cluster.isvc["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == "s3://models/v1" and "canaryTrafficPercent" not in predictor
    assert world.cluster.state()["rolled-back"] == "3"
    tags = wait_for(lambda: (t := version_tags(world.mlflow, "3")).get("rollout.status") == "rolled-back" and t,
                    "the rollback tag")
    assert "error rate 15.00%" in tags["rollout.reason"]


def test_no_data_and_a_prometheus_outage_decide_nothing(world):
    set_alias(world, "2")
    wait_for(lambda: world.cluster.state().get("phase") == "canary", "the canary")
    world.prometheus.failing = True
    time.sleep(WINDOW + 2)                       # past the window, the analysis loop ran several times
    assert world.cluster.state()["phase"] == "canary"
    world.prometheus.failing = False             # up again, but nothing reached the canary yet
    time.sleep(2)
    assert world.cluster.state()["phase"] == "canary"
    assert len(world.cluster.kube.patches()) == 1


def test_a_restart_mid_window_resumes_from_the_cluster(world):
    set_alias(world, "2")
    wait_for(lambda: world.cluster.state().get("phase") == "canary", "the canary")
    world.stop()                                  # the pod is rescheduled mid-window: nothing in memory survives
    world.traffic.requests = 400
    world.start()
    wait_for(lambda: world.cluster.state().get("phase") == "promoted", "the promotion after the restart")
    wait_for(lambda: version_tags(world.mlflow, "2").get("rollout.status") == "promoted", "the promotion tag")


def test_the_registration_job_is_idempotent(world):
    url = f"{world.url}/webhook"
    assert "updated webhook" in register_webhook(world.mlflow, url)      # the fixture's run created it
    hooks = mlflow_api(world.mlflow, "GET", "webhooks")["webhooks"]
    assert [(h["name"], h["url"], h["events"]) for h in hooks] == [
        ("model-rollout", url, [{"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"}])]


def test_a_wrong_signature_is_refused_and_changes_nothing(world):
    body = json.dumps({"entity": "model_version_alias", "action": "created",
                       "data": {"name": MODEL, "alias": "champion", "version": "3"}}).encode()
    stamp, delivery = str(int(time.time())), "d-1"
    sys.path.insert(0, str(SERVICE.parent))
    import rollout

    forged = rollout.signature("not-the-secret", delivery, stamp, body)
    good = rollout.signature(SECRET, delivery, stamp, body)
    for headers in ({}, {"X-MLflow-Signature": forged, "X-MLflow-Timestamp": stamp, "X-MLflow-Delivery-Id": delivery},
                    {"X-MLflow-Signature": good, "X-MLflow-Timestamp": str(int(stamp) - 3600),
                     "X-MLflow-Delivery-Id": delivery}):
        assert http("POST", world.url + "/webhook", body, headers)[0] == 401
    assert world.cluster.kube.patches() == [] and world.cluster.kube.events == []
    # The same delivery, correctly signed and fresh, is accepted: the refusals above were for the signature.
    signed = {"X-MLflow-Signature": good, "X-MLflow-Timestamp": stamp, "X-MLflow-Delivery-Id": delivery}
    assert http("POST", world.url + "/webhook", body, signed)[0] == 200
    assert world.cluster.state()["phase"] == "canary"


def test_run_metrics_the_service_may_not_read_are_left_out_other_errors_are_not(monkeypatch):
    """Under MLflow's auth the rollout user has no READ on a team's experiment unless the team grants it
    (components/mlflow_auth.py): a 403 on the run means no registry metrics, not a failed reconcile."""
    sys.path.insert(0, str(SERVICE.parent))
    import rollout

    class Refusing:
        def __init__(self, code: int) -> None:
            self.code = code

        def call(self, method: str, path: str, body: Any = None) -> Any:
            raise urllib.error.HTTPError(path, self.code, "refused", {}, None)

    assert rollout.Mlflow(Refusing(403)).run_metrics("r1") == {}
    with pytest.raises(urllib.error.HTTPError):
        rollout.Mlflow(Refusing(500)).run_metrics("r1")

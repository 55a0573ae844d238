"""Model rollout service: an MLflow registry alias moves -> a KServe canary -> analysis -> promotion or rollback.

Shipped by the stack in a ConfigMap and run with the MLflow image's own Python (standard library only), in the
platform namespace. It is a client of three real APIs:
- MLflow sends a signed webhook (`model_version_alias.created`) when an alias such as `champion` is set;
- the Kubernetes API: the service patches the team's InferenceService (canary location and traffic percent), and
  writes its rollout state into the InferenceService's annotations, so a restart resumes from the cluster, not
  from memory;
- Prometheus: the canary revision's error rate and p99 latency (Knative queue-proxy series) decide the outcome.
Outcomes are recorded on the model version in MLflow (tags), as Kubernetes Events and as Prometheus metrics.

Configuration (environment): ROLLOUT_CONFIG (JSON file: {"models": [...]}, written by the stack), WEBHOOK_SECRET,
MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (MLflow's basic auth: the service's own user,
EDIT on the rolled-out registered models only), PROMETHEUS_URL, KUBE_API_URL / KUBE_TOKEN_FILE / KUBE_CA_FILE
(in-cluster defaults), RECONCILE_SECONDS, PORT.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

log = logging.getLogger("model-rollout")

ANNOTATION = "rollout.mlops.platform/"          # prefix of the state the service keeps on the InferenceService
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_HEADER = "X-MLflow-Delivery-Id"
MAX_CLOCK_SKEW_SECONDS = 300                     # older deliveries are refused: a captured request cannot be replayed
REQUESTS = "kn_serving_invocation_duration_seconds"   # Knative queue-proxy (components/data/metrics.yaml)
ISVC_PATH = "/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices/{name}"


@dataclass(frozen=True)
class ModelRollout:
    """One `rollout: {mode: registry}` model of a team, as the stack writes it into ROLLOUT_CONFIG."""

    registered_model: str
    alias: str
    namespace: str
    inference_service: str
    canary_percent: int
    window_seconds: int
    max_error_rate: float
    max_latency_p99_ms: float
    min_requests: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ModelRollout":
        return cls(d["registeredModel"], d["alias"], d["namespace"], d["inferenceService"], int(d["canaryPercent"]),
                   int(d["windowSeconds"]), float(d["maxErrorRate"]), float(d["maxLatencyP99Ms"]),
                   int(d.get("minRequests", 1)))


# ---- signatures


def signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """MLflow's webhook signature: `v1,` + base64(HMAC-SHA256(secret, "<delivery id>.<timestamp>.<body>"))."""
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: Any, body: bytes, now: float) -> str | None:
    """None when the delivery is authentic and fresh, else why it is refused."""
    sent, stamp, delivery = (headers.get(h) or "" for h in (SIGNATURE_HEADER, TIMESTAMP_HEADER, DELIVERY_HEADER))
    if not (sent and stamp and delivery):
        return "unsigned delivery"
    if not stamp.isdigit() or abs(now - int(stamp)) > MAX_CLOCK_SKEW_SECONDS:
        return "stale or malformed timestamp"
    if not hmac.compare_digest(sent, signature(secret, delivery, stamp, body)):
        return "bad signature"
    return None


# ---- HTTP clients (standard library)


class Http:
    def __init__(self, base: str, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None):
        self.base, self.headers, self.context = base.rstrip("/"), headers or {}, context

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={**self.headers, "Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=10, context=self.context) as response:
            raw = response.read()
        return json.loads(raw) if raw else {}


class Mlflow:
    def __init__(self, http: Http):
        self.http = http

    def download_uri(self, name: str, version: str) -> str:
        query = urllib.parse.urlencode({"name": name, "version": version})
        return self.http.call("GET", f"/api/2.0/mlflow/model-versions/get-download-uri?{query}")["artifact_uri"]

    def version(self, name: str, version: str) -> dict[str, Any]:
        query = urllib.parse.urlencode({"name": name, "version": version})
        return self.http.call("GET", f"/api/2.0/mlflow/model-versions/get?{query}")["model_version"]

    def run_metrics(self, run_id: str) -> dict[str, float]:
        """The run's logged metrics; none when the service may not read the run: under MLflow's auth that takes READ
        on the team's experiment, which only the team can grant (docs/security.md), and rollouts do not need it."""
        try:
            run = self.http.call("GET", f"/api/2.0/mlflow/runs/get?run_id={urllib.parse.quote(run_id)}")["run"]
        except urllib.error.HTTPError as e:
            if e.code != 403:
                raise
            return {}
        return {m["key"]: float(m["value"]) for m in run.get("data", {}).get("metrics", [])}

    def tag(self, name: str, version: str, tags: dict[str, str]) -> None:
        """One call per tag (MLflow's API): callers put `rollout.status` last, so a reader who sees the status
        also sees its reason."""
        for key, value in tags.items():
            self.http.call("POST", "/api/2.0/mlflow/model-versions/set-tag",
                           {"name": name, "version": version, "key": key, "value": value})


class Kubernetes:
    def __init__(self, http: Http):
        self.http = http

    def get(self, m: ModelRollout) -> dict[str, Any]:
        return self.http.call("GET", ISVC_PATH.format(ns=m.namespace, name=m.inference_service))

    def patch(self, m: ModelRollout, patch: dict[str, Any]) -> dict[str, Any]:
        return self.http.call("PATCH", ISVC_PATH.format(ns=m.namespace, name=m.inference_service), patch,
                              "application/merge-patch+json")

    def event(self, m: ModelRollout, reason: str, message: str, warning: bool = False) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.http.call("POST", f"/api/v1/namespaces/{m.namespace}/events", {
            "metadata": {"generateName": f"{m.inference_service}-rollout-"},
            "involvedObject": {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                               "name": m.inference_service, "namespace": m.namespace},
            "reason": reason, "message": message, "type": "Warning" if warning else "Normal",
            "source": {"component": "model-rollout"}, "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1})


class Prometheus:
    def __init__(self, http: Http):
        self.http = http

    def scalar(self, query: str) -> float | None:
        """The single value of an instant query; None when the result is empty (no data is never "healthy")."""
        result = self.http.call("GET", "/api/v1/query?" + urllib.parse.urlencode({"query": query}))
        if result.get("status") != "success":
            raise RuntimeError(f"Prometheus: {result.get('error', result)}")
        values = [float(r["value"][1]) for r in result["data"]["result"]]
        return values[0] if values and values[0] == values[0] else None       # NaN (0/0) counts as no data


# ---- the rollout itself


class Metrics:
    """The service's own Prometheus metrics (text exposition format)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rollouts: dict[tuple[str, str, str], int] = {}
        self.deployed: dict[tuple[str, str], dict[str, Any]] = {}

    def count(self, m: ModelRollout, outcome: str) -> None:
        with self.lock:
            key = (m.namespace, m.inference_service, outcome)
            self.rollouts[key] = self.rollouts.get(key, 0) + 1

    def render(self) -> str:
        lines = ["# TYPE mlops_model_rollouts_total counter"]
        with self.lock:
            for (ns, isvc, outcome), n in sorted(self.rollouts.items()):
                lines.append(f'mlops_model_rollouts_total{{namespace="{ns}",inferenceservice="{isvc}",'
                             f'outcome="{outcome}"}} {n}')
            lines += ["# TYPE mlops_model_deployed_since_timestamp_seconds gauge",
                      "# TYPE mlops_model_registry_metric gauge"]
            for (ns, isvc), d in sorted(self.deployed.items()):
                labels = (f'namespace="{ns}",inferenceservice="{isvc}",registered_model="{d["model"]}",'
                          f'version="{d["version"]}"')
                lines.append(f"mlops_model_deployed_since_timestamp_seconds{{{labels}}} {d['since']}")
                for metric, value in sorted(d["metrics"].items()):
                    lines.append(f'mlops_model_registry_metric{{{labels},metric="{metric}"}} {value}')
        return "\n".join(lines) + "\n"


class Rollouts:
    def __init__(self, models: list[ModelRollout], mlflow: Mlflow, kube: Kubernetes, prometheus: Prometheus,
                 clock: Callable[[], float] = time.time) -> None:
        self.models, self.mlflow, self.kube, self.prometheus, self.clock = models, mlflow, kube, prometheus, clock
        self.metrics = Metrics()
        self.lock = threading.Lock()       # one decision at a time: webhook deliveries and the analysis loop

    def find(self, name: str, alias: str) -> ModelRollout | None:
        return next((m for m in self.models if m.registered_model == name and m.alias == alias), None)

    # -- webhook: start a canary

    def on_alias(self, name: str, alias: str, version: str) -> str:
        model = self.find(name, alias)
        if model is None:
            return "ignored: no registry-mode model follows this alias"
        with self.lock:
            isvc = self.kube.get(model)
            state = _state(isvc)
            if state.get("version") == version and state.get("phase") in ("canary", "promoted"):
                return f"already {state['phase']}: version {version}"    # MLflow retries; a delivery may repeat
            predictor = isvc["spec"]["predictor"]
            # A canary that is superseded never became the primary: the previous primary stays the fallback.
            if state.get("phase") == "canary":
                previous_uri, previous_version = state.get("previous-uri", ""), state.get("previous-version", "")
            else:
                previous_uri, previous_version = predictor["model"]["storageUri"], state.get("version", "")
            uri = self.mlflow.download_uri(name, version)
            self.kube.patch(model, {
                "metadata": {"annotations": _annotations(
                    version=version, phase="canary", started=str(int(self.clock())), previous_uri=previous_uri,
                    previous_version=previous_version, reason="")},
                "spec": {"predictor": {"canaryTrafficPercent": model.canary_percent, "model": {"storageUri": uri}}},
            })
            self.mlflow.tag(name, version, {"rollout.canaryPercent": str(model.canary_percent),
                                            "rollout.status": "canary"})
            self.kube.event(model, "CanaryStarted", f"{name} v{version} ({uri}) takes {model.canary_percent}% "
                                                    f"of traffic for {model.window_seconds}s")
            self.metrics.count(model, "started")
            return f"canary: version {version} at {model.canary_percent}%"

    # -- analysis loop: decide every canary whose state the cluster holds

    def reconcile(self) -> None:
        for model in self.models:
            try:
                with self.lock:
                    self._reconcile(model)
            except Exception as e:       # one model's failure (API down, bad data) must not stop the others
                log.warning("%s/%s: %s", model.namespace, model.inference_service, e)

    def _reconcile(self, model: ModelRollout) -> None:
        isvc = self.kube.get(model)
        state = _state(isvc)
        if state.get("phase") == "canary":
            self._analyse(model, isvc, state)
            state = _state(self.kube.get(model))
        if state.get("version"):
            self._export(model, state)

    def _analyse(self, model: ModelRollout, isvc: dict[str, Any], state: dict[str, str]) -> None:
        revision = _canary_revision(isvc)
        if revision is None:
            log.info("%s: canary revision not ready yet", model.inference_service)
            return
        window = f"{model.window_seconds}s"
        selector = (f'namespace="{model.namespace}",inferenceservice="{model.inference_service}",'
                    f'revision="{revision}"')
        requests = self.prometheus.scalar(f"sum(increase({REQUESTS}_count{{{selector}}}[{window}]))")
        errors = self.prometheus.scalar(
            f'sum(increase({REQUESTS}_count{{{selector},http_response_status_code=~"5.."}}[{window}]))') or 0.0
        p99 = self.prometheus.scalar(
            f"histogram_quantile(0.99, sum by (le) (rate({REQUESTS}_bucket{{{selector}}}[{window}])))")
        if requests is None or requests < model.min_requests:
            log.info("%s: %s requests on the canary so far; waiting", model.inference_service, requests)
            return
        error_rate = errors / requests
        latency_ms = None if p99 is None else p99 * 1000
        if error_rate > model.max_error_rate:
            return self._rollback(model, state, f"error rate {error_rate:.2%} > {model.max_error_rate:.2%}")
        if latency_ms is not None and latency_ms > model.max_latency_p99_ms:
            return self._rollback(model, state, f"p99 latency {latency_ms:.0f} ms > {model.max_latency_p99_ms:.0f} ms")
        if self.clock() - int(state.get("started", "0")) >= model.window_seconds:
            self._promote(model, state, f"error rate {error_rate:.2%}, p99 "
                                        f"{'n/a' if latency_ms is None else f'{latency_ms:.0f} ms'} over {window}")

    def _promote(self, model: ModelRollout, state: dict[str, str], why: str) -> None:
        self.kube.patch(model, {
            "metadata": {"annotations": _annotations(phase="promoted", since=str(int(self.clock())), reason=why)},
            "spec": {"predictor": {"canaryTrafficPercent": None}},       # null removes it: 100% to the new version
        })
        self.mlflow.tag(model.registered_model, state["version"],
                        {"rollout.reason": why, "rollout.status": "promoted"})
        self.kube.event(model, "CanaryPromoted", f"v{state['version']} promoted: {why}")
        self.metrics.count(model, "promoted")

    def _rollback(self, model: ModelRollout, state: dict[str, str], why: str) -> None:
        previous = state.get("previous-version", "")
        self.kube.patch(model, {
            "metadata": {"annotations": _annotations(phase="rolled-back", version=previous, rolled_back=state["version"],
                                                     since=str(int(self.clock())), reason=why)},
            "spec": {"predictor": {"canaryTrafficPercent": None,
                                   "model": {"storageUri": state["previous-uri"]}}},
        })
        self.mlflow.tag(model.registered_model, state["version"], {"rollout.reason": why,
                                                                   "rollout.status": "rolled-back"})
        self.kube.event(model, "CanaryRolledBack", f"v{state['version']} rolled back: {why}", warning=True)
        self.metrics.count(model, "rolled-back")

    def _export(self, model: ModelRollout, state: dict[str, str]) -> None:
        """The deployed version, since when, and its registry metrics (the run's logged metrics, e.g. accuracy)."""
        if state.get("phase") == "canary":
            return
        version = state["version"]
        run_id = self.mlflow.version(model.registered_model, version).get("run_id")
        metrics = self.mlflow.run_metrics(run_id) if run_id else {}
        with self.metrics.lock:
            self.metrics.deployed[(model.namespace, model.inference_service)] = {
                "model": model.registered_model, "version": version, "since": int(state.get("since", "0")),
                "metrics": metrics}


def _state(isvc: dict[str, Any]) -> dict[str, str]:
    annotations = isvc.get("metadata", {}).get("annotations") or {}
    return {k[len(ANNOTATION):]: v for k, v in annotations.items() if k.startswith(ANNOTATION)}


def _annotations(**values: str) -> dict[str, str]:
    return {ANNOTATION + k.replace("_", "-"): v for k, v in values.items()}


def _canary_revision(isvc: dict[str, Any]) -> str | None:
    """The revision KServe sends the canary share to: the traffic target marked `latestRevision`, once the spec
    that carries the canary is the one KServe has observed (else the status still describes the previous spec)."""
    status = isvc.get("status") or {}
    if status.get("observedGeneration") != isvc.get("metadata", {}).get("generation"):
        return None
    traffic = (status.get("components") or {}).get("predictor", {}).get("traffic") or []
    return next((t["revisionName"] for t in traffic if t.get("latestRevision") and t.get("percent")), None)


# ---- HTTP server


def handler(rollouts: Rollouts, secret: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code: int, text: str, content_type: str = "text/plain") -> None:
            body = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/metrics":
                return self._reply(200, rollouts.metrics.render(), "text/plain; version=0.0.4")
            self._reply(200 if self.path == "/healthz" else 404, "ok" if self.path == "/healthz" else "not found")

        def do_POST(self) -> None:
            if self.path != "/webhook":
                return self._reply(404, "not found")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            refused = verify(secret, self.headers, body, time.time())
            if refused:
                log.warning("refused delivery: %s", refused)
                return self._reply(401, refused)
            event = json.loads(body)
            if (event.get("entity"), event.get("action")) != ("model_version_alias", "created"):
                return self._reply(200, "ignored: not an alias creation")
            data = event.get("data") or {}
            try:
                outcome = rollouts.on_alias(str(data["name"]), str(data["alias"]), str(data["version"]))
            except (KeyError, urllib.error.URLError, RuntimeError) as e:
                log.warning("delivery failed: %s", e)
                return self._reply(502, f"failed: {e}")          # MLflow retries the delivery
            log.info("%s@%s -> %s", data["name"], data["alias"], outcome)
            self._reply(200, outcome)

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug(fmt, *args)

    return Handler


def from_environment() -> tuple[Rollouts, str, int, int]:
    env = os.environ
    models = [ModelRollout.from_json(m) for m in json.load(open(env["ROLLOUT_CONFIG"]))["models"]]
    api = env.get("KUBE_API_URL", "https://kubernetes.default.svc")
    token = open(env.get("KUBE_TOKEN_FILE", "/var/run/secrets/kubernetes.io/serviceaccount/token")).read().strip()
    ca = env.get("KUBE_CA_FILE", "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
    context = ssl.create_default_context(cafile=ca) if api.startswith("https") else None
    mlflow_headers = {}
    if env.get("MLFLOW_TRACKING_USERNAME"):
        basic = f"{env['MLFLOW_TRACKING_USERNAME']}:{env.get('MLFLOW_TRACKING_PASSWORD', '')}"
        mlflow_headers["Authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
    rollouts = Rollouts(models, Mlflow(Http(env["MLFLOW_TRACKING_URI"], mlflow_headers)),
                        Kubernetes(Http(api, {"Authorization": f"Bearer {token}"}, context)),
                        Prometheus(Http(env["PROMETHEUS_URL"])))
    return rollouts, env["WEBHOOK_SECRET"], int(env.get("PORT", "8080")), int(env.get("RECONCILE_SECONDS", "30"))


def serve(rollouts: Rollouts, secret: str, port: int, every: int, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    server = ThreadingHTTPServer(("0.0.0.0", port), handler(rollouts, secret))
    threading.Thread(target=server.serve_forever, daemon=True).start()

    rollouts.reconcile()                 # resume: any canary the cluster holds is analysed from its annotations
    while not stop.wait(every):
        rollouts.reconcile()
    server.shutdown()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    rollouts, secret, port, every = from_environment()
    serve(rollouts, secret, port, every)

"""Small in-process stand-ins for the HTTP APIs a platform service talks to, for integration tests that run the
service itself as a real process: a Kubernetes API holding objects (GET, JSON merge PATCH, POST of Events) and a
Prometheus HTTP API answering instant queries from a scenario the test sets.

They speak the real wire formats (paths, `application/merge-patch+json`, Prometheus' `{"status", "data":
{"resultType": "vector", "result": [...]}}`) and record every request, so a test asserts what the service did.
"""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the API server applies `application/merge-patch+json`."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class FakeServer:
    """A loopback HTTP server running `route(method, path, body) -> (status, json)` in a thread."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self, method: str) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else None
                with owner.lock:
                    owner.requests.append((method, self.path, body))
                    status, reply = owner.route(method, self.path, body, dict(self.headers))
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def route(self, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        raise NotImplementedError

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeKubernetes(FakeServer):
    """Objects by API path; PATCH applies a merge patch and bumps `metadata.generation` when the spec changes;
    `on_patch(obj)` lets a test play the controller (e.g. KServe writing the status for the new generation)."""

    def __init__(self, token: str, on_patch: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.token, self.on_patch = token, on_patch
        super().__init__()

    def route(self, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"kind": "Status", "code": 401, "reason": "Unauthorized"}
        if method == "POST" and path.endswith("/events"):
            self.events.append(body)
            return 201, body
        if path not in self.objects:
            return 404, {"kind": "Status", "code": 404, "reason": "NotFound"}
        if method == "PATCH":
            obj = self.objects[path]
            patched = merge_patch(obj, body)
            if patched.get("spec") != obj.get("spec"):
                patched["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
            self.objects[path] = patched
            if self.on_patch:
                self.on_patch(patched)
        return 200, self.objects[path]

    def patches(self) -> list[Any]:
        return [body for method, _, body in self.requests if method == "PATCH"]


Series = list[tuple[dict[str, str], float]]       # an instant vector: (labels, value) per series


class FakePrometheus(FakeServer):
    """Answers `/api/v1/query` from `answer(query) -> float | series | None` (a float: one unlabelled sample; a list of
    (labels, value): those series; None: an empty vector, i.e. no data); `failing = True` makes every query an HTTP
    503, as a Prometheus that is down behind its Service."""

    def __init__(self, answer: Callable[[str], float | Series | None]) -> None:
        self.answer, self.failing = answer, False
        super().__init__()

    def route(self, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        from urllib.parse import parse_qs, urlparse

        if self.failing:
            return 503, {"status": "error", "errorType": "unavailable", "error": "prometheus is down"}
        url = urlparse(path)
        if url.path != "/api/v1/query":
            return 404, {"status": "error", "error": "not found"}
        value = self.answer(parse_qs(url.query)["query"][0])
        series = [] if value is None else value if isinstance(value, list) else [({}, value)]
        result = [{"metric": labels, "value": [0, repr(float(v))]} for labels, v in series]
        return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}

    def queries(self) -> list[str]:
        from urllib.parse import parse_qs, urlparse

        return [parse_qs(urlparse(p).query)["query"][0] for m, p, _ in self.requests if "/api/v1/query" in p]

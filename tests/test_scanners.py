"""Checkov (pinned in requirements-checkov.txt, `make checkov`) on what each stack puts in the cluster: the rendered
manifests (as `preview render` writes build/<stack>/manifests.yaml) and the pod templates the platform ships for
teams (the training job defaults, the example PyTorchJob's replicas with the operator's worker init container),
each wrapped as the Pod it becomes. Every finding must be in tests/checkov-skips.yaml, with its reason."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.training import INIT_TEMPLATE_CONFIGMAP, INIT_TEMPLATE_FILE, NAMESPACE
from preview import render
from tests import upstream
from tests.conftest import PROJECT_DIR, Rendered

SKIPS_FILE = Path(__file__).with_name("checkov-skips.yaml")
EXAMPLE = PROJECT_DIR / "examples" / "pytorchjob.yaml"
# checkov's checks of what Pod Security `restricted` asks: privilege escalation, root, capabilities (all, NET_RAW,
# added), seccomp, privileged, host namespaces.
POD_SECURITY = {"CKV_K8S_20", "CKV_K8S_23", "CKV_K8S_37", "CKV_K8S_28", "CKV_K8S_39", "CKV_K8S_31", "CKV_K8S_16",
                "CKV_K8S_17", "CKV_K8S_18", "CKV_K8S_19"}
TEAM_IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/mlops-dev/team:train-3f2a9c1"


def checkov() -> str:
    return upstream.tool("checkov", "run `make checkov` (a venv of its own, requirements-checkov.txt)")


def pinned_version() -> str:
    text = (PROJECT_DIR / "requirements-checkov.txt").read_text()
    return re.search(r"^checkov==(\S+)$", text, re.M).group(1)


def skips() -> list[dict[str, Any]]:
    return yaml.safe_load(SKIPS_FILE.read_text())


def pod(name: str, namespace: str, template: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {**template.get("metadata", {}), "name": name, "namespace": namespace},
            "spec": template["spec"]}


def shipped_templates(r: Rendered) -> list[dict[str, Any]]:
    """The pod templates the platform hands to teams, as the Pods they become."""
    pods = []
    for cm in r.objects("ConfigMap"):
        if cm["metadata"]["name"] == "training-job-defaults":
            # The defaults leave the image to the team ("<your image>"): one from its ECR repository, as admitted.
            template = yaml.safe_load(cm["data"]["podTemplate.yaml"].replace("<your image>", TEAM_IMAGE))
            pods.append(pod("training-job-defaults", cm["metadata"]["namespace"], template))
    init = yaml.safe_load(r.obj("ConfigMap", INIT_TEMPLATE_CONFIGMAP, NAMESPACE)["data"][INIT_TEMPLATE_FILE]
                          .replace("{{.InitContainerImage}}", "public.ecr.aws/docker/library/alpine:3.22")
                          .replace("{{.MaxTries}}", "100").replace("{{.MasterAddr}}", "fraud-train-master-0"))
    example = yaml.safe_load(EXAMPLE.read_text())
    for role, replica in example["spec"]["pytorchReplicaSpecs"].items():
        template = json.loads(json.dumps(replica["template"]))
        if role == "Worker":          # the operator adds its init container to workers
            template["spec"]["initContainers"] = init
        pods.append(pod(f"example-{role.lower()}", example["metadata"]["namespace"], template))
    return pods


def scan(directory: Path, parts: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """checkov over `directory`, its findings and summary per sub-folder in `parts`."""
    result = subprocess.run([checkov(), "-d", str(directory), "--framework", "kubernetes", "-o", "json",
                             "--compact", "--skip-download"], capture_output=True, text=True, timeout=1200)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]

    def part(path: str) -> str:
        """checkov names files relative to the scanned folder (`/dev/manifests.yaml`), parsing errors in full."""
        full = Path(path) if Path(path).is_relative_to(directory) else directory / path.lstrip("/")
        return full.relative_to(directory).parts[0]

    results = [r.get("results", {}) for r in reports]
    failed = [f for r in results for f in r.get("failed_checks", [])]
    checked = [c for r in results for kind in ("passed_checks", "failed_checks") for c in r.get(kind, [])]
    errors = [e for r in results for e in r.get("parsing_errors", [])]
    assert {part(c["file_path"]) for c in checked} | {part(e) for e in errors} <= set(parts)
    # checkov's summary sums the whole folder: per part, what it checked there and what it could not parse.
    return {p: {"failed": [(f["check_id"], f["resource"]) for f in failed if part(f["file_path"]) == p],
                "summary": {"parsing_errors": len([e for e in errors if part(e) == p]),
                            "resource_count": len({c["resource"] for c in checked if part(c["file_path"]) == p})}}
            for p in parts}


def broken_template(r: Rendered) -> dict[str, Any]:
    """Mutation: the example worker without its securityContexts (checkov must report it, so the scan can fail)."""
    (broken,) = [p for p in shipped_templates(r) if p["metadata"]["name"] == "example-worker"]
    broken["spec"].pop("securityContext")
    for c in broken["spec"]["containers"] + broken["spec"]["initContainers"]:
        c.pop("securityContext")
    return broken


@pytest.fixture(scope="module")
def reports(request, tmp_path_factory) -> dict[str, dict[str, Any]]:
    """One checkov run over dev, prod and the mutation, each in a folder of its own: checkov's start (~5 s of imports)
    is most of a scan, so the three are split by folder afterwards instead of run three times."""
    out = tmp_path_factory.mktemp("checkov")
    for stack in ("dev", "prod"):
        r = request.getfixturevalue(stack)
        (out / stack).mkdir()
        (out / stack / "manifests.yaml").write_text(yaml.safe_dump_all(render.manifests(r.run), sort_keys=False))
        (out / stack / "templates.yaml").write_text(yaml.safe_dump_all(shipped_templates(r), sort_keys=False))
    (out / "broken").mkdir()
    (out / "broken" / "broken.yaml").write_text(yaml.safe_dump(broken_template(request.getfixturevalue("dev"))))
    return scan(out, ("dev", "prod", "broken"))


@pytest.fixture(scope="module")
def scans(reports) -> dict[str, dict[str, Any]]:
    return {stack: reports[stack] for stack in ("dev", "prod")}


def skipped(check: str, resource: str) -> bool:
    return any(s["check"] == check and any(fnmatch.fnmatchcase(resource, p) for p in s["resources"])
               for s in skips())


def test_checkov_is_the_pinned_version():
    """The installed distribution's version, asked of the Python that runs checkov (its script's `#!`): the same
    answer as `checkov --version` without its ~5 s of imports."""
    interpreter = Path(checkov()).read_text(errors="replace").splitlines()[0].removeprefix("#!").split()
    version = subprocess.run([*interpreter, "-c", "import importlib.metadata as m; print(m.version('checkov'))"],
                             capture_output=True, text=True, timeout=300, check=True).stdout.strip()
    assert version == pinned_version()


def test_every_skip_says_why():
    for s in skips():
        assert set(s) == {"check", "resources", "reason"}, s
        assert re.fullmatch(r"CKV2?_K8S_\d+", s["check"]) and s["resources"], s
        assert len(s["reason"].split()) >= 12, f"{s['check']}: give the reason, not a label"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_no_checkov_finding_outside_the_reasoned_skip_list(scans, stack):
    result = scans[stack]
    assert result["summary"]["parsing_errors"] == 0
    assert result["summary"]["resource_count"] > 50          # it did read the manifests and the templates
    unexpected = sorted({f for f in result["failed"] if not skipped(*f)})
    assert unexpected == [], f"checkov findings without a skip in {SKIPS_FILE.name}: {unexpected}"


def test_no_skip_outlives_its_finding(scans):
    found = {f for result in scans.values() for f in result["failed"]}
    for s in skips():
        for pattern in s["resources"]:
            assert any(check == s["check"] and fnmatch.fnmatchcase(resource, pattern) for check, resource in found), \
                f"{s['check']} {pattern}: no longer found in any stack; remove it from {SKIPS_FILE.name}"


def test_the_shipped_templates_pass_the_pod_security_checks(scans):
    """The restricted settings (issue 18, item 6) as checkov judges them: root, privilege escalation, capabilities,
    seccomp, on every shipped template (Pods named in shipped_templates)."""
    for result in scans.values():
        template_findings = [f for f in result["failed"] if f[1].startswith("Pod.") and f[0] in POD_SECURITY]
        assert template_findings == []


def test_checkov_catches_a_root_escalating_template(reports):
    """Mutation: the example worker without its securityContexts is reported (so the scan can fail)."""
    checks = {check for check, _ in reports["broken"]["failed"]}
    assert {"CKV_K8S_20", "CKV_K8S_23", "CKV_K8S_37", "CKV_K8S_31"} <= checks, checks

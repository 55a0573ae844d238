"""Stack-config mistakes engineers make, each ending in `error: <file>: <key path as written>: ...`, never a traceback:
YAML syntax, documents that are not mappings, VPC CIDRs AWS refuses, unsupported Kubernetes versions, an open prod
endpoint, plain-text secrets in prod, `secure:` values where no secret belongs, reserved team names, package indexes
covering the cluster's own addresses. Configs are built here, not read from the shipped stacks."""

from __future__ import annotations

import copy
import datetime
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from components import catalog
from components.config.cluster import version_problems
from components.config.loading import ConfigError, parse_config, read_stack_file
from components.config.secrets import SECRET_SETTINGS
from tests import fuzz_config
from tests.conftest import PROJECT_DIR

PROD: dict[str, Any] = {
    "environment": "prod", "protectData": True,
    "network": {"vpcCidr": "10.40.0.0/16", "azCount": 3, "natGateways": "perAz"},
    "cluster": {"kubernetesVersion": "1.34", "endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.0/24"]},
    "teams": [{"name": "fraud", "gpuQuota": 0, "packageIndex": {"cidrs": ["151.101.0.0/16"]}}],
    "notebooks": {"auth": {"type": "oidc", "clientId": "hub", "clientSecret": "s3cr3t",
                           "callbackUrl": "https://hub.example/hub/oauth_callback",
                           "authorizeUrl": "https://id.example/authorize", "tokenUrl": "https://id.example/token",
                           "userdataUrl": "https://id.example/userinfo"}},
    "observability": {"alertmanager": {"platformReceiver": {"emailTo": ["oncall@acme.example"]},
                                       "smtp": {"smarthost": "smtp.acme.example:587", "from": "alerts@acme.example"}}},
}
SECRET = ["notebooks.auth.clientSecret"]


def problems(change: Callable[[dict], Any] = lambda c: None, secret_paths=tuple(SECRET), base=PROD) -> list[str]:
    config = copy.deepcopy(base)
    change(config)
    try:
        parse_config(config, secret_paths)
    except ConfigError as exc:
        return exc.problems
    return []


def test_the_fixture_is_valid():
    assert problems() == []


def stack_file(tmp_path: Path, text: str | bytes, name: str = "Pulumi.t.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def file_errors(path: Path) -> list[str]:
    try:
        found = read_stack_file(path)
        parse_config(found.raw, found.secret_paths)
    except ConfigError as exc:
        return exc.lines(path.name)
    return []


# ---- files that are not a mapping of config keys -----------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("config:\n  mlops-platform:teams: [a,\n", "error: Pulumi.t.yaml:3:1: YAML syntax error"),
    ("config:\n  mlops-platform:environment: dev\n   bad: indent\n", "error: Pulumi.t.yaml:3:7: YAML syntax error"),
    ("config:\n\tmlops-platform:environment: dev\n", "error: Pulumi.t.yaml:2:1: YAML syntax error"),
    ("- mlops-platform:environment: dev\n", "error: Pulumi.t.yaml: (top level): must be a mapping with a `config:` key "
                                           "(got a list)"),
    ("just text\n", "(top level): must be a mapping with a `config:` key (got a string)"),
    ("config:\n  - mlops-platform:environment: dev\n", "error: Pulumi.t.yaml: config: must be a mapping"),
    ("config:\n  mlops-platform:environment: dev\n  mlops-platform:network: [10.0.0.0/16]\n",
     "error: Pulumi.t.yaml: network: must be a mapping of settings (got a list)"),
    ("config:\n  mlops-platform:environment: dev\n  mlops-platform:teams: {name: a}\n",
     "error: Pulumi.t.yaml: teams: must be a list (got a dict)"),
    (b"config:\n  mlops-platform:environment: d\xffev\n", "error: Pulumi.t.yaml: (file): cannot be read as YAML"),
])
def test_unreadable_files_end_in_error_lines(tmp_path, text, expected):
    lines = file_errors(stack_file(tmp_path, text))
    assert lines and all(ln.startswith("error: Pulumi.t.yaml") for ln in lines)
    assert any(ln.startswith(expected) or expected in ln for ln in lines), lines


def test_the_command_prints_only_error_lines_and_renders_nothing(tmp_path):
    path = stack_file(tmp_path, "config:\n  mlops-platform:environment: dev\n  mlops-platform:network:\n"
                                "    vpcCidr: 10.0.0.0/8\n  mlops-platform:cluster: [1.34]\n")
    out = tmp_path / "build"
    result = subprocess.run([sys.executable, "-m", "preview", "render", "t", "--config", str(path), "--out", str(out)],
                            cwd=PROJECT_DIR, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "error: Pulumi.t.yaml: network.vpcCidr: must be between /16 and /28 (what AWS accepts for a VPC) "
        "(got: \"10.0.0.0/8\")",
        "error: Pulumi.t.yaml: cluster: must be a mapping of settings (got a list)",
        "error: Pulumi.t.yaml: the stack config has 2 problems; nothing was declared"] or \
        all(ln.startswith("error: Pulumi.t.yaml: ") for ln in result.stderr.splitlines())
    assert not out.exists()


# ---- key paths as the user wrote them ---------------------------------------------------------------------

@pytest.mark.parametrize("change, expected", [
    (lambda c: c.setdefault("gpu", {}).update(nodePools=[{"name": "p", "instanceTypes": ["g5.xlarge"],
                                                            "gpuLimit": 4, "expireAfter": 12}]),
     "gpu.nodePools[0].expireAfter: "),
    (lambda c: c["cluster"].update(systemNodes={"minSize": 3, "desiredSize": 2, "maxSize": 4}),
     "cluster.systemNodes.desiredSize: "),
    (lambda c: c["teams"][0].update(packageIndex={"cidrs": ["151.101.0.0/16"], "proxy": {"cidr": "10.40.0.5/32",
                                                                                        "port": 3128}}),
     "teams[0].packageIndex.cidrs: "),
    (lambda c: c["teams"][0].update(gpuQuota="four"), "teams[0].gpuQuota: must be a whole number"),
    (lambda c: c["network"].update(vpcCidr=10), "network.vpcCidr: "),
    (lambda c: c["cluster"].update(publicAccessCidrs="203.0.113.0/24"), "cluster.publicAccessCidrs: must be a list"),
])
def test_key_paths_are_the_users_not_pydantics(change, expected):
    found = problems(change)
    assert any(p.startswith(expected) for p in found), found
    steps = fuzz_config.PYDANTIC_STEPS
    assert not [p for p in found if any(s in p.split(": ")[0] for s in steps)]


# ---- VPC CIDR ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cidr, expected", [
    ("10.0.0.0/8", "must be between /16 and /28"),
    ("10.40.0.0/15", "must be between /16 and /28"),
    ("10.40.0.0/29", "must be between /16 and /28"),
    ("8.8.0.0/16", "must lie in a private range"),
    ("172.32.0.0/16", "must lie in a private range"),        # just outside 172.16.0.0/12
    ("10.40.0.0/20", "is too small for 3 AZs"),
    ("10.40.0.0/33", "must be a CIDR block"),
    ("10.40.0.1/16", "must be a CIDR block"),                  # host bits set
])
def test_vpc_cidrs_aws_refuses(cidr, expected):
    found = problems(lambda c: c["network"].update(vpcCidr=cidr))
    assert len(found) == 1 and found[0].startswith("network.vpcCidr: ") and expected in found[0], found


@pytest.mark.parametrize("cidr", ["172.16.0.0/16", "192.168.0.0/19", "100.64.0.0/16", "10.0.0.0/18"])
def test_vpc_cidrs_aws_accepts(cidr):
    assert problems(lambda c: c["network"].update(vpcCidr=cidr)) == []


# ---- Kubernetes versions ---------------------------------------------------------------------------------------

def test_the_versions_data_is_consistent():
    versions = catalog.kubernetes_versions()
    assert len(versions) >= 5
    for v in versions.values():
        assert v.released < v.end_of_standard_support < v.end_of_extended_support
        # EKS: 14 months of standard support, then 12 of extended support.
        assert 13 * 30 <= (v.end_of_standard_support - v.released).days <= 15 * 31
        assert 360 <= (v.end_of_extended_support - v.end_of_standard_support).days <= 370


def test_unknown_and_expired_versions_are_refused():
    day = datetime.date(2026, 12, 1)
    assert version_problems("1.34", day) == []
    (unknown,) = version_problems("1.99", day)
    assert str(unknown).startswith("cluster.kubernetesVersion: is not a Kubernetes version EKS supports (supported: ")
    assert "1.29" not in str(unknown) and "1.34" in str(unknown)     # 1.29 left extended support in 2026-03
    (expired,) = version_problems("1.31", datetime.date(2026, 11, 27))
    assert "reached the end of EKS extended support on 2026-11-26" in str(expired)
    assert version_problems("1.31", datetime.date(2026, 11, 26)) == []
    assert any("kubernetesVersion: is not a Kubernetes version" in p
               for p in problems(lambda c: c["cluster"].update(kubernetesVersion="1.20")))


# ---- prod API endpoint --------------------------------------------------------------------------------------

@pytest.mark.parametrize("cluster, expected", [
    ({"publicAccessCidrs": ["0.0.0.0/0"]}, "cluster.publicAccessCidrs[0]: is wider than /16"),
    ({"publicAccessCidrs": ["203.0.113.0/24", "0.0.0.0/1", "128.0.0.0/1"]}, "cluster.publicAccessCidrs[1]: is wider"),
    ({"publicAccessCidrs": ["10.0.0.0/8"]}, "is wider than /16"),
    ({"publicAccessCidrs": []}, "cluster.publicAccessCidrs: must list the networks"),
    ({"publicAccessCidrs": None}, "cluster.publicAccessCidrs: "),     # not a list
])
def test_an_open_prod_endpoint_is_refused(cluster, expected):
    def change(c):
        c["cluster"].update(cluster)
        if cluster.get("publicAccessCidrs", "") is None:
            c["cluster"].pop("publicAccessCidrs")
            c["cluster"]["publicAccessCidrs"] = None
    assert any(p.startswith(expected) or expected in p for p in problems(change)), problems(change)


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_the_api_endpoint_is_private_unless_networks_are_listed(environment):
    def base(c):
        c["environment"] = environment
        for key in ("endpointPublicAccess", "publicAccessCidrs"):
            c["cluster"].pop(key)
    config = copy.deepcopy(PROD)
    base(config)
    cluster = parse_config(config, SECRET).cluster
    assert cluster.endpoint_public_access is False and cluster.public_access_cidrs == []
    assert problems(lambda c: (base(c), c["cluster"].update(endpointPublicAccess=True))) == [
        "cluster.publicAccessCidrs: must list the networks allowed to reach the public API endpoint when "
        "endpointPublicAccess is true (EKS would otherwise open it to 0.0.0.0/0), e.g. [203.0.113.0/24]"]
    assert [p.split(";")[0] for p in problems(lambda c: (base(c), c["cluster"].update(
        publicAccessCidrs=["198.51.100.0/24"])))] == [
        "cluster.publicAccessCidrs: has no effect while endpointPublicAccess is false"]


def test_dev_may_open_its_endpoint_to_the_internet_explicitly():
    dev = lambda c: (c.update(environment="dev"), c["cluster"].update(publicAccessCidrs=["0.0.0.0/0"]))  # noqa: E731
    assert problems(dev) == []


# ---- secrets --------------------------------------------------------------------------------------------------

def test_a_plain_text_secret_is_refused_in_prod_only():
    (found,) = problems(secret_paths=())
    assert found.startswith("notebooks.auth.clientSecret: must be a `secure:` value in prod")
    assert problems(secret_paths=("notebooks",)) == []            # a running program knows top-level keys only
    assert problems(lambda c: c.update(environment="dev"), secret_paths=()) == []


@pytest.mark.parametrize("path", ["network.vpcCidr", "notebooks.auth.clientId", "teams[0].name", "cluster"])
def test_secure_values_only_where_a_secret_belongs(path):
    (found,) = [p for p in problems(secret_paths=(*SECRET, path)) if p.startswith(path + ":")]
    assert "is a `secure:` value, but no secret belongs here" in found


def test_a_secure_value_in_a_file_is_reported_at_its_path(tmp_path):
    doc = {"config": {f"mlops-platform:{k}": v for k, v in copy.deepcopy(PROD).items()}}
    doc["config"]["mlops-platform:notebooks"]["auth"]["clientSecret"] = {"secure": "v1:abc"}
    assert file_errors(stack_file(tmp_path, yaml.safe_dump(doc))) == []
    doc["config"]["mlops-platform:network"]["vpcCidr"] = {"secure": "v1:abc"}
    assert file_errors(stack_file(tmp_path, yaml.safe_dump(doc))) == [
        "error: Pulumi.t.yaml: network.vpcCidr: is a `secure:` value, but no secret belongs here (secrets: "
        f"{', '.join(SECRET_SETTINGS)}); write it in plain text"]


def test_a_secure_webhook_of_any_team_is_in_place_and_prod_refuses_a_plain_one(tmp_path):
    """`teams[*]` settings: a `secure:` value at any team's index is accepted; a plain one in prod is refused."""
    doc = {"config": {f"mlops-platform:{k}": v for k, v in copy.deepcopy(PROD).items()}}
    doc["config"]["mlops-platform:notebooks"]["auth"]["clientSecret"] = {"secure": "v1:abc"}
    doc["config"]["mlops-platform:teams"].append({"name": "risk", "gpuQuota": 0})
    for team in doc["config"]["mlops-platform:teams"]:
        team["alertReceiver"] = {"slackWebhookUrl": {"secure": "v1:def"}}
    assert file_errors(stack_file(tmp_path, yaml.safe_dump(doc))) == []
    doc["config"]["mlops-platform:teams"][1]["alertReceiver"]["slackWebhookUrl"] = "https://hooks.slack.com/services/T/B/x"
    assert file_errors(stack_file(tmp_path, yaml.safe_dump(doc))) == [
        "error: Pulumi.t.yaml: teams[1].alertReceiver.slackWebhookUrl: must be a `secure:` value in prod, not plain "
        "text in the stack file (anyone with the repository could read it): pulumi config set --path --secret "
        "'mlops-platform:teams[1].alertReceiver.slackWebhookUrl' <value>"]


# ---- teams ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["kube-system", "default", "kube-flannel", "mlflow", "jupyterhub", "monitoring",
                                  "gpu-operator", "kubeflow", "kserve"])
def test_reserved_team_names(name):
    found = problems(lambda c: c["teams"][0].update(name=name))
    assert any(p.startswith("teams[0].name: is a namespace Kubernetes or the platform already uses") for p in found)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_platform_namespace_is_reserved(stack, request):
    from components.config.teams import RESERVED_NAMESPACES
    rendered = request.getfixturevalue(stack)
    platform = {m["metadata"]["name"] for m in rendered.objects("Namespace")
                if "mlops.platform/team" not in (m["metadata"].get("labels") or {})}
    assert platform and platform <= set(RESERVED_NAMESPACES)


@pytest.mark.parametrize("index, expected", [
    ({"cidrs": ["10.40.0.0/16"]}, "teams[0].packageIndex.cidrs[0]: covers cluster-internal addresses (10.40.0.0/16)"),
    ({"cidrs": ["10.0.0.0/8"]}, "covers cluster-internal addresses (10.100.0.0/16, 10.40.0.0/16)"),
    ({"cidrs": ["151.101.0.0/16", "10.40.32.0/24"]}, "teams[0].packageIndex.cidrs[1]: covers"),
    ({"cidrs": ["172.16.0.0/12"]}, "(172.20.0.0/16)"),                       # the Service range
    ({"cidrs": ["169.254.169.254/32"]}, "(169.254.0.0/16)"),                 # instance metadata
    ({"proxy": {"cidr": "10.40.0.0/16", "port": 3128}}, "teams[0].packageIndex.proxy.cidr: must be the proxy's"),
    ({"proxy": {"cidr": "10.99.0.10/32", "port": 3128}}, "inside the VPC 10.40.0.0/16"),
])
def test_package_indexes_must_not_cover_the_cluster(index, expected):
    found = problems(lambda c: c["teams"][0].update(packageIndex=index))
    assert any(expected in p for p in found), found


def test_a_proxy_address_in_the_vpc_passes():
    assert problems(lambda c: c["teams"][0].update(packageIndex={"proxy": {"cidr": "10.40.0.10/32", "port": 3128}})) \
        == []


# ---- fuzzing ---------------------------------------------------------------------------------------------------

def test_a_bounded_fuzz_run_has_no_traceback_and_no_malformed_error(tmp_path):
    outcome = fuzz_config.run(200, seed=20261130, workdir=tmp_path)
    assert outcome.failures == []
    assert outcome.rejected >= 150 and outcome.rejected + outcome.accepted == 200


def test_the_fuzzer_sees_a_traceback(tmp_path, monkeypatch):
    """Mutation check: a validator that crashes is reported as a failure, not counted as rejected."""
    def crash(raw, secret_paths=()):
        raise TypeError("boom")
    monkeypatch.setattr(fuzz_config, "parse_config", crash)
    outcome = fuzz_config.run(5, seed=1, workdir=tmp_path)
    assert len(outcome.failures) == 5 - outcome.rejected and "TypeError: boom" in "".join(outcome.failures)

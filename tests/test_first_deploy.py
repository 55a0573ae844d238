"""The first real deploy: CI roles' EKS access, the placeholder secret, GPU vCPU quotas (planning, `preview cost`,
summary, advisory policy, the bootstrap's quota requests). Configs are built from fixtures, not the shipped stacks."""

from __future__ import annotations

import json

import pytest
import yaml

from bootstrap.quotas import platform_needs
from components.config import ConfigError, parse_config
from components.config.secrets import PLACEHOLDER as OFFLINE_SECRET
from components.config.secrets import PLACEHOLDER_PREFIX
from components.planning import quotas
from policies.quotas import quota_problems
from preview import engine, render
from tests.conftest import PROJECT_DIR, Rendered, config_problems, preview_cli, raw_config, run_config, stack_yaml

PREVIEW = "arn:aws:iam::123456789012:role/ci-preview"
DEPLOY = "arn:aws:iam::123456789012:role/ci-deploy"


def with_cluster(config: dict, **cluster) -> dict:
    config = dict(config)
    config["mlops-platform:cluster"] = {**config["mlops-platform:cluster"], **cluster}
    return config


# ---- CI roles: EKS access entries --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def with_ci_roles() -> Rendered:
    return Rendered(run_config(with_cluster(stack_yaml("dev"), ciRoles={"preview": PREVIEW, "deploy": DEPLOY})))


def test_both_ci_roles_get_cluster_admin_access_entries(with_ci_roles):
    for kind, arn in (("preview", PREVIEW), ("deploy", DEPLOY)):
        entry = with_ci_roles.one("aws:eks/accessEntry:AccessEntry", f"cluster-ci-{kind}").inputs
        assert entry["principalArn"] == arn and entry["type"] == "STANDARD"
        assoc = with_ci_roles.one("aws:eks/accessPolicyAssociation:AccessPolicyAssociation", f"cluster-ci-{kind}")
        assert assoc.inputs["policyArn"] == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
        assert assoc.inputs["accessScope"] == {"type": "cluster"}
        # The Kubernetes provider waits for the access, so a first `pulumi up` by the deploy role can use it.
        assert assoc.urn in with_ci_roles.one("pulumi:providers:kubernetes").dependencies


def test_nothing_else_gets_access_and_no_ci_roles_means_no_ci_entries(with_ci_roles):
    config = stack_yaml("dev")
    admins = config["mlops-platform:cluster"]["adminRoleArns"]
    def people(rendered: Rendered) -> list[str]:   # STANDARD entries: roles of people and CI (nodes are EC2_LINUX)
        return sorted(r.inputs["principalArn"] for r in rendered.of_type("aws:eks/accessEntry:AccessEntry")
                      if r.inputs.get("type") == "STANDARD")

    assert people(with_ci_roles) == sorted([*admins, PREVIEW, DEPLOY])
    without = config["mlops-platform:cluster"]
    without.pop("ciRoles", None)
    plain = Rendered(run_config(with_cluster(config, **without)))
    assert people(plain) == sorted(admins)


def test_a_role_listed_twice_is_a_config_error():
    raw = raw_config("dev")
    raw["cluster"] = {**raw["cluster"], "ciRoles": {"preview": raw["cluster"]["adminRoleArns"][0]}}
    (problem,) = config_problems(raw)
    assert problem.startswith("cluster: a role may appear once among adminRoleArns and ciRoles")
    raw["cluster"]["ciRoles"] = {"preview": "arn:aws:iam::123:role/x"}
    assert "cluster.ciRoles.preview: must be an IAM role ARN" in config_problems(raw)[0]


# ---- the placeholder secret ------------------------------------------------------------------------------------------

PLACEHOLDER = f"{PLACEHOLDER_PREFIX} pulumi config set --secret --path 'mlops-platform:notebooks.auth.clientSecret'"


def oidc_auth(secret) -> dict:
    return {"type": "oidc", "clientId": "hub", "clientSecret": secret, "callbackUrl": "https://hub.example/cb",
            "authorizeUrl": "https://idp.example/a", "tokenUrl": "https://idp.example/t",
            "userdataUrl": "https://idp.example/u"}


def test_a_real_preview_meeting_the_placeholder_stops_with_the_command_that_sets_it():
    raw = raw_config("dev")
    raw["notebooks"] = {**raw.get("notebooks", {}), "auth": oidc_auth(PLACEHOLDER)}
    problems = config_problems(raw)
    assert problems == ["notebooks.auth.clientSecret: is the placeholder shipped in the repository, not your secret: "
                        "set it with pulumi config set --secret --path 'mlops-platform:notebooks.auth.clientSecret' "
                        "<value>"]


def test_the_program_under_the_engine_refuses_the_placeholder_but_the_offline_preview_substitutes_it(tmp_path):
    config = stack_yaml("dev")
    config["mlops-platform:notebooks"] = {**config.get("mlops-platform:notebooks", {}), "auth": oidc_auth(PLACEHOLDER)}
    # What a real `pulumi preview` hands the program: the plain value.
    with pytest.raises(ConfigError, match="notebooks.auth.clientSecret: is the placeholder"):
        engine.run_program("test", {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()})
    # What the offline preview does with the same stack file: a secret placeholder, and a render.
    stack = tmp_path / "Pulumi.fixture.yaml"
    stack.write_text(yaml.safe_dump({"config": config}))
    wire, secret_keys = engine.read_stack_config(stack)
    assert json.loads(wire["mlops-platform:notebooks"])["auth"]["clientSecret"] == OFFLINE_SECRET
    assert "mlops-platform:notebooks" in secret_keys
    assert engine._unsecure({"a": [PLACEHOLDER, {"secure": "v1:x"}], "b": "plain"}) == (
        {"a": [OFFLINE_SECRET, OFFLINE_SECRET], "b": "plain"}, True)


def test_every_shipped_stack_file_carries_placeholders_not_ciphertexts():
    """A `secure:` ciphertext made with another key stops the real CLI before the program (no clear error)."""
    def secure_paths(value, path=""):
        if isinstance(value, dict):
            return [path] if set(value) == {"secure"} else [
                p for k, v in value.items() for p in secure_paths(v, f"{path}.{k}")]
        return [p for i, v in enumerate(value) for p in secure_paths(v, f"{path}[{i}]")] if isinstance(value, list) \
            else []
    for path in PROJECT_DIR.glob("Pulumi.*.yaml"):
        assert secure_paths(yaml.safe_load(path.read_text()).get("config") or {}) == [], path.name


# ---- GPU vCPU quotas ------------------------------------------------------------------------------------------------

def test_vcpus_at_the_limit_per_pool_kind():
    node_group = quotas.PoolLimit("ng", ("g5.xlarge", "g5.2xlarge"), ("on-demand",), max_nodes=4)
    assert quotas.needs([node_group]) == [quotas.QuotaNeed("L-DB2E81BA", "Running On-Demand G and VT instances",
                                                           "G and VT", "on-demand", 32, ("ng",))]
    # 9 GPUs of 8-GPU instances: two instances; spot and on-demand each need the whole pool.
    pool = quotas.PoolLimit("train", ("p4d.24xlarge",), ("spot", "on-demand"), max_gpus=9)
    assert [(q.code, q.vcpus) for q in quotas.needs([pool])] == [("L-417A185B", 192), ("L-7212CCBC", 192)]
    # Worst case over the pool's types (8 x g6.2xlarge = 64 vCPUs beats 8 x g6.xlarge = 32), capped by its cpu limit.
    shared = quotas.PoolLimit("inf", ("g6.xlarge", "g6.2xlarge"), ("on-demand",), max_gpus=8)
    assert quotas.needs([shared])[0].vcpus == 64
    assert quotas.needs([shared._replace(cpu_limit=40)])[0].vcpus == 40
    # Pools add up; a pool mixing families counts each family's worst case in its own quota.
    mixed = quotas.PoolLimit("mixed", ("g5.xlarge", "p4d.24xlarge"), ("on-demand",), max_gpus=8)
    assert [(q.code, q.vcpus, q.pools) for q in quotas.needs([node_group, mixed])] == [
        ("L-DB2E81BA", 32 + 32, ("ng", "mixed")), ("L-417A185B", 96, ("mixed",))]


@pytest.mark.parametrize("instance_type,family", [("g4dn.xlarge", "G and VT"), ("g6e.12xlarge", "G and VT"),
                                                  ("vt1.3xlarge", "G and VT"), ("p5e.48xlarge", "P"),
                                                  ("m6i.large", None), ("gr6.4xlarge", None), ("inf2.xlarge", None)])
def test_quota_family_of_an_instance_type(instance_type, family):
    found = quotas.family_of(instance_type)
    assert (found["family"] if found else None) == family


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_config_and_the_plan_give_the_same_quotas(stack, request):
    rendered = request.getfixturevalue(stack)
    declared = render.quota_needs(rendered.run)
    from_config = quotas.needs(quotas.from_config(parse_config(raw_config(stack))))
    assert [(q.code, q.capacity_type, q.vcpus) for q in declared] == \
        [(q.code, q.capacity_type, q.vcpus) for q in from_config]
    assert declared, "the shipped stacks have GPU pools"


def test_preview_cost_and_the_summary_show_each_quota(prod, tmp_path, monkeypatch, capsys):
    needs = render.quota_needs(prod.run)
    code, stdout = preview_cli(["cost", "prod"], prod.run, monkeypatch, capsys)
    assert code == 0
    render.write(prod.run, tmp_path, [])
    summary = (tmp_path / "summary.md").read_text()
    for q in needs:
        assert f"| {q.name} | `{q.code}` | {q.capacity_type} | {q.vcpus} |" in stdout
        assert f"- `{q.code}` {q.name}: {q.vcpus} vCPUs" in summary


def test_the_advisory_policy_reports_unknown_or_short_quotas(prod):
    resources = [(r.type, r.inputs) for r in prod.resources if r.custom]
    needs = render.quota_needs(prod.run)
    assert len(quota_problems(resources, {})) == len(needs)
    enough = {q.code: q.vcpus for q in needs}
    assert quota_problems(resources, enough) == []
    short = {**enough, needs[0].code: needs[0].vcpus - 1}
    (problem,) = quota_problems(resources, short)
    assert f"need {needs[0].vcpus} vCPUs of EC2 quota {needs[0].code}" in problem and "above the account's" in problem


def test_raising_a_gpu_limit_raises_the_quota_the_policy_wants(prod):
    raw = raw_config("prod")
    pools = raw["gpu"]["nodePools"]
    before = quotas.needs(quotas.from_config(parse_config(raw)))
    raw["gpu"] = {**raw["gpu"], "nodePools": [{**pools[0], "gpuLimit": pools[0]["gpuLimit"] * 2}, *pools[1:]]}
    raw["gpu"]["nodePools"][0].pop("cpuLimit", None)
    after = quotas.needs(quotas.from_config(parse_config(raw)))
    assert sum(q.vcpus for q in after) > sum(q.vcpus for q in before)


# ---- the bootstrap's quota requests ---------------------------------------------------------------------------------

def write_stack(directory, name: str, region: str) -> None:
    config = stack_yaml("prod")
    config["aws:region"] = region
    (directory / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": config}))


def test_the_bootstrap_requests_what_the_platform_stacks_need_summed(tmp_path):
    write_stack(tmp_path, "a", "eu-west-1")
    write_stack(tmp_path, "b", "eu-west-1")
    one = platform_needs(["a"], "eu-west-1", tmp_path)
    both = platform_needs(["a", "b"], "eu-west-1", tmp_path)
    assert one == quotas.needs(quotas.from_config(parse_config(raw_config("prod"))))
    assert [q.vcpus for q in both] == [2 * q.vcpus for q in one]


def test_the_bootstrap_refuses_a_stack_of_another_region_or_a_missing_one(tmp_path):
    write_stack(tmp_path, "a", "us-west-2")
    with pytest.raises(ConfigError) as info:
        platform_needs(["a", "missing"], "eu-west-1", tmp_path)
    assert info.value.problems == [
        "gpuQuotas.platformStacks: stack 'a' deploys to us-west-2, not this bootstrap's region eu-west-1 (quotas are "
        "per region)", "gpuQuotas.platformStacks: no platform stack 'missing' (Pulumi.missing.yaml does not exist)"]


def test_the_bootstrap_declares_one_quota_request_per_need():
    boot = Rendered(engine.run_stack("main", PROJECT_DIR / "bootstrap"))
    requested = {r.inputs["quotaCode"]: r.inputs["value"]
                 for r in boot.of_type("aws:servicequotas/serviceQuota:ServiceQuota")}
    stacks = yaml.safe_load((PROJECT_DIR / "bootstrap" / "Pulumi.main.yaml").read_text())["config"][
        "mlops-bootstrap:gpuQuotas"]["platformStacks"]
    region = yaml.safe_load((PROJECT_DIR / "bootstrap" / "Pulumi.main.yaml").read_text())["config"]["aws:region"]
    assert requested == {q.code: q.vcpus for q in platform_needs(stacks, region)}
    assert all(r.inputs["serviceCode"] == "ec2" for r in boot.of_type("aws:servicequotas/serviceQuota:ServiceQuota"))

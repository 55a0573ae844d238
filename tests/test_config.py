"""The stack config: every problem reported at once, with the key path the user wrote."""

from __future__ import annotations

import subprocess
import sys

import pytest

from components.config import PlatformConfig, parse_config
from tests.conftest import (PROJECT_DIR, assert_config_problem,
                            fixture_stack_file, raw_config as raw, config_problems as problems)

PREFIX = "mlops-platform:"



@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_fixture_stacks_validate(stack):
    """(Every shipped stack file: tests/test_shipped_stacks.py.)"""
    assert isinstance(parse_config(raw(stack)), PlatformConfig)


def test_dev_and_prod_differ_like_real_stacks():
    dev, prod = parse_config(raw("dev")), parse_config(raw("prod"))
    assert (dev.network.nat_gateways, prod.network.nat_gateways) == ("single", "perAz")
    assert dev.network.az_count == 2 and prod.network.az_count >= 3
    assert (dev.cluster.system_nodes.capacity_type, prod.cluster.system_nodes.capacity_type) == ("SPOT", "ON_DEMAND")
    assert not dev.protect_data and prod.protect_data
    assert all(g.min_size == 0 and g.desired_size == 0 for g in dev.cluster.gpu_node_groups)



def test_three_mistakes_are_all_reported_with_their_key_paths():
    config = raw("dev")
    config["teams"][1]["gpuQuota"] = -2
    config["network"]["natGateways"] = "one"
    config["cluster"]["gpuNodeGroups"][0]["instanceTypes"] = ["g4dn.huge"]
    found = problems(config)
    assert len(found) == 3
    assert found[0].startswith("network.natGateways: must be one of 'single' or 'perAz'")
    assert found[1].startswith("cluster.gpuNodeGroups[0].instanceTypes[0]: is not a GPU instance type")
    assert found[2] == "teams[1].gpuQuota: must be a non-negative integer (got: -2)"


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c["teams"][0].pop("gpuQuota"), "teams[0].gpuQuota: is required"),
    (lambda c: c["teams"][0].update(name="Fraud_Team"), "teams[0].name: must be a lower-case DNS label"),
    (lambda c: c["teams"][0].update(gpuQuta=3), "teams[0].gpuQuta: is not a known setting; did you mean 'gpuQuota'?"),
    (lambda c: c["teams"][1].update(name=c["teams"][0]["name"]), "teams[1].name: must be unique"),
    (lambda c: c["teams"][0]["models"][0].pop("location"), "teams[0].models[0].location: is required"),
    (lambda c: c["teams"][0]["models"][0].update(location="https://bucket/model"),
     "teams[0].models[0].location: must be an S3 location"),
    (lambda c: c["cluster"]["gpuNodeGroups"][0].update(instanceTypes=["g4dn.xlarge", "p5.48xlarge"]),
     "cluster.gpuNodeGroups[0].instanceTypes: instanceTypes mix GPU types"),
    (lambda c: c["cluster"].update(adminRoleArns=["admins"]), "cluster.adminRoleArns[0]: must be an IAM role ARN"),
    (lambda c: c["network"].update(vpcCidr="10.0.0.1/16"), "network.vpcCidr: must be a CIDR block"),
    (lambda c: c.update(environment="staging"), "environment: must be one of 'dev' or 'prod'"),
    (lambda c: c.update(nodes=3), "nodes: is not a known setting"),
])
def test_each_rule_names_its_key(mutate, expected):
    config = raw("dev")
    mutate(config)
    assert_config_problem(config, expected)


@pytest.mark.parametrize("key, value, expected", [
    ("network", {"azCount": 2, "natGateways": "perAz"}, "network.azCount: must be at least 3 in prod"),
    ("network", {"azCount": 3, "natGateways": "single"}, "network.natGateways: must be 'perAz' in prod"),
    ("protectData", False, "protectData: must be true in prod"),
])
def test_prod_guard_rails(key, value, expected):
    config = raw("prod")
    config[key] = value
    assert_config_problem(config, expected)


def test_prod_refuses_spot_system_nodes():
    config = raw("prod")
    config["cluster"]["systemNodes"]["capacityType"] = "SPOT"
    assert_config_problem(config, "cluster.systemNodes.capacityType: must be 'ON_DEMAND' in prod")


def test_invalid_stack_fails_the_preview_with_every_problem_and_no_traceback(tmp_path):
    text = fixture_stack_file("dev").read_text()
    broken = text.replace("gpuQuota: 4", "gpuQuota: -4").replace("natGateways: single", "natGateways: many") \
        .replace("azCount: 2", "azCount: 9")
    assert broken.count("-4") == 1
    stack_file = tmp_path / "Pulumi.broken.yaml"
    stack_file.write_text(broken)
    out = tmp_path / "build"
    result = subprocess.run([sys.executable, "-m", "preview", "render", "broken", "--config", str(stack_file),
                             "--out", str(out)], cwd=PROJECT_DIR, capture_output=True, text=True)
    assert result.returncode == 2
    assert "3 problems" in result.stderr
    for path in ("network.azCount", "network.natGateways", "teams[0].gpuQuota"):
        assert path in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (out / "plan.json").exists()

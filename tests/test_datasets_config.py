"""Datasets config: FSx for Lustre's real rules (capacity steps, throughput tiers, backups, subnets), each error at
its key path, and the FSx figures read from components/data/fsx.yaml with their sources."""

from __future__ import annotations

import pytest
import yaml

from components import catalog
from components.config import parse_config
from tests.conftest import PROJECT_DIR, assert_config_problem, raw_config as raw, config_problems as problems

# ---------------------------------------------------------------------------------------------------
# Config: FSx's real rules, each error at its key path


def with_dataset(stack: str = "dev", **fields) -> dict:
    config = raw(stack)
    config["datasets"] = [{"name": "ds", "location": "s3://acme-data/ds", "sizeGiB": 1200, **fields}]
    return config


@pytest.mark.parametrize("deployment_type, size, ok", [
    ("SCRATCH_2", 1000, False),
    ("SCRATCH_2", 1200, True),
    ("SCRATCH_2", 2400, True),
    ("SCRATCH_2", 3600, False),
    ("PERSISTENT_2", 600, False),
    ("PERSISTENT_2", 1200, True),
    ("PERSISTENT_2", 3600, False),
    ("PERSISTENT_2", 4800, True),
    ("PERSISTENT_2", 2400 * 40, True),
])
def test_storage_capacity_follows_fsx_steps(deployment_type, size, ok):
    config = with_dataset(deploymentType=deployment_type, sizeGiB=size)
    if ok:
        assert parse_config(config).datasets[0].size_gib == size
    else:
        [problem] = problems(config)
        assert problem.startswith(f"datasets[0].sizeGiB: FSx for Lustre {deployment_type} takes 1200 GiB or a "
                                  "multiple of 2400 GiB; use ")
        assert problem.endswith(f"(got: {size})")


def test_capacity_error_names_the_nearest_valid_sizes():
    [p] = problems(with_dataset(deploymentType="PERSISTENT_2", sizeGiB=3600))
    assert p.endswith("use 2400 or 4800 (got: 3600)")
    assert problems(with_dataset(sizeGiB=1000))[0].endswith("use 1200 (got: 1000)")


@pytest.mark.parametrize("tier", [125, 250, 500, 1000])
def test_persistent_2_throughput_tiers_are_accepted(tier):
    cfg = parse_config(with_dataset(deploymentType="PERSISTENT_2", perUnitStorageThroughput=tier))
    assert cfg.datasets[0].throughput == tier


def test_throughput_outside_the_tiers_or_on_scratch_is_rejected():
    [p] = problems(with_dataset(deploymentType="PERSISTENT_2", perUnitStorageThroughput=200))
    assert p == ("datasets[0].perUnitStorageThroughput: must be one of 125, 250, 500, 1000 MBps/TiB for "
                 "PERSISTENT_2 (got: 200)")
    [p] = problems(with_dataset(perUnitStorageThroughput=250))
    assert p.startswith("datasets[0].perUnitStorageThroughput: cannot be set for SCRATCH_2")


def test_persistent_2_throughput_defaults_to_the_data_files_tier():
    assert parse_config(with_dataset(deploymentType="PERSISTENT_2")).datasets[0].throughput == 250
    assert parse_config(with_dataset()).datasets[0].throughput is None


def test_backups_rules():
    [p] = problems(with_dataset(backupRetentionDays=7))
    assert p.startswith("datasets[0].backupRetentionDays: SCRATCH_2 file systems cannot be backed up")
    [p] = problems(with_dataset(deploymentType="PERSISTENT_2", backupRetentionDays=91))
    assert p.startswith("datasets[0].backupRetentionDays: must be at most 90")
    prod = with_dataset("prod", deploymentType="PERSISTENT_2", backupRetentionDays=0)
    assert problems(prod) == ["datasets[0].backupRetentionDays: must be at least 1 in prod for PERSISTENT_2: "
                              "persistent file systems are backed up daily (got: 0)"]
    # Defaults: 7 days for persistent file systems in prod, none in dev, never for scratch.
    assert parse_config(with_dataset("prod", deploymentType="PERSISTENT_2")).datasets[0].backup_days(True) == 7
    assert parse_config(with_dataset(deploymentType="PERSISTENT_2")).datasets[0].backup_days(False) == 0


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c["datasets"][0].update(teams=["risk-lab", "nobody"]),
     "datasets[0].teams[1]: names no team in `teams`; known: risk-lab, reco-lab (got: \"nobody\")"),
    (lambda c: c["teams"][1].update(datasets=["ds", "missing"]),
     "teams[1].datasets[1]: names no dataset in `datasets`; known: ds (got: \"missing\")"),
    (lambda c: c["datasets"].append(dict(c["datasets"][0])),
     "datasets[1].name: must be unique; another dataset already has this name (got: \"ds\")"),
    (lambda c: c["datasets"][0].update(subnetIndex=2),
     "datasets[0].subnetIndex: must be less than 2, the number of private subnets"),
    (lambda c: c["datasets"][0].update(location="/mnt/data"), "datasets[0].location: must be an S3 location"),
    (lambda c: c["datasets"][0].update(deploymentType="SCRATCH_1"),
     "datasets[0].deploymentType: must be one of 'SCRATCH_2' or 'PERSISTENT_2'"),
    (lambda c: c["datasets"][0].pop("sizeGiB"), "datasets[0].sizeGiB: is required"),
    (lambda c: c["datasets"][0].update(sizeGb=1200),
     "datasets[0].sizeGb: is not a known setting; did you mean 'sizeGiB'?"),
])
def test_each_dataset_rule_names_its_key(mutate, expected):
    config = with_dataset(teams=["risk-lab"])
    mutate(config)
    assert_config_problem(config, expected)


def test_subnet_index_counts_the_existing_networks_private_subnets():
    config = with_dataset(subnetIndex=2)
    config["network"] = {"existing": {"vpcId": "vpc-0abc12345678def00", "privateSubnetIds": [
        "subnet-0aaa1111bbbb2222c", "subnet-0ddd3333eeee4444f", "subnet-0eee5555ffff6666a"]}}
    assert parse_config(config).datasets[0].subnet_index == 2


def test_fsx_figures_come_from_the_data_file_with_their_sources():
    text = (PROJECT_DIR / "components" / "data" / "fsx.yaml").read_text()
    for tag in ("[capacity]", "[throughput]", "[backups]", "[linking]", "[ports]", "[csi]"):
        assert text.count(tag) >= 2, f"{tag} is used and cited"
    assert "https://docs.aws.amazon.com/fsx/latest/APIReference/API_CreateFileSystem.html" in text
    types = catalog.fsx_deployment_types()
    assert types["PERSISTENT_2"].throughput_tiers == (125, 250, 500, 1000)
    assert {(t.first_capacities_gib, t.capacity_step_gib) for t in types.values()} == {((1200,), 2400)}
    assert yaml.safe_load(text)["lustrePorts"] == [{"from": 988, "to": 988}, {"from": 1018, "to": 1023}]

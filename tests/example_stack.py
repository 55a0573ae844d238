"""The stacks the examples run in: a fixture stack with the example's team added (its name read from the example
file, so no test names a shipped team), rendered once per process."""

from __future__ import annotations

import functools

import yaml

from tests.conftest import PROJECT_DIR, Rendered, run_config, stack_yaml

SPOT_EXAMPLE = PROJECT_DIR / "examples" / "pytorchjob-spot.yaml"
P = "mlops-platform:"


def spot_job() -> dict:
    return yaml.safe_load(SPOT_EXAMPLE.read_text())


EXAMPLE_TEAM = spot_job()["metadata"]["namespace"]
EXAMPLE_DATASET = "transactions"


def config_with_team(stack: str, team: str, gpu_quota: int, dataset: str = EXAMPLE_DATASET) -> dict:
    """The fixture stack plus `team` (`gpuQuota` GPUs) with read access to `dataset`."""
    config = stack_yaml(stack)
    config[P + "teams"] = [*config[P + "teams"], {"name": team, "gpuQuota": gpu_quota, "notebookProfiles": ["cpu"]}]
    for entry in config[P + "datasets"]:
        if entry["name"] == dataset:
            entry["teams"] = [*entry["teams"], team]
    return config


@functools.cache
def stack_with_team(stack: str, team: str, gpu_quota: int) -> Rendered:
    return Rendered(run_config(config_with_team(stack, team, gpu_quota), stack=stack))


def example_stack() -> Rendered:
    """The fixture prod stack with the spot example's team, 8 GPUs of quota (the job's size)."""
    return stack_with_team("prod", EXAMPLE_TEAM, 8)

"""The GPU culler's stack config: per-profile thresholds and timeouts under notebooks.culling.utilization (the
time-based settings the outer bound), per-team off-hours under teams[].notebookOffHours; each rule names its key, and
a bad stack file is a clear `error: <file>: key.path: ...` before any resource."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import yaml

from components import gpu_culler
from components.config import parse_config
from components.planning.notebook_profiles import notebook_profiles
from preview import render
from tests.conftest import PROJECT_DIR, config_problems as problems, raw_config, run_config, stack_yaml

BERLIN_WEEKEND = {"timeZone": "Europe/Berlin", "windows": [{"start": "fri 18:00", "end": "mon 07:00"}],
                  "gpuIdleTimeout": "15m"}


def gpu_profile(config: dict[str, Any]) -> str:
    """A GPU profile of this config that a team uses (generated from the stack's GPU pools)."""
    cfg = parse_config(config)
    profiles = notebook_profiles(cfg)
    return next(p for t in cfg.teams for p in t.notebook_profiles if profiles[p].resource is not None)


def culling(config: dict[str, Any]) -> dict[str, Any]:
    return config.setdefault("notebooks", {}).setdefault("culling", {})


def test_per_profile_settings_and_team_off_hours_reach_the_culler():
    config = raw_config("dev")
    name = gpu_profile(config)
    culling(config).update(gpuIdleTimeout="1h", utilization={
        "gpuBusyPercent": 10, "profiles": {name: {"gpuBusyPercent": 20, "gpuMemoryBusyGiB": 2, "idleTimeout": "30m"}}})
    team = next(t for t in config["teams"] if name in t.get("notebookProfiles", ["cpu"]))
    team["notebookOffHours"] = BERLIN_WEEKEND
    cfg = parse_config(config)
    teams = [t for t in cfg.teams if t.notebook_profiles]
    out = gpu_culler.culler_config(cfg.notebooks, notebook_profiles(cfg), teams, "http://prometheus:9090")
    assert out["profiles"][f"{team['name']}-{name}"] == {"team": team["name"], "busyPercent": 20,
                                                         "memoryBusyMiB": 2048, "idleSeconds": 1800}
    assert out["offHours"][team["name"]] == {"timeZone": "Europe/Berlin", "idleSeconds": 900,
                                             "windows": [{"start": "fri 18:00", "end": "mon 07:00"}]}
    others = [v for k, v in out["profiles"].items() if not k.endswith(f"-{name}")]
    assert all(v["busyPercent"] == 10 and v["idleSeconds"] == 3600 for v in others)
    assert not any(k.endswith("-cpu") for k in out["profiles"])          # CPU profiles: time-based culling only


@pytest.mark.parametrize("mutate, expected", [
    (lambda c, p: culling(c).update(utilization={"profiles": {"no-such-profile": {}}}),
     "notebooks.culling.utilization.profiles.no-such-profile: names no GPU notebook profile"),
    (lambda c, p: culling(c).update(gpuIdleTimeout="1h", utilization={"profiles": {p: {"idleTimeout": "2h"}}}),
     f"notebooks.culling.utilization.profiles.PROFILE.idleTimeout: must be between 1m and gpuIdleTimeout"),
    (lambda c, p: culling(c).update(utilization={"every": "30s"}),
     "notebooks.culling.utilization.every: must be between 1m and gpuIdleTimeout"),
    (lambda c, p: culling(c).update(utilization={"gpuBusyPercent": 0}),
     "notebooks.culling.utilization.gpuBusyPercent: "),
    (lambda c, p: (c.update(observability={**c.get("observability", {}), "enabled": False}),
                   culling(c).update(utilization={"enabled": True})),
     "notebooks.culling.utilization.enabled: needs observability.enabled"),
    (lambda c, p: c["teams"][0].update(notebookOffHours={**BERLIN_WEEKEND, "timeZone": "Europe/Berlim"}),
     "teams[0].notebookOffHours.timeZone: is not an IANA time zone"),
    (lambda c, p: c["teams"][0].update(notebookOffHours={**BERLIN_WEEKEND, "windows": [{"start": "friday 18:00",
                                                                                        "end": "mon 07:00"}]}),
     "teams[0].notebookOffHours.windows[0].start: "),
    (lambda c, p: c["teams"][0].update(notebookOffHours={**BERLIN_WEEKEND, "windows": [{"start": "fri 18:00",
                                                                                        "end": "fri 18:00"}]}),
     "teams[0].notebookOffHours.windows[0].end: must differ from start"),
    (lambda c, p: (culling(c).update(gpuIdleTimeout="30m"),
                   c["teams"][0].update(notebookOffHours={**BERLIN_WEEKEND, "gpuIdleTimeout": "2h"})),
     "teams[0].notebookOffHours.gpuIdleTimeout: must not exceed notebooks.culling.gpuIdleTimeout"),
])
def test_each_culler_rule_names_its_key(mutate, expected):
    config = raw_config("dev")
    profile = gpu_profile(config)
    mutate(config, profile)
    found = problems(config)
    assert any(p.startswith(expected.replace("PROFILE", profile)) for p in found), found


def test_a_bad_off_hours_rule_is_a_clear_error_before_any_resource(tmp_path):
    config = stack_yaml("dev")
    teams = config["mlops-platform:teams"]
    teams[0]["notebookOffHours"] = {**BERLIN_WEEKEND, "timeZone": "CET+1"}
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text(yaml.safe_dump({"config": config}))
    result = subprocess.run([sys.executable, "-m", "preview", "render", "bad", "--config", str(bad),
                             "--out", str(tmp_path / "out")], cwd=PROJECT_DIR, capture_output=True, text=True)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "error: Pulumi.bad.yaml: teams[0].notebookOffHours.timeZone: is not an IANA time zone" in result.stderr
    assert not (tmp_path / "out").exists()


def test_without_observability_the_hub_runs_no_gpu_culler():
    config = stack_yaml("dev")
    config["mlops-platform:observability"] = {"enabled": False}
    hub = next(r.inputs["values"]["hub"] for r in render.helm_releases(run_config(config))
               if r.inputs["chart"] == "jupyterhub")
    assert "services" not in hub and "extraFiles" not in hub and "egress" not in hub["networkPolicy"]

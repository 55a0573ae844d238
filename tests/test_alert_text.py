"""What the alerts say and the rules on their settings, on the fixture config (tests/alert_fixture.py): the GPU memory
rightsizing alert's text by `promtool test rules` on DCGM-shaped series (how much the pod uses of how much, and the
smallest GPU unit of the stack's pools that fits it); bad webhook URLs, email without SMTP, empty receivers, prod
without a platform receiver or with a plain webhook."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.config.alerting import AlertmanagerConfig
from tests import upstream
from tests.alert_fixture import FIXTURE, raw
from tests.conftest import Rendered, config_problems, run_config
from tests.test_prometheus_rules import DCGM_TARGET, PROMTOOL_HOW, Stack, promtool_test, series


@pytest.fixture(scope="module")
def promtool() -> str:
    return upstream.tool("promtool", PROMTOOL_HOW)


# ---- the rightsizing text, by promtool on DCGM-shaped series --------------------------------------------------------

A100_40 = {"modelName": "NVIDIA A100-SXM4-40GB", "Hostname": "ip-10-0-2-41.ec2.internal"}
A100_80 = {"modelName": "NVIDIA A100-SXM4-80GB", "Hostname": "ip-10-0-3-7.ec2.internal"}


def memory_series(gpu: str, model: dict[str, str], used_mib: int, total_mib: int, pod: str, team: str,
                  mig: dict[str, str] | None = None) -> tuple[list[dict], dict[str, str]]:
    """FB_USED/FB_FREE of one GPU (or MIG device) held by `pod`, as the DCGM exporter reports them."""
    labels = {**DCGM_TARGET, **model, **(mig or {}), "gpu": gpu, "UUID": f"GPU-7f3e9a10-0000-4000-8000-00000000000{gpu}",
              "device": f"nvidia{gpu}", "pci_bus_id": f"00000000:{10 + int(gpu)}:00.0",
              "DCGM_FI_DRIVER_VERSION": "570.172.08", "instance": "10.0.2.41:9400",
              "namespace": team, "pod": pod, "container": "notebook"}
    return ([series("DCGM_FI_DEV_FB_USED", labels, f"{used_mib}x120"),
             series("DCGM_FI_DEV_FB_FREE", labels, f"{total_mib - used_mib}x120")], labels)


def rightsizing_case(stack: Stack) -> tuple[dict, dict[str, dict[str, str]]]:
    """Three pods: 7.8 GiB of a whole A100 40GB, 7 GiB of a 3g.40gb MIG slice of an A100 80GB, and 30 GiB of an
    A100 40GB (no alert). Returns the input series and each alerting pod's series labels."""
    alerting = [memory_series("0", A100_40, 7987, 40326, "jupyter-alice", "alpha"),
                memory_series("1", A100_80, 7168, 40448, "train-7", "beta",
                              {"GPU_I_PROFILE": "3g.40gb", "GPU_I_ID": "2"})]
    # Busy: a whole GPU, and another MIG slice of GPU 1 (its memory is not the 3g.40gb slice's).
    quiet = [memory_series("2", A100_40, 30720, 40326, "busy-0", "alpha"),
             memory_series("1", A100_80, 16000, 20096, "serve-3", "beta", {"GPU_I_PROFILE": "2g.20gb", "GPU_I_ID": "5"})]
    inputs = [s for c, _ in [*alerting, *quiet] for s in c]
    return {"interval": "1m", "input_series": inputs}, {labels["pod"]: labels for _, labels in alerting}


def rightsizing_test(stack: Stack, texts: dict[str, str]) -> dict:
    """promtool's alert test: exactly the alerting pods, with their labels (series + the rule's, team expanded) and
    `texts` as descriptions."""
    alert = stack.alert("GpuMemoryRightsizing")
    case, labels = rightsizing_case(stack)
    exp = [{"exp_labels": {**labels[pod], **{k: v.replace("{{ $labels.namespace }}", labels[pod]["namespace"])
                                              for k, v in alert["labels"].items()}},
            "exp_annotations": {"summary": alert["annotations"]["summary"], "description": text}}
           for pod, text in texts.items()]
    return {**case, "alert_rule_test": [{"eval_time": "60m", "alertname": "GpuMemoryRightsizing", "exp_alerts": exp}]}


EXPECTED = {
    "jupyter-alice": ("alpha/jupyter-alice uses 7.8 GiB of the 39.4 GiB of GPU 0 (NVIDIA A100-SXM4-40GB) at most, for "
                      "30m: the 1g.10gb MIG profile (nvidia.com/mig-1g.10gb, pool inference-mig, 10 GiB) fits it with "
                      "25% headroom: ask for that resource instead (notebook profile or the pod's resources)."),
    "train-7": ("beta/train-7 uses 7.0 GiB of the 39.5 GiB of GPU 1 (NVIDIA A100-SXM4-80GB) at most, for 30m: the "
                "1g.10gb MIG profile (nvidia.com/mig-1g.10gb, pool inference-mig, 10 GiB) fits it with 25% headroom: "
                "ask for that resource instead (notebook profile or the pod's resources)."),
}


@pytest.fixture(scope="module")
def fixture_stack() -> Stack:
    return Stack(Rendered(run_config(FIXTURE)))


def test_rightsizing_says_what_fits(fixture_stack, promtool, tmp_path):
    done = promtool_test(promtool, fixture_stack, [rightsizing_test(fixture_stack, EXPECTED)], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_rightsizing_with_nothing_smaller_offered(fixture_stack, promtool, tmp_path):
    """Without the pools' offers (a stack with none smaller), the text says so instead of naming one."""
    rules = copy.deepcopy(fixture_stack.rule_objects)
    for spec in rules.values():
        for group in spec["groups"]:
            group["rules"] = [r for r in group["rules"] if r.get("record") != "mlops:gpu_offer_memory:gib"]
    texts = {pod: text.split(": the 1g.10gb")[0] + ": no smaller GPU, share or MIG profile of the platform's GPU "
             "pools fits it with 25% headroom; share the GPU between jobs." for pod, text in EXPECTED.items()}
    done = promtool_test(promtool, fixture_stack, [rightsizing_test(fixture_stack, texts)], tmp_path, rules)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mutation_a_wrong_suggestion_fails(fixture_stack, promtool, tmp_path):
    wrong = {pod: text.replace("1g.10gb MIG profile (nvidia.com/mig-1g.10gb", "2g.20gb MIG profile "
                               "(nvidia.com/mig-2g.20gb") for pod, text in EXPECTED.items()}
    done = promtool_test(promtool, fixture_stack, [rightsizing_test(fixture_stack, wrong)], tmp_path)
    assert done.returncode != 0 and "GpuMemoryRightsizing" in done.stdout + done.stderr


# ---- config rules ----------------------------------------------------------------------------------------------------


def with_changes(**paths: Any) -> dict[str, Any]:
    config = raw(copy.deepcopy(FIXTURE))
    for path, value in paths.items():
        node = config
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[keys[-1]] = value
    return config


def test_a_bad_webhook_url_is_reported_without_its_value():
    found = config_problems(with_changes(**{"teams.0.alertReceiver": {"slackWebhookUrl": "http://hooks.example/x"}}))
    assert any(p.startswith("teams[0].alertReceiver.slackWebhookUrl: must be an https:// webhook URL") for p in found)
    assert not any("hooks.example" in p for p in found), found


def test_email_needs_smtp():
    config = with_changes()
    del config["observability"]["alertmanager"]["smtp"]
    found = config_problems(config)
    assert "teams[1].alertReceiver.emailTo: needs observability.alertmanager.smtp" in "\n".join(found)
    assert any(p.startswith("observability.alertmanager.platformReceiver.emailTo: needs") for p in found)


def test_an_empty_receiver_is_refused():
    found = config_problems(with_changes(**{"teams.2.alertReceiver": {}}))
    assert any(p.startswith("teams[2].alertReceiver: set slackWebhookUrl or emailTo") for p in found), found


def test_prod_needs_a_platform_receiver_and_secure_webhooks():
    config = with_changes(environment="prod", protectData=True)
    del config["observability"]["alertmanager"]["platformReceiver"]
    found = "\n".join(config_problems(config))
    assert "observability.alertmanager.platformReceiver: is required in prod" in found
    assert "teams[0].alertReceiver.slackWebhookUrl: must be a `secure:` value in prod" in found


def test_defaults_are_valid_alertmanager_settings():
    am = AlertmanagerConfig()
    assert am.enabled and am.platform_receiver is None and am.repeat_interval == "4h"

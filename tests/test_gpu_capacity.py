"""GPU capacity: Karpenter (controller, IAM, interruption queue, node classes, NodePools, overlays) and the NVIDIA
GPU operator (device-plugin and MIG configs, DCGM scraping, waste alerts), as they end up in AWS and the cluster."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from components import catalog, labels
from components.config import parse_config
from components.gpu_operator import DEVICE_PLUGIN_CONFIGMAP, MIG_PARTED_CONFIGMAP
from components.karpenter import KARPENTER_VERSION, gpu_node_pool, node_class_spec, node_overlays
from preview import render
from tests.conftest import (Rendered, assert_config_problem, preview_cli,
                            run_config, stack_yaml, raw_config as raw, config_problems as problems)

PREFIX = "mlops-platform:"



def gpu_pools(rendered: Rendered) -> list[dict]:
    return [p for p in rendered.objects("NodePool") if labels.GPU_RESOURCE in p["spec"]["limits"]]


def plugin_configs(rendered: Rendered) -> dict[str, dict]:
    data = rendered.obj("ConfigMap", DEVICE_PLUGIN_CONFIGMAP, "gpu-operator")["data"]
    return {k: yaml.safe_load(v) for k, v in data.items()}


# ---- Karpenter controller, IAM, interruption queue --------------------------------------------------------

@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_karpenter_chart_is_pinned_from_its_oci_registry_and_runs_on_system_nodes(stack, request):
    rendered = request.getfixturevalue(stack)
    release = rendered.helm("karpenter")
    assert release["chart"] == "oci://public.ecr.aws/karpenter/karpenter"
    assert release["version"] == KARPENTER_VERSION and re.fullmatch(r"1\.\d+\.\d+", release["version"])
    assert release["namespace"] == "kube-system"
    values = release["values"]
    assert values["nodeSelector"][labels.NODE_ROLE] == "system"
    assert values["settings"]["clusterName"] == f"mlops-{stack}"
    queue = rendered.one("aws:sqs/queue:Queue").inputs
    assert values["settings"]["interruptionQueue"] == queue["name"] == f"mlops-{stack}-karpenter"
    # Shared GPU pools exist in both stacks, so the (alpha) NodeOverlay gate is on.
    assert values["settings"]["featureGates"]["nodeOverlay"] is True


def test_controller_role_trusts_only_the_karpenter_service_account_and_is_scoped_to_the_cluster(dev):
    values = dev.helm("karpenter")["values"]
    role_arn = values["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"]
    role = dev.one("aws:iam/role:Role", "karpenter-controller")
    assert role_arn.split("/")[-1].startswith("karpenter-controller")
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert len(trust) == 1 and trust[0]["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert "system:serviceaccount:kube-system:karpenter" in trust[0]["Condition"]["StringEquals"].values()
    assert values["serviceAccount"]["name"] == "karpenter"

    policies = {p.name.removeprefix("karpenter-controller-"): json.loads(p.inputs["policy"])
                for p in dev.of_type("aws:iam/policy:Policy") if p.name.startswith("karpenter-controller-")}
    assert set(policies) == {"node-lifecycle", "iam-integration", "eks-integration", "interruption",
                             "resource-discovery"}
    attached = {a.name for a in dev.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                if a.inputs["role"].startswith("karpenter-controller")}
    assert attached == {f"karpenter-controller-{n}" for n in policies}
    text = json.dumps(policies)
    assert "kubernetes.io/cluster/mlops-dev" in text and "eks-cluster-name" in text
    eks = policies["eks-integration"]["Statement"][0]
    assert eks["Resource"] == "arn:aws:eks:us-west-2:123456789012:cluster/mlops-dev"
    pass_role = policies["iam-integration"]["Statement"][0]
    assert pass_role["Action"] == "iam:PassRole" and pass_role["Resource"].endswith(":role/" + _node_role(dev))
    # Every mutating EC2 statement is conditioned on this cluster's ownership tags.
    for stmt in policies["node-lifecycle"]["Statement"][1:]:
        assert any("mlops-dev" in json.dumps(v) for v in stmt["Condition"].values()), stmt["Sid"]
    interruption = policies["interruption"]["Statement"][0]
    assert interruption["Resource"] == "arn:aws:sqs:us-west-2:123456789012:mlops-dev-karpenter"


def _node_role(rendered: Rendered) -> str:
    return next(c["spec"]["role"] for c in rendered.objects("EC2NodeClass"))


def test_karpenter_nodes_get_their_own_role_and_an_ec2_linux_access_entry(dev):
    role_name = _node_role(dev)
    role = dev.one("aws:iam/role:Role", "karpenter-node")
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    assert role_name.startswith("karpenter-node")
    entry = dev.one("aws:eks/accessEntry:AccessEntry", "karpenter-node").inputs
    assert entry["type"] == "EC2_LINUX" and entry["principalArn"].endswith(":role/" + role_name)
    policies = {a.inputs["policyArn"].rsplit("/", 1)[-1] for a in dev.of_type(
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment") if a.name.startswith("karpenter-node-")}
    assert policies == {"AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly",
                        "AmazonSSMManagedInstanceCore"}


def test_interruption_queue_receives_the_four_documented_event_kinds(dev):
    queue = dev.one("aws:sqs/queue:Queue").inputs
    assert queue["messageRetentionSeconds"] == 300 and queue["sqsManagedSseEnabled"] is True
    policy = json.loads(dev.one("aws:sqs/queuePolicy:QueuePolicy").inputs["policy"])
    allow, deny = policy["Statement"]
    assert allow["Principal"]["Service"] == ["events.amazonaws.com", "sqs.amazonaws.com"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    patterns = {(p["source"][0], p["detail-type"][0]) for p in (
        json.loads(r.inputs["eventPattern"]) for r in dev.of_type("aws:cloudwatch/eventRule:EventRule")
        if r.name.startswith("karpenter-"))}
    assert {("aws.ec2", "EC2 Spot Instance Interruption Warning"),
            ("aws.ec2", "EC2 Instance Rebalance Recommendation"),
            ("aws.ec2", "EC2 Instance State-change Notification"),
            ("aws.health", "AWS Health Event")} <= patterns
    targets = [t.inputs for t in dev.of_type("aws:cloudwatch/eventTarget:EventTarget")
               if t.name.startswith("karpenter-")]
    assert len(targets) == len(patterns) == 5
    assert all(t["arn"].endswith(":mlops-dev-karpenter") for t in targets)


# ---- EC2NodeClasses -------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_node_classes_use_pinned_eks_images_imdsv2_and_encrypted_gp3_found_by_discovery_tag(stack, request):
    rendered = request.getfixturevalue(stack)
    classes = rendered.objects("EC2NodeClass")
    assert {c["metadata"]["name"] for c in classes} == {p["metadata"]["name"] for p in rendered.objects("NodePool")}
    gpu_names = {p["metadata"]["name"] for p in gpu_pools(rendered)}
    for c in classes:
        spec = c["spec"]
        assert re.fullmatch(r"(al2023|bottlerocket)@v[0-9.]+", spec["amiSelectorTerms"][0]["alias"])
        assert spec["metadataOptions"]["httpTokens"] == "required"
        assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1
        root = next(d for d in spec["blockDeviceMappings"] if d.get("rootVolume"))["ebs"]
        assert root["encrypted"] is True and root["volumeType"] == "gp3"
        if c["metadata"]["name"] in gpu_names:
            assert int(root["volumeSize"].removesuffix("Gi")) >= 100   # CUDA images
        tag = {labels.DISCOVERY_TAG: f"mlops-{stack}"}
        assert spec["subnetSelectorTerms"] == [{"tags": tag}] and spec["securityGroupSelectorTerms"] == [{"tags": tag}]
    # The discovery tag is really on the cluster security group (the private subnets have it from the network).
    sg_tag = rendered.one("aws:ec2/tag:Tag", "karpenter-discovery").inputs
    assert sg_tag["key"] == labels.DISCOVERY_TAG and sg_tag["value"] == f"mlops-{stack}"
    assert sg_tag["resourceId"].startswith("sg-")


# ---- NodePools --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_gpu_pool_is_tainted_limited_labelled_and_scales_to_zero(stack, request):
    rendered = request.getfixturevalue(stack)
    config = parse_config(raw(stack))
    pools = {p["metadata"]["name"]: p for p in gpu_pools(rendered)}
    assert set(pools) == {p.name for p in config.gpu.node_pools}
    for pool in config.gpu.node_pools:
        spec = pools[pool.name]["spec"]
        template = spec["template"]
        assert template["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]
        assert spec["limits"][labels.GPU_RESOURCE] >= pool.gpu_limit and spec["limits"]["cpu"] > 0
        assert pools[pool.name]["metadata"]["annotations"][labels.MAX_GPUS] == str(pool.gpu_limit)
        assert spec["disruption"]["consolidationPolicy"] == "WhenEmpty"
        assert spec["disruption"]["consolidateAfter"] == "30s"
        assert "replicas" not in spec      # not a static pool
        node_labels = template["metadata"]["labels"]
        assert node_labels[labels.GPU_TYPE] == pool.gpu_type
        assert node_labels[labels.GPU_SHARING] == pool.sharing.mode
        assert node_labels[labels.NODE_POOL] == pool.name
        requirements = {r["key"]: r.get("values") for r in template["spec"]["requirements"]}
        assert requirements["node.kubernetes.io/instance-type"] == pool.instance_types
        assert requirements[labels.CAPACITY_TYPE] == pool.capacity_types
        # Labels are valid label values (the CRD's CEL rules are not checked offline).
        for key, value in node_labels.items():
            assert re.fullmatch(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", value) and len(value) <= 63
            assert not key.split("/")[0].endswith(("karpenter.sh", "karpenter.k8s.aws"))


def test_training_is_spot_inference_on_demand_and_the_on_demand_fallback_is_a_named_pool(dev, prod):
    def capacity(rendered, name):
        pool = next(p for p in gpu_pools(rendered) if p["metadata"]["name"] == name)
        return next(r["values"] for r in pool["spec"]["template"]["spec"]["requirements"]
                    if r["key"] == labels.CAPACITY_TYPE)
    assert capacity(dev, "training") == ["spot"]
    # Spot only: an on-demand fallback is its own pool that jobs opt into (training.fallbackPool), never silent.
    assert capacity(prod, "training") == ["spot"] and capacity(prod, "training-on-demand") == ["on-demand"]
    assert capacity(dev, "inference") == capacity(prod, "inference") == ["on-demand"]


def test_defaults_are_a_spot_training_pool_an_on_demand_inference_pool_and_a_cpu_pool():
    config = parse_config({"environment": "dev"})
    training, inference = config.gpu.node_pools
    assert training.capacity_types == ["spot"] and inference.capacity_types == ["on-demand"]
    assert training.consolidate_after == inference.consolidate_after == "30s"
    assert [p.name for p in config.karpenter.cpu_node_pools] == ["general"]
    assert "@latest" not in config.karpenter.ami_alias


def test_cpu_pool_has_no_gpu_and_no_taint(dev):
    pool = dev.obj("NodePool", "general")
    assert "taints" not in pool["spec"]["template"]["spec"]
    assert set(pool["spec"]["limits"]) == {"cpu", "memory"}
    categories = next(r["values"] for r in pool["spec"]["template"]["spec"]["requirements"]
                      if r["key"] == "karpenter.k8s.aws/instance-category")
    assert not {"g", "p"} & set(categories)


def test_dev_is_cheap_and_prod_realistic(dev, prod):
    dev_gpus = sum(p.max_gpus for p in render.gpu_pool_details(dev.run) if p.kind == "NodePool")
    prod_gpus = sum(p.max_gpus for p in render.gpu_pool_details(prod.run) if p.kind == "NodePool")
    assert dev_gpus <= 4 < prod_gpus
    assert dev.helm("karpenter")["values"]["replicas"] == 1 and prod.helm("karpenter")["values"]["replicas"] == 2


def test_preview_prints_each_gpu_pool_with_type_sharing_and_maximum(prod, tmp_path, monkeypatch, capsys):
    out = tmp_path / "build"
    code, stdout = preview_cli(["render", "prod", "--out", str(out)], prod.run, monkeypatch, capsys)
    assert code == 0
    assert "  NodePool training: GPU a100-40gb, sharing none, max 32 GPUs" in stdout
    assert "  NodePool inference: GPU l4, sharing time-slicing, max 8 GPUs" in stdout
    assert "  NodePool inference-mig: GPU a100-80gb, sharing mig, max 8 GPUs" in stdout
    assert "- NodePool `inference-mig`: 8 (a100-80gb, sharing: mig)" in (out / "summary.md").read_text()


# ---- sharing: device plugin, MIG, overlays -----------------------------------------------------------------

def test_each_gpu_pool_selects_a_device_plugin_config_and_time_slicing_uses_its_replicas(prod):
    configs = plugin_configs(prod)
    assert configs["default"] == {"version": "v1", "flags": {"migStrategy": "mixed"}}
    for pool in gpu_pools(prod):
        key = pool["spec"]["template"]["metadata"]["labels"][labels.DEVICE_PLUGIN_CONFIG]
        assert key in configs and configs[key]["version"] == "v1"
    sliced = configs["inference"]["sharing"]["timeSlicing"]
    assert sliced["resources"] == [{"name": "nvidia.com/gpu", "replicas": 4}]
    assert sliced["renameByDefault"] is True and sliced["failRequestsGreaterThanOne"] is True
    # The limit counts physical GPUs and the 4 replicas of each.
    limits = prod.obj("NodePool", "inference")["spec"]["limits"]
    assert limits[labels.GPU_RESOURCE] == 8 and limits[labels.GPU_SHARED_RESOURCE] == 32


def test_mig_pool_selects_its_mig_parted_layout_and_operator_uses_the_config(prod):
    pool = prod.obj("NodePool", "inference-mig")
    node_labels = pool["spec"]["template"]["metadata"]["labels"]
    config = yaml.safe_load(prod.obj("ConfigMap", MIG_PARTED_CONFIGMAP, "gpu-operator")["data"]["config.yaml"])
    assert config["version"] == "v1"
    assert config["mig-configs"]["all-disabled"] == [{"devices": "all", "mig-enabled": False}]
    assert config["mig-configs"][node_labels[labels.MIG_CONFIG]] == [
        {"devices": "all", "mig-enabled": True, "mig-devices": {"3g.40gb": 1, "2g.20gb": 1, "1g.10gb": 2}}]
    assert pool["spec"]["limits"]["nvidia.com/mig-1g.10gb"] == 16
    values = prod.helm("gpu-operator")["values"]
    assert values["mig"]["strategy"] == "mixed"
    assert values["migManager"]["config"] == {"create": False, "name": MIG_PARTED_CONFIGMAP, "default": "all-disabled"}
    assert values["devicePlugin"]["config"] == {"create": False, "name": DEVICE_PLUGIN_CONFIGMAP, "default": "default"}
    # A MIG-capable GPU left whole is pinned to all-disabled; GPUs without MIG get no MIG label.
    training = prod.obj("NodePool", "training")["spec"]["template"]["metadata"]["labels"]
    assert training[labels.MIG_CONFIG] == "all-disabled"
    assert labels.MIG_CONFIG not in prod.obj("NodePool", "inference")["spec"]["template"]["metadata"]["labels"]


def test_shared_pools_get_node_overlays_so_karpenter_counts_replicas_and_mig_devices(prod, dev):
    overlays = {o["metadata"]["name"]: o["spec"] for o in prod.objects("NodeOverlay")}
    assert overlays["inference-1gpu"]["capacity"] == {"nvidia.com/gpu.shared": 4}
    assert overlays["inference-mig-8gpu"]["capacity"] == {
        "nvidia.com/mig-3g.40gb": 8, "nvidia.com/mig-2g.20gb": 8, "nvidia.com/mig-1g.10gb": 16}
    assert {"key": "karpenter.sh/nodepool", "operator": "In", "values": ["inference"]} in \
        overlays["inference-1gpu"]["requirements"]
    assert not any(n.startswith("training") for n in overlays)   # whole GPUs: nothing to tell Karpenter
    assert {o["metadata"]["name"] for o in dev.objects("NodeOverlay")} == {"inference-1gpu"}


def test_overlays_keep_the_gpu_name_without_rename_and_use_it_for_mig_single():
    config = raw("prod")
    config["gpu"]["migStrategy"] = "single"
    config["gpu"]["nodePools"][1]["sharing"]["renameByDefault"] = False
    config["gpu"]["nodePools"][2]["sharing"]["migLayout"] = {"1g.10gb": 7}
    cfg = parse_config(config)
    sliced, mig = cfg.gpu.node_pools[1], cfg.gpu.node_pools[2]
    assert node_overlays(sliced, "single")["inference-1gpu"]["capacity"] == {"nvidia.com/gpu": 4}
    assert sliced.limits("single")[labels.GPU_RESOURCE] == 8 * 4     # the name now counts replicas
    assert node_overlays(mig, "single")["inference-mig-8gpu"]["capacity"] == {"nvidia.com/gpu": 56}
    assert mig.limits("single") == {"cpu": 96, "nvidia.com/gpu": 56}


def test_driver_and_toolkit_come_from_the_ami_unless_a_pool_runs_an_ami_without_them(dev):
    values = dev.helm("gpu-operator")["values"]
    assert values["driver"] == {"enabled": False} and values["toolkit"] == {"enabled": False}
    for pool in gpu_pools(dev):
        node_labels = pool["spec"]["template"]["metadata"]["labels"]
        assert node_labels[labels.DEPLOY_DRIVER] == node_labels[labels.DEPLOY_TOOLKIT] == "false"

    config = stack_yaml("dev")
    config[PREFIX + "gpu"]["nodePools"][0]["ami"] = {"id": "ami-0123456789abcdef0", "family": "AL2023",
                                                     "nvidiaDriver": "operator"}
    rendered = Rendered(run_config(config))
    values = rendered.helm("gpu-operator")["values"]
    assert values["driver"] == {"enabled": True} and values["toolkit"] == {"enabled": True}
    training = rendered.obj("NodePool", "training")["spec"]["template"]["metadata"]["labels"]
    assert labels.DEPLOY_DRIVER not in training
    inference = rendered.obj("NodePool", "inference")["spec"]["template"]["metadata"]["labels"]
    assert inference[labels.DEPLOY_DRIVER] == "false"
    node_class = rendered.obj("EC2NodeClass", "training")["spec"]
    assert node_class["amiSelectorTerms"] == [{"id": "ami-0123456789abcdef0"}] and node_class["amiFamily"] == "AL2023"


def test_bottlerocket_pools_get_an_os_and_a_data_volume_and_keep_their_own_device_plugin():
    config = raw("prod")
    _pool(config, 0)["ami"] = {"alias": "bottlerocket@v1.50.0"}
    cfg = parse_config(config)
    pool = cfg.gpu.node_pools[0]
    spec = node_class_spec(pool, cfg.karpenter, "mlops-prod", "node-role")
    assert spec["amiSelectorTerms"] == [{"alias": "bottlerocket@v1.50.0"}] and "amiFamily" not in spec
    assert [(d["deviceName"], d["ebs"]["volumeSize"]) for d in spec["blockDeviceMappings"]] == [
        ("/dev/xvda", "4Gi"), ("/dev/xvdb", "500Gi")]
    assert all(d["ebs"]["encrypted"] for d in spec["blockDeviceMappings"])
    node_labels = gpu_node_pool(pool, cfg.karpenter, "mixed")["template"]["metadata"]["labels"]
    assert node_labels[labels.DEPLOY_DEVICE_PLUGIN] == "false" and node_labels[labels.DEPLOY_DRIVER] == "false"


# ---- DCGM and waste alerts --------------------------------------------------------------------------------

def test_dcgm_exporter_is_scraped_with_the_pod_labels_kept(dev):
    assert dev.helm("gpu-operator")["values"]["dcgmExporter"] == {"enabled": True, "serviceMonitor": {"enabled": False}}
    monitor = dev.obj("ServiceMonitor", "nvidia-dcgm-exporter", "gpu-operator")["spec"]
    assert monitor["selector"] == {"matchLabels": {"app": "nvidia-dcgm-exporter"}}
    assert monitor["endpoints"][0]["port"] == "gpu-metrics" and monitor["endpoints"][0]["honorLabels"] is True


def test_waste_alerts_use_the_configured_thresholds():
    config = stack_yaml("dev")
    config[PREFIX + "gpu"]["alerts"] = {"idleUtilizationPercent": 7, "idleFor": "45m", "memoryUsedPercent": 30,
                                        "rightsizingFor": "12h"}
    rendered = Rendered(run_config(config))
    rules = {r["alert"]: r for r in rendered.obj("PrometheusRule", "gpu-waste", "gpu-operator")["spec"]["groups"][0][
        "rules"]}
    idle, rightsizing = rules["GpuAllocatedButIdle"], rules["GpuMemoryRightsizing"]
    assert idle["for"] == "45m" and idle["expr"].endswith("< 7") and "DCGM_FI_DEV_GPU_UTIL" in idle["expr"]
    assert 'pod!=""' in idle["expr"]      # only GPUs held by a pod
    assert rightsizing["for"] == "12h" and rightsizing["expr"].endswith(" * 0.3")    # 30% of the GPU's memory
    assert "DCGM_FI_DEV_FB_USED" in rightsizing["expr"] and "DCGM_FI_DEV_FB_FREE" in rightsizing["expr"]


# ---- config errors name the pool ---------------------------------------------------------------------------


def _pool(config: dict, i: int) -> dict:
    return config["gpu"]["nodePools"][i]


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: _pool(c, 2)["sharing"].update(migLayout={"3g.40gb": 2, "1g.10gb": 1}),
     "gpu.nodePools[2].sharing.migLayout: impossible on a100-80gb: uses 9 memory slices; A100-80GB has 8"),
    (lambda c: _pool(c, 2)["sharing"].update(migLayout={"1g.5gb": 7}),
     "gpu.nodePools[2].sharing.migLayout: impossible on a100-80gb: A100-80GB has no MIG profile 1g.5gb"),
    (lambda c: _pool(c, 2)["sharing"].update(migLayout={"1g.20gb": 5}),
     "gpu.nodePools[2].sharing.migLayout: impossible on a100-80gb: 1g.20gb: A100-80GB fits at most 4"),
    (lambda c: _pool(c, 2)["sharing"].update(migLayout={}), "gpu.nodePools[2].sharing.migLayout: is required"),
    (lambda c: (c["gpu"].update(migStrategy="single")),
     "gpu.nodePools[2].sharing.migLayout: impossible on a100-80gb: MIG strategy 'single' needs one profile"),
    (lambda c: _pool(c, 1)["sharing"].update(replicas=13),
     "gpu.nodePools[1].sharing.replicas: must be between 2 and 12 for l4 GPUs"),
    (lambda c: _pool(c, 1)["sharing"].update(replicas=1), "gpu.nodePools[1].sharing.replicas: must be at least 2"),
    (lambda c: _pool(c, 1)["sharing"].pop("replicas"), "gpu.nodePools[1].sharing.replicas: is required"),
    (lambda c: _pool(c, 0).update(sharing={"mode": "none", "replicas": 4}),
     "gpu.nodePools[0].sharing.replicas: only applies to mode 'time-slicing'"),
    (lambda c: _pool(c, 1).update(sharing={"mode": "mig", "migLayout": {"1g.10gb": 7}}),
     "gpu.nodePools[1].sharing.mode: NVIDIA L4 (l4) does not support MIG"),
    (lambda c: _pool(c, 0).update(gpuLimit=4), "gpu.nodePools[0].gpuLimit: must be at least 8"),
    (lambda c: _pool(c, 1).update(name="training"), "gpu.nodePools[1].name: must be unique"),
    (lambda c: _pool(c, 1).update(name="general"), "karpenter.cpuNodePools[0].name: must be unique"),
    (lambda c: _pool(c, 1).update(instanceTypes=["g6.xlarge", "g5.xlarge"]),
     "gpu.nodePools[1].instanceTypes: instanceTypes mix GPU types"),
    (lambda c: _pool(c, 1).update(instanceTypes=["g6.mega"]), "gpu.nodePools[1].instanceTypes[0]: is not a GPU"),
    (lambda c: _pool(c, 1).update(capacityTypes=["reserved"]), "gpu.nodePools[1].capacityTypes[0]: must be one of"),
    (lambda c: _pool(c, 1).update(consolidateAfter="soon"), "gpu.nodePools[1].consolidateAfter: must match"),
    (lambda c: _pool(c, 1).update(budgets=[{"nodes": "1", "schedule": "@daily"}]),
     "gpu.nodePools[1].budgets[0].schedule: schedule and duration go together"),
    (lambda c: _pool(c, 1).update(ami={"alias": "al2023@latest"}), "gpu.nodePools[1].ami.alias: must match"),
    (lambda c: _pool(c, 1).update(ami={"alias": "al2023@v20260512", "nvidiaDriver": "operator"}),
     "gpu.nodePools[1].ami.nvidiaDriver: EKS-optimized AMIs ship the NVIDIA driver"),
    (lambda c: c["karpenter"].update(amiAlias="bottlerocket@latest"), "karpenter.amiAlias: must match"),
    (lambda c: _pool(c, 1).update(ami={"alias": "bottlerocket@v1.50.0"}),
     "gpu.nodePools[1].sharing.mode: must be 'none' on Bottlerocket nodes"),
])
def test_each_gpu_config_rule_names_the_pool(mutate, expected):
    config = raw("prod")
    mutate(config)
    assert_config_problem(config, expected)


def test_mig_on_a_gpu_without_mig_names_the_pool_and_the_capable_gpus():
    config = raw("dev")
    _pool(config, 1)["sharing"] = {"mode": "mig", "migLayout": {"1g.5gb": 1}}
    assert problems(config) == ["gpu.nodePools[1].sharing.mode: NVIDIA T4 (t4) does not support MIG; MIG needs one "
                                "of a100-40gb, a100-80gb, h100-80gb, h200-141gb (got: \"mig\")"]


def test_nodepools_count_in_the_gpu_capacity_teams_may_ask_for():
    from components.config import gpu_capacity
    config = parse_config(raw("prod"))
    assert gpu_capacity(config) == 4 + 32 + 8 + 8 + 8


# ---- the catalog ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gpu, layout, ok", [
    ("a100-40gb", {"3g.20gb": 1, "2g.10gb": 1, "1g.5gb": 2}, True),
    ("a100-40gb", {"4g.20gb": 1, "3g.20gb": 1}, True),
    ("a100-40gb", {"1g.5gb": 7}, True),
    ("a100-40gb", {"1g.5gb": 8}, False),
    ("a100-40gb", {"4g.20gb": 1, "2g.10gb": 2}, False),          # 8 compute slices
    ("h100-80gb", {"1g.10gb+me": 1, "1g.10gb": 6}, True),
    ("h200-141gb", {"1g.18gb+me": 1, "1g.18gb": 1, "3g.71gb": 1, "2g.35gb": 1}, True),
    ("h200-141gb", {"7g.141gb": 1, "1g.18gb": 1}, False),
    ("a10g", {"1g.6gb": 1}, False),
])
def test_mig_layouts_are_judged_by_the_gpus_slice_budget(gpu, layout, ok):
    assert (catalog.mig_layout_problems(gpu, layout) == []) is ok


def test_time_slicing_range_follows_gpu_memory():
    assert catalog.time_slicing_replicas_range("t4") == (2, 8)
    assert catalog.time_slicing_replicas_range("l4") == (2, 12)
    assert catalog.time_slicing_replicas_range("h100-80gb") == (2, 16)


def test_every_mig_capable_gpu_type_has_its_profiles():
    for name, gpu in catalog.gpu_types().items():
        assert (gpu.mig_model is None) == (catalog.mig_model(name) is None), name
        model = catalog.mig_model(name)
        if model:
            assert max(p.memory_gib for p in model.profiles.values()) == gpu.memory_gib


def test_our_mig_profiles_agree_with_the_shared_reference_table(schemas_dir):
    reference = json.loads((schemas_dir / "data" / "mig-profiles.json").read_text())["models"]
    for name, model in catalog.mig_models().items():
        ref = reference[name]
        assert (model.compute_slices, model.memory_slices, model.max_instances) == (
            ref["compute_slices_total"], ref["memory_slices_total"], ref["max_gpu_instances"])
        theirs = {p["name"]: (p["compute_slices"], p["memory_slices"], p["memory_gb"], p["max_instances"],
                              p["media_extensions"]) for p in ref["profiles"]}
        ours = {p.name: (p.compute_slices, p.memory_slices, p.memory_gib, p.max_instances, p.media_extensions)
                for p in model.profiles.values()}
        assert ours == theirs, name

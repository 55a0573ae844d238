"""The PR diff on hand-made plan pairs, and the cost arithmetic on a small stack."""

from __future__ import annotations

import copy
import re

import pytest

from preview import cost, diff

STACK_URN = "urn:pulumi:dev::mlops-platform::pulumi:pulumi:Stack::mlops-platform-dev"


def res(typ: str, name: str, inputs: dict, parent: str = "urn:c", custom: bool = True) -> dict:
    return {"urn": f"urn:pulumi:dev::mlops-platform::{typ}::{name}", "type": typ, "name": name, "custom": custom,
            "parent": parent, "provider": "", "dependencies": [], "protect": False, "retainOnDelete": False,
            "inputs": inputs}


COMPONENT = res("mlops:tenancy:Team", "team-a", {}, parent=STACK_URN, custom=False)
COMPONENT["urn"] = "urn:c"
QUOTA = res("kubernetes:core/v1:ResourceQuota", "team-a-quota", {
    "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "quota", "namespace": "team-a"},
    "spec": {"hard": {"requests.nvidia.com/gpu": "4", "requests.cpu": "64"}}})
HUB = res("kubernetes:helm.sh/v3:Release", "hub", {"name": "jupyterhub", "version": "4.2.0", "values": {
    "cull": {"enabled": True, "timeout": 3600}, "singleuser": {"profileList": [{"slug": "cpu"}]}}})


def plan(*resources: dict) -> dict:
    return {"stack": "dev", "resources": [COMPONENT, *resources], "outputs": {}}


def test_added_removed_and_changed_resources_grouped_by_component():
    new_quota = copy.deepcopy(QUOTA)
    new_quota["inputs"]["spec"]["hard"]["requests.nvidia.com/gpu"] = "8"
    extra = res("kubernetes:core/v1:Namespace", "team-a-ns", {"metadata": {"name": "team-a"}})
    d = diff.diff_plans(plan(QUOTA, HUB), plan(new_quota, extra))
    assert [r.name for r in d.added] == ["team-a-ns"]
    assert [r.name for r in d.removed] == ["hub"]
    assert [(r.name, [(c.path, c.old, c.new) for c in r.changes]) for r in d.changed] == [
        ("team-a-quota", [('spec.hard["requests.nvidia.com/gpu"]', "4", "8")])]
    assert d.replaced == [] and {r.component for r in d.added + d.removed + d.changed} == {"team-a"}


def test_helm_values_diff_by_identity_not_position():
    head = copy.deepcopy(HUB)
    head["inputs"]["values"]["cull"]["timeout"] = 1800
    head["inputs"]["values"]["singleuser"]["profileList"].insert(0, {"slug": "t4", "cpu": 4})
    d = diff.diff_plans(plan(HUB), plan(head))
    assert [(c.path, c.kind, c.old, c.new) for c in d.changed[0].changes] == [
        ("values.cull.timeout", "changed", 3600, 1800),
        ("values.singleuser.profileList[slug=t4]", "added", None, {"slug": "t4", "cpu": 4}),
    ]
    text = diff.markdown("dev", d, [], cost.Cost(), cost.Cost())
    assert "**update** `Helm release` **hub**" in text and "`values.cull.timeout`: `3600` → `1800`" in text
    assert "  - `values.singleuser.profileList[slug=t4]` added:" in text and "`cpu`: `4`" in text


def test_identical_plans_have_no_changes():
    d = diff.diff_plans(plan(QUOTA, HUB), plan(copy.deepcopy(QUOTA), copy.deepcopy(HUB)))
    assert d.empty and "No changes." in diff.markdown("dev", d, [], cost.Cost(), cost.Cost())


SMALL_STACK = [
    ("aws:eks/cluster:Cluster", {"name": "c"}),
    ("aws:ec2/natGateway:NatGateway", {}),
    ("aws:eks/nodeGroup:NodeGroup", {"nodeGroupName": "system", "instanceTypes": ["m6i.large"],
                                     "capacityType": "ON_DEMAND", "diskSize": 50,
                                     "scalingConfig": {"desiredSize": 2, "maxSize": 3}}),
    ("aws:eks/nodeGroup:NodeGroup", {"nodeGroupName": "gpu-t4", "instanceTypes": ["g4dn.xlarge"],
                                     "capacityType": "SPOT", "scalingConfig": {"desiredSize": 0, "maxSize": 2},
                                     "taints": [{"key": "nvidia.com/gpu", "value": "true"}]}),
    ("kubernetes:karpenter.sh/v1:NodePool", {"metadata": {"name": "a10g"}, "spec": {
        "limits": {"nvidia.com/gpu": "8"},
        "template": {"spec": {"requirements": [
            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["g5.xlarge", "g5.12xlarge"]},
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}]}}}}),
    ("aws:fsx/lustreFileSystem:LustreFileSystem", {"deploymentType": "PERSISTENT_2", "storageCapacity": 2400,
                                                   "perUnitStorageThroughput": 250}),
    ("aws:rds/instance:Instance", {"instanceClass": "db.t4g.medium", "multiAz": True, "allocatedStorage": 20}),
    ("kubernetes:core/v1:ResourceQuota", {"metadata": {"namespace": "team-a"},
                                          "spec": {"hard": {"requests.nvidia.com/gpu": "4"}}}),
]


def test_cost_arithmetic_on_a_small_stack():
    c = cost.estimate(SMALL_STACK)
    h = 730
    expected_baseline = (0.10 * h) + (0.045 + 0.005) * h + 2 * (0.096 * h + 50 * 0.08) + 2400 * 0.210 \
        + (0.065 * 2 * h + 20 * 0.115 * 2)
    assert c.baseline_total == pytest.approx(expected_baseline)
    # GPU pools at their limits: 2 spot T4 nodes, and 8 A10G GPUs at the dearest on-demand $/GPU-hour
    # among the pool's instance types (g5.12xlarge: $5.672 for 4 GPUs beats g5.xlarge's $1.006 for 1).
    assert c.burn_total == pytest.approx(2 * 0.210 + 8 * 5.672 / 4)
    assert [(line.item, round(line.amount, 3)) for line in c.teams] == [
        ("team team-a: 4 GPUs", round(4 * 5.672 / 4, 3))]
    assert c.unpriced == []


def test_unknown_instance_types_are_listed_not_guessed():
    c = cost.estimate([("aws:eks/nodeGroup:NodeGroup", {"nodeGroupName": "x", "instanceTypes": ["z9.mega"],
                                                        "scalingConfig": {"desiredSize": 1}})])
    assert c.unpriced == ["z9.mega"] and c.baseline_total == 0


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_instance_type_the_stacks_use_has_a_price(stack, request):
    rendered = request.getfixturevalue(stack)
    c = cost.estimate((r.type, r.inputs) for r in rendered.resources if r.custom)
    assert c.unpriced == [] and c.baseline_total > 0


ALWAYS_ON = [
    ("aws:ec2/vpcEndpoint:VpcEndpoint", {"serviceName": "com.amazonaws.us-west-2.sts", "vpcEndpointType": "Interface",
                                         "subnetIds": ["a", "b", "c"]}),
    ("aws:ec2/vpcEndpoint:VpcEndpoint", {"serviceName": "com.amazonaws.us-west-2.s3", "vpcEndpointType": "Gateway"}),
    ("aws:kms/key:Key", {}), ("aws:kms/key:Key", {}),
    ("aws:cloudwatch/logGroup:LogGroup", {"name": "/aws/eks/c/cluster", "retentionInDays": 30}),
    ("kubernetes:core/v1:ServicePatch", {"metadata": {"name": "kourier", "namespace": "kourier-system", "annotations": {
        "service.beta.kubernetes.io/aws-load-balancer-internal": "true"}}}),
    ("kubernetes:helm.sh/v3:Release", {"name": "kps", "values": {"prometheus": {"prometheusSpec": {"replicas": 2,
        "storageSpec": {"volumeClaimTemplate": {"spec": {"resources": {"requests": {"storage": "50Gi"}}}}}}}}}),
    ("kubernetes:helm.sh/v3:Release", {"name": "hub", "values": {
        "singleuser": {"storage": {"type": "dynamic", "capacity": "10Gi"}},
        "hub": {"config": {"Authenticator": {"allowed_users": ["a"]},
                           "JupyterHub": {"load_groups": {"t": {"users": ["a", "b", "c"]}}}}}}}),
    ("kubernetes:core/v1:PersistentVolumeClaim", {"metadata": {"name": "d", "namespace": "t"}, "spec": {
        "storageClassName": "", "volumeName": "fsx", "resources": {"requests": {"storage": "1200Gi"}}}}),
]


def test_every_always_on_item_is_priced():
    c = cost.estimate(ALWAYS_ON)
    lines = {line.item: round(line.amount, 2) for line in c.baseline}
    h = 730
    assert lines == {
        "VPC interface endpoint sts in 3 AZs": round(3 * 0.01 * h, 2),
        "VPC gateway endpoint s3 (no charge)": 0.0,
        "2 x KMS customer managed key": 2.0,
        "CloudWatch Logs /aws/eks/c/cluster: 5 GiB/month ingested (assumed), kept 30 days":
            round(5 * 0.5 + 5 * 0.03, 2),
        "internal Classic load balancer of service kourier-system/kourier": round(0.025 * h, 2),
        "kps: prometheus volumes 2 x 50 GiB gp3": 8.0,
        "hub: home volumes, 3 listed users x 10 GiB gp3 ($0.80/month each; every further user adds one)": 2.4,
    }   # the FSx-bound claim is priced with its file system, not again
    text = cost.markdown(c, "t")
    assert f"(kms {cost.prices()['sources']['kms']['read']})" in text
    assert "Charged by use, not in the baseline" in text


def test_new_teams_show_a_dash_and_counts_are_singular_for_one():
    base = cost.estimate(SMALL_STACK)
    head = cost.estimate(SMALL_STACK + [("kubernetes:core/v1:ResourceQuota", {
        "metadata": {"namespace": "team-b"}, "spec": {"hard": {"requests.nvidia.com/gpu": "1"}}})])
    table = cost.delta_markdown(base, head)
    assert "| team team-b quota at full use / hour | — | $1.42 | new |" in table
    assert "| team team-b quota at full use / hour | $1.42 | — | removed |" in cost.delta_markdown(head, base)
    assert "team team-b: 1 GPU" in [line.item for line in head.teams]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_cost_command_lists_every_always_on_item_with_its_price_and_date(stack, request):
    """Generic over the shipped stacks: one line per always-on resource kind, each with a price and a dated source."""
    rendered = request.getfixturevalue(stack)
    declared = [(r.type, r.inputs) for r in rendered.resources if r.custom]
    text = cost.markdown(cost.estimate(declared), "t")
    baseline = text.split("Maximum burn")[0]
    items = [line for line in baseline.splitlines() if line.startswith("- ")]
    dated = re.compile(r": \$[\d,]+\.\d\d/month \((\w+ \d{4}-\d\d(-\d\d)?|assumed volume)(, (\w+ \d{4}-\d\d(-\d\d)?"
                       r"|assumed volume))*\)$")
    assert items and all(dated.search(line) for line in items), [i for i in items if not dated.search(i)]
    count = lambda typ: sum(1 for t, _ in declared if t == typ)  # noqa: E731
    expect = {"EKS control plane": count("aws:eks/cluster:Cluster"),
              "NAT gateway": count("aws:ec2/natGateway:NatGateway"),
              "KMS customer managed key": count("aws:kms/key:Key"),
              "VPC interface endpoint": sum(1 for t, p in declared if t == "aws:ec2/vpcEndpoint:VpcEndpoint"
                                            and p.get("vpcEndpointType") == "Interface"),
              # Control-plane logs priced on an assumed volume; any other group (VPC flow logs) listed, unpriced.
              "CloudWatch Logs": sum(1 for t, p in declared if t == "aws:cloudwatch/logGroup:LogGroup"
                                     and str(p.get("name", "")).startswith("/aws/eks/")),
              "CloudWatch log group": sum(1 for t, p in declared if t == "aws:cloudwatch/logGroup:LogGroup"
                                          and not str(p.get("name", "")).startswith("/aws/eks/")),
              "load balancer of service": 1, "prometheus volume": 1, "home volumes": 1}
    for what, n in expect.items():
        found = sum(int(m.group(1) or 1) for line in items if what in line
                    for m in [re.match(r"- (?:(\d+) x )?", line)])
        assert found == n, (what, found, n)

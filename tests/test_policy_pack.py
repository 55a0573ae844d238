"""The policy pack as a whole: every rule is well-formed and documented, the shipped stacks pass, and a stack
with one deliberate violation per rule makes `python -m preview check` fail with one message per violation."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections import Counter
from typing import Any, Callable

import pytest
from pulumi_policy import EnforcementLevel, StackValidationPolicy

from policies import POLICIES
from preview import check, render
from tests.conftest import PROJECT_DIR

NAMES = [p.name for p in POLICIES]


def test_every_policy_is_named_described_enforced_and_remediable():
    assert len(NAMES) == len(set(NAMES))
    for p in POLICIES:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", p.name), p.name
        assert p.description and p.remediation_steps, p.name
        assert p.enforcement_level in (EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY), p.name


def test_gpu_and_egress_rules_are_mandatory_by_default():
    gpu_or_egress = [p for p in POLICIES if p.name.startswith(("gpu-", "training-egress", "team-namespace",
                                                               "network-policies", "security-groups"))]
    assert len(gpu_or_egress) >= 10
    assert all(p.enforcement_level == EnforcementLevel.MANDATORY for p in gpu_or_egress)


def test_the_rule_table_documents_every_rule_and_the_readme_links_it():
    table = (PROJECT_DIR / "docs" / "policies.md").read_text()
    assert [name for name in NAMES if f"`{name}`" not in table] == []
    assert "docs/policies.md" in (PROJECT_DIR / "README.md").read_text()


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_shipped_stacks_have_no_violations(stack, request):
    rendered = request.getfixturevalue(stack)
    found = check.evaluate(POLICIES, rendered.resources, check.load_overrides(PROJECT_DIR, stack))
    assert [f"{v.policy}: {v.message}" for v in found] == []


# ---- one deliberate violation per rule --------------------------------------------------------------------

Plan = dict[str, Any]


def _find(plan: Plan, typ: str, name: str) -> dict[str, Any]:
    return next(r for r in plan["resources"] if r["type"] == typ and r["name"] == name)


def _add(plan: Plan, typ: str, name: str, inputs: dict[str, Any], protect: bool = False) -> None:
    plan["resources"].append({
        "urn": f"urn:pulumi:prod::mlops-platform::{typ}::{name}", "type": typ, "name": name, "custom": True,
        "parent": "", "provider": "", "dependencies": [], "protect": protect, "retainOnDelete": False,
        "inputs": inputs})


NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"


def _pool_copy(plan: Plan, name: str, change: Callable[[dict], Any]) -> None:
    pool = copy.deepcopy(_find(plan, NODE_POOL, "karpenter-pool-training")["inputs"])
    pool["metadata"]["name"] = name
    change(pool)
    _add(plan, NODE_POOL, f"violation-{name}", pool)


def _team_pod(image: str, gpu: bool = False) -> dict[str, Any]:
    container = {"name": "c", "image": image}
    spec: dict[str, Any] = {"containers": [container]}
    if gpu:   # on a GPU pool, but without the GPU toleration
        container["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
        spec["nodeSelector"] = {"mlops.platform/gpu-type": "a100-40gb"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad", "namespace": "forecast-lab"},
            "spec": {"selector": {"matchLabels": {"app": "bad"}},
                     "template": {"metadata": {"labels": {"app": "bad"}}, "spec": spec}}}


def mutated_pod(deployment: dict[str, Any], change: Callable[[dict], Any]) -> dict[str, Any]:
    change(deployment["spec"]["template"]["spec"])
    return deployment


def _isvc(plan: Plan) -> dict[str, Any]:
    return next(r for r in plan["resources"] if r["type"].endswith(":InferenceService"))["inputs"]


def _bucket(plan: Plan, name: str, skip: str) -> None:
    _add(plan, "aws:s3/bucket:Bucket", name, {"bucket": name}, protect=True)
    if skip != "encryption":
        _add(plan, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
             f"{name}-sse", {"bucket": name, "rules": [{"applyServerSideEncryptionByDefault": {
                 "sseAlgorithm": "aws:kms", "kmsMasterKeyId": "k"}}]})
    if skip != "versioning":
        _add(plan, "aws:s3/bucketVersioning:BucketVersioning", f"{name}-versioning",
             {"bucket": name, "versioningConfiguration": {"status": "Enabled"}})
    if skip != "public":
        _add(plan, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", f"{name}-pab",
             {"bucket": name, **{f: True for f in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                                   "restrictPublicBuckets")}})


def _database(plan: Plan, name: str, **changes: Any) -> None:
    db = {"identifier": name, "engine": "postgres", "instanceClass": "db.t4g.medium", "storageEncrypted": True,
          "publiclyAccessible": False, "deletionProtection": True, "skipFinalSnapshot": False,
          "backupRetentionPeriod": 7, "kmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/k", **changes}
    _add(plan, "aws:rds/instance:Instance", name, db, protect=True)


def _hub_gpu_timeout(plan: Plan) -> None:
    values = _find(plan, "kubernetes:helm.sh/v3:Release", "notebooks-hub")["inputs"]["values"]
    values["cull"]["timeout"] = 7 * 24 * 3600
    for profile in values["singleuser"]["profileList"]:
        override = profile.get("kubespawner_override") or {}
        if any("nvidia.com/" in k for k in override.get("extra_resource_limits") or {}):
            override["args"] = [a for a in override.get("args") or [] if "shutdown_no_activity_timeout" not in a]
            override["args"].append("--ServerApp.shutdown_no_activity_timeout=86400")
            return


VIOLATIONS: dict[str, Callable[[Plan], Any]] = {
    "gpu-pool-requires-taint": lambda p: _pool_copy(p, "no-taint", lambda x: x["spec"]["template"]["spec"].pop(
        "taints")),
    "gpu-pool-requires-limit": lambda p: _pool_copy(p, "no-limit", lambda x: x["spec"]["limits"].pop(
        "nvidia.com/gpu")),
    "gpu-pool-scales-to-zero": lambda p: _pool_copy(p, "slow", lambda x: x["spec"]["disruption"].update(
        consolidateAfter="6h")),
    "gpu-sharing-within-catalog": lambda p: _pool_copy(p, "sliced", lambda x: x["spec"]["template"]["metadata"][
        "labels"].update({"nvidia.com/device-plugin.config": "no-such-config"})),
    "gpu-workload-requires-limit-toleration-and-pool": lambda p: _add(
        p, "kubernetes:apps/v1:Deployment", "gpu-without-toleration",
        _team_pod("nvcr.io/nvidia/pytorch:25.01-py3", gpu=True)),
    "gpu-team-quota-within-capacity": lambda p: _add(p, "kubernetes:core/v1:ResourceQuota", "huge-quota", {
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "huge", "namespace": "forecast-lab"},
        "spec": {"hard": {"requests.nvidia.com/gpu": "100000"}}}),
    "cost-gpu-quota-within-budget": lambda p: _find(p, "kubernetes:core/v1:Namespace", "team-forecast-lab-namespace")[
        "inputs"]["metadata"].update(annotations={"mlops.platform/monthly-gpu-budget-usd": "100"}),
    "team-namespace-default-deny-egress": lambda p: p["resources"].remove(
        _find(p, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "team-forecast-lab-netpol-default-deny")),
    "workload-egress-allowlist": lambda p: _add(
        p, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "notebook-vpc", {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "notebook-vpc", "namespace": "forecast-lab"},
            "spec": {"podSelector": {"matchLabels": {"job-type": "notebook"}}, "policyTypes": ["Egress"],
                     "egress": [{"to": [{"ipBlock": {"cidr": "10.40.0.0/16"}}], "ports": [{"port": 443}]}]}}),
    "team-pod-security": lambda p: _add(p, "kubernetes:apps/v1:Deployment", "host-network", mutated_pod(
        _team_pod("nvcr.io/nvidia/pytorch:25.01-py3"), lambda s: s.update(hostNetwork=True))),
    "team-namespace-pod-security-level": lambda p: _find(p, "kubernetes:core/v1:Namespace",
                                                         "team-forecast-lab-namespace")["inputs"]["metadata"][
        "labels"].update({"pod-security.kubernetes.io/enforce": "privileged"}),
    "deployment-read-only-root-filesystem": lambda p: _find(p, "kubernetes:apps/v1:Deployment", "mlflow-server")[
        "inputs"]["spec"]["template"]["spec"]["containers"][0]["securityContext"].pop("readOnlyRootFilesystem"),
    "team-quota-covers-gpus": lambda p: _find(p, "kubernetes:core/v1:ResourceQuota", "team-reco-lab-quota")[
        "inputs"]["spec"]["hard"].pop("requests.nvidia.com/gpu"),
    "inference-no-scale-to-zero-in-prod": lambda p: _isvc(p)["spec"]["predictor"].update(minReplicas=0),
    "inference-replicas-within-quota": lambda p: _isvc(p)["spec"]["predictor"].update(maxReplicas=500),
    "rbac-no-wildcard-role-for-teams": lambda p: _add(p, "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding",
                                                      "team-admin", {
        "metadata": {"name": "team-admin"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                        "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "Group", "name": "forecast-lab-members"}]}),
    "fsx-in-lustre-security-group": lambda p: _find(p, "aws:fsx/lustreFileSystem:LustreFileSystem",
                                                    "datasets-transactions")["inputs"].update(securityGroupIds=[]),
    "eks-endpoint-restricted": lambda p: _find(p, "aws:eks/cluster:Cluster", "cluster-eks")["inputs"]["vpcConfig"]
    .update(publicAccessCidrs=["0.0.0.0/0"]),
    "ecr-repository-hardened": lambda p: _find(p, "aws:ecr/repository:Repository", "supply-chain-forecast-lab")[
        "inputs"].update(imageTagMutability="MUTABLE"),
    "kms-key-rotation": lambda p: _find(p, "aws:kms/key:Key", "datasets-dvc")["inputs"].update(
        enableKeyRotation=False),
    "rds-backups-and-customer-key": lambda p: _find(p, "aws:rds/instance:Instance", "mlflow-database")[
        "inputs"].update(backupRetentionPeriod=1),
    "network-policies-require-enforcement": lambda p: _find(p, "aws:eks/addon:Addon", "cluster-vpc-cni")[
        "inputs"].update(configurationValues="{}"),
    "security-groups-closed-to-internet": lambda p: _add(p, "aws:ec2/securityGroup:SecurityGroup", "open-sg", {
        "vpcId": "vpc-1", "ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22,
                                       "cidrBlocks": ["0.0.0.0/0"]}]}),
    "s3-bucket-encrypted": lambda p: _bucket(p, "plain-bucket", skip="encryption"),
    "s3-bucket-versioned": lambda p: _bucket(p, "unversioned-bucket", skip="versioning"),
    "s3-bucket-public-access-blocked": lambda p: _bucket(p, "public-bucket", skip="public"),
    "rds-encrypted": lambda p: _database(p, "plain-db", storageEncrypted=False),
    "rds-not-publicly-accessible": lambda p: _database(p, "public-db", publiclyAccessible=True),
    "rds-deletion-protection-in-prod": lambda p: _database(p, "deletable-db", deletionProtection=False),
    "data-stores-protected-in-prod": lambda p: _find(p, "aws:s3/bucket:Bucket", "datasets-dvc").update(
        protect=False),
    "k8s-no-plaintext-credentials": lambda p: _add(p, "kubernetes:core/v1:ConfigMap", "plain-credentials", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "db", "namespace": "forecast-lab"},
        "data": {"db-password": "hunter2-plain-text"}}),
    "workload-image-from-allowed-registry": lambda p: _add(
        p, "kubernetes:apps/v1:Deployment", "foreign-image", _team_pod("quay.io/someone/tool:1.0")),
    "workload-image-pinned": lambda p: _add(
        p, "kubernetes:apps/v1:Deployment", "latest-image", _team_pod("nvcr.io/nvidia/pytorch:latest")),
    "gpu-notebook-idle-culling": _hub_gpu_timeout,
    # The G/VT node group on spot: prod's policy config records no such quota (with the pool copies above, the P
    # quotas are exceeded too; the rule reports the stack once).
    "ec2-gpu-vcpu-quotas-granted": lambda p: _find(p, "aws:eks/nodeGroup:NodeGroup", "cluster-gpu-a10g-inference")[
        "inputs"].update(capacityType="SPOT"),
    # 1 + 15 one-GPU replicas in a team whose queue holds 4 + 4 GPUs at most: never admitted whole.
    "workload-fits-declared-capacity": lambda p: _add(p, "kubernetes:kubeflow.org/v1:PyTorchJob", "huge-job", {
        "apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
        "metadata": {"name": "huge", "namespace": "forecast-lab", "labels": {"kueue.x-k8s.io/queue-name": "training"}},
        "spec": {"pytorchReplicaSpecs": {role: {"replicas": n, "template": {"spec": {
            "nodeSelector": {"mlops.platform/node-pool": "training"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{"name": "pytorch", "image": "nvcr.io/nvidia/pytorch:25.01-py3",
                            "resources": {"limits": {"nvidia.com/gpu": 1}}}]}}}
            for role, n in (("Master", 1), ("Worker", 15))}}}),
    "cluster-role-no-secrets": lambda p: _add(p, "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole", "reader", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "secret-reader"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]}),
}


def test_every_rule_has_a_deliberate_violation():
    assert sorted(VIOLATIONS) == sorted(NAMES)


@pytest.fixture(scope="module")
def violating_plan(prod, tmp_path_factory) -> tuple[Plan, Any]:
    plan = copy.deepcopy(render.plan(prod.run))
    for violate in VIOLATIONS.values():
        violate(plan)
    path = tmp_path_factory.mktemp("violations") / "plan.json"
    path.write_text(json.dumps(plan))
    return plan, path


def test_check_fails_with_one_message_per_violation(violating_plan):
    _, path = violating_plan
    result = subprocess.run([sys.executable, "-m", "preview", "check", "prod", "--plan", str(path)],
                            cwd=PROJECT_DIR, capture_output=True, text=True)
    assert result.returncode == 1, result.stdout + result.stderr
    reported = Counter(re.findall(r"^  \[(?:mandatory|advisory)\] ([a-z0-9-]+): ", result.stdout, re.M))
    assert reported == Counter({name: 1 for name in NAMES}), result.stdout


def test_an_advisory_override_in_the_stack_policy_config_lets_check_pass(violating_plan, tmp_path):
    plan, _ = violating_plan
    overrides = {"all": "advisory"}
    found = check.evaluate(POLICIES, _registrations(plan), overrides)
    assert len(found) == len(NAMES) and not any(v.mandatory for v in found)


def test_the_s3_ranges_are_the_stack_regions(prod):
    """The plan's S3 gateway endpoint names its region: a training egress rule to another region's S3 range fails,
    to its own region's range passes (policy config holds no copy of the ranges)."""
    from components import catalog, labels
    plan = copy.deepcopy(render.plan(prod.run))
    endpoints = [r["inputs"]["serviceName"] for r in plan["resources"]
                 if r["type"] == "aws:ec2/vpcEndpoint:VpcEndpoint" and r["inputs"].get("serviceName", "").endswith(".s3")]
    region = endpoints[0].split(".")[2]
    team = next(r["inputs"]["metadata"]["name"] for r in plan["resources"] if r["type"] == "kubernetes:core/v1:Namespace"
                and labels.TEAM in r["inputs"]["metadata"].get("labels", {}))
    lists = catalog.s3_prefix_lists()
    other = next(cidrs[0] for r, (_, cidrs) in lists.items() if r != region)
    egress = [p for p in POLICIES if p.name == "workload-egress-allowlist"]
    for name, cidr, expected in (("own-region", lists[region][1][0], []), ("other-region", other,
                                                                            ["workload-egress-allowlist"])):
        probe = copy.deepcopy(plan)
        _add(probe, "kubernetes:networking.k8s.io/v1:NetworkPolicy", name, {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": team},
            "spec": {"podSelector": {"matchLabels": {"job-type": "training"}}, "policyTypes": ["Egress"],
                     "egress": [{"to": [{"ipBlock": {"cidr": cidr}}], "ports": [{"port": 443}]}]}})
        found = check.evaluate(egress, _registrations(probe), check.load_overrides(PROJECT_DIR, "prod"))
        assert [v.policy for v in found] == expected, (name, cidr, found)


def _registrations(plan: Plan):
    from preview.__main__ import _registrations as registrations
    return registrations(plan)


def test_stack_policies_see_every_custom_resource_with_its_props(prod):
    seen = []
    spy = StackValidationPolicy(name="spy-stack", description="records what a stack policy is given",
                                validate=lambda args, report: seen.extend(args.resources))
    check.evaluate([spy], prod.resources)
    custom = [r for r in prod.resources if r.custom]
    assert [r.urn for r in seen] == [r.urn for r in custom]
    assert all(s.props == r.inputs and s.resource_type == r.type for s, r in zip(seen, custom))


def test_the_crossguard_entry_point_serves_exactly_the_shared_policy_objects(monkeypatch):
    """`pulumi preview --policy-pack policies` runs policies/__main__.py: it must hand over POLICIES itself."""
    import runpy

    import pulumi_policy

    served = {}

    class RecordingPack:
        def __init__(self, name, policies, **kwargs):
            served.update(name=name, policies=policies)

    monkeypatch.setattr(pulumi_policy, "PolicyPack", RecordingPack)
    runpy.run_path(str(PROJECT_DIR / "policies" / "__main__.py"), run_name="__main__")
    assert served["name"] == "mlops-platform"
    assert served["policies"] is POLICIES

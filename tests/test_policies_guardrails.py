"""Pod security, serving, RBAC, data stores and the upstream compliance rules, against the variants an engineer
writes: different kinds, patches, spellings; each with the compliant form passing."""

from __future__ import annotations

import copy

import pytest

from policies import POLICIES, compliance, data, pod_security, rbac, serving
from tests import plan_fixtures as plan
from tests.policy_harness import mutated, resource, violations

# ---- pod security in team namespaces -----------------------------------------------------------------------

POD = {"containers": [{"name": "c", "image": "x:1", "securityContext": {"allowPrivilegeEscalation": False}}]}


def kinds(spec: dict) -> dict[str, dict]:
    """The same pod spec in every kind that carries one."""
    t = {"metadata": {"labels": {"job-type": "training"}}, "spec": spec}
    meta = {"name": "w", "namespace": "team-a"}
    return {
        "kubernetes:core/v1:Pod": {"metadata": meta, "spec": spec},
        "kubernetes:apps/v1:Deployment": {"metadata": meta, "spec": {"template": t}},
        "kubernetes:apps/v1:StatefulSetPatch": {"metadata": meta, "spec": {"template": t}},
        "kubernetes:apps/v1:DaemonSet": {"metadata": meta, "spec": {"template": t}},
        "kubernetes:batch/v1:Job": {"metadata": meta, "spec": {"template": t}},
        "kubernetes:batch/v1:CronJob": {"metadata": meta, "spec": {"jobTemplate": {"spec": {"template": t}}}},
        "kubernetes:kubeflow.org/v1:PyTorchJob": {"metadata": meta, "spec": {"pytorchReplicaSpecs": {
            "Worker": {"template": t}}}},
        "kubernetes:trainer.kubeflow.org/v1alpha1:TrainJob": {"metadata": meta, "spec": {
            "trainer": {"image": "x:1"}, "podSpecOverrides": [spec]}},
        "kubernetes:ray.io/v1:RayCluster": {"metadata": meta, "spec": {"headGroupSpec": {"template": t}}},
        "kubernetes:serving.kserve.io/v1beta1:InferenceService": {"metadata": meta, "spec": {"predictor": spec}},
        "kubernetes:kubeflow.org/v1:Notebook": {"metadata": meta, "spec": {"template": t}},
    }


def pod_check(typ: str, props: dict, namespace_level: str = "baseline") -> list[str]:
    return violations(pod_security.team_pods_stay_off_the_node, plan.team_namespace("team-a", namespace_level),
                      resource(typ, props))


@pytest.mark.parametrize("typ", sorted(kinds(POD)))
def test_a_plain_pod_passes_in_every_kind(typ):
    assert pod_check(typ, kinds(POD)[typ]) == []


def _c(spec):
    return spec["containers"][0]


BAD_PODS = {
    "privileged": (lambda s: _c(s)["securityContext"].update(privileged=True), "privileged"),
    "hostNetwork": (lambda s: s.update(hostNetwork=True), "node's network namespace"),
    "hostPID": (lambda s: s.update(hostPID=True), "node's PID namespace"),
    "hostIPC": (lambda s: s.update(hostIPC=True), "node's IPC namespace"),
    "hostPath": (lambda s: s.update(volumes=[{"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}]),
                 "mounts the node's path /var/run/docker.sock"),
    "capabilities": (lambda s: _c(s)["securityContext"].update(capabilities={"add": ["SYS_ADMIN"]}), "SYS_ADMIN"),
    "cap-prefix": (lambda s: _c(s)["securityContext"].update(capabilities={"add": ["CAP_NET_RAW"]}), "CAP_NET_RAW"),
    "hostPort": (lambda s: _c(s).update(ports=[{"containerPort": 80, "hostPort": 80}]), "binds host ports [80]"),
    "init-privileged": (lambda s: s.update(initContainers=[{"name": "i", "securityContext": {"privileged": True}}]),
                        "runs container 'i' privileged"),
}


@pytest.mark.parametrize("typ", sorted(kinds(POD)))
@pytest.mark.parametrize("mistake", sorted(BAD_PODS))
def test_each_host_escape_is_caught_in_every_kind(typ, mistake):
    change, needle = BAD_PODS[mistake]
    found = pod_check(typ, kinds(mutated(POD, change))[typ])
    assert len(found) == 1 and needle in found[0], found


def test_pods_outside_team_namespaces_and_net_bind_service_are_allowed():
    bad = kinds(mutated(POD, lambda s: s.update(hostNetwork=True)))["kubernetes:apps/v1:Deployment"]
    elsewhere = mutated(bad, lambda p: p["metadata"].update(namespace="gpu-operator"))
    assert pod_check("kubernetes:apps/v1:Deployment", elsewhere) == []
    bind = kinds(mutated(POD, lambda s: _c(s)["securityContext"].update(capabilities={"add": ["NET_BIND_SERVICE"]})))
    assert pod_check("kubernetes:core/v1:Pod", bind["kubernetes:core/v1:Pod"]) == []


@pytest.mark.parametrize("level, ok", [("restricted", True), ("baseline", True), ("privileged", False),
                                       (None, False), ("Baseline", False)])
def test_team_namespace_pod_security_level(level, ok):
    found = violations(pod_security.team_namespace_pod_security_level, plan.team_namespace("team-a", level))
    assert (found == []) is ok, found


def test_a_namespace_patch_weakening_the_level_is_caught():
    patch = resource("kubernetes:core/v1:NamespacePatch", {"metadata": {"name": "team-a", "labels": {
        "mlops.platform/team": "team-a", "pod-security.kubernetes.io/enforce": "privileged"}}}, name="patch")
    found = violations(pod_security.team_namespace_pod_security_level, plan.team_namespace("team-a"), patch)
    assert found == ["Team namespace 'team-a' enforces Pod Security level 'privileged' "
                     "(pod-security.kubernetes.io/enforce); it must enforce 'baseline' or stricter."]
    strict = violations(pod_security.team_namespace_pod_security_level, plan.team_namespace("team-a"),
                        config={"minimumLevel": "restricted"})
    assert len(strict) == 1


def test_read_only_root_file_system_for_deployments():
    ro = {"containers": [{"name": "c", "image": "x:1", "securityContext": {"readOnlyRootFilesystem": True}}]}
    deployment = {"metadata": {"name": "api", "namespace": "mlflow"}, "spec": {"template": {"spec": ro}}}
    policy = pod_security.deployment_read_only_root_filesystem
    assert violations(policy, resource("kubernetes:apps/v1:Deployment", deployment)) == []
    writable = mutated(deployment, lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("securityContext"))
    assert violations(policy, resource("kubernetes:apps/v1:Deployment", writable)) == [
        "Deployment 'mlflow/api' runs container 'c' with a writable root file system."]
    assert violations(policy, resource("kubernetes:apps/v1:Deployment", writable),
                      config={"exempt": ["mlflow/api"]}) == []


# ---- serving ------------------------------------------------------------------------------------------------

ISVC_TYPE = "kubernetes:serving.kserve.io/v1beta1:InferenceService"


def isvc(predictor: dict, name: str = "m") -> dict:
    model = {"modelFormat": {"name": "xgboost"}, "resources": {"requests": {"cpu": "2", "memory": "4Gi"},
                                                              "limits": {"cpu": "2", "memory": "4Gi"}}}
    return {"metadata": {"name": name, "namespace": "team-a"},
            "spec": {"predictor": {"minReplicas": 1, "maxReplicas": 4, "model": model, **predictor}}}


def prod(*extra):
    """A production stack: something is protected from deletion."""
    bucket = resource("aws:s3/bucket:Bucket", {"bucket": "b"}, name="b")
    bucket.protect = True
    return [bucket, *extra]


@pytest.mark.parametrize("predictor", [{"minReplicas": 0},
                                       {"minReplicas": None, "annotations": {"autoscaling.knative.dev/min-scale": "0"}}])
def test_scale_to_zero_is_refused_in_prod_only(predictor):
    policy = serving.inference_warm_in_prod
    props = isvc(predictor)
    if predictor.get("minReplicas") is None:
        props["spec"]["predictor"].pop("minReplicas")
    assert len(violations(policy, *prod(resource(ISVC_TYPE, props)))) == 1
    assert violations(policy, resource(ISVC_TYPE, props)) == []
    assert violations(policy, *prod(resource(ISVC_TYPE, isvc({})))) == []


@pytest.mark.parametrize("predictor, transformer, ok", [
    ({}, None, True),                                               # 4 x 2 CPU = 8 of 8
    ({"maxReplicas": 5}, None, False),                              # 10 CPU > 8
    ({"maxReplicas": None, "annotations": {"autoscaling.knative.dev/max-scale": "6"}}, None, False),
    ({"maxReplicas": 2}, {"maxReplicas": 2, "containers": [{"name": "t", "resources": {"requests": {"cpu": "2"}}}]},
     True),                                                         # 2 x 2 + 2 x 2 = 8
    ({"maxReplicas": 2}, {"maxReplicas": 3, "containers": [{"name": "t", "resources": {"requests": {"cpu": "2"}}}]},
     False),                                                        # transformer counts too
    ({"maxReplicas": 0}, None, False),                              # 0: unbounded
])
def test_inference_replicas_within_quota(predictor, transformer, ok):
    props = isvc(predictor)
    if props["spec"]["predictor"].get("maxReplicas") is None:
        props["spec"]["predictor"].pop("maxReplicas")
    if transformer:
        props["spec"]["transformer"] = transformer
    found = violations(serving.inference_replicas_within_quota, resource(ISVC_TYPE, props),
                       plan.quota("team-a", {"requests.cpu": "8", "requests.memory": "32Gi"}))
    assert (found == []) is ok, found


def test_two_services_share_one_quota():
    found = violations(serving.inference_replicas_within_quota, resource(ISVC_TYPE, isvc({}, "a"), name="a"),
                       resource(ISVC_TYPE, isvc({}, "b"), name="b"), plan.quota("team-a", {"requests.cpu": "12"}))
    assert found == ["At their maxReplicas the InferenceServices of namespace 'team-a' request 16 cpu (quota 12): "
                     "more than its ResourceQuota holds."]


@pytest.mark.parametrize("text, number", [("500m", 0.5), ("2Gi", 2 ** 31), (4, 4.0), ("1.5", 1.5), ("x", None)])
def test_quantity(text, number):
    assert serving.quantity(text) == number


# ---- RBAC ---------------------------------------------------------------------------------------------------

RBAC = "kubernetes:rbac.authorization.k8s.io/v1:"


def role(kind: str, name: str, rules: list, namespace: str | None = None):
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return resource(RBAC + kind, {"metadata": meta, "rules": rules}, name=f"{kind}-{name}")


def binding(kind: str, role_kind: str, role_name: str, subject: dict, namespace: str | None = None):
    meta = {"name": f"bind-{role_name}", **({"namespace": namespace} if namespace else {})}
    return resource(RBAC + kind, {"metadata": meta, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                                "kind": role_kind, "name": role_name},
                                  "subjects": [subject]}, name=f"{kind}-{role_name}-{subject['name']}")


GROUP = {"kind": "Group", "name": "team-a-members", "apiGroup": "rbac.authorization.k8s.io"}
NAMED = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]


@pytest.mark.parametrize("rules", [
    [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
    [{"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}],
    [{"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs"], "verbs": ["*"]}],
])
@pytest.mark.parametrize("bind", ["ClusterRoleBinding", "RoleBinding"])
def test_a_wildcard_cluster_role_bound_to_a_team_group_is_caught(rules, bind):
    world = [plan.team_namespace("team-a"), role("ClusterRole", "power", rules),
             binding(bind, "ClusterRole", "power", GROUP, "team-a" if bind == "RoleBinding" else None)]
    (found,) = violations(rbac.no_wildcard_role_for_teams, *world)
    assert "grants ClusterRole 'power'" in found and "Group 'team-a-members'" in found


def test_named_roles_built_in_superusers_service_accounts_and_allowed_groups():
    policy = rbac.no_wildcard_role_for_teams
    ns = plan.team_namespace("team-a")
    assert violations(policy, ns, role("ClusterRole", "viewer", NAMED), binding("ClusterRoleBinding", "ClusterRole",
                                                                               "viewer", GROUP)) == []
    assert len(violations(policy, ns, binding("RoleBinding", "ClusterRole", "cluster-admin", GROUP, "team-a"))) == 1
    sa = {"kind": "ServiceAccount", "name": "training", "namespace": "team-a"}
    assert len(violations(policy, ns, binding("ClusterRoleBinding", "ClusterRole", "edit", sa))) == 1
    platform_sa = {"kind": "ServiceAccount", "name": "operator", "namespace": "kubeflow"}
    assert violations(policy, ns, binding("ClusterRoleBinding", "ClusterRole", "cluster-admin", platform_sa)) == []
    admins = {"kind": "Group", "name": "platform-admins"}
    assert violations(policy, ns, binding("ClusterRoleBinding", "ClusterRole", "cluster-admin", admins),
                      config={"allowedGroups": ["platform-admins"]}) == []
    aggregated = resource(RBAC + "ClusterRole", {"metadata": {"name": "agg"}, "aggregationRule": {
        "clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]}}, name="agg")
    assert len(violations(policy, ns, aggregated, binding("ClusterRoleBinding", "ClusterRole", "agg", GROUP))) == 1


# ---- data stores ----------------------------------------------------------------------------------------------

def test_a_public_aurora_cluster_instance_is_caught():
    typ = "aws:rds/clusterInstance:ClusterInstance"
    props = {"clusterIdentifier": "c", "instanceClass": "db.r7g.large", "engine": "aurora-postgresql"}
    assert violations(data.rds_not_publicly_accessible, resource(typ, props)) == []
    assert len(violations(data.rds_not_publicly_accessible, resource(typ, {**props, "publiclyAccessible": True}))) == 1


def _with_deps(r, *deps):
    r.dependencies = [d.urn for d in deps]
    return r


def test_fsx_without_the_lustre_security_group_is_caught():
    lustre_sg = resource("aws:ec2/securityGroup:SecurityGroup", {"description": "lustre"}, name="lustre")
    rule = _with_deps(resource("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", {
        "fromPort": 988, "toPort": 988, "ipProtocol": "tcp", "securityGroupId": "sg-1",
        "referencedSecurityGroupId": "sg-2"}, name="rule"), lustre_sg)
    web_sg = resource("aws:ec2/securityGroup:SecurityGroup", {"ingress": [
        {"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["10.0.0.0/16"]}]}, name="web")
    inline_sg = resource("aws:ec2/securityGroup:SecurityGroup", {"ingress": [
        {"protocol": "tcp", "fromPort": 988, "toPort": 1023, "cidrBlocks": ["10.0.0.0/16"]}]}, name="inline")
    fs = {"storageCapacity": 1200, "subnetIds": "subnet-1", "deploymentType": "SCRATCH_2", "securityGroupIds": ["sg"]}
    fsx = "aws:fsx/lustreFileSystem:LustreFileSystem"
    policy = data.fsx_in_lustre_security_group
    assert violations(policy, lustre_sg, rule, _with_deps(resource(fsx, fs), lustre_sg)) == []
    assert violations(policy, inline_sg, _with_deps(resource(fsx, fs), inline_sg)) == []
    assert len(violations(policy, web_sg, _with_deps(resource(fsx, fs), web_sg))) == 1
    assert len(violations(policy, lustre_sg, rule, resource(fsx, {**fs, "securityGroupIds": []}))) == 1


@pytest.mark.parametrize("flags, ok", [
    ({}, True),
    ({"blockPublicPolicy": False}, False),
    ({"restrictPublicBuckets": None}, False),
])
def test_public_access_block_switches(flags, ok):
    from tests.test_policy_pack import _bucket
    plan_ = {"resources": []}
    _bucket(plan_, "b", skip="")
    for r in plan_["resources"]:
        if r["type"].endswith("BucketPublicAccessBlock"):
            r["inputs"].update(flags)
    found = violations(data.s3_bucket_public_access_blocked, *[
        resource(r["type"], r["inputs"], name=r["name"]) for r in plan_["resources"]])
    assert (found == []) is ok, found


def test_a_second_public_access_block_with_a_switch_off_is_caught():
    bucket = resource("aws:s3/bucket:Bucket", {"bucket": "b"}, name="b")
    on = {"bucket": "b", **{f: True for f in data.PUBLIC_ACCESS_FLAGS}}
    pab = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
    assert violations(data.s3_bucket_public_access_blocked, bucket, resource(pab, on, name="on")) == []
    off = resource(pab, {**on, "blockPublicAcls": False}, name="off")
    assert len(violations(data.s3_bucket_public_access_blocked, bucket, resource(pab, on, name="on"), off)) == 1


# ---- upstream compliance rules ------------------------------------------------------------------------------

EKS = {"name": "c", "vpcConfig": {"endpointPrivateAccess": True, "endpointPublicAccess": True,
                                  "publicAccessCidrs": ["203.0.113.0/24"]}}


@pytest.mark.parametrize("change, ok", [
    (lambda c: None, True),
    (lambda c: c["vpcConfig"].update(endpointPublicAccess=False, publicAccessCidrs=[]), True),
    (lambda c: c["vpcConfig"].update(publicAccessCidrs=["0.0.0.0/0"]), False),
    (lambda c: c["vpcConfig"].pop("publicAccessCidrs"), False),
    (lambda c: c["vpcConfig"].pop("endpointPublicAccess"), True),     # provider default: public, CIDRs still narrow
    (lambda c: c["vpcConfig"].update(publicAccessCidrs=["0.0.0.0/1", "128.0.0.0/1"]), False),    # split world
    (lambda c: c["vpcConfig"].update(endpointPrivateAccess=False), False),
])
def test_eks_endpoint_in_prod(change, ok):
    props = mutated(EKS, change)
    found = violations(compliance.eks_endpoint_restricted, *prod(resource("aws:eks/cluster:Cluster", props)))
    assert (found == []) is ok, found
    assert violations(compliance.eks_endpoint_restricted, resource("aws:eks/cluster:Cluster", props)) == []


ECR = {"name": "r", "imageTagMutability": "IMMUTABLE", "imageScanningConfiguration": {"scanOnPush": True},
       "encryptionConfigurations": [{"encryptionType": "KMS", "kmsKey": "arn:aws:kms:k"}]}


@pytest.mark.parametrize("change, needle", [
    (lambda r: r.pop("imageTagMutability"), "mutable"),
    (lambda r: r.update(imageTagMutability="MUTABLE"), "mutable"),
    (lambda r: r.pop("imageScanningConfiguration"), "scan images on push"),
    (lambda r: r.update(encryptionConfigurations=[{"encryptionType": "AES256"}]), "customer KMS key"),
    (lambda r: r.pop("encryptionConfigurations"), "customer KMS key"),
])
def test_ecr_repository(change, needle):
    typ = "aws:ecr/repository:Repository"
    assert violations(compliance.ecr_repository_hardened, resource(typ, ECR)) == []
    (found,) = violations(compliance.ecr_repository_hardened, resource(typ, mutated(ECR, change)))
    assert needle in found


def test_kms_rotation():
    typ = "aws:kms/key:Key"
    assert violations(compliance.kms_key_rotation, resource(typ, {"enableKeyRotation": True})) == []
    assert len(violations(compliance.kms_key_rotation, resource(typ, {}))) == 1
    assert violations(compliance.kms_key_rotation, resource(typ, {"customerMasterKeySpec": "RSA_2048"})) == []


@pytest.mark.parametrize("typ", ["aws:rds/instance:Instance", "aws:rds/cluster:Cluster"])
def test_rds_backups_and_customer_key(typ):
    good = {"backupRetentionPeriod": 7, "kmsKeyId": "arn:aws:kms:k", "storageEncrypted": True}
    policy = compliance.rds_backups_and_customer_key
    assert violations(policy, resource(typ, good)) == []
    assert len(violations(policy, resource(typ, {**good, "backupRetentionPeriod": 1}))) == 1
    assert len(violations(policy, resource(typ, {**good, "backupRetentionPeriod": 0}))) == 1
    assert len(violations(policy, resource(typ, {k: v for k, v in good.items() if k != "kmsKeyId"}))) == 1
    assert violations(policy, resource(typ, {**good, "backupRetentionPeriod": 3}),
                      config={"minBackupRetentionDays": 3}) == []


def test_all_new_rules_are_in_the_pack():
    for module in (compliance, pod_security, rbac, serving):
        assert all(p in POLICIES for p in module.POLICIES)
    assert copy.copy(POLICIES) == POLICIES

"""What the cluster component declares in AWS: EKS, IRSA, add-ons, node groups, network."""

from __future__ import annotations

import json

import pytest

from components import labels
from tests.conftest import Rendered, run_config, stack_yaml
from tests.iam_eval import allowed, Request


def test_eks_cluster_uses_api_auth_kms_secrets_and_full_control_plane_logging(dev):
    cluster = dev.one("aws:eks/cluster:Cluster").inputs
    assert cluster["name"] == "mlops-dev"
    assert cluster["accessConfig"]["authenticationMode"] == "API"
    key = dev.one("aws:kms/key:Key", "cluster-secrets")
    assert key.inputs["enableKeyRotation"] is True
    assert cluster["encryptionConfig"]["resources"] == ["secrets"]
    assert cluster["encryptionConfig"]["provider"]["keyArn"].startswith("arn:aws:kms:")
    assert set(cluster["enabledClusterLogTypes"]) == {"api", "audit", "authenticator", "controllerManager", "scheduler"}
    log_group = dev.one("aws:cloudwatch/logGroup:LogGroup", "cluster-control-plane").inputs
    assert log_group["name"] == "/aws/eks/mlops-dev/cluster" and log_group["retentionInDays"] == 7


def test_admin_roles_get_access_entries_with_cluster_admin_policy(dev):
    entry = dev.one("aws:eks/accessEntry:AccessEntry", "cluster-admin-0").inputs
    assert entry["principalArn"] == "arn:aws:iam::123456789012:role/platform-admins"
    assoc = dev.one("aws:eks/accessPolicyAssociation:AccessPolicyAssociation", "cluster-admin-0").inputs
    assert assoc["policyArn"].endswith("AmazonEKSClusterAdminPolicy")
    assert assoc["accessScope"] == {"type": "cluster"}


def test_vpc_cni_enforces_network_policies(dev):
    addons = {r.inputs["addonName"]: r.inputs for r in dev.of_type("aws:eks/addon:Addon")}
    assert {"vpc-cni", "coredns", "kube-proxy", "aws-ebs-csi-driver"} <= set(addons)
    assert json.loads(addons["vpc-cni"]["configurationValues"])["enableNetworkPolicy"] == "true"


def test_ebs_csi_and_vpc_cni_use_irsa_roles_trusting_only_their_service_account(dev):
    addons = {r.inputs["addonName"]: r.inputs for r in dev.of_type("aws:eks/addon:Addon")}
    for addon, subject in [("aws-ebs-csi-driver", "system:serviceaccount:kube-system:ebs-csi-controller-sa"),
                           ("vpc-cni", "system:serviceaccount:kube-system:aws-node")]:
        role_arn = addons[addon]["serviceAccountRoleArn"]
        role = dev.one("aws:iam/role:Role", role_arn.split("/")[-1].rsplit("-", 1)[0])
        trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
        assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert trust["Principal"]["Federated"].startswith("arn:aws:iam::123456789012:oidc-provider/oidc.eks.")
        conditions = trust["Condition"]["StringEquals"]
        assert subject in conditions.values() and "sts.amazonaws.com" in conditions.values()


def test_gpu_node_groups_are_tainted_labelled_by_gpu_type_and_scale_from_zero(dev):
    group = dev.one("aws:eks/nodeGroup:NodeGroup", "cluster-gpu-t4").inputs
    assert group["amiType"] == "AL2023_x86_64_NVIDIA"
    assert group["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert group["labels"][labels.GPU_TYPE] == "t4"
    assert group["scalingConfig"]["minSize"] == 0 and group["scalingConfig"]["desiredSize"] == 0
    assert group["capacityType"] == "SPOT"
    system = dev.one("aws:eks/nodeGroup:NodeGroup", "cluster-system").inputs
    assert "taints" not in system and system["amiType"] == "AL2023_x86_64_STANDARD"


def test_prod_protects_data_and_keys(prod):
    assert prod.one("aws:kms/key:Key", "cluster-secrets").protect is True
    assert prod.one("aws:eks/cluster:Cluster").inputs["deletionProtection"] is True
    assert prod.obj("StorageClass", "gp3")["reclaimPolicy"] == "Retain"


def test_network_single_nat_in_dev_one_per_az_in_prod(dev, prod):
    assert len(dev.of_type("aws:ec2/natGateway:NatGateway")) == 1
    assert len(prod.of_type("aws:ec2/natGateway:NatGateway")) == 3
    private = [s.inputs for s in prod.of_type("aws:ec2/subnet:Subnet") if "private" in s.name]
    assert len(private) == 3 and all(s["tags"]["karpenter.sh/discovery"] == "mlops-prod" for s in private)
    assert len({s["availabilityZone"] for s in private}) == 3


def test_existing_network_is_used_and_no_vpc_is_created():
    config = stack_yaml("dev")
    config["mlops-platform:network"] = {"existing": {
        "vpcId": "vpc-0abc12345678def00",
        "privateSubnetIds": ["subnet-0aaa1111bbbb2222c", "subnet-0ddd3333eeee4444f"],
    }}
    rendered = Rendered(run_config(config))
    assert rendered.of_type("aws:ec2/vpc:Vpc") == []
    subnet_ids = rendered.one("aws:eks/cluster:Cluster").inputs["vpcConfig"]["subnetIds"]
    assert subnet_ids == ["subnet-0aaa1111bbbb2222c", "subnet-0ddd3333eeee4444f"]
    # Flow logs and the default security group of someone else's VPC are its owner's to manage.
    assert rendered.of_type("aws:ec2/flowLog:FlowLog") == []
    assert rendered.of_type("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup") == []


def test_kubernetes_objects_use_the_cluster_provider(dev):
    provider = dev.one("pulumi:providers:kubernetes")
    k8s_objects = [r for r in dev.resources if r.type.startswith("kubernetes:")]
    assert k8s_objects and all(r.provider.startswith(provider.urn + "::") for r in k8s_objects)
    kubeconfig = json.loads(provider.inputs["kubeconfig"])
    assert kubeconfig["users"][0]["user"]["exec"]["command"] == "aws"


def test_sts_is_reachable_privately_for_irsa(dev):
    endpoint = dev.one("aws:ec2/vpcEndpoint:VpcEndpoint", "network-sts").inputs
    assert endpoint["vpcEndpointType"] == "Interface" and endpoint["privateDnsEnabled"] is True
    assert endpoint["serviceName"] == "com.amazonaws.us-west-2.sts"
    private = [s.inputs["cidrBlock"] for s in dev.of_type("aws:ec2/subnet:Subnet") if "private" in s.name]
    addresses = dev.run.outputs["stsEndpointAddresses"]
    assert len(addresses) == len(private)
    import ipaddress
    assert all(any(ipaddress.ip_network(a).subnet_of(ipaddress.ip_network(p)) for p in private) for a in addresses)


# ---- hardening (issue 18): logs, flow logs, default security group, IMDS, administrators, endpoint ---------------

LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_log_group_is_kms_encrypted_with_a_key_only_its_group_may_use(stack, request):
    r = request.getfixturevalue(stack)
    groups = r.of_type(LOG_GROUP)
    assert {g.name for g in groups} >= {"cluster-control-plane", "network-flow-logs"}
    for group in groups:
        assert group.inputs["kmsKeyId"].startswith("arn:aws:kms:"), group.name
        key = r.one("aws:kms/key:Key", f"{group.name}-logs").inputs
        assert key["enableKeyRotation"] is True
        policy = [key["policy"]]
        region = group.inputs["kmsKeyId"].split(":")[3]
        context = "kms:EncryptionContext:aws:logs:arn"
        own = f"arn:aws:logs:{region}:123456789012:log-group:{group.inputs['name']}"
        other = f"arn:aws:logs:{region}:123456789012:log-group:/somebody/else"
        logs = ("Service", f"logs.{region}.amazonaws.com")
        assert allowed(policy, Request("kms:GenerateDataKey", "*", {context: own}, logs))
        assert not allowed(policy, Request("kms:GenerateDataKey", "*", {context: other}, logs))
        assert not allowed(policy, Request("kms:Decrypt", "*", {context: own}, ("Service", "s3.amazonaws.com")))


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_vpc_flow_logs_and_an_emptied_default_security_group(stack, request):
    r = request.getfixturevalue(stack)
    (vpc,) = r.of_type("aws:ec2/vpc:Vpc")
    flow = r.one("aws:ec2/flowLog:FlowLog").inputs
    assert flow["trafficType"] == "ALL" and flow["logDestinationType"] == "cloud-watch-logs"
    assert flow["logDestination"].endswith(r.one(LOG_GROUP, "network-flow-logs").inputs["name"])
    role = r.one("aws:iam/rolePolicy:RolePolicy", "network-flow-logs").inputs["policy"]
    assert json.loads(role)["Statement"][0]["Resource"][0] == flow["logDestination"]
    default = r.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup").inputs
    assert default["ingress"] == [] and default["egress"] == []
    assert default["vpcId"].startswith("vpc-")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_managed_nodes_require_imdsv2_with_hop_limit_one(stack, request):
    r = request.getfixturevalue(stack)
    templates = {t.urn.rsplit("::", 1)[1]: t.inputs for t in r.of_type("aws:ec2/launchTemplate:LaunchTemplate")}
    groups = r.of_type("aws:eks/nodeGroup:NodeGroup")
    assert groups
    for group in groups:
        assert "diskSize" not in group.inputs, group.name          # in the template (EKS refuses both)
        lt_id = group.inputs["launchTemplate"]["id"]
        (template,) = [t.inputs for t in r.of_type("aws:ec2/launchTemplate:LaunchTemplate")
                       if t.name == group.name]
        assert lt_id.startswith("lt-")
        assert template["metadataOptions"] == {"httpEndpoint": "enabled", "httpTokens": "required",
                                               "httpPutResponseHopLimit": 1}
        (disk,) = template["blockDeviceMappings"]
        assert disk["ebs"]["encrypted"] == "true" and disk["ebs"]["volumeType"] == "gp3"
    assert templates


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_no_implicit_cluster_admin_only_explicit_access_entries(stack, request):
    r = request.getfixturevalue(stack)
    cluster = r.one("aws:eks/cluster:Cluster").inputs
    assert cluster["accessConfig"]["bootstrapClusterCreatorAdminPermissions"] is False
    admins = r.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert [a for a in admins if a.inputs["policyArn"].endswith("AmazonEKSClusterAdminPolicy")]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_api_endpoint_is_private_or_listed_never_open(stack, request):
    vpc = request.getfixturevalue(stack).one("aws:eks/cluster:Cluster").inputs["vpcConfig"]
    assert vpc["endpointPrivateAccess"] is True
    if vpc["endpointPublicAccess"]:
        assert vpc["publicAccessCidrs"] and not any(c.endswith("/0") for c in vpc["publicAccessCidrs"])
    else:
        assert "publicAccessCidrs" not in vpc


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_security_group_rule_has_a_description(stack, request):
    r = request.getfixturevalue(stack)
    rules = [(x.name, x.inputs) for x in r.resources
             if x.type in ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
                           "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
                           "aws:ec2/securityGroupRule:SecurityGroupRule")]
    rules += [(f"{x.name}.{d}", rule) for x in r.of_type("aws:ec2/securityGroup:SecurityGroup")
              for d in ("ingress", "egress") for rule in x.inputs.get(d) or []]
    assert rules
    assert [name for name, rule in rules if not rule.get("description")] == []

"""Mock answers shaped like AWS's: ids with the right prefixes, ARNs, the EKS endpoint and OIDC issuer, invokes.

Values are deterministic (derived from type and name) so that two renders of the same program are identical
and `preview diff` shows only real changes.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from typing import Any

import pulumi

from components import catalog

ACCOUNT_ID = "123456789012"

ID_PREFIX = {
    "aws:ec2/vpc:Vpc": "vpc-",
    "aws:ec2/subnet:Subnet": "subnet-",
    "aws:ec2/securityGroup:SecurityGroup": "sg-",
    "aws:ec2/internetGateway:InternetGateway": "igw-",
    "aws:ec2/natGateway:NatGateway": "nat-",
    "aws:ec2/eip:Eip": "eipalloc-",
    "aws:ec2/routeTable:RouteTable": "rtb-",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "vpce-",
    "aws:ec2/launchTemplate:LaunchTemplate": "lt-",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "sg-",
    "aws:ec2/flowLog:FlowLog": "fl-",
    "aws:fsx/lustreFileSystem:LustreFileSystem": "fs-",
    "aws:fsx/dataRepositoryAssociation:DataRepositoryAssociation": "dra-",
    "aws:kms/key:Key": "",
}

# S3's managed prefix list per region: the same data the policy pack's default allowlist uses.
S3_PREFIX_LISTS = catalog.s3_prefix_lists()


def _hex(*parts: str, length: int = 17) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


class AwsLikeMocks(pulumi.runtime.Mocks):
    def __init__(self, region: str = "us-west-2") -> None:
        self.region = region
        self.subnet_cidrs: dict[str, str] = {}   # subnets this run created, for `ec2.getSubnet`
        self.vpc_cidrs: dict[str, str] = {}      # VPCs this run created, for `ec2.getVpc`
        self.eni_subnets: dict[str, str] = {}    # interface endpoints' network interfaces, for `ec2.getNetworkInterface`

    # ---- resources --------------------------------------------------------------------------------

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        typ, name, inputs = args.typ, args.name, dict(args.inputs)
        if typ.startswith("kubernetes:"):
            meta = inputs.get("metadata") or {}
            ns = meta.get("namespace")
            rid = f"{ns}/{meta.get('name', name)}" if ns else meta.get("name", name)
            return rid, inputs
        if typ == "random:index/randomPassword:RandomPassword":
            # Deterministic stand-in for the generated password; the program must keep it secret (tests check
            # that this text never reaches the build output).
            length = int(inputs.get("length") or 32)
            result = (_hex("random-password", name, length=64) * 2)[:length]
            return f"{name}-id", {**inputs, "result": result, "bcryptHash": "$2a$10$" + _hex("bcrypt", name, length=53)}
        if not typ.startswith("aws:"):
            return f"{name}-id", inputs
        rid = ID_PREFIX.get(typ, "") + _hex(typ, name) if typ in ID_PREFIX else f"{name}-{_hex(typ, name, length=7)}"
        state = {**inputs, "id": rid}
        state.setdefault("arn", self._arn(typ, inputs.get("name") or rid))
        state.update(self._computed(typ, name, inputs, rid))
        if typ in ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
            rid = state["id"] = state["bucket"]   # as in AWS: a bucket's id is its name
        return rid, state

    def _arn(self, typ: str, resource: str) -> str:
        service = typ.split(":")[1].split("/")[0]
        kind = typ.split(":")[-1][0].lower() + typ.split(":")[-1][1:]
        if service == "iam":
            return f"arn:aws:iam::{ACCOUNT_ID}:{kind.lower()}/{resource}"
        if service == "s3":
            return f"arn:aws:s3:::{resource}"
        return f"arn:aws:{service}:{self.region}:{ACCOUNT_ID}:{kind.lower()}/{resource}"

    def _computed(self, typ: str, name: str, inputs: dict, rid: str) -> dict[str, Any]:
        real_name = inputs.get("name") or f"{name}-{_hex(name, length=7)}"
        if typ == "aws:eks/cluster:Cluster":
            oidc_id = _hex(name, length=32).upper()
            return {
                "endpoint": f"https://{oidc_id}.gr7.{self.region}.eks.amazonaws.com",
                "certificateAuthority": {"data": base64.b64encode(b"offline-preview-ca").decode()},
                "identities": [{"oidcs": [{"issuer": f"https://oidc.eks.{self.region}.amazonaws.com/id/{oidc_id}"}]}],
                "vpcConfig": {**(inputs.get("vpcConfig") or {}), "clusterSecurityGroupId": "sg-" + _hex(name, "cluster")},
                "arn": f"arn:aws:eks:{self.region}:{ACCOUNT_ID}:cluster/{inputs.get('name', name)}",
                "status": "ACTIVE",
            }
        if typ == "aws:iam/role:Role":
            return {"name": real_name, "arn": f"arn:aws:iam::{ACCOUNT_ID}:role/{real_name}", "uniqueId": "AROA" + rid}
        if typ == "aws:iam/policy:Policy":
            return {"name": real_name, "arn": f"arn:aws:iam::{ACCOUNT_ID}:policy/{real_name}"}
        if typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            url = str(inputs.get("url", "")).removeprefix("https://")
            return {"arn": f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{url}"}
        if typ == "aws:iam/instanceProfile:InstanceProfile":
            return {"name": real_name, "arn": f"arn:aws:iam::{ACCOUNT_ID}:instance-profile/{real_name}"}
        if typ == "aws:sqs/queue:Queue":
            return {"name": real_name, "url": f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT_ID}/{real_name}",
                    "arn": f"arn:aws:sqs:{self.region}:{ACCOUNT_ID}:{real_name}"}
        if typ == "aws:s3/bucket:Bucket" or typ == "aws:s3/bucketV2:BucketV2":
            bucket = inputs.get("bucket") or f"{name}-{_hex(name, length=8)}"
            return {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}",
                    "bucketRegionalDomainName": f"{bucket}.s3.{self.region}.amazonaws.com"}
        if typ == "aws:kms/key:Key":
            return {"keyId": rid, "arn": f"arn:aws:kms:{self.region}:{ACCOUNT_ID}:key/{rid}"}
        if typ == "aws:ecr/repository:Repository":
            return {"repositoryUrl": f"{ACCOUNT_ID}.dkr.ecr.{self.region}.amazonaws.com/{real_name}"}
        if typ == "aws:rds/instance:Instance":
            host = f"{inputs.get('identifier', name)}.{_hex(name, length=12)}.{self.region}.rds.amazonaws.com"
            return {"address": host, "endpoint": f"{host}:5432", "port": 5432}
        if typ == "aws:fsx/lustreFileSystem:LustreFileSystem":
            return {"dnsName": f"{rid}.fsx.{self.region}.amazonaws.com", "mountName": _hex(name, length=8)}
        if typ == "aws:ec2/subnet:Subnet":
            self.subnet_cidrs[rid] = inputs.get("cidrBlock", "")
            return {}
        if typ == "aws:ec2/vpc:Vpc":
            self.vpc_cidrs[rid] = inputs.get("cidrBlock", "")
            return {}
        if typ == "aws:ec2/vpcEndpoint:VpcEndpoint" and inputs.get("vpcEndpointType") == "Interface":
            enis = {f"eni-{_hex(rid, subnet)}": subnet for subnet in inputs.get("subnetIds") or []}
            self.eni_subnets.update(enis)
            return {"networkInterfaceIds": sorted(enis)}
        if typ == "aws:eks/nodeGroup:NodeGroup":
            # EKS names the group's ASG eks-<node group>-<uuid>.
            asg = f"eks-{inputs.get('nodeGroupName', name)}-{_hex(name, 'asg', length=8)}"
            return {"status": "ACTIVE", "resources": [{"autoscalingGroups": [{"name": asg}]}]}
        if typ == "aws:cloudwatch/logGroup:LogGroup":
            return {"arn": f"arn:aws:logs:{self.region}:{ACCOUNT_ID}:log-group:{inputs.get('name', name)}"}
        if typ == "aws:ec2/launchTemplate:LaunchTemplate":
            return {"latestVersion": 1, "defaultVersion": 1}
        if typ == "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup":
            return {"name": "default"}
        if typ == "aws:cloudwatch/eventRule:EventRule":
            return {"name": real_name}
        return {}

    # ---- invokes ----------------------------------------------------------------------------------

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list]:
        token, a = args.token, args.args
        region = a.get("region") or self.region
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{region}{z}" for z in "abcdef"]
            return {"names": names, "zoneIds": [f"usw2-az{i}" for i in range(1, 7)], "id": region}, []
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT_ID, "arn": f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/deployer/pulumi",
                    "userId": "AROAEXAMPLE:pulumi", "id": ACCOUNT_ID}, []
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}, []
        if token == "aws:index/getRegion:getRegion":
            return {"name": region, "region": region, "id": region, "endpoint": f"ec2.{region}.amazonaws.com"}, []
        if token == "aws:ec2/getManagedPrefixList:getManagedPrefixList":
            pl_id, cidrs = S3_PREFIX_LISTS.get(region, S3_PREFIX_LISTS["us-west-2"])
            return {"id": pl_id, "name": f"com.amazonaws.{region}.s3", "addressFamily": "IPv4",
                    "entries": [{"cidr": c, "description": ""} for c in cidrs]}, []
        if token == "aws:ec2/getVpc:getVpc":
            vid = a.get("id", "")
            return {"id": vid, "cidrBlock": self.vpc_cidrs.get(vid, "10.0.0.0/16"), "arn": self._arn(
                "aws:ec2/vpc:Vpc", vid)}, []
        if token == "aws:ec2/getNetworkInterface:getNetworkInterface":
            # The address sits in its subnet's block, like a real endpoint interface's.
            eni = a.get("id", "")
            subnet = self.eni_subnets.get(eni, "")
            network = ipaddress.ip_network(self.subnet_cidrs.get(subnet, "10.0.0.0/19"))
            ip = network[10 + int(_hex("eni", eni, length=4), 16) % 200]
            return {"id": eni, "privateIp": str(ip), "subnetId": subnet, "privateIps": [str(ip)]}, []
        if token == "aws:ec2/getSubnet:getSubnet":
            # A subnet this run created answers with its CIDR; an existing one (config `network.existing`) with
            # a deterministic /19 of 10.128.0.0/9, as a real lookup would answer with the subnet's real block.
            sid = a.get("id", "")
            h = int(_hex("subnet", sid, length=4), 16)
            cidr = self.subnet_cidrs.get(sid) or f"10.{128 + (h >> 9) % 128}.{(h % 8) * 32}.0/19"
            return {"id": sid, "cidrBlock": cidr, "vpcId": a.get("vpcId", ""), "availabilityZone": ""}, []
        if token == "aws:eks/getAddonVersion:getAddonVersion":
            # Shaped like EKS's answer; a real `pulumi preview` shows the true default for the version.
            return {"addonName": a.get("addonName"), "kubernetesVersion": a.get("kubernetesVersion"),
                    "version": f"v0.0.0-offline-default-for-{a.get('kubernetesVersion')}", "id": a.get("addonName")}, []
        if token == "aws:iam/getPolicyDocument:getPolicyDocument":
            return {"json": "{}", "id": "policy"}, []
        raise NotImplementedError(f"the offline preview has no mock answer for invoke {token}")

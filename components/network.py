"""The VPC the cluster lives in: created here, or an existing one named in config."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import labels
from components.config import NetworkConfig
from components.iam import encrypted_log_group, service_trust_policy


@dataclass(frozen=True)
class NetworkArgs:
    config: NetworkConfig
    cluster_name: str
    log_retention_days: int = 30                # the VPC flow logs' retention (the stack's cluster.logRetentionDays)


def subnet_cidrs(vpc_cidr: str, az_count: int) -> tuple[list[str], list[str]]:
    """Private subnets take the large first /18-style blocks (pods get VPC IPs); public ones small /24s."""
    vpc = ipaddress.ip_network(vpc_cidr)
    private = list(vpc.subnets(prefixlen_diff=3))[:az_count]          # /16 -> /19 each
    last_block = list(vpc.subnets(prefixlen_diff=3))[-1]
    public = list(last_block.subnets(new_prefix=max(last_block.prefixlen, 24)))[:az_count]
    return [str(c) for c in private], [str(c) for c in public]


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    public_subnet_ids: pulumi.Output[list[str]]
    sts_endpoint_cidrs: pulumi.Output[list[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:network:Network", name, None, opts)
        cfg = args.config
        if cfg.existing is not None:
            self.vpc_id = pulumi.Output.from_input(cfg.existing.vpc_id)
            self.private_subnet_ids = pulumi.Output.from_input(list(cfg.existing.private_subnet_ids))
            self.public_subnet_ids = pulumi.Output.from_input(list(cfg.existing.public_subnet_ids))
        else:
            self._create(name, args)
        self.sts_endpoint_cidrs = self._sts_endpoint(name)
        self.register_outputs({
            "vpc_id": self.vpc_id,
            "private_subnet_ids": self.private_subnet_ids,
            "public_subnet_ids": self.public_subnet_ids,
            "sts_endpoint_cidrs": self.sts_endpoint_cidrs,
        })

    def _sts_endpoint(self, name: str) -> pulumi.Output[list[str]]:
        """A private STS endpoint: IRSA exchanges the pod's token at STS, and team pods have no internet egress.

        Returns the endpoint's network interface addresses (/32), the only STS destinations NetworkPolicies open.
        """
        invoke = pulumi.InvokeOutputOptions(parent=self)
        vpc_cidr = aws.ec2.get_vpc_output(id=self.vpc_id, opts=invoke).cidr_block
        sg = aws.ec2.SecurityGroup(
            f"{name}-sts",
            description="HTTPS to the STS interface endpoint from inside the VPC",
            vpc_id=self.vpc_id,
            ingress=[aws.ec2.SecurityGroupIngressArgs(protocol="tcp", from_port=443, to_port=443,
                                                      cidr_blocks=[vpc_cidr],
                                                      description="HTTPS to STS from the VPC (IRSA token exchange)")],
            tags={"Name": f"{name}-sts"},
            opts=pulumi.ResourceOptions(parent=self),
        )
        endpoint = aws.ec2.VpcEndpoint(
            f"{name}-sts",
            vpc_id=self.vpc_id,
            service_name=aws.get_region_output(opts=invoke).region.apply(lambda r: f"com.amazonaws.{r}.sts"),
            vpc_endpoint_type="Interface",
            private_dns_enabled=True,
            subnet_ids=self.private_subnet_ids,
            security_group_ids=[sg.id],
            tags={"Name": f"{name}-sts"},
            opts=pulumi.ResourceOptions(parent=self),
        )
        return endpoint.network_interface_ids.apply(lambda ids: pulumi.Output.all(*[
            aws.ec2.get_network_interface_output(id=i, opts=invoke).private_ip.apply(lambda ip: f"{ip}/32")
            for i in sorted(ids)]))

    def _create(self, name: str, args: NetworkArgs) -> None:
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)
        cluster_tag = {f"kubernetes.io/cluster/{args.cluster_name}": "shared"}
        azs = aws.get_availability_zones_output(state="available", opts=pulumi.InvokeOutputOptions(parent=self))
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=cfg.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": f"{name}-vpc"},
            opts=child,
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags={"Name": f"{name}-igw"}, opts=child)
        public_rt = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)],
            tags={"Name": f"{name}-public"},
            opts=child,
        )
        private_cidrs, public_cidrs = subnet_cidrs(cfg.vpc_cidr, cfg.az_count)
        public_subnets, private_subnets, private_route_tables, nats = [], [], [], []
        for i in range(cfg.az_count):
            az = azs.names.apply(lambda names, i=i: names[i])
            public = aws.ec2.Subnet(
                f"{name}-public-{i}",
                vpc_id=vpc.id,
                cidr_block=public_cidrs[i],
                availability_zone=az,
                map_public_ip_on_launch=False,
                tags={"Name": f"{name}-public-{i}", "kubernetes.io/role/elb": "1", **cluster_tag},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(f"{name}-public-{i}", subnet_id=public.id, route_table_id=public_rt.id,
                                          opts=child)
            public_subnets.append(public)
            if i == 0 or cfg.nat_gateways == "perAz":
                eip = aws.ec2.Eip(f"{name}-nat-{i}", domain="vpc", tags={"Name": f"{name}-nat-{i}"}, opts=child)
                nats.append(aws.ec2.NatGateway(
                    f"{name}-nat-{i}", allocation_id=eip.id, subnet_id=public.id,
                    tags={"Name": f"{name}-nat-{i}"}, opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                ))
            private = aws.ec2.Subnet(
                f"{name}-private-{i}",
                vpc_id=vpc.id,
                cidr_block=private_cidrs[i],
                availability_zone=az,
                tags={
                    "Name": f"{name}-private-{i}",
                    "kubernetes.io/role/internal-elb": "1",
                    labels.DISCOVERY_TAG: args.cluster_name,
                    **cluster_tag,
                },
                opts=child,
            )
            private_rt = aws.ec2.RouteTable(
                f"{name}-private-{i}",
                vpc_id=vpc.id,
                routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nats[-1].id)],
                tags={"Name": f"{name}-private-{i}"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(f"{name}-private-{i}", subnet_id=private.id,
                                          route_table_id=private_rt.id, opts=child)
            private_subnets.append(private)
            private_route_tables.append(private_rt)
        # S3 traffic (datasets, artifacts, models) stays off the NAT gateways: cheaper and never internet-routed.
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region.apply(
                lambda r: f"com.amazonaws.{r}.s3"),
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in private_route_tables],
            tags={"Name": f"{name}-s3"},
            opts=child,
        )
        # The VPC's default security group admits all traffic between its members and all egress; nothing here uses
        # it, so its rules are removed (a resource put in it by mistake reaches nothing).
        aws.ec2.DefaultSecurityGroup(f"{name}-default", vpc_id=vpc.id, ingress=[], egress=[],
                                     tags={"Name": f"{name}-default (no rules)"}, opts=child)
        self._flow_logs(name, vpc, args)
        self.vpc_id = vpc.id
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in private_subnets])
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in public_subnets])

    def _flow_logs(self, name: str, vpc: aws.ec2.Vpc, args: NetworkArgs) -> None:
        """Accepted and rejected traffic of the whole VPC, to an encrypted CloudWatch log group (for incident
        response: which pod or node talked to what). Only for a VPC created here: an existing one is its owner's."""
        child = pulumi.ResourceOptions(parent=self)
        group = encrypted_log_group(f"{name}-flow-logs", f"/aws/vpc/{args.cluster_name}/flow-logs",
                                    args.log_retention_days, f"VPC flow logs of {args.cluster_name}", self)
        role = aws.iam.Role(f"{name}-flow-logs", assume_role_policy=service_trust_policy("vpc-flow-logs.amazonaws.com"),
                            opts=child)
        aws.iam.RolePolicy(f"{name}-flow-logs", role=role.id, policy=group.arn.apply(flow_logs_policy), opts=child)
        aws.ec2.FlowLog(f"{name}-flow-logs", vpc_id=vpc.id, traffic_type="ALL", log_destination_type="cloud-watch-logs",
                        log_destination=group.arn, iam_role_arn=role.arn, max_aggregation_interval=60,
                        tags={"Name": f"{name}-flow-logs"}, opts=child)


def flow_logs_policy(log_group_arn: str) -> str:
    """Write to the flow-log group and nothing else (VPC User Guide, "IAM role for publishing flow logs")."""
    arn = log_group_arn.removesuffix(":*")
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogGroups", "logs:DescribeLogStreams"],
        "Resource": [arn, f"{arn}:*"]}]})


def lookup_subnet_cidrs(subnet_ids: pulumi.Output[list[str]],
                        opts: pulumi.InvokeOutputOptions) -> pulumi.Output[list[str]]:
    """The CIDR blocks of subnets (looked up, so it holds for an existing VPC too): NetworkPolicies that must reach
    what lives in them (the database, the EKS API server's network interfaces) name these."""
    return subnet_ids.apply(lambda ids: pulumi.Output.all(*[aws.ec2.get_subnet_output(id=i, opts=opts).cidr_block
                                                             for i in ids]))

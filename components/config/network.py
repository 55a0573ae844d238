"""`network`: a new VPC, or an existing one by id."""

from __future__ import annotations

import ipaddress
import math
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from components.config.problems import Problem
from components.config.types import Cidr, Model

if TYPE_CHECKING:
    from components.config.platform import PlatformConfig


class ExistingNetworkConfig(Model):
    vpc_id: Annotated[str, Field(pattern=r"^vpc-[0-9a-f]{8,17}$")] = Field(description=(
        "The VPC to use, for example 'vpc-0123456789abcdef0'."))
    private_subnet_ids: Annotated[list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]], Field(min_length=2)] = Field(description=(
        "Private subnets (at least two, in different AZs) for nodes and data stores."))
    public_subnet_ids: list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]] = Field([], description=(
        "Public subnets for internet-facing load balancers, if any."))


class NetworkConfig(Model):
    vpc_cidr: Cidr = Field("10.0.0.0/16", description="CIDR of the new VPC.")
    az_count: Annotated[int, Field(ge=2, le=6)] = Field(2, description=(
        "Availability zones to spread over (at least 3 in prod)."))
    nat_gateways: Literal["single", "perAz"] = Field("single", description=(
        "single NAT gateway, or perAz (required in prod, so one AZ outage does not cut the others off)."))
    existing: ExistingNetworkConfig | None = Field(None, description=(
        "Use an existing VPC (its id and subnets) instead of creating one."))


# What AWS accepts for a VPC's primary CIDR: /16 to /28, from the private ranges (RFC 1918) or the shared address
# space AWS also allows (RFC 6598); public ranges would shadow real internet addresses for the whole VPC.
VPC_PREFIX = (16, 28)
VPC_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
# The subnet layout (components/network.subnet_cidrs) cuts the VPC into eighths: one per AZ for its private subnet,
# and the last eighth into one /24 public subnet per AZ.
PUBLIC_SUBNET_PREFIX = 24


def vpc_cidr_problems(cidr: str, az_count: int) -> list[Problem]:
    net = ipaddress.ip_network(cidr)
    low, high = VPC_PREFIX
    if not low <= net.prefixlen <= high:
        return [Problem("network.vpcCidr", f"must be between /{low} and /{high} (what AWS accepts for a VPC)", cidr)]
    if not any(net.subnet_of(ipaddress.ip_network(r)) for r in VPC_RANGES):
        return [Problem("network.vpcCidr", f"must lie in a private range ({', '.join(VPC_RANGES)}); a public range "
                        "would hide those internet addresses from the whole VPC", cidr)]
    public_slots = 2 ** max(0, PUBLIC_SUBNET_PREFIX - (net.prefixlen + 3))
    if net.prefixlen + 3 > PUBLIC_SUBNET_PREFIX or public_slots < az_count:
        widest = PUBLIC_SUBNET_PREFIX - 3 - math.ceil(math.log2(max(az_count, 1)))
        return [Problem("network.vpcCidr", f"is too small for {az_count} AZs: each AZ takes an eighth of the VPC for "
                        f"its private subnet and a /{PUBLIC_SUBNET_PREFIX} of the last eighth for its public one; use "
                        f"/{widest} or larger", cidr)]
    return []


def problems(cfg: PlatformConfig) -> list[Problem]:
    """A VPC CIDR AWS accepts and the layout fits; prod spreads over three AZs, each with its own NAT gateway (not
    checked for an existing VPC)."""
    net = cfg.network
    rules = [
        ("network.azCount", cfg.is_prod and net.existing is None and net.az_count < 3,
         "must be at least 3 in prod (multi-AZ control of failure domains)", net.az_count),
        ("network.natGateways", cfg.is_prod and net.existing is None and net.nat_gateways != "perAz",
         "must be 'perAz' in prod, so one AZ outage does not cut every private subnet off", net.nat_gateways),
    ]
    found = vpc_cidr_problems(net.vpc_cidr, net.az_count) if net.existing is None else []
    return found + [Problem(path, msg, value) for path, broken, msg, value in rules if broken]

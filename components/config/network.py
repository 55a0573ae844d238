"""`network`: a new VPC, or an existing one by id."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from components.config.problems import Problem
from components.config.types import Cidr, Model

if TYPE_CHECKING:
    from components.config.platform import PlatformConfig


class ExistingNetworkConfig(Model):
    vpc_id: Annotated[str, Field(pattern=r"^vpc-[0-9a-f]{8,17}$")]
    private_subnet_ids: Annotated[list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]], Field(min_length=2)]
    public_subnet_ids: list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]] = []


class NetworkConfig(Model):
    vpc_cidr: Cidr = "10.0.0.0/16"
    az_count: Annotated[int, Field(ge=2, le=6)] = 2
    nat_gateways: Literal["single", "perAz"] = "single"
    existing: ExistingNetworkConfig | None = None


def problems(cfg: PlatformConfig) -> list[Problem]:
    """Prod spreads over three AZs, each with its own NAT gateway (not checked for an existing VPC)."""
    net = cfg.network
    rules = [
        ("network.azCount", cfg.is_prod and net.existing is None and net.az_count < 3,
         "must be at least 3 in prod (multi-AZ control of failure domains)", net.az_count),
        ("network.natGateways", cfg.is_prod and net.existing is None and net.nat_gateways != "perAz",
         "must be 'perAz' in prod, so one AZ outage does not cut every private subnet off", net.nat_gateways),
    ]
    return [Problem(path, msg, value) for path, broken, msg, value in rules if broken]

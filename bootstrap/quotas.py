"""EC2 vCPU quota requests for the GPU pools of the platform stacks this account hosts (components/planning/quotas.py).

The figures come from the platform stacks' own config files (`../Pulumi.<stack>.yaml`), read as the offline
preview reads them (secrets replaced): one source, so `preview cost <stack>` and these requests always agree.
Stacks in this account and region add up. A request goes to AWS review (hours to days); it only ever raises a
quota, so it is declared for the quotas the pools need and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
from components.config import ConfigError, parse_config
from components.config.loading import read_stack_file
from components.planning import quotas

PLATFORM_DIR = Path(__file__).resolve().parent.parent


def platform_needs(stacks: list[str], region: str, project_dir: Path = PLATFORM_DIR) -> list[quotas.QuotaNeed]:
    """The summed vCPU needs of `stacks` (platform stack names), which must all deploy to `region`."""
    pools, problems = [], []
    for stack in stacks:
        path = project_dir / f"Pulumi.{stack}.yaml"
        if not path.is_file():
            problems.append(f"gpuQuotas.platformStacks: no platform stack '{stack}' ({path.name} does not exist)")
            continue
        try:
            found = read_stack_file(path)
        except ConfigError as exc:
            problems += [f"gpuQuotas.platformStacks: {path.name}: {p}" for p in exc.problems]
            continue
        config = found.config
        if config.get("aws:region") != region:
            problems.append(f"gpuQuotas.platformStacks: stack '{stack}' deploys to {config.get('aws:region')}, not "
                            f"this bootstrap's region {region} (quotas are per region)")
            continue
        try:
            pools += quotas.from_config(parse_config(found.raw, found.secret_paths))
        except ConfigError as exc:
            problems += [f"gpuQuotas.platformStacks: {path.name}: {p}" for p in exc.problems]
    if problems:
        raise ConfigError(problems)
    return quotas.needs(pools)


@dataclass(frozen=True)
class GpuQuotasArgs:
    needs: list[quotas.QuotaNeed]


class GpuQuotas(pulumi.ComponentResource):
    requested: dict[str, int]          # quota code -> vCPUs requested

    def __init__(self, name: str, args: GpuQuotasArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:bootstrap:GpuQuotas", name, None, opts)
        for need in args.needs:
            aws.servicequotas.ServiceQuota(f"{name}-{need.code.lower()}", service_code="ec2", quota_code=need.code,
                                           value=need.vcpus, opts=pulumi.ResourceOptions(parent=self))
        self.requested = {n.code: n.vcpus for n in args.needs}
        self.register_outputs({"requested": self.requested})

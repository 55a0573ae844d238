"""AWS account limits the plan depends on: the EC2 vCPU service quotas the GPU pools need at their limits
(components/planning/quotas.py). Advisory: the quotas live in the account, not in the plan; the policy config
records what the account has (`accountQuotas`, quota code -> vCPUs) so a preview says when a pool outgrew it.
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import EnforcementLevel

from components.planning import quotas
from policies.declare import stack_policy


def quota_problems(resources: list[tuple[str, dict[str, Any]]], account_quotas: dict[str, Any]) -> list[str]:
    """Each quota the GPU pools need that the account is not known to have."""
    problems = []
    for need in quotas.needs(quotas.from_declared(resources)):
        have = account_quotas.get(need.code)
        where = f"EC2 quota {need.code} ({need.name})"
        pools = ", ".join(need.pools)
        if have is None:
            problems.append(f"The GPU pools {pools} need {need.vcpus} vCPUs of {where}; a new account has 0. Request "
                            "it (bootstrap gpuQuotas) and record the granted value in the policy config "
                            f"(accountQuotas.{need.code}).")
        elif float(have) < need.vcpus:
            problems.append(f"The GPU pools {pools} need {need.vcpus} vCPUs of {where}, above the account's "
                            f"{float(have):g}: Karpenter and the node groups cannot reach their limits.")
    return problems


@stack_policy(
    "ec2-gpu-vcpu-quotas-granted",
    "The account's EC2 vCPU quotas (G and VT, P; on-demand and spot) cover every GPU pool at its limit.",
    level=EnforcementLevel.ADVISORY,
    config={"accountQuotas": {
        "type": "object", "additionalProperties": {"type": "number", "minimum": 0}, "default": {},
        "description": "The account's applied quota values in the stack's region, by quota code "
                       "(aws service-quotas get-service-quota --service-code ec2 --quota-code ...)"}},
    remediation="Request the quota increase (bootstrap/ declares aws.servicequotas.ServiceQuota requests for "
                "gpuQuotas.platformStacks; `python -m preview cost <stack>` lists the figures), then record the "
                "granted values in policies/config.<stack>.json under accountQuotas.",
)
def ec2_gpu_vcpu_quotas_granted(resources, config):
    problems = quota_problems(resources, config.get("accountQuotas") or {})
    return [" ".join(problems)] if problems else []     # one report for the stack: the quotas are one request to AWS


POLICIES = [ec2_gpu_vcpu_quotas_granted]

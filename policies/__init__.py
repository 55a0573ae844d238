"""The platform's CrossGuard policies, grouped by concern.

`POLICIES` is the one list that the pack (`policies/__main__.py`), the offline `preview check`, the tests and the
rule table (docs/policies.md) all use, so a rule behaves the same in `pulumi preview --policy-pack policies` and
offline.
"""

from policies import (
    access,
    compliance,
    data,
    egress,
    gpu,
    gpu_workloads,
    images,
    notebooks,
    placement,
    pod_security,
    rbac,
    serving,
    quotas,
    workload_egress,
)

POLICIES: list = [*gpu.POLICIES, *gpu_workloads.POLICIES, *egress.POLICIES, *workload_egress.POLICIES,
                  *pod_security.POLICIES, *data.POLICIES, *compliance.POLICIES, *rbac.POLICIES, *serving.POLICIES,
                  *images.POLICIES, *notebooks.POLICIES, *quotas.POLICIES, *access.POLICIES,
                  *placement.POLICIES]

"""The platform's CrossGuard policies, grouped by concern.

`POLICIES` is the one list that the pack (`policies/__main__.py`), the offline `preview check` and the tests
all evaluate, so a rule behaves the same in `pulumi preview --policy-pack policies` and offline.
"""

from policies import data, egress, gpu, gpu_workloads, images, notebooks

POLICIES: list = [*gpu.POLICIES, *gpu_workloads.POLICIES, *egress.POLICIES, *data.POLICIES, *images.POLICIES,
                   *notebooks.POLICIES]

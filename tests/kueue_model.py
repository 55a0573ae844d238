"""A small model of Kueue's quota admission, to check what the rendered ClusterQueues admit.

Modelled (Kueue v0.19, classical preemption, no fair sharing): a workload is the sum of its pod sets' requests; it
is admitted to one flavor of its ClusterQueue, the first in order whose node labels its pods' node selectors
agree with and where *every* covered resource fits what the queue can still use there: its unused nominal quota,
plus what it may borrow (at most `borrowingLimit` beyond its nominal quota in total, and no more than the other
queues of the cohort leave unused). Otherwise it is not admitted and nothing is reserved: there is no partial
admission (the PartialAdmission feature needs `minCount` on a pod set, which the platform never sets).

Not modelled: preemption, lendingLimit, hierarchical cohorts, fair sharing, flavor fungibility beyond "first fit".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from components.kueue import manager_config
from components.placement import quantity

# Resources Kueue's configuration leaves out of quota accounting (EFA interfaces).
EXCLUDED = tuple(manager_config()["resources"]["excludeResourcePrefixes"])


@dataclass
class Queue:
    name: str
    cohort: str | None
    flavors: list[str]                                         # in order
    nominal: dict[tuple[str, str], float]                      # (flavor, resource) -> nominal quota
    borrowing_limit: dict[tuple[str, str], float | None]       # None: no limit
    usage: dict[tuple[str, str], float] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, name: str, spec: dict[str, Any]) -> Queue:
        nominal, borrow, flavors = {}, {}, []
        for group in spec.get("resourceGroups") or []:
            for flavor in group["flavors"]:
                flavors.append(flavor["name"])
                for r in flavor["resources"]:
                    key = (flavor["name"], r["name"])
                    nominal[key] = quantity(r["nominalQuota"])
                    borrow[key] = quantity(r["borrowingLimit"]) if r.get("borrowingLimit") is not None else None
        return cls(name, spec.get("cohortName"), flavors, nominal, borrow)


@dataclass
class Workload:
    name: str
    node_selector: dict[str, str]
    requests: dict[str, float]            # the whole workload: every pod of every pod set


class Cluster:
    def __init__(self, queues: list[Queue], flavor_labels: dict[str, dict[str, str]]) -> None:
        self.queues = {q.name: q for q in queues}
        self.flavor_labels = flavor_labels
        self.admitted: dict[str, tuple[str, str, dict[str, float]]] = {}

    def _unused_elsewhere(self, queue: Queue, key: tuple[str, str]) -> float:
        return sum(max(0.0, q.nominal.get(key, 0) - q.usage.get(key, 0)) for q in self.queues.values()
                   if q is not queue and queue.cohort and q.cohort == queue.cohort)

    def available(self, queue: Queue, key: tuple[str, str]) -> float:
        """What the queue can still take of (flavor, resource): unused nominal plus what it may still borrow."""
        if key not in queue.nominal:
            return 0.0
        used, nominal = queue.usage.get(key, 0), queue.nominal[key]
        limit = queue.borrowing_limit.get(key)
        borrowed = max(0.0, used - nominal)
        may_borrow = self._unused_elsewhere(queue, key) if queue.cohort else 0.0
        if limit is not None:
            may_borrow = min(may_borrow, limit - borrowed)
        return max(0.0, nominal - used) + max(0.0, may_borrow)

    def _matches(self, flavor: str, selector: dict[str, str]) -> bool:
        labels = self.flavor_labels.get(flavor, {})
        return all(labels[k] == v for k, v in selector.items() if k in labels)

    def admit(self, queue_name: str, workload: Workload) -> str | None:
        """The flavor the whole workload is admitted to (its usage reserved), or None (nothing reserved)."""
        queue = self.queues[queue_name]
        counted = {r: n for r, n in workload.requests.items() if not r.startswith(EXCLUDED)}
        for flavor in queue.flavors:
            if not self._matches(flavor, workload.node_selector):
                continue
            if all(need <= self.available(queue, (flavor, r)) + 1e-9 for r, need in counted.items()):
                for r, need in counted.items():
                    queue.usage[(flavor, r)] = queue.usage.get((flavor, r), 0) + need
                self.admitted[workload.name] = (queue_name, flavor, counted)
                return flavor
        return None

    def finish(self, name: str) -> None:
        queue_name, flavor, requests = self.admitted.pop(name)
        queue = self.queues[queue_name]
        for r, need in requests.items():
            queue.usage[(flavor, r)] -= need


def job_workload(job: dict[str, Any]) -> Workload:
    """A Kubeflow job as Kueue sees it: one workload, the sum of all replicas' requests (limits where unset)."""
    total: dict[str, float] = {}
    selector: dict[str, str] = {}
    replica_specs = next(v for k, v in job["spec"].items() if k.endswith("ReplicaSpecs"))
    for replica in replica_specs.values():
        spec = replica["template"]["spec"]
        selector.update(spec.get("nodeSelector") or {})
        for c in spec["containers"]:
            res = c.get("resources") or {}
            for r, v in {**(res.get("limits") or {}), **(res.get("requests") or {})}.items():
                total[r] = total.get(r, 0) + quantity(v) * int(replica.get("replicas", 1))
    return Workload(f"{job['metadata']['namespace']}/{job['metadata']['name']}", selector, total)

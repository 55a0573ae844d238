"""No stranded workload (stack): every workload the plan declares fits capacity the plan declares, and its team's
queue and quota can admit it whole.

Pools are read from the plan: GPU managed node groups (scalable only when the cluster-autoscaler release is in the
plan and the group's ASG carries the discovery scope tag and a node-template label for its pool), Karpenter GPU
and CPU NodePools (labels, requirements, taints, instance types, limits). Workloads: training jobs (all replicas
at once), InferenceServices, JupyterHub profiles, and the teams' training job defaults. The judgement is
components/placement.py, the one the config check also uses.

Props are camelCase wire-form dicts; during a real preview a value may be unknown: what cannot be read is skipped.
"""

from __future__ import annotations

import yaml

from components import catalog, labels, placement
from components.autoscaler import CHART as AUTOSCALER_CHART
from components.autoscaler import SCOPE_TAG, TEMPLATE_PREFIX
from components.kueue import QUEUE_LABEL
from policies.declare import stack_policy
from policies.workloads import as_dict, as_list, pod_specs

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
ASG_TAG = "aws:autoscaling/tag:Tag"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
RESOURCE_QUOTA = "kubernetes:core/v1:ResourceQuota"
CLUSTER_QUEUE = "kubernetes:kueue.x-k8s.io/v1beta2:ClusterQueue"
LOCAL_QUEUE = "kubernetes:kueue.x-k8s.io/v1beta2:LocalQueue"
RESOURCE_FLAVOR = "kubernetes:kueue.x-k8s.io/v1beta2:ResourceFlavor"
JOB_KINDS = ("PyTorchJob", "TFJob", "MPIJob")
EKS_TAINT_EFFECT = {v: k for k, v in labels.EKS_TAINT_EFFECT.items()}
GPU_RESOURCES = (labels.GPU_RESOURCE, labels.GPU_SHARED_RESOURCE)


def _node_group_pool(props: dict, autoscaled: set[str]) -> placement.Pool | None:
    types = tuple(t for t in as_list(props.get("instanceTypes")) if t in catalog.instance_types())
    if not types:
        return None        # the system node group (not a catalog type): platform controllers only
    node_labels = {k: (v,) for k, v in as_dict(props.get("labels")).items() if isinstance(v, str)}
    name = node_labels.get(labels.NODE_POOL, (props.get("nodeGroupName", "?"),))[0]
    node_labels[labels.EKS_NODEGROUP] = (str(props.get("nodeGroupName", "?")),)
    taints = tuple(placement.Taint(t.get("key"), t.get("value") or "", EKS_TAINT_EFFECT.get(t.get("effect"), "NoSchedule"))
                   for t in as_list(props.get("taints")) if isinstance(t, dict))
    scaling = as_dict(props.get("scalingConfig"))
    return placement.Pool(name, "node group", node_labels, taints, types, {labels.GPU_RESOURCE: 1}, {},
                          int(scaling.get("maxSize") or 0), name in autoscaled, int(scaling.get("minSize") or 0))


def _node_pool(props: dict) -> placement.Pool:
    spec = as_dict(props.get("spec"))
    template = as_dict(spec.get("template"))
    tspec = as_dict(template.get("spec"))
    name = str(as_dict(props.get("metadata")).get("name", "?"))
    node_labels = {k: (v,) for k, v in as_dict(as_dict(template.get("metadata")).get("labels")).items()}
    node_labels[labels.KARPENTER_NODEPOOL] = (name,)
    types: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    for req in as_list(tspec.get("requirements")):
        req = as_dict(req)
        if req.get("operator") == "In":
            node_labels[req.get("key")] = tuple(as_list(req.get("values")))
        if req.get("key") == placement.INSTANCE_TYPE_LABEL:
            types = tuple(t for t in as_list(req.get("values")) if t in catalog.instance_types())
        if req.get("key") == "karpenter.k8s.aws/instance-category":
            categories = tuple(as_list(req.get("values")))
    taints = tuple(placement.Taint(t.get("key"), t.get("value") or "", t.get("effect"))
                   for t in as_list(tspec.get("taints")) if isinstance(t, dict))
    limits = {}
    for resource, value in as_dict(spec.get("limits")).items():
        try:
            limits[resource] = placement.quantity(value)
        except (TypeError, ValueError):
            continue
    physical = float(as_dict(as_dict(props.get("metadata")).get("annotations")).get(
        labels.MAX_GPUS, limits.get(labels.GPU_RESOURCE, 0)) or 0)
    per_gpu = {r: max(1, round(n / physical)) for r, n in limits.items()
               if physical and (r in GPU_RESOURCES or r.startswith(labels.MIG_RESOURCE_PREFIX))}
    if types and not per_gpu:
        per_gpu = {labels.GPU_RESOURCE: 1}
    vcpu, memory = catalog.largest_cpu_instance(categories) if categories else (0, 0)
    return placement.Pool(name, "NodePool", node_labels, taints, types, per_gpu, limits, None, True,
                          max_cpu=min(vcpu, limits.get("cpu", vcpu)),
                          max_memory_gib=min(memory, limits.get("memory", memory * placement.GIB) / placement.GIB))


def plan_pools(resources: list[tuple[str, dict]]) -> list[placement.Pool]:
    """The pools the plan declares, with which managed node groups the cluster-autoscaler can start from zero."""
    autoscaler = any(t == HELM_RELEASE and as_dict(p).get("chart") == AUTOSCALER_CHART for t, p in resources)
    by_asg: dict[str, dict[str, str]] = {}
    for typ, props in resources:
        if typ == ASG_TAG:
            tag = as_dict(props.get("tag"))
            by_asg.setdefault(str(props.get("autoscalingGroupName")), {})[str(tag.get("key"))] = str(tag.get("value"))
    autoscaled = {tags.get(f"{TEMPLATE_PREFIX}label/{labels.NODE_POOL}") for tags in by_asg.values()
                  if autoscaler and SCOPE_TAG in tags}
    pools = []
    for typ, props in resources:
        if typ == NODE_GROUP:
            pool = _node_group_pool(props, autoscaled)
            if pool is not None:
                pools.append(pool)
        elif typ == NODE_POOL:
            pools.append(_node_pool(props))
    return pools


def plan_workloads(resources: list[tuple[str, dict]]) -> list[tuple[placement.Workload, str | None, dict]]:
    """(workload, namespace, job metadata labels) for every team workload the plan declares."""
    found: list[tuple[placement.Workload, str | None, dict]] = []
    for typ, props in resources:
        kind = typ.rsplit(":", 1)[-1]
        meta = as_dict(props.get("metadata"))
        ns, name = meta.get("namespace"), meta.get("name")
        if kind in JOB_KINDS:
            replica_specs = next((v for k, v in as_dict(props.get("spec")).items() if k.endswith("ReplicaSpecs")), {})
            pods = sum(int(as_dict(r).get("replicas") or 1) for r in as_dict(replica_specs).values())
            for role, replica in as_dict(replica_specs).items():
                spec = as_dict(as_dict(as_dict(replica).get("template")).get("spec"))
                found.append((placement.pod_workload(f"{kind} {ns}/{name} ({role})", spec,
                                                     int(as_dict(replica).get("replicas") or 1)), ns,
                              {"job": f"{kind} {ns}/{name}", "pods": pods, **as_dict(meta.get("labels"))}))
        elif kind == "InferenceService":
            for _, spec in pod_specs(typ, props):
                found.append((placement.pod_workload(f"InferenceService {ns}/{name}", spec), ns, {}))
        elif typ == HELM_RELEASE:
            for profile in as_list(as_dict(as_dict(props.get("values")).get("singleuser")).get("profileList")):
                override = as_dict(as_dict(profile).get("kubespawner_override"))
                found.append((placement.kubespawner_workload(f"JupyterHub profile '{profile.get('slug')}'", override),
                              override.get("namespace"), {}))
        elif typ == CONFIG_MAP and isinstance(as_dict(props.get("data")).get("podTemplate.yaml"), str):
            try:
                template = yaml.safe_load(props["data"]["podTemplate.yaml"])
            except yaml.YAMLError:
                continue
            found.append((placement.pod_workload(f"ConfigMap {ns}/{name} (training job defaults)",
                                                 as_dict(as_dict(template).get("spec"))), ns, {"template": True}))
    return found


def _queue_ceilings(resources: list[tuple[str, dict]]) -> dict[str, dict[str, float]]:
    """ClusterQueue name -> resource -> most it can hold at once (nominal + borrowing limit, largest flavor)."""
    ceilings: dict[str, dict[str, float]] = {}
    for typ, props in resources:
        if typ != CLUSTER_QUEUE:
            continue
        name = str(as_dict(props.get("metadata")).get("name"))
        for group in as_list(as_dict(props.get("spec")).get("resourceGroups")):
            for flavor in as_list(as_dict(group).get("flavors")):
                for r in as_list(as_dict(flavor).get("resources")):
                    r = as_dict(r)
                    if r.get("name") not in GPU_RESOURCES:
                        continue
                    borrow = r.get("borrowingLimit")
                    total = placement.quantity(r.get("nominalQuota") or 0) + (
                        placement.quantity(borrow) if borrow is not None else float("inf"))
                    ceilings.setdefault(name, {})[r["name"]] = max(ceilings.get(name, {}).get(r["name"], 0), total)
    return ceilings


def stranded_problems(resources: list[tuple[str, dict]]) -> list[str]:
    pools = plan_pools(resources)
    local_queues = {(as_dict(p.get("metadata")).get("namespace"), as_dict(p.get("metadata")).get("name")):
                    as_dict(p.get("spec")).get("clusterQueue") for t, p in resources if t == LOCAL_QUEUE}
    ceilings = _queue_ceilings(resources)
    namespace_quota: dict[str, dict[str, float]] = {}
    for typ, props in resources:
        if typ == RESOURCE_QUOTA:
            hard = as_dict(as_dict(props.get("spec")).get("hard"))
            quota = namespace_quota.setdefault(as_dict(props.get("metadata")).get("namespace"), {})
            for key, value in hard.items():
                resource = key.removeprefix("requests.")
                if resource in GPU_RESOURCES:      # several quotas in a namespace: the tightest one binds
                    quota[resource] = min(quota.get(resource, float("inf")), placement.quantity(value))
    problems = []
    jobs: dict[str, tuple[str | None, dict, dict[str, float]]] = {}
    for workload, ns, job in plan_workloads(resources):
        reasons = placement.placement_problems(workload, pools)
        if reasons and pools:
            problems.append(f"{workload.name} would never be scheduled: {'; '.join(reasons)}.")
        if job.get("template"):
            continue            # a template for jobs: it must fit a pool; quotas judge the jobs made from it
        if job:
            total = jobs.setdefault(job["job"], (ns, job, {}))[2]
            for r, n in workload.requests.items():
                total[r] = total.get(r, 0) + n * workload.pods
        else:
            why = placement.admission_problems(workload, namespace_quota.get(ns, {}), "namespace quota")
            if why:
                problems.append(f"{workload.name} could never start: {'; '.join(why)}.")
    for job_name, (ns, job, total) in jobs.items():
        whole = placement.Workload(job_name, {}, (), (), total, 1)
        queue = job.get(QUEUE_LABEL)
        why = []
        if queue is not None and (ns, queue) not in local_queues:
            why.append(f"it names the queue '{queue}', which is no LocalQueue in namespace '{ns}'")
        cluster_queue = local_queues.get((ns, queue))
        if cluster_queue:
            why += placement.admission_problems(whole, ceilings.get(cluster_queue, {}),
                                                "queue's quota (nominal + borrowing limit)")
        why += placement.admission_problems(whole, namespace_quota.get(ns, {}), "namespace quota")
        if why:
            problems.append(f"{job_name} would never be admitted whole: "
                            f"{'; '.join(w.replace('its 1 pod(s)', 'its pods') for w in why)}.")
    return problems


@stack_policy(
    "workload-fits-declared-capacity",
    "Every training job, InferenceService, JupyterHub profile and training job default fits a pool the stack "
    "declares (selectors, tolerations, one instance's size, the pool's limits and autoscaling), and its team's queue "
    "and namespace quota can admit it whole.",
    remediation="Target a declared pool (nodeSelector on mlops.platform/node-pool), tolerate its taints, ask for no "
                "more than one of its instance types offers, give a managed GPU node group the cluster-autoscaler "
                "(cluster.autoscaler) or a minSize, and keep jobs within the team's gpuQuota plus what its queue may "
                "borrow.",
)
def workload_fits_declared_capacity(resources, config):
    return stranded_problems(resources)


POLICIES = [workload_fits_declared_capacity]

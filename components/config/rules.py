"""Rules across sections, run once every section is structurally valid. Each section's own rules live beside its
model; here are those that join sections (quotas against GPU pools, roles across teams) and the order they run in."""

from __future__ import annotations

from components import catalog, labels
from components.config import (cluster, datasets, gpu, mlflow, network, notebooks, observability, supply_chain, teams,
                               training)
from components.config.platform import PlatformConfig
from components.config.problems import Problem
from components.config.teams import TeamConfig
from components.planning import gpu_supply
from components.planning.serving import model_sizing


def _team_rule_errors(cfg: PlatformConfig) -> list[Problem]:
    """Tenancy rules across sections: quotas against GPU capacity, one team per IAM role."""
    errors: list[Problem] = []
    capacity = gpu_supply.gpu_capacity(cfg)
    supply = gpu_supply.gpu_resource_supply(cfg)
    for i, team in enumerate(cfg.teams):
        shared = [(f"teams[{i}].migQuota[{p}]", labels.MIG_RESOURCE_PREFIX + p, n) for p, n in team.mig_quota.items()]
        if team.shared_gpu_quota is not None:
            shared.append((f"teams[{i}].sharedGpuQuota", labels.GPU_SHARED_RESOURCE, team.shared_gpu_quota))
        for path, resource, n in shared:
            if resource not in supply:
                offered = ", ".join(sorted(r for r in supply if r != labels.GPU_RESOURCE)) or "none"
                errors.append(Problem(path, f"asks for {resource}, which no GPU pool offers (shared GPU resources "
                                            f"offered: {offered}); add a pool with that sharing under gpu.nodePools", n))
            elif n > supply[resource]:
                errors.append(Problem(path, f"exceeds the {supply[resource]} {resource} the GPU pools can supply at most",
                                      n))
    owner: dict[str, str] = {arn: "cluster.adminRoleArns" for arn in cfg.cluster.admin_role_arns}
    for i, team in enumerate(cfg.teams):
        if team.gpu_quota > capacity:
            errors.append(Problem(f"teams[{i}].gpuQuota",
                                  f"exceeds the {capacity} GPUs the stack's GPU pools can supply at most; lower it or "
                                  "raise a GPU pool's maximum (cluster.gpuNodeGroups maxSize or a GPU NodePool's "
                                  "limit)",
                                  team.gpu_quota))
        for j, arn in enumerate(team.member_role_arns):
            if arn in owner:
                errors.append(Problem(f"teams[{i}].memberRoleArns[{j}]",
                                      f"is already in {owner[arn]}; EKS gives a role one access entry, so a role can "
                                      "belong to one team only", arn))
            owner.setdefault(arn, f"teams[{i}].memberRoleArns")
    return errors


def _serving_rule_errors(cfg: PlatformConfig) -> list[Problem]:
    """Model deployments against the serving catalog (components/data/serving.yaml)."""
    errors: list[Problem] = []
    frameworks = catalog.serving_frameworks()
    for i, team in enumerate(cfg.teams):
        for j, m in enumerate(team.models):
            path, fw = f"teams[{i}].models[{j}]", frameworks[m.framework]
            if m.gpu and fw.gpu_rps_per_replica is None:
                errors.append(Problem(f"{path}.gpu", f"cannot be true for framework '{m.framework}': its runtime "
                                      f"({fw.runtime}) has no GPU path; serve it on CPU or export it to onnx", m.gpu))
            if m.latency_p99_ms < fw.min_p99_ms:
                errors.append(Problem(f"{path}.latencyP99Ms", f"is below the {fw.min_p99_ms} ms the '{m.framework}' "
                                      "runtime needs to answer at all (model server and queue-proxy overhead)",
                                      m.latency_p99_ms))
            if m.canary is not None and m.canary.location.rstrip("/") == m.location.rstrip("/"):
                errors.append(Problem(f"{path}.canary.location", "must differ from `location`: a canary rolls out a new "
                                      "model version next to the one at `location`", m.canary.location))
        errors += _model_quota_errors(cfg, i, team)
    return errors + _rollout_rule_errors(cfg)


def _rollout_rule_errors(cfg: PlatformConfig) -> list[Problem]:
    """Registry-mode rollouts are judged on Prometheus series, and one alias drives one model."""
    errors: list[Problem] = []
    followed: dict[tuple[str, str], str] = {}
    for i, team in enumerate(cfg.teams):
        for j, m in enumerate(team.models):
            if not m.registry_driven:
                continue
            path = f"teams[{i}].models[{j}].rollout"
            if not cfg.observability.enabled:
                errors.append(Problem(f"{path}.mode", "registry needs observability.enabled: the canary is analysed "
                                      "on Prometheus series; enable observability or use rollout mode manual",
                                      m.rollout.mode))
            key = (m.rollout.registered_model or "", m.rollout.alias)
            if key in followed:
                errors.append(Problem(f"{path}.registeredModel", f"with alias '{key[1]}' already drives "
                                      f"{followed[key]}; one registry alias deploys one model", key[0]))
            followed.setdefault(key, f"{path[:-len('.rollout')]} ({team.name}/{m.name})")
    return errors


def _model_quota_errors(cfg: PlatformConfig, i: int, team: TeamConfig) -> list[Problem]:
    """A team's quota must let its models scale to their peak (CPU, memory, GPUs): an autoscaler allowed more replicas
    than the quota holds stalls exactly when traffic peaks (the policy inference-replicas-within-quota says the same
    of the plan)."""
    frameworks = catalog.serving_frameworks()
    cpus = memory = gpus = 0.0
    for m in team.models:
        fw, size = frameworks[m.framework], model_sizing(m, cfg.is_prod)
        cpus += size.max_replicas * float(fw.cpu)
        memory += size.max_replicas * fw.memory_gib
        gpus += size.max_replicas if m.gpu else 0
    peak = "at their peak traffic (maxReplicas x the replica's requests, components/data/serving.yaml)"
    checks = [("cpuQuota", team.cpu_quota, cpus, f"CPUs the team's models need {peak}"),
              ("memoryQuotaGib", team.memory_quota_gib, memory, f"GiB the team's models need {peak}"),
              ("gpuQuota", team.gpu_quota, gpus, f"GPUs the team's GPU models need {peak}")]
    return [Problem(f"teams[{i}].{key}", f"is below the {need:g} {what}; raise it, or lower the models' peakRps",
                    quota) for key, quota, need, what in checks if need > quota]


def problems(cfg: PlatformConfig) -> list[Problem]:
    """Every rule beyond the models' own validators, in the order they are reported. Run only once the structure
    is valid."""
    found = teams.problems(cfg)
    found += _team_rule_errors(cfg)
    found += datasets.problems(cfg)
    pool_problems = gpu.problems(cfg)
    found += pool_problems
    found += _serving_rule_errors(cfg)
    found += mlflow.problems(cfg)
    found += supply_chain.problems(cfg)
    # Profiles and training jobs are resolved against the GPU pools: only once the pools themselves are valid.
    if not pool_problems:
        offered = notebooks.problems(cfg) + training.problems(cfg)
        found += offered
        if not offered:     # every profile and the training pool resolved: can each of them land somewhere?
            from components.planning import capacity
            found += capacity.stranded_problems(cfg)
    found += observability.problems(cfg)
    found += network.problems(cfg)
    found += cluster.problems(cfg)
    if cfg.is_prod and not cfg.protect_data:
        found.append(Problem("protectData", "must be true in prod, so data stores and keys cannot be deleted by a "
                             "`pulumi up`", cfg.protect_data))
    return found

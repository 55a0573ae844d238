"""Turn a recorded run into the build output: plan.json, manifests.yaml, Helm values files, summary.md."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from components.planning import declared_pools as capacity
from components.planning import quotas
from components.planning.declared_pools import DeclaredGpuPool
from preview.engine import Registration, Run

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"


def is_manifest(r: Registration) -> bool:
    return r.custom and r.type.startswith("kubernetes:") and r.type != HELM_RELEASE


def manifests(run: Run) -> list[dict[str, Any]]:
    head = ("apiVersion", "kind", "metadata")
    return [{**{k: r.inputs[k] for k in head if k in r.inputs}, **r.inputs} for r in run.resources if is_manifest(r)]


def helm_releases(run: Run) -> list[Registration]:
    return [r for r in run.resources if r.type == HELM_RELEASE]


def plan(run: Run) -> dict[str, Any]:
    return {"stack": run.stack, "resources": [r.to_plan() for r in run.resources], "outputs": run.outputs}


def components(run: Run) -> Counter:
    """Custom resources per top-level component (a direct child of the stack)."""
    by_urn = {x.urn: x for x in run.resources}

    def top(node: Registration) -> str:
        while node.parent in by_urn:
            node = by_urn[node.parent]
        return f"{node.name} ({node.type})" if not node.custom else "(stack)"

    return Counter(top(r) for r in run.resources if r.custom)


def gpu_pool_details(run: Run) -> list[DeclaredGpuPool]:
    """Every GPU managed node group and GPU Karpenter NodePool declared, with GPU type, sharing and maximum GPUs."""
    return capacity.declared_gpu_pools((r.type, r.inputs) for r in run.resources if r.custom)


def quota_needs(run: Run) -> list[quotas.QuotaNeed]:
    """The EC2 vCPU quotas the declared GPU pools need at their limits."""
    return quotas.needs(quotas.from_declared((r.type, r.inputs) for r in run.resources if r.custom))


def gpu_pools(run: Run) -> list[tuple[str, str, int]]:
    """(kind, name, maximum GPUs) for every GPU managed node group and GPU Karpenter NodePool declared."""
    return [(p.kind, p.name, p.max_gpus) for p in gpu_pool_details(run)]


def summary(run: Run, violations: list) -> str:
    per_component = components(run)
    kinds = Counter(m.get("kind", "?") for m in manifests(run))
    lines = [f"# Offline preview of stack `{run.stack}`", "",
             f"{sum(1 for r in run.resources if r.custom)} resources, {len(manifests(run))} Kubernetes objects, "
             f"{len(helm_releases(run))} Helm releases.", "", "## Resources per component", ""]
    lines += [f"- {name}: {n}" for name, n in sorted(per_component.items())]
    lines += ["", "## Kubernetes objects per kind", ""]
    lines += [f"- {kind}: {n}" for kind, n in sorted(kinds.items())] or ["- (none)"]
    lines += ["", "## GPU pools (maximum GPUs)", ""]
    lines += [f"- {p.kind} `{p.name}`: {p.max_gpus} ({p.gpu_type}, sharing: {p.sharing})"
              for p in sorted(gpu_pool_details(run), key=lambda p: (p.kind, p.name))] or ["- (none)"]
    lines += ["", "## EC2 vCPU quotas the GPU pools need (at their limits)", ""]
    lines += [f"- `{q.code}` {q.name}: {q.vcpus} vCPUs ({', '.join(sorted(q.pools))})"
              for q in sorted(quota_needs(run), key=lambda q: q.code)] \
        or ["- (none)"]
    lines += ["", "## Policy check", ""]
    lines += [f"- [{v.enforcement}] {v.policy}: {v.message}" for v in violations] or ["- no violations"]
    return "\n".join(lines) + "\n"


def write(run: Run, out_dir: Path, violations: list) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "plan.json").write_text(json.dumps(plan(run), indent=1, sort_keys=False) + "\n")
    (out_dir / "manifests.yaml").write_text(yaml.safe_dump_all(manifests(run), sort_keys=False))
    helm_dir = out_dir / "helm"
    helm_dir.mkdir(exist_ok=True)
    for old in helm_dir.glob("*.values.yaml"):
        old.unlink()
    for release in helm_releases(run):
        release_name = release.inputs.get("name", release.name)
        (helm_dir / f"{release_name}.values.yaml").write_text(
            yaml.safe_dump(release.inputs.get("values") or {}, sort_keys=False))
    (out_dir / "summary.md").write_text(summary(run, violations))

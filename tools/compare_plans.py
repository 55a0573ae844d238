"""Compare two rendered plan directories (`python -m preview render <stack> --out DIR`) ignoring registration
order, which varies between renders: resources keyed by URN with sorted dependency lists, Kubernetes manifests as
sorted documents, Helm values byte for byte. Exit 1 on any difference. For refactors that must not change what is
deployed:

    python -m preview render dev --out /tmp/before/dev     # on the base revision
    python -m preview render dev --out /tmp/after/dev      # on the change
    python tools/compare_plans.py /tmp/before/dev /tmp/after/dev
"""
from __future__ import annotations

import json
import pathlib
import sys

import yaml


Canonical = dict[str, str]


def _unorder(value: object) -> object:
    """Lists of URNs (dependencies) are sets: sorted. Everything else keeps its order."""
    if isinstance(value, list) and all(isinstance(x, str) and x.startswith("urn:pulumi:") for x in value):
        return sorted(value)
    if isinstance(value, dict):
        return {k: _unorder(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unorder(x) for x in value]
    return value


def canonical(directory: pathlib.Path) -> tuple[Canonical, str, list[str], Canonical]:
    """(URN -> resource as canonical JSON, outputs, sorted manifest documents, Helm values file -> text)."""
    plan = json.loads((directory / "plan.json").read_text())
    resources = {r["urn"]: json.dumps(_unorder(r), sort_keys=True) for r in plan["resources"]}
    outputs = json.dumps(_unorder(plan["outputs"]), sort_keys=True)
    manifests = sorted(json.dumps(d, sort_keys=True)
                       for d in yaml.safe_load_all((directory / "manifests.yaml").read_text()) if d)
    helm = {f.name: f.read_text() for f in sorted((directory / "helm").glob("*"))}
    return resources, outputs, manifests, helm


def differences(before: pathlib.Path, after: pathlib.Path) -> list[str]:
    (ra, oa, ma, ha), (rb, ob, mb, hb) = canonical(before), canonical(after)
    found = [f"{'added' if urn not in ra else 'removed' if urn not in rb else 'changed'} {urn}"
             for urn in sorted(set(ra) | set(rb)) if ra.get(urn) != rb.get(urn)]
    found += ["outputs differ"] * (oa != ob) + ["manifests differ"] * (ma != mb)
    found += [f"helm values differ: {name}" for name in sorted(set(ha) | set(hb)) if ha.get(name) != hb.get(name)]
    return found


def main(argv: list[str]) -> int:
    before, after = (pathlib.Path(a) for a in argv)
    found = differences(before, after)
    for line in found:
        print(line)
    resources, _, manifests, _ = canonical(before)
    print(f"{before} vs {after}: {len(resources)} resources, {len(manifests)} manifests, {len(found)} differences")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Structural diff of two JSON values, as a reviewer reads them.

- Lists of objects are matched by identity (`metadata.name`, `name`, `key`, `alert`/`record` for Prometheus rules,
  `uid`/`title` for dashboards ...), so inserting an item at the top of a list shows one added item, not every
  item after it "turning into" its neighbour. Other lists are aligned as sequences (difflib), with the same effect.
- Paths are in document order (`rules[2]` before `rules[11]`), keyed items read `rules[alert=GpuIdle].expr`.
- Strings holding a JSON or YAML document (a Grafana dashboard in a ConfigMap, a Helm values file, an IAM policy)
  are parsed and compared as structures: `data["gpu.json"](json).panels[title=GPU use].targets[0].expr`.

A small differ rather than deepdiff: matching by the first identity key an entire list shares and the path format
above are the whole job, and they are simpler to state here than to configure there.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Any, Iterator

import yaml

# Identity keys, most specific first: the first one every item of a list carries, with distinct values, wins.
# Grafana panels: `id` before `title`, so an edited title shows as a changed field of the same panel.
IDENTITY_KEYS = ("metadata.name", "name", "key", "alert", "record", "uid", "slug", "id", "title", "port",
                 "containerPort", "mountPath", "sid", "Sid")
EMBEDDED = "(json)", "(yaml)"


@dataclass(frozen=True)
class Change:
    path: str
    old: Any            # None when added
    new: Any            # None when removed
    kind: str = "changed"   # "added" | "removed" | "changed"


def get(item: Any, dotted: str) -> Any:
    """`metadata.name` of a dict, or None."""
    for part in dotted.split("."):
        if not isinstance(item, dict):
            return None
        item = item.get(part)
    return item


def identity_key(*lists: list[Any]) -> str | None:
    """The identity key every item carries with a scalar value distinct within its own list, if any."""
    items = [i for lst in lists for i in lst]
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    for key in IDENTITY_KEYS:
        ok = True
        for lst in lists:
            values = [get(i, key) for i in lst]
            ok = ok and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values) \
                and len(set(values)) == len(values)
        if ok:
            return key
    return None


def join(prefix: str, key: str) -> str:
    if re.fullmatch(r"[A-Za-z_][\w-]*", key):
        return f"{prefix}.{key}" if prefix else key
    return f"{prefix}[{json.dumps(key)}]"


def parse_embedded(text: str) -> tuple[Any, str] | None:
    """A JSON or YAML document inside a string (object or list only; plain strings stay strings)."""
    stripped = text.strip()
    if stripped[:1] in "{[":
        try:
            value = json.loads(stripped)
            return (value, "(json)") if isinstance(value, (dict, list)) else None
        except ValueError:
            pass
    if "\n" in stripped and ":" in stripped:
        try:
            value = yaml.safe_load(stripped)
        except yaml.YAMLError:
            return None
        if isinstance(value, (dict, list)):
            return value, "(yaml)"
    return None


def diff(old: Any, new: Any, path: str = "") -> list[Change]:
    return list(_diff(old, new, path))


def _diff(old: Any, new: Any, path: str) -> Iterator[Change]:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=natural_key):
            sub = join(path, str(key))
            if key not in old:
                yield Change(sub, None, new[key], "added")
            elif key not in new:
                yield Change(sub, old[key], None, "removed")
            else:
                yield from _diff(old[key], new[key], sub)
        return
    if isinstance(old, list) and isinstance(new, list):
        yield from _diff_lists(old, new, path)
        return
    if isinstance(old, str) and isinstance(new, str):
        a, b = parse_embedded(old), parse_embedded(new)
        if a and b and a[1] == b[1]:
            yield from _diff(a[0], b[0], path + a[1])
            return
    yield Change(path, old, new, "changed")


def _diff_lists(old: list, new: list, path: str) -> Iterator[Change]:
    key = identity_key(old, new)
    if key:
        old_by = {get(i, key): i for i in old}
        new_ids = [get(i, key) for i in new]
        for item in old:
            if get(item, key) not in new_ids:
                yield Change(f"{path}[{key}={get(item, key)}]", item, None, "removed")
        for ident, item in zip(new_ids, new):
            sub = f"{path}[{key}={ident}]"
            if ident not in old_by:
                yield Change(sub, None, item, "added")
            else:
                yield from _diff(old_by[ident], item, sub)
        return
    # No identity: align as sequences, so an insertion shows as one added item.
    as_text = [json.dumps(x, sort_keys=True) for x in old], [json.dumps(x, sort_keys=True) for x in new]
    matcher = difflib.SequenceMatcher(a=as_text[0], b=as_text[1], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        paired = min(i2 - i1, j2 - j1) if op == "replace" else 0
        for k in range(paired):   # same position, changed in place: recurse for the field that changed
            yield from _diff(old[i1 + k], new[j1 + k], f"{path}[{j1 + k}]")
        for k in range(i1 + paired, i2):
            yield Change(f"{path}[{k}]", old[k], None, "removed")
        for k in range(j1 + paired, j2):
            yield Change(f"{path}[{k}]", None, new[k], "added")


def natural_key(text: Any) -> tuple:
    """`rules[2]` before `rules[11]`: digits compare as numbers."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", str(text)) if t)


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf of a value by path, embedded documents parsed (for showing an added resource in full)."""
    if isinstance(value, dict) and value:
        for k in sorted(value, key=natural_key):
            yield from leaves(value[k], join(path, str(k)))
    elif isinstance(value, list) and value:
        key = identity_key(value)
        for i, v in enumerate(value):
            yield from leaves(v, f"{path}[{key}={get(v, key)}]" if key else f"{path}[{i}]")
    elif isinstance(value, str) and (doc := parse_embedded(value)):
        yield from leaves(doc[0], path + doc[1])
    else:
        yield path, value

"""A seeded fuzzer of stack config files: every input ends in `error: <file>: ...` lines or a valid config, never a
traceback, and an invalid one never reaches the program (nothing is rendered).

    python -m tests.fuzz_config --cases 3000 --seed 1 [--cli 20] [--render-accepted 3]     (make fuzz-config)

Each case takes a seed stack file and applies one to three mutations: structural ones on the parsed YAML (a key
deleted, renamed or added, a value swapped for another type, a number pushed out of range, a CIDR or duration
corrupted, a list emptied or a mapping written as a list, a `secure:` value put somewhere) or textual ones on the file
(a character, a line or the tail cut, a stray bracket, colon or tab, bytes that are not UTF-8). The case is judged
exactly as a command judges a file before any resource: `read_stack_file` then `parse_config`. `--cli N` also runs
`python -m preview render` on N invalid cases (exit 2, no traceback, no output written), `--render-accepted N` on N
accepted ones (no traceback).
"""

from __future__ import annotations

import argparse
import copy
import random
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.config.loading import ConfigError, parse_config, read_stack_file

PROJECT_DIR = Path(__file__).resolve().parent.parent
PYDANTIC_STEPS = ("constrained-", "function-after", "function-before", "function-plain", "function-wrap",
                  "tagged-union", "json-or-python", "lax-or-strict", "is-instance[")
ODD_VALUES: list[Any] = [None, True, False, 0, -1, 1, 2 ** 63, -(2 ** 31), 1.5, float("inf"), "", " ", "x" * 300,
                         "ünïcödé", "0.0.0.0/0", "10.0.0.0/33", "999.1.1.1/16", "10.0.0.0", "::/0", "1h", "-5m",
                         "Never", "latest", [], [None], {}, {"a": 1}, {"secure": "v1:abc"}, "${oops}", "1.99",
                         "s3://", "arn:aws:iam::1:role/x", "yes", "null", 1e308]


@dataclass
class Outcome:
    rejected: int = 0
    accepted: int = 0
    failures: list[str] = field(default_factory=list)     # tracebacks and badly formed error lines
    invalid_files: list[Path] = field(default_factory=list)
    valid_files: list[Path] = field(default_factory=list)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (keys and indexes) into a parsed document."""
    found = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            found += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _paths(v, prefix + (i,))
    return found


def _parent(doc: Any, path: tuple) -> tuple[Any, Any]:
    node = doc
    for part in path[:-1]:
        node = node[part]
    return node, path[-1]


def mutate_structure(doc: dict, rng: random.Random) -> dict:
    doc = copy.deepcopy(doc)
    paths = [p for p in _paths(doc) if len(p) >= 2]      # inside `config:`
    if not paths:
        return doc
    path = rng.choice(paths)
    parent, key = _parent(doc, path)
    value = parent[key]
    kind = rng.choice(["delete", "swap", "range", "rename", "add", "wrap", "empty", "secure", "duplicate"])
    if kind == "delete":
        del parent[key]
    elif kind == "swap":
        parent[key] = copy.deepcopy(rng.choice(ODD_VALUES))
    elif kind == "range" and isinstance(value, (int, float)) and not isinstance(value, bool):
        parent[key] = rng.choice([-value - 1, value * 1000 + 7, 0, -1, value + 0.5])
    elif kind == "rename" and isinstance(parent, dict):
        parent[str(key)[:-1] or "x"] = parent.pop(key)
    elif kind == "add" and isinstance(value, dict):
        value[rng.choice(["extra", "gpuquota", "vpc_cidr", "mlops-platform:teams", "1"])] = rng.choice(ODD_VALUES)
    elif kind == "wrap":
        parent[key] = [value] if not isinstance(value, list) else {"items": value}
    elif kind == "empty":
        parent[key] = type(value)() if isinstance(value, (list, dict, str)) else None
    elif kind == "secure":
        parent[key] = {"secure": "v1:Zm9v"}
    elif kind == "duplicate" and isinstance(value, list) and value:
        value.append(copy.deepcopy(value[0]))
    else:
        parent[key] = copy.deepcopy(rng.choice(ODD_VALUES))
    return doc


def mutate_text(text: str, rng: random.Random) -> bytes:
    kind = rng.choice(["cut-char", "cut-line", "truncate", "bracket", "colon", "tab", "indent", "bytes", "list-doc"])
    lines = text.splitlines(keepends=True)
    at = rng.randrange(max(len(text), 1))
    line = rng.randrange(max(len(lines), 1))
    if kind == "cut-char":
        text = text[:at] + text[at + 1:]
    elif kind == "cut-line" and lines:
        del lines[line]
        text = "".join(lines)
    elif kind == "truncate":
        text = text[:at]
    elif kind in ("bracket", "colon", "tab"):
        text = text[:at] + {"bracket": rng.choice("[]{}"), "colon": ": ", "tab": "\t"}[kind] + text[at:]
    elif kind == "indent" and lines:
        lines[line] = " " + lines[line]
        text = "".join(lines)
    elif kind == "list-doc":
        text = "- " + text.replace("\n", "\n  ")
    else:
        return text[:at].encode() + bytes([0xff, 0xfe]) + text[at:].encode()
    return text.encode()


def judge(path: Path, outcome: Outcome) -> None:
    """What a command does with the file before any resource: an error listing, or a valid config."""
    try:
        found = read_stack_file(path)
        parse_config(found.raw, found.secret_paths)
    except ConfigError as exc:
        outcome.rejected += 1
        outcome.invalid_files.append(path)
        lines = exc.lines(path.name)
        bad = [ln for ln in lines if not ln.startswith(f"error: {path.name}") or any(s in ln for s in PYDANTIC_STEPS)]
        if not lines or bad:
            outcome.failures.append(f"{path}: badly formed error lines: {bad or lines}")
    except Exception:  # noqa: BLE001 (the point: anything else is a failure to report)
        outcome.failures.append(f"{path}: traceback\n{traceback.format_exc()}")
    else:
        outcome.accepted += 1
        outcome.valid_files.append(path)


def seeds() -> list[tuple[str, str]]:
    return [(p.name, p.read_text()) for p in sorted(PROJECT_DIR.glob("Pulumi.*.yaml"))]


def run(cases: int, seed: int, workdir: Path) -> Outcome:
    rng = random.Random(seed)
    outcome = Outcome()
    corpus = seeds()
    for n in range(cases):
        name, text = rng.choice(corpus)
        stack = f"fuzz{n}"
        path = workdir / f"Pulumi.{stack}.yaml"
        if rng.random() < 0.7:
            doc = yaml.safe_load(text)
            for _ in range(rng.randint(1, 3)):
                doc = mutate_structure(doc, rng)
            path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        else:
            path.write_bytes(mutate_text(text, rng))
        judge(path, outcome)
    return outcome


def cli(path: Path, expect_invalid: bool) -> str | None:
    """Run the real command on one file; a problem description, or None."""
    out = path.parent / f"build-{path.stem}"
    result = subprocess.run([sys.executable, "-m", "preview", "render", path.stem.removeprefix("Pulumi."), "--config",
                             str(path), "--out", str(out)], cwd=PROJECT_DIR, capture_output=True, text=True)
    if "Traceback" in result.stdout + result.stderr:
        return f"{path}: the command printed a traceback:\n{result.stderr[-3000:]}"
    if expect_invalid and (result.returncode != 2 or out.exists()):
        return f"{path}: an invalid config exited {result.returncode} (output written: {out.exists()})"
    if expect_invalid and not all(ln.startswith(f"error: {path.name}") for ln in result.stderr.splitlines() if ln):
        return f"{path}: stderr has lines other than `error: {path.name}: ...`:\n{result.stderr}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz_config", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cli", type=int, default=10, help="also run the render command on this many invalid cases")
    parser.add_argument("--render-accepted", type=int, default=2, help="... and on this many accepted ones")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fuzz-config-") as tmp:
        outcome = run(args.cases, args.seed, Path(tmp))
        rng = random.Random(args.seed)
        sample = rng.sample(outcome.invalid_files, min(args.cli, len(outcome.invalid_files)))
        accepted = rng.sample(outcome.valid_files, min(args.render_accepted, len(outcome.valid_files)))
        outcome.failures += [f for f in [*(cli(p, True) for p in sample), *(cli(p, False) for p in accepted)] if f]
    print(f"fuzz-config: {args.cases} cases (seed {args.seed}): {outcome.rejected} rejected with error lines, "
          f"{outcome.accepted} accepted, {len(outcome.failures)} failures; render command run on {len(sample)} "
          f"invalid and {len(accepted)} accepted cases")
    for failure in outcome.failures[:20]:
        print(failure)
    return 1 if outcome.failures else 0


if __name__ == "__main__":
    sys.exit(main())

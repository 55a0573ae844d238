"""`python -m preview render|check|cost|diff <stack>`: the offline preview (see docs/preview.md)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from components.planning.cost import plural
from preview import check as policy_check
from preview import cost as cost_model
from preview import diff, engine, render

BUILD_DIR = engine.PROJECT_DIR / "build"


def _run(stack: str, config_file: str | None = None, project_dir: Path = engine.PROJECT_DIR) -> engine.Run:
    from components.config import ConfigError

    from components.config.loading import parse_config, read_stack_file

    path = Path(config_file) if config_file else engine.stack_file(stack, project_dir)
    try:
        # The file (and the platform's whole config) is judged before the program runs, with every `secure:`
        # value's own path; another program (bootstrap/) validates its own config.
        found = read_stack_file(path)
        if project_dir == engine.PROJECT_DIR:
            parse_config(found.raw, found.secret_paths)
        config, secret_keys = engine.read_stack_config(path)
        return engine.run_program(stack, config, secret_keys, project_dir, engine.project_name(project_dir))
    except ConfigError as exc:
        print("\n".join(exc.lines(path.name)), file=sys.stderr)
        raise SystemExit(2) from None


def _violations(run: engine.Run) -> list[policy_check.Violation]:
    overrides = policy_check.load_overrides(engine.PROJECT_DIR, run.stack)
    return policy_check.evaluate(policy_check.load_pack(), run.resources, overrides)


def _print_violations(violations: list[policy_check.Violation]) -> int:
    for v in violations:
        print(f"  [{v.enforcement}] {v.policy}: {v.message}" + (f"\n      at {v.urn}" if v.urn else ""))
    mandatory = sum(v.mandatory for v in violations)
    print(f"policy check: {len(violations)} violations, {mandatory} mandatory")
    return 1 if mandatory else 0


def cmd_render(args: argparse.Namespace) -> int:
    run = _run(args.stack, args.config, args.project_dir)
    violations = _violations(run)
    default_out = BUILD_DIR / (args.stack if args.project_dir == engine.PROJECT_DIR
                               else f"{args.project_dir.name}-{args.stack}")
    out = Path(args.out or default_out)
    render.write(run, out, violations)
    custom = [r for r in run.resources if r.custom]
    print(f"{'' if run.project == 'mlops-platform' else run.project + ' '}stack {args.stack}: {len(custom)} resources, {len(render.manifests(run))} Kubernetes objects, "
          f"{len(render.helm_releases(run))} Helm releases -> {out}")
    for name, n in sorted(render.components(run).items()):
        print(f"  {n:4d}  {name}")
    kinds = Counter(m.get("kind") for m in render.manifests(run))
    if kinds:
        print("Kubernetes objects: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    pools = render.gpu_pool_details(run)
    print("GPU pools:" + ("" if pools else " none"))
    for p in pools:
        print(f"  {p.kind} {p.name}: GPU {p.gpu_type}, sharing {p.sharing}, max {plural(p.max_gpus, 'GPU')}")
    return _print_violations(violations)


def _registrations(plan: dict) -> list[engine.Registration]:
    return [engine.Registration(
        urn=r["urn"], type=r["type"], name=r["name"], custom=r["custom"], parent=r["parent"],
        provider=r["provider"], dependencies=r["dependencies"], protect=r["protect"],
        retain_on_delete=r["retainOnDelete"], inputs=r["inputs"]) for r in plan["resources"]]


def cmd_check(args: argparse.Namespace) -> int:
    if args.plan:
        plan = json.loads(Path(args.plan).read_text())
        resources = _registrations(plan)
        return _print_violations(policy_check.evaluate(policy_check.load_pack(), resources,
                                                       policy_check.load_overrides(engine.PROJECT_DIR, args.stack)))
    return _print_violations(_violations(_run(args.stack, args.config, args.project_dir)))


def cmd_cost(args: argparse.Namespace) -> int:
    run = _run(args.stack, args.config, args.project_dir)
    print(cost_model.markdown(cost_model.estimate((r.type, r.inputs) for r in run.resources if r.custom),
                              f"Cost of stack `{args.stack}`"))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    try:
        base = diff.render_revision(args.stack, args.base, engine.PROJECT_DIR)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"error: {getattr(exc, 'stderr', None) or exc}", file=sys.stderr)
        return 2
    run = _run(args.stack, args.config)
    head = render.plan(run)
    violations = _violations(run)
    d = diff.diff_plans(base, head)
    base_cost, head_cost = cost_model.from_plan(base), cost_model.from_plan(head)
    if args.format == "json":
        print(json.dumps(diff.counts(args.stack, d, violations, base_cost, head_cost), indent=1))
        return 0
    if args.full:
        Path(args.full).parent.mkdir(parents=True, exist_ok=True)
        Path(args.full).write_text(diff.markdown(args.stack, d, violations, base_cost, head_cost))
    print(diff.markdown(args.stack, d, violations, base_cost, head_cost, budget=args.budget,
                        full_name=Path(args.full).name if args.full else None))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m preview", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("render", help="run the program offline and write build/<stack>/")
    p.add_argument("stack")
    p.add_argument("--out", help="output directory (default build/<stack>)")
    p.set_defaults(func=cmd_render)
    p = sub.add_parser("check", help="run the program offline and evaluate the policy pack")
    p.add_argument("stack")
    p.add_argument("--plan", help="evaluate this plan.json instead of rendering the stack")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("cost", help="idle baseline per month and maximum GPU burn per hour")
    p.add_argument("stack")
    p.set_defaults(func=cmd_cost)
    p = sub.add_parser("diff", help="Markdown diff of the stack against a git revision, with policies and cost")
    p.add_argument("stack")
    p.add_argument("--base", required=True, help="git ref to compare with (e.g. origin/main)")
    p.add_argument("--format", choices=["markdown", "json"], default="markdown",
                   help="json: counts only, what offline-comment.yml renders (preview/comment.py)")
    p.add_argument("--full", metavar="FILE", help="also write the whole diff, with no size limit, to FILE")
    p.add_argument("--budget", type=int, default=30000,
                   help="characters the printed Markdown may use (a GitHub comment holds 65,536, a job summary 1 MiB)")
    p.set_defaults(func=cmd_diff)
    for command in sub.choices.values():
        command.add_argument("--config", metavar="FILE",
                             help="read the stack's config from FILE instead of Pulumi.<stack>.yaml")
        command.add_argument("--project-dir", metavar="DIR", type=Path,
                             help="another Pulumi project of this repository (e.g. bootstrap); a directory given as "
                                  "the stack with a single stack file works too: `render bootstrap`")
    args = parser.parse_args(argv)
    args.project_dir, args.stack = engine.resolve(args.stack, args.project_dir)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

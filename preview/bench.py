"""`make bench`: median wall time of an offline render (in-process, after the first) for dev, prod and a generated
100-team stack, beside the time a fresh interpreter needs merely to import the SDK modules a render loads.
Figures, not pass/fail."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from preview import engine, render

RUNS = 5
SDKS = ("pulumi", "pulumi_aws", "pulumi_kubernetes", "pulumi_random", "pulumi_policy", "pydantic", "yaml")


def sdk_modules() -> list[str]:
    """The SDK modules a render loads. The SDKs load submodules lazily (on first attribute access), so importing
    only the top-level packages would leave most of the import work out."""
    engine.run_stack("prod")
    # Modules still lazy (never touched) are registered in sys.modules but were not executed: leave them out.
    return sorted(m for m, module in list(sys.modules.items())
                  if m.split(".")[0] in SDKS and type(module).__name__ == "module")


def import_seconds(modules: list[str]) -> float:
    code = ("import importlib\n"
            f"for name in {modules!r}:\n"
            "    try:\n        importlib.import_module(name)\n"
            "    except ImportError:\n        pass\n")
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def render_seconds(stack: str, config: dict[str, str], secret_keys: list[str]) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(RUNS):
        start = time.perf_counter()
        run = engine.run_program(stack, config, secret_keys)
        times.append(time.perf_counter() - start)
        count = sum(r.custom for r in run.resources)
        render.manifests(run)
    return statistics.median(times), count


def many_teams(n: int) -> tuple[dict[str, str], list[str]]:
    """dev with its own teams plus generated ones (name and GPU quota only) up to `n` teams."""
    config, secrets = engine.read_stack_config(engine.stack_file("dev"))
    teams = json.loads(config["mlops-platform:teams"])
    teams += [{"name": f"team-{i:03d}", "gpuQuota": 1} for i in range(n - len(teams))]
    return {**config, "mlops-platform:teams": json.dumps(teams)}, secrets


def main() -> None:
    modules = sdk_modules()
    base = import_seconds(modules)
    print(f"import the {len(modules)} SDK modules a render loads (fresh interpreter): "
          f"{base * 1000:7.0f} ms (median of {RUNS})")
    cases = [(s, *engine.read_stack_config(engine.stack_file(s))) for s in ("dev", "prod")]
    cases.append(("100-teams", *many_teams(100)))
    for stack, config, secrets in cases:
        seconds, count = render_seconds(stack, config, secrets)
        print(f"render {stack:10s}: {seconds * 1000:7.0f} ms for {count:5d} resources "
              f"({seconds / max(count, 1) * 1000:.2f} ms each), {seconds / base:.2f}x import time")


if __name__ == "__main__":
    main()

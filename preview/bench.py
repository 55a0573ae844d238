"""`make bench`: median time of an offline render (in-process, after a warm-up) for dev, prod and prod with 100 and
200 teams, beside the time a fresh interpreter needs merely to import the SDK modules a render loads (the floor).
Wall and CPU time: on a shared machine the CPU time is the steadier figure. Figures, not pass/fail."""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

from preview import engine, render

RUNS = 3
SDKS = ("pulumi", "pulumi_aws", "pulumi_kubernetes", "pulumi_random", "pulumi_policy", "pydantic", "yaml")
TEAMS = (100, 200)


def sdk_modules() -> list[str]:
    """The SDK modules a render loads. The SDKs load submodules lazily (on first attribute access), so importing
    only the top-level packages would leave most of the import work out."""
    engine.run_stack("prod")
    # Modules still lazy (never touched) are registered in sys.modules but were not executed: leave them out.
    return sorted(m for m, module in list(sys.modules.items())
                  if m.split(".")[0] in SDKS and type(module).__name__ == "module")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def import_seconds(modules: list[str]) -> tuple[float, float]:
    """(wall, CPU) medians of importing `modules` in a fresh interpreter."""
    code = ("import importlib\n"
            f"for name in {modules!r}:\n"
            "    try:\n        importlib.import_module(name)\n"
            "    except ImportError:\n        pass\n")
    walls, cpus = [], []
    for _ in range(RUNS):
        start, cpu = time.perf_counter(), children_cpu()
        subprocess.run([sys.executable, "-c", code], check=True)
        walls.append(time.perf_counter() - start)
        cpus.append(children_cpu() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def render_seconds(stack: str, config: dict[str, str], secret_keys: list[str]) -> tuple[float, float, int]:
    """(wall, CPU) medians of a render after one warm-up, and the number of resources it declared."""
    walls, cpus, count = [], [], 0
    for i in range(RUNS + 1):
        start, cpu = time.perf_counter(), time.process_time()
        run = engine.run_program(stack, config, secret_keys)
        render.manifests(run)
        if i:
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
        count = sum(r.custom for r in run.resources)
    return statistics.median(walls), statistics.median(cpus), count


def many_teams(n: int, stack: str = "prod") -> tuple[dict[str, str], list[str]]:
    """`stack` with its own teams plus generated ones (name and GPU quota only) up to `n` teams."""
    config, secrets = engine.read_stack_config(engine.stack_file(stack))
    teams = json.loads(config["mlops-platform:teams"])
    teams += [{"name": f"team-{i:03d}", "gpuQuota": 1} for i in range(n - len(teams))]
    return {**config, "mlops-platform:teams": json.dumps(teams)}, secrets


def main() -> None:
    modules = sdk_modules()
    base_wall, base_cpu = import_seconds(modules)
    print(f"import the {len(modules)} SDK modules a render loads (fresh interpreter, the floor): "
          f"{base_wall * 1000:6.0f} ms wall, {base_cpu * 1000:6.0f} ms CPU (median of {RUNS})")
    cases = [(s, s, *engine.read_stack_config(engine.stack_file(s))) for s in ("dev", "prod")]
    cases += [(f"prod+{n}teams", "prod", *many_teams(n)) for n in TEAMS]
    figures = {}
    for label, stack, config, secrets in cases:
        wall, cpu, count = render_seconds(stack, config, secrets)
        figures[label] = (wall, cpu)
        print(f"render {label:13s}: {wall * 1000:6.0f} ms wall, {cpu * 1000:6.0f} ms CPU for {count:5d} resources "
              f"({cpu / max(count, 1) * 1000:.2f} ms CPU each), {wall / base_wall:.2f}x floor wall, "
              f"{cpu / base_cpu:.2f}x floor CPU")
    small, large = (figures[f"prod+{n}teams"] for n in TEAMS)
    print(f"{TEAMS[1]} teams / {TEAMS[0]} teams: {large[0] / small[0]:.2f}x wall, {large[1] / small[1]:.2f}x CPU "
          f"(targets: {TEAMS[0]} teams <= 2.5x the floor, {TEAMS[1]} teams <= 2x {TEAMS[0]} teams)")


if __name__ == "__main__":
    main()

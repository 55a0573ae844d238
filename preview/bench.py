"""`make bench`: median wall time of an offline render for dev, prod and a generated 100-team stack,
beside the time a fresh interpreter needs merely to import the SDKs. Figures, not pass/fail."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from preview import engine, render

RUNS = 5
IMPORTS = "import pulumi, pulumi_aws, pulumi_kubernetes, pulumi_random, pulumi_policy, pydantic, yaml"


def import_seconds() -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", IMPORTS], check=True)
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
    config, secrets = engine.read_stack_config(engine.stack_file("dev"))
    teams = [{"name": f"team-{i:03d}", "gpuQuota": 2, "notebookProfiles": ["cpu"]} for i in range(n)]
    return {**config, "mlops-platform:teams": json.dumps(teams)}, secrets


def main() -> None:
    base = import_seconds()
    print(f"import SDKs (fresh interpreter): {base * 1000:7.0f} ms (median of {RUNS})")
    cases = [(s, *engine.read_stack_config(engine.stack_file(s))) for s in ("dev", "prod")]
    cases.append(("100-teams", *many_teams(100)))
    for stack, config, secrets in cases:
        seconds, count = render_seconds(stack, config, secrets)
        print(f"render {stack:10s}: {seconds * 1000:7.0f} ms for {count:5d} resources "
              f"({seconds / max(count, 1) * 1000:.2f} ms each), {seconds / base:.2f}x import time")


if __name__ == "__main__":
    main()

"""The command line's start-up cost: user+sys CPU of `llmtune-receiver --help` and
`llmtune-receiver events --help` against `python -c "import starlette.applications"` (one small
import of the web stack, the yardstick), each the median of --runs fresh processes.

    python -m tests.perf.bench_cli [--runs 7]

CPU time (resource.getrusage(RUSAGE_CHILDREN) before and after each run), not wall time, so a
busy machine changes the figures less; the ratios to the yardstick matter more than the
milliseconds. The command runs as the console script does (`from service.cli import main`), from
this checkout (PYTHONPATH), with this interpreter. Exit status 1 when `--help` costs more than
LIMIT times the yardstick. Not a pytest module.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The goal: `--help` at most this many times the yardstick's CPU.
LIMIT = 3.0
# What the console script `llmtune-receiver` runs (its generated wrapper, without the wrapper).
CONSOLE = "import sys; from service.cli import main; sys.exit(main())"
CASES = {
    "import starlette.applications": ["-c", "import starlette.applications"],
    "llmtune-receiver --help": ["-c", CONSOLE, "--help"],
    "llmtune-receiver events --help": ["-c", CONSOLE, "events", "--help"],
    "llmtune-receiver events list --help": ["-c", CONSOLE, "events", "list", "--help"],
}
YARDSTICK = "import starlette.applications"


def cpu_seconds(argv: list[str]) -> float:
    """User+sys CPU of one run of this interpreter with argv, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [sys.executable, *argv], env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median_cpu(argv: list[str], runs: int) -> float:
    cpu_seconds(argv)  # warm: bytecode caches written, files in the page cache
    return statistics.median(cpu_seconds(argv) for _ in range(runs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per command (default: 7)")
    runs = parser.parse_args().runs
    figures = {name: median_cpu(argv, runs) for name, argv in CASES.items()}
    base = figures[YARDSTICK]
    print(f"| command | CPU ms (median of {runs}) | x {YARDSTICK} |")
    print("|---|---:|---:|")
    for name, seconds in figures.items():
        print(f"| `{name}` | {seconds * 1000:.0f} | {seconds / base:.2f} |")
    ratio = figures["llmtune-receiver --help"] / base
    verdict = "ok" if ratio <= LIMIT else "FAIL"
    print(f"\n`--help` / yardstick = {ratio:.2f} (goal ≤ {LIMIT}): {verdict}")
    return 0 if ratio <= LIMIT else 1


if __name__ == "__main__":
    raise SystemExit(main())

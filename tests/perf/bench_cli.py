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
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The goal: `--help` at most this many times the yardstick's CPU.
LIMIT = 3.0
# What the console script `llmtune-receiver` runs (its generated wrapper, without the wrapper).
CONSOLE = ["-c", "import sys; from service.cli import main; sys.exit(main())"]
# A port nothing listens on: a client command's refused connection costs nothing, what is left
# is start-up and imports.
REFUSED = ["--url", "http://127.0.0.1:9"]
# An admin token in the form ADMIN_TOKENS accepts (a bare secret of 32+ characters).
TOKEN = "bench-" + "t" * 32


@dataclass(frozen=True, slots=True)
class Case:
    """One command: its arguments to the interpreter, extra environment, expected exit status."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    status: int = 0


YARDSTICK = Case("import starlette.applications", ["-c", "import starlette.applications"])
HELP = Case("llmtune-receiver --help", [*CONSOLE, "--help"])
CASES = [
    YARDSTICK,
    HELP,
    Case("llmtune-receiver events --help", [*CONSOLE, "events", "--help"]),
    Case("llmtune-receiver events list --help", [*CONSOLE, "events", "list", "--help"]),
    Case(
        "llmtune-receiver events list --token T (refused)",
        [*CONSOLE, "events", "list", "--token", TOKEN, *REFUSED],
        status=1,
    ),
    # Without --token the token comes from the settings (pydantic-settings, read from ADMIN_TOKENS).
    Case(
        "llmtune-receiver events list, ADMIN_TOKENS (refused)",
        [*CONSOLE, "events", "list", *REFUSED],
        env={"ADMIN_TOKENS": TOKEN},
        status=1,
    ),
]


def cpu_seconds(case: Case) -> float:
    """User+sys CPU of one run of the case, in a fresh process of this interpreter."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **case.env}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, *case.argv],
        env=env,
        cwd=ROOT,
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != case.status:
        raise SystemExit(f"{case.name}: exit {done.returncode}\n{done.stderr.decode()}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median_cpu(case: Case, runs: int) -> float:
    """The median CPU seconds of `runs` runs, after one unmeasured run (bytecode, page cache)."""
    cpu_seconds(case)
    return statistics.median(cpu_seconds(case) for _ in range(runs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per command (default: 7)")
    runs = parser.parse_args().runs
    figures = {case.name: median_cpu(case, runs) for case in CASES}
    base = figures[YARDSTICK.name]
    print(f"| command | CPU ms (median of {runs}) | x {YARDSTICK.name} |")
    print("|---|---:|---:|")
    for name, seconds in figures.items():
        print(f"| `{name}` | {seconds * 1000:.0f} | {seconds / base:.2f} |")
    ratio = figures[HELP.name] / base
    verdict = "ok" if ratio <= LIMIT else "FAIL"
    print(f"\n`--help` / yardstick = {ratio:.2f} (goal ≤ {LIMIT}): {verdict}")
    return 0 if ratio <= LIMIT else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Real `serve` and `worker` processes for the fault tests, started and awaited without
blocking the test's event loop (the sinks, proxies and load generators live in it), and every
one of them ended by its pid when the test is over.

Also the size of the runs: `FAULT_SCALE` (default 1) multiplies event counts (`make fault` sets
10); the normal run keeps every test well under 30 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import HOST, WEBHOOK_PATH, free_port
from tests.waiting import until

SCALE = max(1, int(os.environ.get("FAULT_SCALE", "1")))
# Set by coverage in `make test` so that child processes measure themselves (a1_coverage.pth).
COVERAGE_VARIABLES = ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG")
START_WITHIN = 30.0  # imports, settings, routes, the first connection
EXIT_WITHIN = 15.0


# The type of pytest's `record_property` fixture.
RecordProperty = Callable[[str, object], None]


def report(record_property: RecordProperty, name: str, line: str) -> None:
    """A test's summary figures: printed (seen with `-s`) and kept in the JUnit XML."""
    print(f"FAULT {name} {line}")
    record_property(name, line)


def scaled(count: int) -> int:
    """`count` times FAULT_SCALE."""
    return count * SCALE


@dataclass(frozen=True, slots=True)
class Proc:
    """One started process: `serve` (with its port) or `worker`."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None

    @property
    def pid(self) -> int:
        """Its process id."""
        return self.process.pid

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT` of a `serve`."""
        assert self.port is not None, f"{self.name} is not a server"
        return f"http://{HOST}:{self.port}"

    @property
    def webhook_url(self) -> str:
        """Its webhook endpoint."""
        return self.base_url + WEBHOOK_PATH

    @property
    def alive(self) -> bool:
        """Not exited yet."""
        return self.process.poll() is None

    def log_text(self) -> str:
        """Its stderr so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def records(self) -> list[dict[str, Any]]:
        """Its complete JSON log lines so far."""
        lines = self.log_text().split("\n")[:-1]
        return [json.loads(line) for line in lines if line.startswith("{")]

    def send(self, signum: signal.Signals) -> None:
        """Send `signum` to this process (by pid), if it still runs."""
        if self.alive:
            os.kill(self.pid, signum)

    async def exit_code(self, within: float = EXIT_WITHIN) -> int:
        """Its exit code once it has exited (fail after `within` s)."""
        await until(lambda: not self.alive, within, f"{self.name} (pid {self.pid}) exits")
        code = self.process.poll()
        assert code is not None
        return code


class Processes:
    """The processes of one test, run in `cwd`; `stop_all` ends (by pid) what still runs."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.started: list[Proc] = []

    def _spawn(
        self,
        name: str,
        args: list[str],
        env: Mapping[str, str],
        *,
        port: int | None = None,
        measured: bool = True,
    ) -> Proc:
        if not measured:
            env = {k: v for k, v in env.items() if k not in COVERAGE_VARIABLES}
        log_path = self.cwd / f"{name}.stderr.log"
        with log_path.open("wb") as stderr, (self.cwd / f"{name}.stdout.log").open("wb") as stdout:
            process = subprocess.Popen(
                [sys.executable, "-m", "service", *args],
                cwd=self.cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )
        proc = Proc(name, process, log_path, port)
        self.started.append(proc)
        return proc

    def _exited_early(self, proc: Proc) -> None:
        code = proc.process.poll()
        if code is not None:
            pytest.fail(
                f"{proc.name} exited with {code} before it was ready; stderr:\n{proc.log_text()}",
                pytrace=False,
            )

    async def serve(
        self, name: str, env: Mapping[str, str], *args: str, measured: bool = True
    ) -> Proc:
        """`serve --no-migrate ARGS` on a free port, once `/readyz` is 200.

        `measured=False` runs it outside `make test`'s coverage: for a process the test will
        SIGKILL (it never writes its data) or one under heavy load (tracing slows it 3-4x).
        """
        port = free_port()
        argv = ["serve", "--host", HOST, "--port", str(port), "--no-init-env", "--no-migrate"]
        proc = self._spawn(name, [*argv, *args], env, port=port, measured=measured)
        async with httpx.AsyncClient(
            base_url=proc.base_url, timeout=1.0, trust_env=False
        ) as client:

            async def ready() -> bool:
                self._exited_early(proc)
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await until(ready, START_WITHIN, f"{name} answers /readyz 200")
        return proc

    async def worker(self, name: str, env: Mapping[str, str], *, measured: bool = True) -> Proc:
        """`worker`, once it has logged `worker_started` (`measured` as for `serve`)."""
        proc = self._spawn(name, ["worker"], env, measured=measured)

        def ready() -> bool:
            self._exited_early(proc)
            return any(r.get("event") == "worker_started" for r in proc.records())

        await until(ready, START_WITHIN, f"{name} logs worker_started")
        return proc

    async def stop_all(self) -> None:
        """SIGTERM every process still running, by pid (so a measured one writes its coverage
        data); SIGKILL what has not exited within EXIT_WITHIN; reap them all."""
        for proc in self.started:
            proc.send(signal.SIGTERM)
        deadline = time.monotonic() + EXIT_WITHIN
        # A Popen has no awaitable exit; poll (asyncio's own child watcher is not used here).
        while any(proc.alive for proc in self.started) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for proc in self.started:
            proc.send(signal.SIGKILL)
        for proc in self.started:
            await proc.exit_code()


def error_lines(proc: Proc) -> list[dict[str, Any]]:
    """Its log records at level error or above, or carrying an exception."""
    return [
        record
        for record in proc.records()
        if record.get("level") in ("error", "critical") or "exception" in record
    ]

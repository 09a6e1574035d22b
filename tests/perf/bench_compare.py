"""The service against a bare Starlette app on this machine: one Markdown table of throughput,
latency, errors, memory and an exactly-once check of every acknowledgement.

    python -m tests.perf.bench_compare [--only NAME,...] [--duration 10] [--concurrency 1,16,64]
                                       [--rate 500] [--soak N]

`make bench-compare` runs the defaults, every configuration below (about 5 minutes); a smoke run
takes about a minute: `python -m tests.perf.bench_compare --duration 3 --concurrency 16`.

Configurations (names for --only, run in this order; each gets a fresh database):
  bare       tests/perf/bare_app.py: read, HMAC check, orjson parse, answer; stores nothing
  pg         service + PostgreSQL, dispatch worker off, LOG_LEVEL=warning
  pg-enc     pg with encryption at rest: ENCRYPTION_KEYS = one key made for this server start
  sqlite     service + SQLite, worker off, warning
  sqlite-enc sqlite with encryption at rest, likewise
  pg-worker  service + PostgreSQL, worker on, LOG_LEVEL=info   (highest concurrency only)
  bare-w2    bare app, --workers 2                            (highest concurrency only)
  pg-w2      service + PostgreSQL, --workers 2, worker off     (highest concurrency only)
An -enc configuration differs from its in-clear twin only by ENCRYPTION_KEYS in the server's
environment (standard base64 of 32 random bytes: every stored raw body and header list sealed
with AES-256-GCM); each twin runs right before it. Every other configuration gets ENCRYPTION_KEYS
empty, whatever this process's environment holds. The pairs alone:
`--only pg,pg-enc,sqlite,sqlite-enc`.
--soak N adds a run of N requests at c=64 against service + PostgreSQL that samples the
server's RSS every 10 % (a memory-flatness figure); `--only soak --soak N` runs only that.

Load: wrk, closed loop (`wrk -t1 -cC`: each connection sends its next request once the previous
one is answered) at each --concurrency; then an open loop at --rate requests/s (--rate 0: none),
which wrk cannot do: a Python asyncio generator over up to 64 keep-alive connections, each
latency measured from the request's *scheduled* send time, so a server that falls behind shows
its queue in the figures instead of slowing the client down (no coordinated omission). Its
req/s is answers over the time from the first send to the last answer. Before the measured runs
each server gets one unreported second of c=16 (pools, caches, lazy imports).

Table: `errors` is socket errors (connect, read, write, timeout) plus non-2xx answers; `vs bare`
is req/s over the bare app's at the same load and worker count (the bare app stores nothing and so
never encrypts: an -enc row's figure is the whole service's cost, encryption included; without
bare in --only the column is "—"); `RSS MiB` is the server's VmRSS when it became ready -> after
that run (with --workers: the sum of the supervisor's children). A second table, "Encryption at
rest", pairs each -enc row with its twin's at the same load: req/s off and on, their ratio
(on / off) and p99 off / on.

Requests: pre-generated and signed here (W3 signatures carry no timestamp, so they stay valid),
~400-byte bodies: 60 % `training.started` of a new job, 25 % `training.completed` or
`model.deployed` of a job started earlier, 15 % byte-identical repeats of an earlier body. Job
ids carry a run-unique prefix. wrk gets MAX_EXPECTED_RPS x duration of them; should a run go
past the end it starts over, and those requests are duplicates (the notes say so).

Ledger: wrk_ledger.lua (and the open loop) note every response's status, eventId and duplicate
flag. After each service run every acknowledged (2xx) event must be stored, exactly once, with
no id acknowledged as new twice and no more duplicate acknowledgements than its
`duplicate_count`. Stored but unacknowledged is allowed: requests in flight when a run stops.
Every stored event of the run must also be as the server was told: `sealed_with` the id of the
run's key with encryption on, NULL (in clear) with it off. Any FAIL makes the exit status 1.

Pinning (taskset, when there are CPUs 0 and 1): one-process servers on CPU 0, wrk and the open
loop on CPU 1; --workers 2 servers and PostgreSQL float. Only 127.0.0.1 is used; every process
started here is stopped by pid and every database made here is dropped. Not a pytest module.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import importlib.util
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import httpx
import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from service.crypto.sealing import parse_key
from tests.helpers import SECRET, hex_signature, w3_body
from tests.perf.bench_ingest import _free_port, database, stop

LUA_SCRIPT = Path(__file__).with_name("wrk_ledger.lua")
WEBHOOK_PATH = "/webhooks/llmtune"
SERVER_CPU, LOAD_CPU = 0, 1
# wrk replays a fixed sequence, this many a second of run: more than the service answers here
# (~2-3k req/s, --workers 2 included), so it never wraps round into duplicates. The bare app goes
# past it (14k req/s on uvloop + httptools), which costs it nothing: it stores nothing.
MAX_EXPECTED_RPS = 10_000
NEW_JOB, FOLLOW_UP = 0.60, 0.25  # shares of the mix; the remaining 15 % are exact repeats
OPEN_LOOP_CONNECTIONS = 64
DRAIN_SECONDS = 15.0  # how long the open loop waits for answers after its last send
LAG_WARNING_SECONDS = 0.005
KEEPALIVE_EXPIRY = 4.0  # uvicorn closes a connection idle for 5 s: reuse none that old
READY_SECONDS = 60
WRK_TIMEOUT = "10s"  # wrk's 2 s default would count a slow commit as a socket error
SOAK_CONNECTIONS = 64
SOAK_STALL_SECONDS = 30.0
# uvicorn's --workers supervisor binds the socket with proto 0, so asyncio's own loop never sets
# TCP_NODELAY on accepted connections (uvicorn issue #3149, open in 0.54; uvloop sets it anyway):
# Nagle meets the client's delayed ACK and a keep-alive request takes ~40 ms. A p50 this high
# under --workers says so.
NAGLE_SUSPECT_MS = 35.0
ENCRYPTION_KEY_BYTES = 32  # AES-256-GCM
RUN_ID = uuid.uuid4().hex[:8]
_RUN_NUMBERS = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Config:
    """One server set-up; `kind` None is the bare app, else the service's database kind."""

    name: str
    label: str
    kind: str | None
    workers: int = 1
    worker: bool = False
    log_level: str = "warning"
    every_load: bool = True  # each --concurrency and the open loop; else the highest c only
    clear_twin: str | None = None  # set: encryption at rest on; names the set-up in clear

    @property
    def encrypted(self) -> bool:
        return self.clear_twin is not None


def encrypted(config: Config) -> Config:
    """`config` with encryption at rest on, and nothing else changed."""
    return replace(
        config,
        name=f"{config.name}-enc",
        label=f"{config.label}, encrypted",
        clear_twin=config.name,
    )


PG = Config("pg", "service + PostgreSQL", "postgresql")
SQLITE = Config("sqlite", "service + SQLite", "sqlite")
CONFIGS = (
    Config("bare", "bare Starlette", None),
    PG,
    encrypted(PG),
    SQLITE,
    encrypted(SQLITE),
    Config(
        "pg-worker",
        "service + PostgreSQL, worker on, log info",
        "postgresql",
        worker=True,
        log_level="info",
        every_load=False,
    ),
    Config("bare-w2", "bare Starlette, --workers 2", None, workers=2, every_load=False),
    Config("pg-w2", "service + PostgreSQL, --workers 2", "postgresql", 2, every_load=False),
)
SOAK = Config("soak", "soak: service + PostgreSQL", "postgresql")


@dataclass(frozen=True, slots=True)
class Plan:
    """What the command line asked for, and where the run's files go."""

    duration: int
    concurrency: tuple[int, ...]
    rate: float
    pin: bool
    tmp: Path


@dataclass(frozen=True, slots=True)
class Spec:
    """One load: closed loop with `connections`, or (when 0) open loop at `rate` req/s."""

    connections: int = 0
    rate: float = 0.0

    @property
    def label(self) -> str:
        return f"c={self.connections}" if self.connections else f"{self.rate:g} req/s open"


@dataclass(frozen=True, slots=True)
class Ack:
    """One response, as the ledger saw it."""

    status: int
    event_id: str
    duplicate: bool

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class Load:
    """What one load run measured."""

    label: str
    responses: int
    seconds: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    acks: list[Ack]
    notes: tuple[str, ...] = ()

    @property
    def rps(self) -> float:
        return self.responses / self.seconds if self.seconds > 0 else 0.0

    @property
    def errors(self) -> int:
        return self.socket_errors + sum(not ack.ok for ack in self.acks)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The ledger check of one run."""

    ok: bool
    text: str


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table."""

    config: Config
    load: Load
    rss_before: float
    rss_after: float
    verdict: Verdict | None  # None: the bare app stores nothing to check


# --- the request mix ---------------------------------------------------------------------------


def _body(event: str, job_id: str) -> bytes:
    """~400 bytes, like LLMTune's: the W3 envelope plus the fields a real job carries."""
    extra: dict[str, object] = {
        "datasetId": f"ds-{job_id}",
        "workspaceId": "ws_bench",
        "hyperparameters": {"epochs": 3, "learningRate": 0.0002, "loraRank": 16, "batchSize": 8},
        "region": "us-east-1",
        "trainingMethod": "qlora",
        "gpuType": "H100-80GB",
        "requestedBy": "usr_7f3a9c2e41b8",
    }
    if event == "training.completed":
        extra["metrics"] = {"loss": 1.12, "tokens": 3250000, "duration_seconds": 1450}
    elif event == "model.deployed":
        # model.deployed is deduplicated per deployment, so each job needs its own.
        extra["deploymentId"] = f"deploy-{job_id}"
    return w3_body(event, job_id, **extra)


def _follow_up(open_jobs: list[tuple[str, list[str]]], rng: random.Random) -> bytes:
    """The next event of a random job started earlier; a job with none left is dropped."""
    index = rng.randrange(len(open_jobs))
    job_id, remaining = open_jobs[index]
    body = _body(remaining.pop(0), job_id)
    if not remaining:
        open_jobs[index] = open_jobs[-1]
        open_jobs.pop()
    return body


def request_mix(prefix: str, count: int) -> list[bytes]:
    """`count` bodies: new jobs, later events of earlier jobs, exact repeats (60/25/15 %).

    Each job sends each event once, so every body that is not a repeat is a distinct event for
    the service's dedup keys (`sem:<event>:<job>`), and every repeat is a duplicate of one."""
    rng = random.Random(prefix)
    bodies: list[bytes] = []
    open_jobs: list[tuple[str, list[str]]] = []
    for _ in range(count):
        roll = rng.random()
        if roll >= NEW_JOB + FOLLOW_UP and bodies:
            bodies.append(rng.choice(bodies))
        elif roll >= NEW_JOB and open_jobs:
            bodies.append(_follow_up(open_jobs, rng))
        else:
            job_id = f"{prefix}-{len(bodies)}"
            open_jobs.append((job_id, ["training.completed", "model.deployed"]))
            bodies.append(_body("training.started", job_id))
    return bodies


def next_prefix() -> str:
    """A job-id prefix no other run (of this or any other invocation) uses."""
    return f"bc{RUN_ID}-{next(_RUN_NUMBERS):03d}"


def write_sequence(path: Path, bodies: Sequence[bytes]) -> None:
    """The file wrk_ledger.lua loads: `<hex signature>\\t<body>` a line (orjson escapes
    control characters, so a body is always one line)."""
    with path.open("w") as out:
        out.writelines(f"{hex_signature(body)}\t{body.decode()}\n" for body in bodies)


# --- processes ---------------------------------------------------------------------------------


def can_pin() -> bool:
    """True when taskset exists and this process may use both CPUs it would pin to."""
    return shutil.which("taskset") is not None and {SERVER_CPU, LOAD_CPU} <= os.sched_getaffinity(0)


def pinned(argv: list[str], cpu: int, pin: bool) -> list[str]:
    """`argv` under `taskset -c cpu` (taskset execs it, so the pid stays the command's)."""
    return ["taskset", "-c", str(cpu), *argv] if pin else argv


@contextlib.contextmanager
def pinned_here(cpu: int, pin: bool) -> Iterator[None]:
    """This process on `cpu` only, for the open loop; the previous affinity afterwards.
    (Servers are started before, so they do not inherit it.)"""
    if not pin:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@dataclass(frozen=True, slots=True)
class Server:
    """A started server: the pid we started, its port and how many worker processes."""

    pid: int
    port: int
    workers: int


def _server_argv(config: Config, port: int, pin: bool) -> list[str]:
    if config.kind is None:
        argv = [sys.executable, "-m", "tests.perf.bare_app"]
    else:
        argv = [sys.executable, "-m", "service", "serve", "--no-init-env"]
        argv += [] if config.worker else ["--no-worker"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(config.workers)]
    # Several workers are left to the scheduler: pinning them to one CPU would defeat them.
    return pinned(argv, SERVER_CPU, pin and config.workers == 1)


def encryption_key() -> str:
    """A fresh ENCRYPTION_KEYS entry: standard base64 of 32 random bytes."""
    return base64.b64encode(os.urandom(ENCRYPTION_KEY_BYTES)).decode("ascii")


def _server_env(config: Config, db_url: str | None, key: str | None) -> dict[str, str]:
    env = os.environ | {
        "WEBHOOK_SECRETS": SECRET,
        "ADMIN_TOKENS": "bench-admin-token-0123",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": config.log_level,
        # Empty: in clear, even if this process's environment sets keys.
        "ENCRYPTION_KEYS": key or "",
    }
    return env if db_url is None else env | {"DATABASE_URL": db_url}


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (field n is at index n - 3)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def children(pid: int) -> list[int]:
    """The pids whose parent is `pid` (uvicorn's worker processes, for --workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _vm_rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mib(server: Server) -> float:
    """The server's resident memory: the process, or with --workers the sum of its children
    (uvicorn's workers and multiprocessing's resource tracker; the supervisor is left out)."""
    pids = children(server.pid) if server.workers > 1 else [server.pid]
    return sum(_vm_rss_kib(pid) for pid in pids) / 1024


def _log_tail(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-3000:]


def _wait_ready(process: subprocess.Popen[bytes], port: int, log: IO[bytes]) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{_log_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"server not ready within {READY_SECONDS} s:\n{_log_tail(log)}")


def _stop_with_children(process: subprocess.Popen[bytes]) -> None:
    """stop() the server; then SIGKILL any worker it left behind, by pid, only if that pid is
    still the same process (same start time), never a reused one."""
    started = {pid: fields[19] for pid in children(process.pid) if (fields := _proc_stat(pid))}
    stop(process)
    for pid, start_time in started.items():
        fields = _proc_stat(pid)
        if fields is not None and fields[19] == start_time:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running(
    config: Config, db_url: str | None, pin: bool, key: str | None = None
) -> Iterator[Server]:
    """The configuration's server on a free loopback port, ready; stopped afterwards. Its
    output goes to a temporary file, shown if it fails to start. `key`: ENCRYPTION_KEYS."""
    port = _free_port()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            _server_argv(config, port, pin),
            env=_server_env(config, db_url, key),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_ready(process, port, log)
            yield Server(process.pid, port, config.workers)
        finally:
            _stop_with_children(process)


# --- closed loop: wrk --------------------------------------------------------------------------


def ensure_wrk() -> None:
    """wrk on PATH, installed from Debian's package when missing; exit with a message if not."""
    if shutil.which("wrk"):
        return
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "wrk"]
    if shutil.which("apt-get") and os.geteuid() == 0:
        # A stale package list is the usual reason an install fails: refresh it once.
        for argv in (install, ["apt-get", "update"], install):
            print(f"wrk is not installed; running: {' '.join(argv)}", flush=True)
            subprocess.run(argv, env=env, check=False, stdin=subprocess.DEVNULL)
            if shutil.which("wrk"):
                return
    sys.exit(
        "bench_compare: wrk is not installed and could not be installed here; "
        "install the Debian package (apt-get install -y wrk) and run again"
    )


class _LineCount:
    """Lines appended to a growing file so far, read incrementally."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0
        self.lines = 0

    def update(self) -> int:
        with contextlib.suppress(FileNotFoundError), self._path.open("rb") as file:
            file.seek(self._offset)
            chunk = file.read()
            self._offset += len(chunk)
            self.lines += chunk.count(b"\n")
        return self.lines


def _interrupt_at(
    process: subprocess.Popen[bytes], ledger: Path, target: int, tick: Callable[[int], None]
) -> None:
    """SIGINT wrk (it then prints its summary, as at the end of -d) once its ledger has
    `target` responses (the script stops sending there), or when none came for
    SOAK_STALL_SECONDS. The last poll's 50 ms of idling is in wrk's duration."""
    count = _LineCount(ledger)
    last, last_change = 0, time.monotonic()
    while process.poll() is None:
        time.sleep(0.05)
        lines = count.update()
        tick(lines)
        if lines != last:
            last, last_change = lines, time.monotonic()
        if lines >= target or time.monotonic() - last_change > SOAK_STALL_SECONDS:
            process.send_signal(signal.SIGINT)
            return


def _wrk(
    port: int,
    connections: int,
    seconds: int,
    files: tuple[Path, Path],
    pin: bool,
    stop_at: tuple[int, Callable[[int], None]] | None = None,
) -> dict[str, int]:
    """Run wrk with the ledger script; return what its done() printed."""
    sequence, ledger = files
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", WRK_TIMEOUT]
    argv += ["--latency", "-s", str(LUA_SCRIPT), f"http://127.0.0.1:{port}{WEBHOOK_PATH}"]
    argv += ["--", str(sequence), str(ledger), str(0 if stop_at is None else stop_at[0])]
    process = subprocess.Popen(
        pinned(argv, LOAD_CPU, pin),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        if stop_at is not None:
            _interrupt_at(process, Path(f"{ledger}.0"), *stop_at)
        out, err = process.communicate(timeout=seconds + 60)
    finally:
        if process.poll() is None:
            stop(process)
    for line in out.decode().splitlines():
        if line.startswith("BENCH_JSON "):
            summary: dict[str, int] = json.loads(line.removeprefix("BENCH_JSON "))
            return summary
    raise RuntimeError(f"wrk failed ({process.returncode}): {err.decode()} {out.decode()}")


def read_ledger(prefix: Path) -> list[Ack]:
    """Every response wrk_ledger.lua noted, from all its per-thread files."""
    acks = []
    for path in sorted(prefix.parent.glob(prefix.name + ".*")):
        for line in path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) == 3:
                acks.append(Ack(int(parts[0]), parts[1], parts[2] == "1"))
    return acks


def closed_loop(
    port: int,
    connections: int,
    bodies: list[bytes],
    plan: Plan,
    seconds: int,
    stop_at: tuple[int, Callable[[int], None]] | None = None,
) -> Load:
    """One wrk run over `bodies` (signed and written out here) with its ledger."""
    with tempfile.TemporaryDirectory(dir=plan.tmp) as tmp:
        sequence, ledger = Path(tmp) / "requests", Path(tmp) / "ledger"
        write_sequence(sequence, bodies)
        summary = _wrk(port, connections, seconds, (sequence, ledger), plan.pin, stop_at)
        acks = read_ledger(ledger)
    notes: tuple[str, ...] = ()
    if summary["requests"] > len(bodies):
        notes = (
            f"wrk went past the {len(bodies)} pre-generated requests and started over: the "
            f"last {summary['requests'] - len(bodies)} were repeats (duplicates to the service; "
            "the same work as new ones to the bare app, which stores nothing)",
        )
    return Load(
        label=f"c={connections}",
        responses=summary["requests"],
        seconds=summary["duration_us"] / 1e6,
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        socket_errors=sum(summary[kind] for kind in ("connect", "read", "write", "timeout")),
        acks=acks,
        notes=notes,
    )


# --- open loop: constant arrival rate ----------------------------------------------------------

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _Pool:
    """Up to `size` keep-alive connections; a request waits for a free one (and that wait is
    part of its latency, which runs from its scheduled send time)."""

    def __init__(self, port: int, size: int) -> None:
        self._port = port
        self._slots = asyncio.Semaphore(size)
        self._idle: list[tuple[float, Connection]] = []  # (when put back, connection)

    async def _checkout(self) -> Connection:
        now = asyncio.get_running_loop().time()
        while self._idle:
            since, conn = self._idle.pop()  # the most recently used first
            if now - since < KEEPALIVE_EXPIRY:
                return conn
            conn[1].close()
        return await asyncio.open_connection("127.0.0.1", self._port)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        async with self._slots:
            conn = await self._checkout()
            try:
                yield conn
            except BaseException:
                conn[1].close()  # broken or cut off mid-exchange: never reused
                raise
            self._idle.append((asyncio.get_running_loop().time(), conn))

    async def close(self) -> None:
        for _, (_, writer) in self._idle:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def raw_request(port: int, body: bytes) -> bytes:
    """The whole HTTP/1.1 request, signed ahead so the generator only writes bytes."""
    head = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nX-Webhook-Signature: {hex_signature(body)}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return int(lines[0].split()[1]), await reader.readexactly(length)


def _ack(status: int, body: bytes) -> Ack:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        return Ack(status, "-", False)
    return Ack(status, str(answer.get("eventId", "-")), answer.get("duplicate") is True)


async def _exchange(pool: _Pool, raw: bytes, scheduled: float) -> tuple[float, float, Ack]:
    """One request: (latency from its scheduled time, when it finished, the answer)."""
    async with pool.connection() as (reader, writer):
        writer.write(raw)
        status, body = await _read_response(reader)
    finished = asyncio.get_running_loop().time()
    return finished - scheduled, finished, _ack(status, body)


async def _schedule(
    pool: _Pool, raws: list[bytes], rate: float, start: float
) -> tuple[list[asyncio.Task[tuple[float, float, Ack]]], list[float]]:
    """Start request i at start + i/rate whatever the answers do; return the tasks and how far
    behind that schedule the generator itself started each one."""
    loop = asyncio.get_running_loop()
    tasks, lags = [], []
    for index, raw in enumerate(raws):
        scheduled = start + index / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(loop.time() - scheduled)
        tasks.append(asyncio.create_task(_exchange(pool, raw, scheduled)))
    return tasks, sorted(lags)


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def _open_loop_notes(lags: list[float], failures: Counter[str]) -> tuple[str, ...]:
    notes = []
    if lags and lags[-1] > LAG_WARNING_SECONDS:
        # Counted in the latencies (they run from the schedule): on 2 CPUs PostgreSQL may take
        # the generator's CPU for a while.
        notes.append(
            f"the generator started requests late: p99 {_percentile(lags, 0.99) * 1000:.1f} ms,"
            f" max {lags[-1] * 1000:.1f} ms behind schedule (included in the latencies)"
        )
    if failures:
        notes.append("open-loop errors: " + ", ".join(f"{n} {k}" for k, n in failures.items()))
    return tuple(notes)


async def _open_loop(port: int, raws: list[bytes], rate: float, label: str) -> Load:
    pool = _Pool(port, OPEN_LOOP_CONNECTIONS)
    start = asyncio.get_running_loop().time()
    tasks, lags = await _schedule(pool, raws, rate, start)
    done, pending = await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await pool.close()
    answered = [task.result() for task in done if task.exception() is None]
    failures = Counter(type(task.exception()).__name__ for task in done if task.exception())
    if pending:
        failures[f"unanswered {DRAIN_SECONDS:g} s after the last send"] = len(pending)
    latencies = sorted(latency for latency, _, _ in answered)
    elapsed = max((finished for _, finished, _ in answered), default=start) - start
    return Load(
        label=label,
        responses=len(answered),
        seconds=elapsed,
        p50_ms=_percentile(latencies, 0.50) * 1000,
        p99_ms=_percentile(latencies, 0.99) * 1000,
        socket_errors=len(raws) - len(answered),  # refused, broken or unanswered in time
        acks=[ack for _, _, ack in answered],
        notes=_open_loop_notes(lags, failures),
    )


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Objects that exist now left out of garbage collection until the block ends.

    A full collection walks every object this process holds (SQLAlchemy and the service's
    modules, imported through tests.helpers): it stalled the open loop by up to ~80 ms, which
    would count as server latency."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def open_loop(port: int, bodies: list[bytes], rate: float, pin: bool) -> Load:
    """Constant arrival rate over `bodies`, from this process pinned to the load CPU."""
    raws = [raw_request(port, body) for body in bodies]
    with pinned_here(LOAD_CPU, pin), frozen_heap():
        return asyncio.run(_open_loop(port, raws, rate, Spec(rate=rate).label))


# --- the ledger check --------------------------------------------------------------------------


Stored = tuple[str, int, str, str, str | None]


async def _stored(db_url: str, job_prefix: str) -> list[Stored]:
    """(id, duplicate_count, type, job_id, sealed_with) of every stored event of this run's jobs."""
    engine = create_async_engine(db_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(
                sa.text(
                    "SELECT id, duplicate_count, type, job_id, sealed_with FROM events"
                    " WHERE job_id LIKE :p"
                ),
                {"p": f"{job_prefix}-%"},
            )
            return [(str(r[0]), int(r[1]), str(r[2]), str(r[3]), r[4]) for r in result]
    finally:
        await engine.dispose()


def check_ledger(acks: list[Ack], stored: list[Stored], sealed_with: str | None = None) -> Verdict:
    """Every acknowledged event stored exactly once, and every stored one sealed with the key
    id `sealed_with` (None: in clear); see the module docstring."""
    acked = [ack for ack in acks if ack.ok]
    if not acked:
        return Verdict(False, "FAIL: nothing was acknowledged")
    counts = {event_id: duplicates for event_id, duplicates, *_ in stored}
    acked_ids = {ack.event_id for ack in acked}
    new = Counter(ack.event_id for ack in acked if not ack.duplicate)
    repeats = Counter(ack.event_id for ack in acked if ack.duplicate)
    # In this mix an event is (type, job): each job sends each event once.
    events = len({(kind, job) for _, _, kind, job, _ in stored})
    at_rest = f"sealed with key {sealed_with}" if sealed_with else "in clear"
    problems = [
        f"{count} {what}"
        for count, what in (
            (len(acked_ids - counts.keys()), "acknowledged but not stored"),
            (len(stored) - events, "events stored more than once"),
            (sum(n > 1 for n in new.values()), "acknowledged as new more than once"),
            (
                sum(counts.get(i, n) < n for i, n in repeats.items()),
                "with more duplicate answers than their duplicate_count",
            ),
            (sum(row[4] != sealed_with for row in stored), f"stored events not {at_rest}"),
        )
        if count
    ]
    unacked = len(counts.keys() - acked_ids)
    cut_off = f"; {unacked} stored but unacknowledged (in flight at the end)" if unacked else ""
    if problems:
        return Verdict(False, "FAIL: " + ", ".join(problems) + cut_off)
    return Verdict(
        True, f"PASS: {len(acked_ids)} acknowledged events, each stored once, {at_rest}{cut_off}"
    )


def verify(db_url: str, job_prefix: str, acks: list[Ack], key: str | None = None) -> Verdict:
    """The ledger of one run against the database; `key`: the server's ENCRYPTION_KEYS."""
    sealed_with = None if key is None else parse_key(key).id
    return check_ledger(acks, asyncio.run(_stored(db_url, job_prefix)), sealed_with)


# --- running the configurations ----------------------------------------------------------------


def specs(config: Config, plan: Plan) -> list[Spec]:
    """The loads a configuration is measured at."""
    if not config.every_load:
        return [Spec(connections=max(plan.concurrency))]
    closed = [Spec(connections=c) for c in plan.concurrency]
    return closed + ([Spec(rate=plan.rate)] if plan.rate > 0 else [])


def measure(server: Server, spec: Spec, plan: Plan, prefix: str) -> Load:
    """One load against a running server, with fresh requests under `prefix`."""
    if spec.connections:
        bodies = request_mix(prefix, MAX_EXPECTED_RPS * plan.duration)
        return closed_loop(server.port, spec.connections, bodies, plan, plan.duration)
    bodies = request_mix(prefix, int(spec.rate * plan.duration))
    return open_loop(server.port, bodies, spec.rate, plan.pin)


def warm_up(server: Server, plan: Plan) -> None:
    """A second of c=16 first (connection pools, caches, lazy imports); not reported."""
    closed_loop(server.port, 16, request_mix(next_prefix(), MAX_EXPECTED_RPS), plan, 1)


def _database(kind: str | None) -> contextlib.AbstractContextManager[str | None]:
    return contextlib.nullcontext() if kind is None else database(kind)


def progress(row: Row) -> str:
    """One line while the run goes on."""
    load = row.load
    verdict = "" if row.verdict is None else f"  {row.verdict.text}"
    return (
        f"  {row.config.name:<10} {load.label:<15} {load.rps:7.0f} req/s  "
        f"p50 {load.p50_ms:6.1f} ms  p99 {load.p99_ms:7.1f} ms  errors {load.errors}  "
        f"RSS {row.rss_after:.0f} MiB{verdict}"
    )


def run_config(config: Config, plan: Plan) -> list[Row]:
    """Every load of one configuration against one server and one fresh database."""
    print(f"{config.name}: {config.label}", flush=True)
    rows = []
    key = encryption_key() if config.encrypted else None
    with _database(config.kind) as db_url, running(config, db_url, plan.pin, key) as server:
        before = rss_mib(server)
        warm_up(server, plan)
        for spec in specs(config, plan):
            prefix = next_prefix()
            load = measure(server, spec, plan, prefix)
            verdict = None if db_url is None else verify(db_url, prefix, load.acks, key)
            rows.append(Row(config, load, before, rss_mib(server), verdict))
            print(progress(rows[-1]), flush=True)
    return rows


class _RssSampler:
    """The server's RSS each time another tenth of the soak has been answered."""

    def __init__(self, server: Server, total: int) -> None:
        self._server = server
        self._step = max(1, total // 10)
        self.samples: list[tuple[int, float]] = []

    def __call__(self, answered: int) -> None:
        if answered >= (len(self.samples) + 1) * self._step:
            self.samples.append((answered, rss_mib(self._server)))


def run_soak(requests: int, plan: Plan) -> Row:
    """`requests` requests of the mix at c=64 in one wrk run, RSS sampled as it goes.

    wrk has no request count: the script stops sending at `requests` answers and the run is
    ended with SIGINT once the ledger has them all."""
    print(f"soak: {requests} requests at c={SOAK_CONNECTIONS}, service + PostgreSQL", flush=True)
    with database("postgresql") as db_url, running(SOAK, db_url, plan.pin) as server:
        before = rss_mib(server)
        warm_up(server, plan)
        sampler = _RssSampler(server, requests)
        prefix = next_prefix()
        # wrk ends its current event-loop pass after the script's stop: up to one more answer
        # a connection. Fresh requests for those, rather than repeats from the start.
        bodies = request_mix(prefix, requests + 2 * SOAK_CONNECTIONS)
        load = closed_loop(server.port, SOAK_CONNECTIONS, bodies, plan, 86_400, (requests, sampler))
        row = Row(SOAK, load, before, rss_mib(server), verify(db_url, prefix, load.acks))
    series = ", ".join(f"{rss:.0f} after {n}" for n, rss in sampler.samples)
    note = f"soak RSS MiB: {before:.0f} at start (idle), {series}"
    print(progress(row), flush=True)
    return replace(row, load=replace(load, notes=(*load.notes, note)))


# --- output ------------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    """The Markdown table; `vs bare` is req/s over the bare app's at the same load and workers."""
    bare = {(r.config.workers, r.load.label): r.load.rps for r in rows if r.config.kind is None}
    lines = [
        "| configuration | load | req/s | p50 ms | p99 ms | errors | vs bare | RSS MiB | ledger |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        load = row.load
        base = bare.get((row.config.workers, load.label))
        ratio = f"{load.rps / base:.2f}" if base else "—"
        ledger = "—" if row.verdict is None else row.verdict.text.split(":")[0]
        lines.append(
            f"| {row.config.label} | {load.label} | {load.rps:.0f} | {load.p50_ms:.1f} | "
            f"{load.p99_ms:.1f} | {load.errors} | {ratio} | "
            f"{row.rss_before:.0f} → {row.rss_after:.0f} | {ledger} |"
        )
    return "\n".join(lines)


def encryption_table(rows: list[Row]) -> str | None:
    """Each -enc row beside its in-clear twin's at the same load; None when no pair ran."""
    clear: dict[tuple[str | None, str], Row] = {
        (r.config.name, r.load.label): r for r in rows if not r.config.encrypted
    }
    lines = [
        "| configuration | load | req/s off | req/s on | ratio on/off | p99 ms off / on |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for on in (r for r in rows if r.config.encrypted):
        off = clear.get((on.config.clear_twin, on.load.label))
        if off is None:
            continue
        ratio = f"{on.load.rps / off.load.rps:.2f}" if off.load.rps > 0 else "—"
        lines.append(
            f"| {off.config.label} | {on.load.label} | {off.load.rps:.0f} | {on.load.rps:.0f} | "
            f"{ratio} | {off.load.p99_ms:.1f} / {on.load.p99_ms:.1f} |"
        )
    return "\n".join(lines) if len(lines) > 2 else None


def notes(rows: list[Row]) -> list[str]:
    """Ledger details, errors and anything unusual, a line each."""
    found = []
    for row in rows:
        where = f"{row.config.name} {row.load.label}"
        if row.verdict is not None:
            found.append(f"{where}: {row.verdict.text}")
        if row.load.errors:
            http = row.load.errors - row.load.socket_errors
            found.append(f"{where}: {row.load.socket_errors} socket errors, {http} non-2xx")
        found += [f"{where}: {note}" for note in row.load.notes]
        if row.config.workers > 1 and row.load.p50_ms >= NAGLE_SUSPECT_MS:
            found.append(
                f"{where}: p50 near 40 ms: uvicorn --workers leaves TCP_NODELAY off (Nagle meets "
                "delayed ACK, uvicorn issue #3149); this row measures that, not the app"
            )
    return found


def describe_setup(plan: Plan) -> str:
    """What the numbers were measured with: pinning, uvicorn's implementations, the load."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    pins = (
        f"servers of one process on CPU {SERVER_CPU} (taskset -c {SERVER_CPU}), wrk and the "
        f"open loop on CPU {LOAD_CPU}; --workers 2 servers and PostgreSQL not pinned"
        if plan.pin
        else "nothing pinned (taskset missing or fewer than 2 CPUs)"
    )
    return (
        f"{os.cpu_count()} CPUs; pinning: {pins}\n"
        f"uvicorn loop/http 'auto' for both apps: {loop}/{http}; "
        f"{plan.duration} s a run; wrk -t1, open loop up to {OPEN_LOOP_CONNECTIONS} connections"
    )


# --- command line ------------------------------------------------------------------------------


def _ints(text: str) -> tuple[int, ...]:
    values = tuple(int(part) for part in text.split(",") if part.strip())
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma list of positive integers, e.g. 1,16,64")
    return values


def _names(text: str) -> tuple[str, ...]:
    known = {config.name for config in CONFIGS} | {SOAK.name}
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = set(names) - known
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {sorted(unknown)}; known: {sorted(known)}")
    return names


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only",
        type=_names,
        default=tuple(config.name for config in CONFIGS),
        help="comma list of configurations (default: all; `soak` alone: only the soak)",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds a run (default 10)")
    parser.add_argument(
        "--concurrency", type=_ints, default=(1, 16, 64), help="wrk -c values (default 1,16,64)"
    )
    parser.add_argument(
        "--rate", type=float, default=500, help="open-loop req/s; 0: no open loop (default 500)"
    )
    parser.add_argument(
        "--soak", type=int, default=0, metavar="N", help="add a soak of N requests (default: no)"
    )
    args = parser.parse_args(argv)
    if args.duration < 1:
        parser.error("--duration must be at least 1")
    return args


def run_all(args: argparse.Namespace, plan: Plan) -> tuple[list[Row], list[str]]:
    """Every selected configuration, then the soak; a configuration that fails to run is
    reported and the others still run."""
    rows: list[Row] = []
    failures: list[str] = []
    for config in (c for c in CONFIGS if c.name in args.only):
        try:
            rows += run_config(config, plan)
        except RuntimeError as exc:
            failures.append(f"{config.name}: did not run: {exc}")
            print(failures[-1], flush=True)
    if args.soak > 0:
        try:
            rows.append(run_soak(args.soak, plan))
        except RuntimeError as exc:
            failures.append(f"soak: did not run: {exc}")
    return rows, failures


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; exit status 1 if any ledger check failed or a configuration broke."""
    args = parse_args(argv)
    ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="bench_compare_") as tmp:
        plan = Plan(args.duration, args.concurrency, args.rate, can_pin(), Path(tmp))
        print(describe_setup(plan), flush=True)
        rows, failures = run_all(args, plan)
    print()
    print(table(rows))
    print()
    if (cost := encryption_table(rows)) is not None:
        print("Encryption at rest (ENCRYPTION_KEYS set vs empty; ratio = req/s on / off):\n")
        print(cost)
        print()
    for line in notes(rows) + failures:
        print(f"- {line}")
    failed = failures or any(row.verdict is not None and not row.verdict.ok for row in rows)
    print("\nRESULT: " + ("FAIL" if failed else "PASS"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

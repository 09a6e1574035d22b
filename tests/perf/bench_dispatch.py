"""Dispatch benchmark: how fast one worker delivers stored events, and how soon after the
acknowledgement each delivery reaches its destination.

    python -m tests.perf.bench_dispatch [--db postgresql|sqlite|both] [--events N] [--rate R]
                                        [--seconds S] [--concurrency 16,64]
                                        [--mode both|in-process|separate] [--log-level info]

Phase 1 (throughput): `serve --no-worker` takes N signed events (32 in flight), building a
backlog; then ONE `llmtune-receiver worker` process with an `http` route to a local no-op sink
is started, and the time from its start to the last arrival at the sink gives deliveries/s. The
worker's CPU per delivery (from /proc, counted from the first arrival, so without its start-up)
and the whole machine's busy share are shown too. Phase 2 (latency): events are posted open-loop
at a steady R/s for S seconds, to `serve` with its in-process worker and to `serve --no-worker`
plus one worker process; for each event, the time from the client receiving its 200 to the
sink receiving the handler's request. Each arrangement also shows the CPU per event of every
process on the path (and the event rate the cores could carry at that cost) and how many TCP
connections the sink accepted. `--concurrency ""` skips phase 1. After each phase 1 row, the bare
asyncio poster of `poster.py` sends as many signed POSTs, as many in flight, to the same sink:
the ceiling of any worker on this machine at that moment, and the worker's steady rate's share.

The sink is a bare asyncio HTTP/1.1 server (answers 204 at once, keep-alive) in a process of its
own, so it neither waits for the client's interpreter lock nor makes the client wait for it. Its
arrival times and the client's acknowledgement times are both `time.monotonic()`, which on Linux
is CLOCK_MONOTONIC, one clock for every process of the machine, so they can be subtracted. The
client, the sink, the receiver, the worker and PostgreSQL share the machine's cores, so the
numbers are a floor. Traffic goes to 127.0.0.1 only; every process is stopped by its pid and the
database is dropped, whatever happens. Goals missed are reported, not an error.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path

import httpx
import orjson
from sqlalchemy.engine import make_url

from tests.helpers import SECRET, w3_body, w3_headers
from tests.perf.bench_ingest import blast, cpu_seconds, database, measured, server, stop
from tests.perf.poster import plain_post

BACKLOG_CONCURRENCY = 32
WARM_UP_EVENTS = 50
SINK_SECRET = "whsec_" + base64.b64encode(b"bench-dispatch-signing-key-32-by").decode()
POLL_SECONDS = 0.01
LATENCY_GOAL_SECONDS = 0.050
PHASE_1_HEADER = (
    "  phase 1: serve --no-worker takes the backlog, then one worker process drains it\n"
    "  conc arrived/of ingest/s srv µs   dlv/s  steady  start s  wkr µs sink µs pg µs  busy"
    " conns  ratio goal(>=0.5)"
)

# --- the sink: its own process, a bare HTTP/1.1 server that records arrivals ----------------

Arrival = tuple[float, str, str]  # (time.monotonic() at arrival, webhook-id, event id)


class _SinkProtocol(asyncio.Protocol):
    """One keep-alive connection: record each complete request, answer 204 at once."""

    def __init__(self, records: list[tuple[float, bytes, bytes]], opened: list[int]) -> None:
        self._records = records
        self._opened = opened
        self._buffer = b""
        self._transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        self._transport = transport
        self._opened[0] += 1

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            head = self._buffer[:end]
            total = end + 4 + _content_length(head)
            if len(self._buffer) < total:
                return
            self._records.append((now, head, self._buffer[end + 4 : total]))
            self._buffer = self._buffer[total:]
            assert self._transport is not None
            self._transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def _content_length(head: bytes) -> int:
    value = _header(head, b"content-length")
    return int(value) if value else 0


def _arrival(record: tuple[float, bytes, bytes]) -> Arrival:
    at, head, body = record
    event_id = orjson.loads(body).get("id", "") if body else ""
    return at, (_header(head, b"webhook-id") or b"").decode(), str(event_id)


async def _sink_serve(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    records: list[tuple[float, bytes, bytes]] = []
    opened = [0]  # connections accepted since the last "connections"
    sink = await loop.create_server(lambda: _SinkProtocol(records, opened), "127.0.0.1", 0)
    conn.send(sink.sockets[0].getsockname()[1])
    done = asyncio.Event()

    def on_command() -> None:
        try:
            command = conn.recv()
        except EOFError:  # the parent is gone
            command = "stop"
        if command == "count":
            conn.send(len(records))
        elif command == "take":
            conn.send([_arrival(record) for record in records])
            records.clear()
        elif command == "connections":
            conn.send(opened[0])
            opened[0] = 0
        else:
            done.set()

    loop.add_reader(conn.fileno(), on_command)
    await done.wait()
    loop.remove_reader(conn.fileno())
    sink.close()


def _sink_main(conn: Connection) -> None:
    asyncio.run(_sink_serve(conn))


@dataclass(frozen=True, slots=True)
class Sink:
    """The parent's handle on the sink process."""

    conn: Connection
    port: int
    pid: int

    def count(self) -> int:
        """Requests recorded since the last `take`."""
        self.conn.send("count")
        count: int = self.conn.recv()
        return count

    def connections(self) -> int:
        """TCP connections accepted since the last call."""
        self.conn.send("connections")
        opened: int = self.conn.recv()
        return opened

    def take(self) -> list[Arrival]:
        """Every arrival recorded since the last `take`, and forget them."""
        self.conn.send("take")
        arrivals: list[Arrival] = self.conn.recv()
        return arrivals


@contextmanager
def sink() -> Iterator[Sink]:
    """A running sink process on a free port of 127.0.0.1; stopped by its pid afterwards."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_sink_main, args=(child,), daemon=True)
    process.start()
    try:
        if not parent.poll(30):
            raise RuntimeError("the sink did not start")
        assert process.pid is not None
        yield Sink(parent, parent.recv(), process.pid)
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()


# --- the receiver's processes ------------------------------------------------------------------


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in os.environ while inside (bench_ingest's `server` passes it on), then restored."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def write_routes(folder: Path, port: int) -> Path:
    """A routes file with one `http` route, every event, to the sink."""
    path = folder / "routes.toml"
    path.write_text(
        "[[routes]]\n"
        'name = "sink"\n'
        'events = ["*"]\n'
        'handler = "http"\n'
        f'options = {{ url = "http://127.0.0.1:{port}/hook", secret = "{SINK_SECRET}", '
        "allow_private = true }\n",
        encoding="utf-8",
    )
    return path


@contextmanager
def worker(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """One `llmtune-receiver worker` process (its logs to `log_path`); stopped by its pid."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "worker"],
            env=os.environ | env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        yield process
    finally:
        stop(process)


def alive(process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Raise, with the end of its log, when the worker has exited."""
    if process.poll() is not None:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the worker exited with {process.returncode}:\n{tail}")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat."""
    ticks = [float(part) for part in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks) - idle, sum(ticks)


def backends(database_name: str | None) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to `database_name`, by pid."""
    found: dict[int, float] = {}
    if database_name is None:
        return found
    marker = f" {database_name} ".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            cmdline = (entry / "cmdline").read_bytes()  # the backend's title: "postgres: ..."
            if cmdline.startswith(b"postgres: ") and marker in cmdline:
                found[int(entry.name)] = cpu_seconds(int(entry.name))
    return found


@dataclass(frozen=True, slots=True)
class Budget:
    """CPU seconds of the processes an event passes through, between two snapshots. PostgreSQL
    backends that exit in between are missed, so its share is a lower bound."""

    pids: dict[str, int]
    database_name: str | None
    before: dict[str, float]
    backends_before: dict[int, float]

    @classmethod
    def start(cls, pids: dict[str, int], database_name: str | None) -> Budget:
        """Snapshot now."""
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        return cls(pids, database_name, before, backends(database_name))

    def used(self) -> dict[str, float]:
        """CPU seconds each process used since the snapshot (`postgres`: all its backends)."""
        spent = {name: cpu_seconds(pid) - self.before[name] for name, pid in self.pids.items()}
        if self.database_name is not None:
            now = backends(self.database_name)
            spent["postgres"] = sum(t - self.backends_before.get(p, 0.0) for p, t in now.items())
        return spent


def show_budget(spent: dict[str, float], events: int) -> None:
    """One line: CPU µs per event of each process, and the rate the machine's cores allow."""
    per_event = {name: seconds / max(1, events) * 1e6 for name, seconds in spent.items()}
    total = sum(per_event.values())
    cores = os.cpu_count() or 1
    parts = ", ".join(f"{name} {value:.0f}" for name, value in per_event.items())
    print(
        f"    CPU µs/event: {parts}; sum {total:.0f} → at most "
        f"{cores / total * 1e6 if total else float('inf'):.0f} events/s on {cores} cores"
    )


# --- phase 1: drain a backlog ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Drain:
    """What one worker did with a backlog."""

    arrivals: list[Arrival]
    started: float
    worker_cpu: float  # seconds, from the first arrival on
    steady_count: int  # deliveries in that span
    sink_cpu: float
    postgres_cpu: float  # its backends on our database, start to last arrival (a lower bound)
    busy_share: float  # of all cores, start to last arrival
    connections: int  # TCP connections the sink accepted


def wait_for_arrivals(
    the_sink: Sink, expected: int, deadline: float, process: subprocess.Popen[bytes], log: Path
) -> tuple[float, int]:
    """Poll the sink until `expected` arrived or `deadline`; the worker's CPU seconds and the
    sink's count when the first arrival was seen."""
    first: tuple[float, int] | None = None
    while (count := the_sink.count()) < expected and time.monotonic() < deadline:
        alive(process, log)
        if count and first is None:
            first = (cpu_seconds(process.pid), count)
        time.sleep(POLL_SECONDS)
    return first or (cpu_seconds(process.pid), count)


def drain(
    the_sink: Sink, env: dict[str, str], expected: int, log: Path, database_name: str | None
) -> Drain:
    """Start one worker on the stored backlog and wait until the sink has it all (or time out)."""
    leftover = the_sink.take()
    if leftover:
        raise RuntimeError(f"{len(leftover)} deliveries arrived before the worker started")
    busy_before, total_before = machine_busy()
    sink_before = cpu_seconds(the_sink.pid)
    postgres = Budget.start({}, database_name)
    the_sink.connections()
    started = time.monotonic()
    with worker(env, log) as process:
        deadline = started + max(60.0, expected / 20)
        first_cpu, first_count = wait_for_arrivals(the_sink, expected, deadline, process, log)
        worker_cpu = cpu_seconds(process.pid) - first_cpu
        busy_after, total_after = machine_busy()
        sink_cpu = cpu_seconds(the_sink.pid) - sink_before
        postgres_cpu = postgres.used().get("postgres", float("nan"))
        arrivals = the_sink.take()
        connections = the_sink.connections()
    return Drain(
        arrivals=arrivals,
        started=started,
        worker_cpu=worker_cpu,
        steady_count=max(1, len(arrivals) - first_count),
        sink_cpu=sink_cpu,
        postgres_cpu=postgres_cpu,
        busy_share=(busy_after - busy_before) / max(1.0, total_after - total_before),
        connections=connections,
    )


def throughput(
    base: str, pid: int, the_sink: Sink, env: dict[str, str], options: Options, log: Path
) -> None:
    """Phase 1 for one worker concurrency: ingest a backlog, then drain it; print one row."""
    events = options.events
    run_id = uuid.uuid4().hex[:8]
    bodies = [w3_body("training.completed", f"job-{run_id}-{i}") for i in range(events)]
    warm = [w3_body("training.completed", f"job-{run_id}-warm-{i}") for i in range(WARM_UP_EVENTS)]
    asyncio.run(blast(base, warm, BACKLOG_CONCURRENCY))  # warm-up, delivered but not timed
    seconds, server_cpu, _ = measured(pid, base, bodies, BACKLOG_CONCURRENCY)
    ingest_rate = events / seconds
    result = drain(the_sink, env, events + WARM_UP_EVENTS, log, options.database_name)
    arrived = len(result.arrivals)
    times = sorted(at for at, _, _ in result.arrivals)
    rate = arrived / (times[-1] - result.started) if times else 0.0
    steady = (arrived - 1) / (times[-1] - times[0]) if arrived > 1 else 0.0
    startup = times[0] - result.started if times else float("nan")
    repeats = arrived - len({event_id for _, _, event_id in result.arrivals})
    ratio = rate / ingest_rate
    postgres = (
        "    -" if options.database_name is None else f"{result.postgres_cpu / arrived * 1e6:5.0f}"
    )
    print(
        f"  {env['WORKER_CONCURRENCY']:>4} {arrived:>5}/{events + WARM_UP_EVENTS:<5}"
        f"{ingest_rate:7.0f} {server_cpu / events * 1e6:7.0f}  {rate:7.0f} {steady:7.0f}"
        f" {startup:6.2f}  {result.worker_cpu / result.steady_count * 1e6:7.0f}"
        f" {result.sink_cpu / max(1, arrived) * 1e6:5.0f}"
        f" {postgres}"
        f" {result.busy_share * 100:5.0f}%"
        f" {result.connections:5}  {ratio:5.2f} {'met' if ratio >= 0.5 else 'MISSED'}"
        + (f"  ({repeats} repeats)" if repeats else "")
    )
    concurrency = int(env["WORKER_CONCURRENCY"])
    wall, cpu = asyncio.run(plain_post(the_sink.port, SINK_SECRET, events, concurrency))
    the_sink.take()
    ceiling = events / wall
    print(
        f"       plain asyncio poster, same sink, {concurrency} in flight: {ceiling:.0f} POSTs/s,"
        f" {cpu / events * 1e6:.0f} µs CPU each; the worker's steady rate is"
        f" {steady / ceiling:.3f}x of it (1/{ceiling / max(steady, 1e-9):.1f})"
    )


# --- phase 2: latency at a steady rate ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sent:
    """One paced post: its event id and times (time.monotonic())."""

    event_id: str  # "" when the answer was not 200
    status: int  # 0: no answer (the connection failed)
    scheduled: float
    sent: float
    acked: float


async def paced(base: str, bodies: list[bytes], rate: float) -> list[Sent]:
    """Post `bodies` open-loop: the i-th at start + i/rate, whatever the earlier answers do."""
    loop = asyncio.get_running_loop()
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def post(body: bytes, scheduled: float) -> Sent:
            sent = time.monotonic()
            try:
                response = await client.post(
                    "/webhooks/llmtune", content=body, headers=w3_headers(body)
                )
            except httpx.TransportError:  # an overloaded server may drop connections
                return Sent("", 0, scheduled, sent, time.monotonic())
            acked = time.monotonic()
            # A 503 under overload is a result (the sender would retry), not a failure of ours.
            event_id = str(response.json()["eventId"]) if response.status_code == 200 else ""
            return Sent(event_id, response.status_code, scheduled, sent, acked)

        start = loop.time() + 0.05  # loop.time() is time.monotonic()
        tasks = []
        for index, body in enumerate(bodies):
            scheduled = start + index / rate
            await asyncio.sleep(max(0.0, scheduled - loop.time()))
            tasks.append(asyncio.create_task(post(body, scheduled)))
        return await asyncio.gather(*tasks)


def paced_run(
    base: str, the_sink: Sink, count: int, rate: float
) -> tuple[list[Sent], list[Arrival]]:
    """Post `count` events at `rate`, then wait (bounded) for the accepted ones' deliveries."""
    run_id = uuid.uuid4().hex[:8]
    bodies = [w3_body("training.completed", f"job-{run_id}-{i}") for i in range(count)]
    the_sink.take()
    sent = asyncio.run(paced(base, bodies, rate))
    accepted = sum(1 for item in sent if item.status == 200)
    deadline = time.monotonic() + 15
    while the_sink.count() < accepted and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    return sent, the_sink.take()


def cut(values: list[float], percent: int) -> float:
    """The `percent`th percentile of `values` (seconds), in ms."""
    if len(values) < 2:
        return values[0] * 1000 if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1] * 1000


def latency(label: str, base: str, the_sink: Sink, options: Options, pids: dict[str, int]) -> None:
    """Phase 2 for one arrangement: warm up for a second, then measure; print its rows."""
    rate = options.rate
    paced_run(base, the_sink, max(1, int(rate)), rate)  # warm-up: connections, caches, worker
    pids |= {"client": os.getpid(), "sink": the_sink.pid}
    budget = Budget.start(pids, options.database_name)
    the_sink.connections()
    sent, arrivals = paced_run(base, the_sink, max(1, int(rate * options.seconds)), rate)
    spent = budget.used()
    connections = the_sink.connections()
    acked = {item.event_id: item for item in sent if item.status == 200}
    lags = sorted(at - acked[event_id].acked for at, _, event_id in arrivals if event_id in acked)
    ingest = [item.acked - item.sent for item in sent]
    slip = max(item.sent - item.scheduled for item in sent)
    p99 = cut(lags, 99)
    high, low = (lags[-1] * 1000, lags[0] * 1000) if lags else (float("nan"), float("nan"))
    met = p99 <= LATENCY_GOAL_SECONDS * 1000 and len(lags) == len(sent)
    print(
        f"  {label:<11} {len(sent):>5} {len(sent) - len(acked):>5} {len(lags):>6}"
        f"  {cut(ingest, 50):6.1f} {cut(ingest, 99):6.1f}"
        f"  {cut(lags, 50):6.1f} {cut(lags, 95):6.1f} {p99:6.1f} {high:7.1f}"
        f" {low:6.1f}  {slip * 1000:5.1f}  {'met' if met else 'MISSED'}"
    )
    show_budget(spent, len(sent))
    dropped = sum(1 for item in sent if item.status == 0)
    print(
        f"    the sink accepted {connections} TCP connections for {len(arrivals)} deliveries; "
        f"{dropped} posts got no answer (connection failed)"
    )


# --- the run -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    """The command line."""

    events: int
    rate: float
    seconds: float
    concurrencies: list[int]
    modes: list[str]
    log_level: str
    database_name: str | None = None  # PostgreSQL's, for its backends' CPU


def worker_env(db_url: str, routes: Path, concurrency: int, log_level: str) -> dict[str, str]:
    """Settings for a worker process (and, through os.environ, for `serve`)."""
    return {
        "DATABASE_URL": db_url,
        "ROUTES_FILE": str(routes),
        "WORKER_CONCURRENCY": str(concurrency),
        "WEBHOOK_SECRETS": SECRET,
        "ADMIN_TOKENS": "bench-admin-token-0123",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": log_level,
    }


def separate_worker(db_url: str, routes: Path, the_sink: Sink, options: Options) -> None:
    """Phase 1 at each concurrency, then phase 2 with one worker process, on one server."""
    env = worker_env(db_url, routes, 16, options.log_level)
    log = routes.parent / "worker.log"
    with environment(env | {"RUN_WORKER": "false"}), server(db_url, options.log_level) as served:
        base, pid = served
        if options.concurrencies:
            print(PHASE_1_HEADER)
        for concurrency in options.concurrencies:
            env["WORKER_CONCURRENCY"] = str(concurrency)
            throughput(base, pid, the_sink, env, options, log)
        if "separate" in options.modes:
            env["WORKER_CONCURRENCY"] = "16"
            with worker(env, log) as process:
                print_latency_header(options)
                pids = {"server": pid, "worker": process.pid}
                latency("separate", base, the_sink, options, pids)
                alive(process, log)


def print_latency_header(options: Options) -> None:
    """The phase 2 column names."""
    print(
        f"  phase 2: {options.rate:g} events/s for {options.seconds:g} s, open loop; ms\n"
        "  worker       sent  !200 arrived ingest p50  p99  ack→sink p50   p95    p99     max"
        "    min  slip  goal(p99<=50)"
    )


def run(kind: str, options: Options) -> None:
    """Both phases against one database kind."""
    print(
        f"{kind}: {options.events} events backlog, worker concurrency {options.concurrencies}, "
        f"{os.cpu_count()} cores, log level {options.log_level}"
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        sink() as the_sink,
        database(kind) as db_url,
    ):
        routes = write_routes(Path(tmp), the_sink.port)
        if kind == "postgresql":
            options = replace(options, database_name=make_url(db_url).database)
        separate_worker(db_url, routes, the_sink, options)
        if "in-process" in options.modes:
            env = worker_env(db_url, routes, 16, options.log_level) | {"RUN_WORKER": "true"}
            with environment(env), server(db_url, options.log_level) as (base, pid):
                if "separate" not in options.modes:
                    print_latency_header(options)
                latency("in-process", base, the_sink, options, {"server": pid})


def main() -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="postgresql")
    parser.add_argument("--events", type=int, default=2000, help="backlog size (phase 1)")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s (phase 2)")
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of phase 2")
    parser.add_argument(
        "--concurrency",
        default="16,64",
        help="WORKER_CONCURRENCY values of phase 1 (empty: skip it)",
    )
    parser.add_argument("--mode", choices=["both", "in-process", "separate"], default="both")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    if not 1 <= args.events <= 100_000 or not 0 < args.rate <= 2000 or not 0 < args.seconds <= 120:
        parser.error("keep it bounded: --events 1..100000, --rate up to 2000, --seconds up to 120")
    options = Options(
        events=args.events,
        rate=args.rate,
        seconds=args.seconds,
        concurrencies=[int(part) for part in args.concurrency.split(",") if part.strip()],
        modes=["in-process", "separate"] if args.mode == "both" else [args.mode],
        log_level=args.log_level,
    )
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    for kind in kinds:
        run(kind, options)


if __name__ == "__main__":
    main()

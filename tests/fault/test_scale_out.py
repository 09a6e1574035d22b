"""Scale out on one PostgreSQL: two `serve --no-worker` behind the test's own round-robin client,
two `worker` processes forwarding to a local sink; one worker is SIGKILLed mid-run.

Every acknowledged event is stored once; every delivery reaches the sink (its `webhook-id`) at
least once, and twice only if the killed worker had it in flight (or, on a machine so busy that
the sink answered after the 1 s attempt timeout, if that attempt is recorded as timed out:
counted apart, 0 on a quiet machine); each job's events reach the sink in the order they were
stored; after the killed worker's leases run out (2 s) the other worker has delivered
everything.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import signal
import time
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest

from tests.e2e.server import receiver_env
from tests.fault.ledger import (
    check,
    delivery_states,
    failed_attempts,
    stored_events,
    unrecorded_attempts,
)
from tests.fault.load import LIFECYCLE, Load, lifecycles, outcomes
from tests.fault.processes import (
    SCALE,
    Proc,
    Processes,
    RecordProperty,
    error_lines,
    report,
    scaled,
)
from tests.sinks import HttpSink, Received, Reply, http_sink
from tests.waiting import until

pytestmark = [pytest.mark.fault, pytest.mark.postgresql, pytest.mark.e2e]

JOBS = scaled(334)  # three events each: about 1000 events and 1000 deliveries
CONCURRENCY = 32
LEASE_SECONDS = 2
WORKER_CONCURRENCY = 16
TIMEOUT = "did not finish within"  # the worker's detail of an attempt that timed out
SINK_DELAY = 0.01  # each forward takes this long: the workers have attempts in flight
FORWARD_SECRET = "whsec_" + base64.b64encode(b"fault-scale-out-secret-32-bytes!").decode()
PREFIX = "fault-scale"


def write_routes(directory: Path, sink: HttpSink) -> None:
    """One forward route for the lifecycle events, to `sink`."""
    (directory / "routes.toml").write_text(
        '[[routes]]\nname = "forward"\nhandler = "http"\n'
        f"events = {orjson.dumps(list(LIFECYCLE)).decode()}\n"
        f'options = {{ url = "{sink.url}/hook", secret = "{FORWARD_SECRET}", '
        "allow_private = true }\n",
        encoding="utf-8",
    )


def order_violations(received: list[Received]) -> list[str]:
    """Jobs whose next event reached the sink before the last copy of the one before it."""
    arrivals: defaultdict[str, defaultdict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for index, request in enumerate(received):
        document = orjson.loads(request.body)
        arrivals[document["jobId"]][document["type"]].append(index)
    bad = []
    for job, by_type in arrivals.items():
        present = [kind for kind in LIFECYCLE if kind in by_type]
        if present != list(LIFECYCLE)[: len(present)]:
            bad.append(f"{job}: only {present}")
        for earlier, later in itertools.pairwise(present):
            if min(by_type[later]) < max(by_type[earlier]):
                bad.append(f"{job}: {later} before the last copy of {earlier}")
    return bad


def succeeded_by(worker: Proc) -> set[str]:
    """The deliveries `worker` logged as succeeded."""
    return {
        record["delivery_id"]
        for record in worker.records()
        if record.get("event") == "delivery_attempt" and record.get("status") == "succeeded"
    }


async def test_two_servers_two_workers_one_killed_deliver_everything_in_order(
    fault_db: str, processes: Processes, tmp_path: Path, record_property: RecordProperty
) -> None:
    """~1000 events through two web processes and two workers, one worker SIGKILLed a third of
    the way: each event stored once, each delivery made, duplicates only of the killed
    worker's attempts, per-job order kept."""
    async with http_sink() as sink:
        sink.default = Reply(delay=SINK_DELAY)
        write_routes(tmp_path, sink)
        env = receiver_env(fault_db) | {
            "ROUTES_FILE": "routes.toml",
            "WORKER_LEASE_SECONDS": str(LEASE_SECONDS),
            "WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
            "WORKER_POLL_SECONDS": "0.1",
        }
        # Load, not coverage: outside `make test`'s tracing, and web logs at warning only.
        web_env = env | {"LOG_LEVEL": "warning"}
        began = time.monotonic()
        web_a, web_b, doomed, survivor = await asyncio.gather(
            processes.serve("web-a", web_env, "--no-worker", measured=False),
            processes.serve("web-b", web_env, "--no-worker", measured=False),
            processes.worker("worker-a", env, measured=False),
            processes.worker("worker-b", env, measured=False),
        )
        chains = lifecycles(PREFIX, JOBS)
        total = JOBS * len(LIFECYCLE)
        load = Load([web_a.webhook_url, web_b.webhook_url], chains, concurrency=CONCURRENCY)
        started = time.monotonic()
        running = asyncio.create_task(load.run())

        await until(lambda: len(sink.received) >= total // 3, 30 * SCALE, "a third delivered")
        doomed.send(signal.SIGKILL)
        assert await doomed.exit_code() == -signal.SIGKILL
        received_at_kill = len(sink.received)
        records = await running
        ingested = time.monotonic()

        async def all_succeeded() -> bool:
            states = await delivery_states(fault_db)
            return len(states) == total and all(d.status == "succeeded" for d in states)

        drained = await until(all_succeeded, 30 * SCALE, f"{total} deliveries succeed")
        await asyncio.sleep(0.5)  # a late duplicate would arrive by now
        received = list(sink.received)
        states = await delivery_states(fault_db)

    verdict = check(records, await stored_events(fault_db, PREFIX))
    copies = Counter(request.headers["webhook-id"] for request in received)
    duplicated = {delivery_id for delivery_id, count in copies.items() if count > 1}
    # The killed worker's claims: counted as attempts, never recorded as one.
    stranded = await unrecorded_attempts(fault_db)
    # Attempts the sink answered after the attempt timeout (half the 2 s lease): a machine
    # busy with other work can delay the sink that long; the retry is then a second copy.
    failed = await failed_attempts(fault_db)
    timed_out = {d for d, details in failed.items() if all(TIMEOUT in x for x in details)}
    by_web = Counter(r.url for r in records if r.ok)
    line = (
        f"{verdict.line()} deliveries={len(states)} "
        f"sink_requests={len(received)} sink_ids={len(copies)} duplicates={len(duplicated)} "
        f"redone_after_lease={len(stranded)} dup_after_kill={len(duplicated & stranded.keys())} "
        f"dup_after_timeout={len(duplicated - stranded.keys())} "
        f"received_at_kill={received_at_kill} "
        f"startup_s={started - began:.2f} ingest_s={ingested - started:.2f} "
        f"drain_after_ingest_s={drained:.2f} by_web={sorted(by_web.values())} "
        f"by_worker={len(succeeded_by(doomed))}/{len(succeeded_by(survivor))}"
    )
    report(record_property, "scale_out", line)

    assert all(r.ok for r in records), outcomes(records)
    assert not verdict.problems, verdict.problems
    assert verdict.acked == verdict.stored == total
    assert set(copies) == {d.id for d in states}, "a delivery never reached the sink"
    # A second copy only of what the killed worker held when it died (its running attempts and
    # the claims it had made ahead of them: at most 2 x WORKER_CONCURRENCY, each redone once), or
    # of an attempt recorded as timed out.
    assert set(failed) == timed_out, f"attempts failed otherwise: {failed}"
    assert duplicated <= stranded.keys() | timed_out, duplicated - stranded.keys() - timed_out
    assert len(stranded) <= 2 * WORKER_CONCURRENCY
    assert set(stranded.values()) <= {1}
    assert max(copies.values()) <= 2
    assert not order_violations(received), order_violations(received)[:5]
    assert len(by_web) == 2, "the round-robin client used one server only"
    assert succeeded_by(doomed), "the killed worker had delivered nothing before it died"
    assert succeeded_by(survivor)
    for proc in (web_a, web_b, survivor):
        assert proc.alive, f"{proc.name} died"
        assert not error_lines(proc), error_lines(proc)[:3]

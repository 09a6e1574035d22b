"""Destinations that go down: forwards (`http` handler, Standard Webhooks) to a local sink.

- `flaky` answers 503 with `Retry-After: 1` for a few seconds, then 200: every delivery
  succeeds soon after the return, each job's deliveries still in order.
- `once` fails each delivery's first attempt with a bare 503: the retry comes on the fixed
  schedule (5 s, ±20 %). The schedule itself cannot be shortened by configuration (it is
  `policy.SCHEDULE_SECONDS`; WORKER_POLL_SECONDS only sets how often due work is looked for, and
  `max_attempts` how many tries): only a destination's own Retry-After (at least 1 s) does.
- `dead-503` (503 every time, max_attempts = 2) and `dead-400` (400, final at once) end `dead`;
  `POST /admin/deliveries/retry` makes them due again, and once the destination answers they
  succeed.
"""

from __future__ import annotations

import base64
import itertools
import time
from collections import defaultdict
from datetime import datetime
from functools import partial
from pathlib import Path

import httpx
import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.e2e.server import receiver_env
from tests.fault.ledger import delivery_states
from tests.fault.load import LIFECYCLE, Load, lifecycles, outcomes
from tests.fault.processes import Processes, RecordProperty, report, scaled
from tests.helpers import AUTH
from tests.sinks import HttpSink, Received, Reply, http_sink
from tests.waiting import until

pytestmark = [pytest.mark.fault, pytest.mark.postgresql, pytest.mark.e2e]

JOBS = scaled(10)
DOWN_SECONDS = 3.0
FORWARD_SECRET = "whsec_" + base64.b64encode(b"fault-forward-secret-of-32-bytes").decode()
SCHEDULED_RETRY = 5.0  # policy.SCHEDULE_SECONDS[1]
JITTER = 0.2
DEAD_ROUTES = ("dead-503", "dead-400")
DOWN = Reply(status=503, body="down for maintenance", headers={"Retry-After": "1"})


def routes_toml(sink: HttpSink) -> str:
    """Four forward routes to paths of `sink`."""

    def route(name: str, events: list[str], max_attempts: int = 9) -> str:
        return (
            f'[[routes]]\nname = "{name}"\nhandler = "http"\n'
            f"events = {orjson.dumps(events).decode()}\nmax_attempts = {max_attempts}\n"
            f'options = {{ url = "{sink.url}/{name}", secret = "{FORWARD_SECRET}", '
            "allow_private = true }\n"
        )

    return "\n".join(
        [
            route("flaky", list(LIFECYCLE)),
            route("once", ["training.started"]),
            route("dead-503", ["model.deployed"], max_attempts=2),
            route("dead-400", ["training.completed"], max_attempts=2),
        ]
    )


def at(sink: HttpSink, path: str) -> list[tuple[int, Received]]:
    """(arrival index, request) of every request to `path`."""
    return [(n, r) for n, r in enumerate(sink.received) if r.path == path]


def order_violations(requests: list[tuple[int, Received]]) -> list[str]:
    """Jobs whose next event reached the sink before the last try of the one before it."""
    tries: defaultdict[str, defaultdict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for index, request in requests:
        document = orjson.loads(request.body)
        tries[document["jobId"]][document["type"]].append(index)
    bad = []
    for job, by_type in tries.items():
        present = [kind for kind in LIFECYCLE if kind in by_type]
        for earlier, later in itertools.pairwise(present):
            if min(by_type[later]) < max(by_type[earlier]):
                bad.append(f"{job}: {later} before the last try of {earlier}")
    return bad


async def statuses(db_url: str, route: str) -> list[str]:
    """The status of each delivery of `route`."""
    return [d.status for d in await delivery_states(db_url) if d.route == route]


async def all_are(db_url: str, route: str, status: str, count: int) -> bool:
    """True once `route` has `count` deliveries, every one `status`."""
    found = await statuses(db_url, route)
    return len(found) == count and set(found) == {status}


async def retry_gaps(db_url: str, route: str) -> list[float]:
    """Seconds between the first and the second attempt of each delivery of `route`."""
    engine = create_async_engine(db_url, poolclass=NullPool)
    query = sa.text(
        "SELECT a.delivery_id, a.number, a.started_at FROM delivery_attempts a "
        "JOIN deliveries d ON d.id = a.delivery_id WHERE d.route = :route AND a.number <= 2"
    )
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(query, {"route": route})).all()
    finally:
        await engine.dispose()
    starts: defaultdict[str, dict[int, datetime]] = defaultdict(dict)
    for delivery_id, number, started_at in rows:
        starts[delivery_id][number] = started_at
    return [(tries[2] - tries[1]).total_seconds() for tries in starts.values() if len(tries) == 2]


async def test_deliveries_survive_a_destination_outage_and_dead_ones_retry(
    fault_db: str, processes: Processes, tmp_path: Path, record_property: RecordProperty
) -> None:
    """A destination down for 3 s: all its deliveries succeed after it returns, in per-job
    order; first-attempt failures retry after ~5 s; routes that stay down end dead, and the
    admin retry makes them due again until they succeed."""
    async with http_sink() as sink:
        sink.by_path["/flaky"] = DOWN
        sink.by_path["/dead-503"] = DOWN
        sink.by_path["/dead-400"] = Reply(status=400, body="no such hook")
        sink.script = [Reply(status=503, body="first try fails") for _ in range(JOBS)]
        (tmp_path / "routes.toml").write_text(routes_toml(sink), encoding="utf-8")
        env = receiver_env(fault_db) | {"ROUTES_FILE": "routes.toml", "WORKER_POLL_SECONDS": "0.1"}
        server = await processes.serve("serve", env)

        load = Load([server.webhook_url], lifecycles("fault-down", JOBS), concurrency=8)
        records = await load.run()
        assert all(r.ok for r in records), outcomes(records)
        await until(lambda: bool(at(sink, "/flaky")), 10, "the first forward to /flaky")
        down_from = time.monotonic()

        await until(lambda: time.monotonic() - down_from >= DOWN_SECONDS, 10, "the outage")
        sink.by_path["/flaky"] = Reply()
        failed_tries = len(at(sink, "/flaky"))
        total = JOBS * len(LIFECYCLE)
        recovery = await until(
            lambda: all_are(fault_db, "flaky", "succeeded", total), 30, "flaky all succeeded"
        )
        await until(lambda: all_are(fault_db, "once", "succeeded", JOBS), 15, "once all succeeded")
        for route in DEAD_ROUTES:
            await until(partial(all_are, fault_db, route, "dead", JOBS), 15, f"{route} all dead")
        dead = await delivery_states(fault_db)
        dead_attempts = {r: sorted({d.attempts for d in dead if d.route == r}) for r in DEAD_ROUTES}

        for route in DEAD_ROUTES:
            sink.by_path[f"/{route}"] = Reply()
        async with httpx.AsyncClient(base_url=server.base_url, trust_env=False) as admin:
            answer = await admin.post("/admin/deliveries/retry", headers=AUTH)
        after_retry = [d.status for d in await delivery_states(fault_db) if d.route in DEAD_ROUTES]
        for route in DEAD_ROUTES:
            await until(
                partial(all_are, fault_db, route, "succeeded", JOBS), 15, f"{route} retried"
            )
        final = await delivery_states(fault_db)

    flaky = at(sink, "/flaky")
    once = at(sink, "/once")
    gaps = await retry_gaps(fault_db, "once")
    line = (
        f"deliveries={len(final)} flaky={total} "
        f"flaky_failed_tries={failed_tries} flaky_tries={len(flaky)} "
        f"flaky_recovery_s={recovery:.2f} once={JOBS} once_tries={len(once)} "
        f"once_retry_gap_s={min(gaps):.2f}..{max(gaps):.2f} "
        f"dead={2 * JOBS} dead_attempts={dead_attempts} retried={answer.json()} "
        f"after_retry={sorted(set(after_retry))}"
    )
    report(record_property, "destination_down", line)

    assert failed_tries >= JOBS, "the outage hit fewer deliveries than expected"
    assert {r.headers["webhook-id"] for _, r in flaky} == {
        d.id for d in final if d.route == "flaky"
    }
    assert not order_violations(flaky), order_violations(flaky)
    assert all(d.status == "succeeded" for d in final if d.route == "flaky")
    assert [d.attempts for d in final if d.route == "once"] == [2] * JOBS
    assert len(once) == 2 * JOBS
    lowest = SCHEDULED_RETRY * (1 - JITTER) - 0.1
    assert len(gaps) == JOBS
    assert min(gaps) >= lowest, f"a retry came {min(gaps):.2f} s after the first attempt"
    assert dead_attempts == {"dead-503": [2], "dead-400": [1]}
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"retried": 2 * JOBS}
    assert "dead" not in after_retry
    assert {d.status for d in final} == {"succeeded"}

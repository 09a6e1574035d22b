"""SIGTERM a `serve` under load (a new connection per request, so every connection error names
one request): it drains and exits 0 within its graceful timeout; no acknowledged event is lost;
no request that the server had read and was processing (its event is stored) ends in a reset.
Connections refused once the listener closed are counted apart: they are not failures, the
sender retries them, and the retries (against a new process) all land.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.e2e.server import receiver_env
from tests.fault.ledger import check, stored_events, unacknowledged
from tests.fault.load import Load, outcomes, send_all, single_events
from tests.fault.processes import Processes, RecordProperty, error_lines, report, scaled
from tests.waiting import until

pytestmark = [pytest.mark.fault, pytest.mark.postgresql, pytest.mark.e2e]

EVENTS = scaled(400)
CONCURRENCY = 32
GRACEFUL_TIMEOUT = 10.0  # uvicorn's timeout_graceful_shutdown in `serve`
PREFIX = "fault-term"


async def test_sigterm_under_load_drains_and_exits_zero(
    fault_db: str, processes: Processes, record_property: RecordProperty
) -> None:
    """SIGTERM with 32 requests in progress: exit 0 within the graceful timeout, nothing
    acknowledged lost, no reset of a request being processed, no error logged."""
    env = receiver_env(fault_db)
    server = await processes.serve("serve", env)
    load = Load(
        [server.webhook_url],
        single_events(PREFIX, EVENTS),
        concurrency=CONCURRENCY,
        keepalive=False,
    )
    running = asyncio.create_task(load.run())
    await until(lambda: load.acked >= EVENTS // 4, 20, "a quarter acknowledged")
    server.send(signal.SIGTERM)
    termed_at = time.monotonic()
    code = await server.exit_code(within=GRACEFUL_TIMEOUT + 5)
    exit_seconds = time.monotonic() - termed_at
    records = await running

    stored = {(row.type, row.job_id) for row in await stored_events(fault_db, PREFIX)}
    refused = [r for r in records if r.refused]
    # The listener closed with these connections still in its backlog (never accepted).
    reset_unaccepted = [r for r in records if r.unconnected and not r.refused]
    # Connected, sent, then no answer: either the server had read it (its event is stored,
    # the acknowledgement is what got lost) or it closed the connection unread.
    resets_processed = [r for r in records if r.dropped and r.event.key in stored]
    dropped_unread = [r for r in records if r.dropped and r.event.key not in stored]
    answered_after = [r for r in records if r.status is not None and r.finished > termed_at]

    restarted = await processes.serve("serve-again", env)
    retried = await send_all([restarted.webhook_url], unacknowledged(records), concurrency=16)
    verdict = check(records + retried.records, await stored_events(fault_db, PREFIX))
    line = (
        f"{verdict.line()} exit_code={code} exit_s={exit_seconds:.2f} "
        f"answered_after_term={len(answered_after)} refused={len(refused)} "
        f"reset_unaccepted={len(reset_unaccepted)} "
        f"resets_processed={len(resets_processed)} dropped_unread={len(dropped_unread)} "
        f"retried={len(retried.records)} [{outcomes(records)}]"
    )
    report(record_property, "sigterm", line)

    assert code == 0, server.log_text()
    assert exit_seconds < GRACEFUL_TIMEOUT
    assert not error_lines(server), error_lines(server)
    assert "Traceback" not in server.log_text()
    assert all(r.ok or r.error is not None for r in records), outcomes(records)
    assert not resets_processed, [r.error for r in resets_processed]
    # Only requests on the wire at the moment of shutdown can have been dropped unread.
    assert len(dropped_unread) + len(reset_unaccepted) <= CONCURRENCY
    assert all(record.ok for record in retried.records), outcomes(retried.records)
    assert not verdict.problems, verdict.problems
    assert verdict.sent == verdict.acked == verdict.stored

"""SIGKILL the server while distinct events pour in, three times on one database: every event
that was acknowledged (2xx) is in the events table exactly once, under the eventId it was
acknowledged with. Between rounds the sender retries what was not acknowledged (as LLMTune
does); at the end everything sent is acknowledged and stored once.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.e2e.server import receiver_env
from tests.fault.ledger import check, stored_events, unacknowledged
from tests.fault.load import Load, Record, outcomes, send_all, single_events
from tests.fault.processes import Processes, RecordProperty, report, scaled
from tests.waiting import until

pytestmark = [pytest.mark.fault, pytest.mark.postgresql, pytest.mark.e2e]

ROUNDS = 3
PER_ROUND = scaled(300)
CONCURRENCY = 24
PREFIX = "fault-kill"


async def test_sigkill_under_load_loses_no_acknowledged_event(
    fault_db: str, processes: Processes, record_property: RecordProperty
) -> None:
    """Three rounds of SIGKILL under load on one database, then a last retry: no acknowledged
    event is lost or stored twice, and every retried one ends stored once."""
    env = receiver_env(fault_db)
    ledger: list[Record] = []
    for number in range(1, ROUNDS + 1):
        server = await processes.serve(f"serve-{number}", env, measured=False)
        retries = unacknowledged(ledger)
        fresh = single_events(PREFIX, PER_ROUND, start=(number - 1) * PER_ROUND)
        load = Load([server.webhook_url], [[e] for e in retries] + fresh, concurrency=CONCURRENCY)
        running = asyncio.create_task(load.run())
        # Killed a third of the way through this round's new events, with the senders busy.
        await until(load.acked_at_least(len(retries) + PER_ROUND // 3), 30, "a third acked")
        server.send(signal.SIGKILL)
        assert await server.exit_code() == -signal.SIGKILL
        records = await running
        ledger += records

        verdict = check(ledger, await stored_events(fault_db, PREFIX))
        # This round's requests, then the whole ledger so far against the table.
        line = (
            f"round_requests={len(records)} round_acked={sum(r.ok for r in records)} "
            f"in_flight_at_kill={sum(r.dropped for r in records)} "
            f"refused_after_kill={sum(r.unconnected for r in records)} | {verdict.line()} "
            f"[{outcomes(records)}]"
        )
        report(record_property, f"sigkill_round_{number}", line)
        assert not verdict.problems, verdict.problems
        assert all(r.ok or r.error is not None for r in records), "a non-2xx answer before kill"

    # The sender retries once more, against a server that stays up.
    server = await processes.serve("serve-last", env)
    last = await send_all([server.webhook_url], unacknowledged(ledger), concurrency=CONCURRENCY)
    ledger += last.records
    verdict = check(ledger, await stored_events(fault_db, PREFIX))
    line = f"{verdict.line()} retried={len(last.records)}"
    report(record_property, "sigkill_final", line)
    assert all(record.ok for record in last.records), outcomes(last.records)
    assert not verdict.problems, verdict.problems
    assert verdict.sent == verdict.acked == verdict.stored == ROUNDS * PER_ROUND

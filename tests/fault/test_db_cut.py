"""Cut the database away from a running `serve` under load, through a TCP proxy (the service's
DATABASE_URL points at the proxy, which forwards to the real PostgreSQL; the server itself is
never touched): while cut, nothing is acknowledged (503 STORAGE_UNAVAILABLE with Retry-After in
LLMTune's error shape, or a connection error, counted apart) and /readyz is 503; after the
restore the same process acknowledges again by itself, and /readyz is 200. Every acknowledged
event is stored exactly once, and the sender's retries of the refused ones all land.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.e2e.server import receiver_env
from tests.fault.ledger import check, delivery_states, stored_events, unacknowledged
from tests.fault.load import Load, Record, outcomes, send_all, single_events
from tests.fault.processes import Processes, RecordProperty, report, scaled
from tests.fault.tcp_proxy import TcpProxy
from tests.waiting import until

pytestmark = [pytest.mark.fault, pytest.mark.postgresql, pytest.mark.e2e]

EVENTS = scaled(2000)  # an upper bound: the run stops itself after the recovery
CONCURRENCY = 16
PACE = 0.1  # each sender waits this long between requests: at most 160 requests a second
BEFORE_CUT = scaled(50)  # acknowledged before the cut
AFTER_RESTORE = scaled(100)  # acknowledged after the recovery, then the load stops
CUT_SECONDS = 2.0
RECOVERY_WITHIN = 5.0
PREFIX = "fault-cut"


async def readyz(base_url: str) -> httpx.Response:
    """GET /readyz on a fresh connection."""
    async with httpx.AsyncClient(base_url=base_url, timeout=5.0, trust_env=False) as client:
        return await client.get("/readyz")


def refusal_ok(record: Record) -> bool:
    """503 STORAGE_UNAVAILABLE (or OVERLOADED) with Retry-After, in LLMTune's error shape."""
    return (
        record.status == 503
        and record.code in ("STORAGE_UNAVAILABLE", "OVERLOADED")
        and record.error_shape
        and record.retry_after is not None
        and record.retry_after.isdigit()
    )


async def test_database_cut_refuses_then_recovers_without_restart(
    fault_db: str, processes: Processes, record_property: RecordProperty
) -> None:
    """2 s without a database under load: no 2xx while cut, 2xx again within a few seconds of
    the restore with no restart, /readyz 503 then 200, every 2xx stored exactly once, and the
    process's own worker delivers everything stored."""
    real = make_url(fault_db)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432)
    await proxy.start()
    try:
        through = real.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
        # Its own dispatch worker (log handler) must recover too: an attempt it could not
        # record during the cut is redone once the 2 s lease has run out.
        env = receiver_env(through) | {"WORKER_LEASE_SECONDS": "2", "WORKER_POLL_SECONDS": "0.1"}
        server = await processes.serve("serve", env)
        load = Load(
            [server.webhook_url],
            single_events(PREFIX, EVENTS),
            concurrency=CONCURRENCY,
            pace=PACE,
        )
        running = asyncio.create_task(load.run())
        await until(lambda: load.acked >= BEFORE_CUT, 20, f"{BEFORE_CUT} acknowledged")

        await proxy.cut()
        cut_at = time.monotonic()
        await asyncio.sleep(CUT_SECONDS / 2)
        ready_while_cut = await readyz(server.base_url)
        await asyncio.sleep(CUT_SECONDS / 2)
        await proxy.restore()
        restored_at = time.monotonic()

        def recovered() -> bool:
            return any(r.ok and r.started >= restored_at for r in load.records)

        await until(recovered, RECOVERY_WITHIN, "a 2xx after the restore", step=0.01)
        first_ok = min(r.finished for r in load.records if r.ok and r.started >= restored_at)
        recovery = first_ok - restored_at
        ready_after = await readyz(server.base_url)
        acked_then = load.acked
        await until(lambda: load.acked >= acked_then + AFTER_RESTORE, 20, "load after recovery")
        load.stop()
        records = await running

        async def all_delivered() -> bool:
            states = await delivery_states(fault_db)
            return len(states) == len(stored) and all(d.status == "succeeded" for d in states)

        stored = await stored_events(fault_db, PREFIX)
        await until(all_delivered, 15, "every stored event delivered by the same process")
        delivered_s = time.monotonic() - restored_at
        assert server.alive, "the server died during the cut"
    finally:
        await proxy.stop()

    # The sender (LLMTune) retries every delivery that was not acknowledged.
    direct = await processes.serve("serve-direct", receiver_env(fault_db))
    retried = await send_all([direct.webhook_url], unacknowledged(records), concurrency=CONCURRENCY)
    ledger = records + retried.records
    verdict = check(ledger, await stored_events(fault_db, PREFIX))

    during = [r for r in records if r.started >= cut_at and r.finished <= restored_at]
    refused_ok = [r for r in during if refusal_ok(r)]
    errors = [r for r in during if r.error is not None]
    line = (
        f"{verdict.line()} during_cut={len(during)} "
        f"during_2xx={sum(r.ok for r in during)} during_503={len(refused_ok)} "
        f"during_conn_errors={len(errors)} recovery_s={recovery:.3f} "
        f"readyz_cut={ready_while_cut.status_code} readyz_after={ready_after.status_code} "
        f"worker_drained_s={delivered_s:.2f} retried={len(retried.records)} "
        f"[{outcomes(records)}]"
    )
    report(record_property, "db_cut", line)

    assert during, "no request was answered while the database was cut"
    assert not [r for r in during if r.ok], "acknowledged while the database was cut"
    assert len(refused_ok) + len(errors) == len(during), outcomes(during)
    assert ready_while_cut.status_code == 503
    assert ready_while_cut.json()["error"]["code"] == "STORAGE_UNAVAILABLE"
    assert ready_after.status_code == 200
    assert recovery < RECOVERY_WITHIN
    assert all(record.ok for record in retried.records), outcomes(retried.records)
    assert not verdict.problems, verdict.problems
    assert verdict.sent == verdict.acked == verdict.stored

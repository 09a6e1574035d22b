"""The store goes away: deliveries get 503 with Retry-After, never 2xx; then recover."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from service.store.migrate import upgrade
from tests.helpers import (
    AUTH,
    emptied_engine,
    join_sqlite_threads,
    make_settings,
    post_webhook,
    running_app,
    w3_body,
)
from tests.tcpproxy import TcpProxy


@pytest.fixture
async def proxy(postgresql_url: str) -> AsyncIterator[TcpProxy]:
    url = make_url(postgresql_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest.mark.postgresql
async def test_postgresql_outage_answers_503_then_recovers(
    postgresql_url: str, proxy: TcpProxy
) -> None:
    """With PostgreSQL cut off mid-run, ingest is 503 + Retry-After; afterwards the retry lands."""
    through_proxy = make_url(postgresql_url).set(host="127.0.0.1", port=proxy.port)
    url = through_proxy.render_as_string(hide_password=False)
    engine = await emptied_engine(url)
    async with running_app(make_settings(url), engine) as client:
        assert (await post_webhook(client, w3_body(job_id="before"))).status_code == 200
        proxy.cut()
        during = await post_webhook(client, w3_body(job_id="during"))
        assert during.status_code == 503
        assert during.headers["retry-after"] == "5"
        assert during.json()["error"]["code"] == "STORAGE_UNAVAILABLE"
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/admin/events", headers=AUTH)).status_code == 503
        metrics = (await client.get("/metrics")).text
        unavailable = 'event_type="training.completed",outcome="unavailable"} 1.0'
        assert f"llmtune_webhooks_received_total{{{unavailable}" in metrics
        proxy.restore()
        retried = await post_webhook(client, w3_body(job_id="during"))
        assert retried.status_code == 200
        assert retried.json()["duplicate"] is False
        listed = (await client.get("/admin/events", headers=AUTH)).json()["items"]
        assert sorted(item["jobId"] for item in listed) == ["before", "during"]
    await engine.dispose()


async def test_sqlite_locked_answers_503(tmp_path: Path) -> None:
    """A SQLite file held locked by another writer: 503 after the busy timeout, not 2xx."""
    path = tmp_path / "locked.db"
    url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(upgrade, url)
    async with running_app(make_settings(url)) as client:
        # Another program (here the stdlib driver) holds the file's lock.
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            during = await post_webhook(client, w3_body(job_id="locked"))
        finally:
            locker.rollback()
            locker.close()
        assert during.status_code == 503
        assert during.headers["retry-after"] == "5"
        after = await post_webhook(client, w3_body(job_id="locked"))
        assert after.status_code == 200
        assert after.json()["duplicate"] is False


async def test_unopenable_sqlite_answers_503(tmp_path: Path) -> None:
    """A database path that cannot be opened is an outage (503), not a crash."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'x.db'}"
    async with running_app(make_settings(url)) as client:
        response = await post_webhook(client, w3_body())
    await asyncio.to_thread(join_sqlite_threads)
    assert response.status_code == 503


@pytest.mark.postgresql
async def test_dropped_connections_do_not_fail_the_next_webhook(postgresql_url: str) -> None:
    """After the server kills every connection of ours (a restart, a failover), the next
    webhook and the next admin read succeed: the dead connection is replaced, not reported."""
    engine = await emptied_engine(postgresql_url)
    async with running_app(make_settings(postgresql_url), engine) as client:
        assert (await post_webhook(client, w3_body(job_id="before-kill"))).status_code == 200
        assert (await client.get("/admin/events", headers=AUTH)).status_code == 200
        killed = await _terminate_backends(postgresql_url)
        assert killed >= 1
        after = await post_webhook(client, w3_body(job_id="after-kill"))
        assert after.status_code == 200, after.text
        assert after.json()["duplicate"] is False
        await _terminate_backends(postgresql_url)
        listed = await client.get("/admin/events", headers=AUTH)
        assert listed.status_code == 200, listed.text
        assert sorted(i["jobId"] for i in listed.json()["items"]) == ["after-kill", "before-kill"]
        await _terminate_backends(postgresql_url)
        assert (await client.get("/readyz")).status_code == 200
    await engine.dispose()


async def _terminate_backends(database_url: str) -> int:
    """`pg_terminate_backend` every other session on the test database; how many it ended."""
    url = make_url(database_url)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn=dsn, timeout=3)
    try:
        ended: int = await connection.fetchval(
            "SELECT count(*) FROM ("
            " SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()) AS t",
            url.database,
        )
    finally:
        await connection.close()
    return ended


async def test_sqlite_reads_do_not_wait_behind_the_writer(tmp_path: Path) -> None:
    """While another program holds SQLite's write lock, a webhook waits for it (then 503), but
    admin reads and readiness answer at once from their own connections."""
    path = tmp_path / "busy.db"
    url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(upgrade, url)
    async with running_app(make_settings(url)) as client:
        # The service's first connection puts the file in WAL mode, as `serve` does at start.
        assert (await post_webhook(client, w3_body(job_id="first"))).status_code == 200
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        try:
            webhook = asyncio.create_task(post_webhook(client, w3_body(job_id="queued")))
            listed = await client.get("/admin/events", headers=AUTH)
            ready = await client.get("/readyz")
            # The reads finished while the write was still waiting for the lock.
            assert not webhook.done()
            assert (listed.status_code, ready.status_code) == (200, 200)
        finally:
            locker.rollback()
            locker.close()
        assert (await webhook).status_code in (200, 503)

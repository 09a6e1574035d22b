"""The store goes away: deliveries get 503 with Retry-After, never 2xx; then recover."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from service.store.db import make_engine
from service.store.migrate import upgrade
from tests.helpers import AUTH, make_settings, post_webhook, running_app, w3_body
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
    engine = make_engine(url)
    async with engine.begin() as connection:
        await connection.execute(sa.text("DELETE FROM deliveries"))
        await connection.execute(sa.text("DELETE FROM events"))
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
    # aiosqlite's worker thread reports the failed open a moment later; let it reach this loop
    # before the test closes it.
    await asyncio.sleep(0.2)
    assert response.status_code == 503

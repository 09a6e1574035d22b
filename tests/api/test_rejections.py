"""Refused webhook requests are recorded (reason, size, client, header names, a body hash;
never the body or a header value), listed by `GET /admin/rejections`, and pruned by age and
count. Both databases."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.clock import FakeClock
from service.http.admin import shapes
from service.ids import new_id
from service.store.db import open_database
from service.store.rejections import NewRejection
from service.store.rejections_writer import RejectionLog
from tests.api.test_deliveries import eventually
from tests.helpers import (
    AUTH,
    make_settings,
    post_webhook,
    running_app,
    single_engine_database,
    w3_body,
    w3_headers,
)

T0 = datetime(2025, 11, 8, 12, 0, tzinfo=UTC)
FORGED = "f" * 64


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def rejections_engine(engine: AsyncEngine) -> AsyncEngine:
    """The test engine, with no rejection rows left by earlier tests."""
    async with engine.begin() as connection:
        await connection.execute(sa.text("DELETE FROM webhook_rejections"))
    return engine


@pytest.fixture
async def client(
    rejections_engine: AsyncEngine, db_url: str, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(db_url, max_body_bytes=1024)
    async with running_app(settings, rejections_engine, clock=clock) as client:
        yield client


async def listed(client: httpx.AsyncClient, count: int, query: str = "") -> list[dict[str, Any]]:
    """The rejections list once it has `count` items (they are written in the background)."""
    body = await eventually(
        client, f"/admin/rejections?{query}", lambda page: len(page["items"]) >= count
    )
    items: list[dict[str, Any]] = body["items"]
    return items


async def stored_text(engine: AsyncEngine) -> str:
    """Every stored rejection row, as one string, to search for what must not be there."""
    async with engine.connect() as connection:
        rows = (await connection.execute(sa.text("SELECT * FROM webhook_rejections"))).all()
    return repr(rows)


async def test_bad_signature_is_recorded_without_body_or_signature(
    client: httpx.AsyncClient, rejections_engine: AsyncEngine
) -> None:
    """A 401 is recorded with its reason, size and body hash; header names, not values."""
    body = w3_body(job_id="job-secret-body-marker")
    headers = {"Content-Type": "application/json", "X-Webhook-Signature": FORGED}
    assert (await post_webhook(client, body, headers)).status_code == 401
    [item] = await listed(client, 1)
    assert (item["reason"], item["status"], item["path"]) == (
        "signature_mismatch",
        401,
        "/webhooks/llmtune",
    )
    assert item["bodyBytes"] == len(body)
    assert item["bodySha256"] == hashlib.sha256(body).hexdigest()[:16]
    assert {"content-type", "x-webhook-signature"} <= set(item["headerNames"])
    assert item["clientAddress"] == "127.0.0.1"
    assert set(item) == set(shapes.Rejection.__required_keys__)
    text = await stored_text(rejections_engine) + orjson.dumps(item).decode()
    assert FORGED not in text
    assert "job-secret-body-marker" not in text


@pytest.mark.parametrize(
    ("body", "headers", "reason", "status"),
    [
        pytest.param(b"[1]", w3_headers(b"[1]"), "not_an_object", 400, id="400-body"),
        pytest.param(b"{nope", w3_headers(b"{nope"), "invalid_json", 400, id="400-json"),
        pytest.param(
            b"{}", {"Content-Type": "application/json"}, "missing_signature", 401, id="401-missing"
        ),
        pytest.param(b"x" * 2048, w3_headers(b"x" * 2048), "too_large", 413, id="413"),
    ],
)
async def test_each_refusal_is_recorded_with_its_reason(
    client: httpx.AsyncClient, body: bytes, headers: dict[str, str], reason: str, status: int
) -> None:
    """400 (bad body), 401 (no signature) and 413 (over the cap) each leave one row."""
    assert (await post_webhook(client, body, headers)).status_code == status
    [item] = await listed(client, 1)
    assert (item["reason"], item["status"]) == (reason, status)
    assert item["bodyBytes"] == len(body)


async def test_unread_body_has_no_hash(client: httpx.AsyncClient) -> None:
    """A 413 refused by Content-Length is recorded by its declared size, without a hash."""
    body = b"x" * 4096
    await post_webhook(client, body, {"Content-Type": "application/json"})
    [item] = await listed(client, 1)
    assert (item["bodyBytes"], item["bodySha256"]) == (4096, None)


async def test_callback_token_is_never_stored(
    client: httpx.AsyncClient, rejections_engine: AsyncEngine
) -> None:
    """An unknown job callback URL is recorded under its template, not its token."""
    token = "tok" + "9" * 29
    response = await client.post(f"/webhooks/llmtune/jobs/{token}", content=b"{}")
    assert response.status_code == 404
    [item] = await listed(client, 1)
    assert (item["reason"], item["path"]) == ("not_found", "/webhooks/llmtune/jobs/{token}")
    assert token not in await stored_text(rejections_engine)


async def test_accepted_deliveries_are_not_recorded(client: httpx.AsyncClient) -> None:
    """Only refusals are recorded: a good delivery leaves the list empty."""
    assert (await post_webhook(client, w3_body())).status_code == 200
    await post_webhook(client, b"[1]")  # a marker that recording has caught up
    [item] = await listed(client, 1)
    assert item["reason"] == "not_an_object"


async def test_filters_and_pages(client: httpx.AsyncClient, clock: FakeClock) -> None:
    """Newest first; reasons repeat; since/until; keyset pages bound to their filters."""
    for body in (b"[1]", b"{nope", b"[2]"):
        clock.advance(timedelta(seconds=1))
        await post_webhook(client, body)
    clock.advance(timedelta(seconds=1))
    await post_webhook(client, b"{}", {"Content-Type": "application/json"})
    items = await listed(client, 4)
    assert [i["reason"] for i in items] == [
        "missing_signature",
        "not_an_object",
        "invalid_json",
        "not_an_object",
    ]
    query = "reason=not_an_object&reason=invalid_json&limit=2"
    first = (await client.get(f"/admin/rejections?{query}", headers=AUTH)).json()
    assert [i["reason"] for i in first["items"]] == ["not_an_object", "invalid_json"]
    rest = await client.get(f"/admin/rejections?{query}&cursor={first['nextCursor']}", headers=AUTH)
    assert [i["reason"] for i in rest.json()["items"]] == ["not_an_object"]
    changed = await client.get(
        f"/admin/rejections?reason=not_an_object&cursor={first['nextCursor']}", headers=AUTH
    )
    assert changed.json()["error"]["details"] == {"parameter": "cursor"}
    since = (T0 + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    until = (T0 + timedelta(seconds=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    window = await client.get(f"/admin/rejections?since={since}&until={until}", headers=AUTH)
    assert [i["reason"] for i in window.json()["items"]] == ["not_an_object", "invalid_json"]


def rejection(at: datetime, address: str | None = "127.0.0.1") -> NewRejection:
    """A recorded refusal received `at` from `address`."""
    return NewRejection(
        id=new_id("rej"),
        received_at=at,
        reason="signature_mismatch",
        status=401,
        path="/webhooks/llmtune",
        workspace=None,
        client_address=address,
        body_bytes=2,
        body_sha256="0" * 16,
        header_names=["content-type"],
    )


async def stored_times(engine: AsyncEngine) -> list[datetime]:
    """Received times of the stored rows, newest first."""
    async with engine.connect() as connection:
        query = sa.text("SELECT received_at FROM webhook_rejections ORDER BY received_at DESC")
        values = (await connection.execute(query)).scalars().all()
    # SQLite hands back text; both compare as the same instants once parsed.
    return [v if isinstance(v, datetime) else datetime.fromisoformat(str(v)) for v in values]


class TestPruning:
    async def test_keeps_the_newest_by_count(self, rejections_engine: AsyncEngine) -> None:
        """Past `keep` rows, the oldest go when the log prunes."""
        clock = FakeClock(T0)
        log = RejectionLog(single_engine_database(rejections_engine), clock, keep=3, prune_every=1)
        async with log.running():
            for second in range(6):
                log.record(rejection(T0 + timedelta(seconds=second)))
            await log.drained()
        times = await stored_times(rejections_engine)
        assert [t.replace(tzinfo=None) for t in times] == [
            (T0 + timedelta(seconds=s)).replace(tzinfo=None) for s in (5, 4, 3)
        ]

    async def test_one_address_cannot_flush_the_others(
        self, rejections_engine: AsyncEngine
    ) -> None:
        """Each client address keeps at most its newest `keep_per_address` rows, so a flood from
        one source leaves the older rows of the others in place."""
        db = single_engine_database(rejections_engine)
        log = RejectionLog(db, FakeClock(T0), keep=10, keep_per_address=3, prune_every=1)
        async with log.running():
            for address in ("10.0.0.2", None):
                log.record(rejection(T0, address))
            await log.drained()
            for second in range(1, 21):
                log.record(rejection(T0 + timedelta(seconds=second), "10.0.0.1"))
                await log.drained()  # one prune per row, as in a long flood
        async with rejections_engine.connect() as connection:
            query = "SELECT client_address, COUNT(*) FROM webhook_rejections GROUP BY 1 ORDER BY 1"
            rows = (await connection.execute(sa.text(query))).all()
        assert sorted(rows, key=str) == sorted(
            [("10.0.0.1", 3), ("10.0.0.2", 1), (None, 1)], key=str
        )
        assert len(await stored_times(rejections_engine)) == 5

    async def test_drops_rows_older_than_max_age(self, rejections_engine: AsyncEngine) -> None:
        """Rows older than `max_age` go at the next prune."""
        clock = FakeClock(T0 + timedelta(days=8))
        log = RejectionLog(single_engine_database(rejections_engine), clock, prune_every=1)
        async with log.running():
            log.record(rejection(T0))
            log.record(rejection(clock.now()))
            await log.drained()
        assert len(await stored_times(rejections_engine)) == 1

    async def test_a_full_queue_drops_instead_of_growing(
        self, rejections_engine: AsyncEngine
    ) -> None:
        """Recording never blocks or raises: past the queue's limit (or when the log is not
        running), records are dropped and counted."""
        log = RejectionLog(single_engine_database(rejections_engine), FakeClock(T0), queue_limit=2)
        log.record(rejection(T0))  # not running yet
        async with log.running():
            for _ in range(5):  # no await between them: the writer cannot take any yet
                log.record(rejection(T0))
            await log.drained()
        assert log.dropped == 4
        assert len(await stored_times(rejections_engine)) == 2

    async def test_a_failing_store_loses_the_batch_not_the_writer(self, tmp_path: Any) -> None:
        """A write that fails is counted and logged; the log keeps running."""
        missing = open_database(f"sqlite+aiosqlite:///{tmp_path / 'no-such-table.db'}")
        log = RejectionLog(missing, FakeClock(T0))
        try:
            async with log.running():
                log.record(rejection(T0))
                await log.drained()
                log.record(rejection(T0))
                await log.drained()
        finally:
            await missing.aclose()
        assert log.dropped == 2

"""Shared test helpers: settings, a running app with its lifespan, and signed posts."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from asgi_lifespan import LifespanManager
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp

from service.app import Overrides, create_app
from service.config import Settings
from service.ids import new_id
from service.ingest import Decider
from service.routing import DEFAULT_ROUTES, Subscription
from service.store.db import Database, make_engine, make_sessionmaker
from service.store.events import NewEvent
from service.store.tables import Base
from service.webhooks.normalize import normalize, parse_body

# Every table of the schema, children before parents so no foreign key refuses a delete;
# encryption_keys too: a key registered by one test would refuse the next test's start.
TABLES = tuple(table.name for table in reversed(Base.metadata.sorted_tables))
SECRET = "whsec_dGVzdC1zZWNyZXQtZm9yLWxsbXR1bmUtcmVjZWl2ZXI="
OTHER_SECRET = "rotated-user-chosen-secret"
ADMIN_TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# For an end-to-end test whose subject is not the store (HTTP edges, the CLI over the admin API,
# logs): its servers and CLI processes run on SQLite alone. Storage is tested on both databases
# by the api/ and integration/ tests, so a second run would only pay for another process start.
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def make_settings(db_url: str, **values: Any) -> Settings:
    """Test settings: no `.env`, known secrets and admin token."""
    base: dict[str, Any] = {
        "database_url": db_url,
        "webhook_secrets": [SECRET, OTHER_SECRET],
        "admin_tokens": [ADMIN_TOKEN],
        # Tests that want deliveries run ask for the worker; the others see them pending.
        "run_worker": False,
        "_env_file": None,
    }
    return Settings(**(base | values))


def hex_signature(body: bytes, secret: str = SECRET) -> str:
    """What LLMTune would send: hex HMAC-SHA256 keyed with the whole secret string."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def w3_headers(body: bytes, secret: str = SECRET) -> dict[str, str]:
    """W3 headers for `body`."""
    return {"Content-Type": "application/json", "X-Webhook-Signature": hex_signature(body, secret)}


def w3_body(event: str = "training.completed", job_id: str = "job-1", **data: Any) -> bytes:
    """A W3-shaped body."""
    payload = {
        "event": event,
        "data": {"jobId": job_id, "modelName": "meta-llama/Llama-3.3-70B-Instruct", **data},
        "timestamp": "2025-11-08T14:22:31.000Z",
    }
    return orjson.dumps(payload)


MODEL_ID = "ionet-finetune-model-id"


def w3_deployed(job_id: str, at: str = "2025-11-08T15:00:00.000Z") -> bytes:
    """W3's `model.deployed`: a job, a model id and an endpoint, but no deploymentId."""
    data = {
        "jobId": job_id,
        "modelId": MODEL_ID,
        "endpoint": f"https://inference.example/{MODEL_ID}",
    }
    return orjson.dumps({"event": "model.deployed", "data": data, "timestamp": at})


@asynccontextmanager
async def started_app(
    settings: Settings, engine: AsyncEngine | None = None, **overrides: Any
) -> AsyncIterator[ASGIApp]:
    """An app with its lifespan running, for tests that speak ASGI to it directly."""
    app = create_app(settings, overrides=Overrides(engine=engine, **overrides))
    async with LifespanManager(app) as manager:
        yield manager.app


@asynccontextmanager
async def running_app(
    settings: Settings, engine: AsyncEngine | None = None, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """An app with its lifespan running, and a client talking to it in process."""
    async with started_app(settings, engine, **overrides) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
            yield client


async def post_webhook(
    client: httpx.AsyncClient, body: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST `body` to the webhook endpoint, W3-signed unless `headers` are given."""
    return await client.post(
        "/webhooks/llmtune", content=body, headers=w3_headers(body) if headers is None else headers
    )


def single_engine_database(engine: AsyncEngine) -> Database:
    """A `Database` whose reads and writes share `engine` (the test owns and disposes it)."""
    sessions = make_sessionmaker(engine)
    return Database(engine=engine, read_engine=engine, sessions=sessions, read_sessions=sessions)


def join_sqlite_threads(timeout: float = 5.0) -> None:
    """Wait until every aiosqlite worker thread has exited.

    A connection that failed to open stops its thread after the caller has its error; the
    thread then reports to the event loop, which must still be running. Call this once every
    engine of the test is disposed. (Threads are named after their target since Python 3.10.)
    """
    for thread in threading.enumerate():
        if thread.name.endswith("(_connection_worker_thread)"):
            thread.join(timeout)
            assert not thread.is_alive(), f"{thread.name} still running after {timeout} s"


async def empty_tables(engine: AsyncEngine) -> None:
    """Delete every row of our tables, in one transaction."""
    async with engine.begin() as connection:
        for table in TABLES:
            await connection.execute(sa.text(f"DELETE FROM {table}"))  # noqa: S608 - fixed names


async def emptied_engine(url: str) -> AsyncEngine:
    """An engine on `url` after deleting every row of our tables (the caller disposes it)."""
    engine = make_engine(url)
    await empty_tables(engine)
    return engine


T0 = datetime(2025, 11, 8, 14, 0, tzinfo=UTC)


def new_event(
    payload: dict[str, Any],
    *,
    at: datetime = T0,
    raw: bytes | None = None,
    routes: Sequence[Subscription] = DEFAULT_ROUTES,
) -> NewEvent:
    """A verified webhook delivery of `payload` (or of `raw`, byte for byte), ready to write,
    with what ingest would decide for it under `routes`."""
    body = raw if raw is not None else orjson.dumps(payload)
    event = normalize(parse_body(body), body)
    return NewEvent(
        id=new_id("evt"),
        source="webhook",
        workspace="default",
        event=event,
        raw_body=body,
        headers=[["content-type", "application/json"]],
        verified=True,
        received_at=at,
        decision=Decider(routes).decide(event, received_at=at, workspace="default"),
    )


def lifecycle(event: str, job: str = "job-1", **data: Any) -> dict[str, Any]:
    """A lifecycle event's payload for `job`."""
    return {"event": event, "data": {"jobId": job, **data}}


def event_row(
    event_id: str, *, received_at: datetime, job_id: str | None = "job-1"
) -> dict[str, Any]:
    """Column values of a stored `training.completed` event, for tests that seed the events
    table directly (purge, the admin stream, inference runs)."""
    return {
        "id": event_id,
        "source": "webhook",
        "dedup_key": f"id:{event_id}",
        "external_id": event_id,
        "type": "training.completed",
        "job_id": job_id,
        "received_at": received_at,
        "raw_body": b"{}",
        "headers": [],
        "verified": True,
        "is_test": False,
    }

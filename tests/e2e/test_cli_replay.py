"""`llmtune-receiver replay` and `retry-dead` as real processes against both databases.

Events are stored by the real ingest in process (a `FakeClock` sets their `received_at`); the
commands run as `python -m service ...`; the deliveries table is then read with SQLAlchemy. No
worker runs anywhere, so whatever the commands queue stays `pending` for the test to see.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from service.clock import FakeClock
from service.store import events
from service.store.db import make_sessionmaker
from service.store.deliveries import NOTIFY_CHANNEL
from service.store.tables import DELIVERIES
from tests.e2e.server import receiver_env, run_cli
from tests.helpers import make_settings, post_webhook, running_app, w3_body

pytestmark = pytest.mark.e2e

ROUTES = """
[[routes]]
name = "log"
handler = "log"
events = ["*"]

[[routes]]
name = "training"
handler = "log"
events = ["training.*"]

[[routes]]
name = "off"
handler = "log"
events = ["*"]
enabled = false
"""
T0 = datetime(2025, 6, 1, tzinfo=UTC)
Key = tuple[str, str]  # (event id, route)


@pytest.fixture
def routes_file(tmp_path: Path) -> Path:
    """Routes `log` (every event), `training` (training.*) and `off` (disabled)."""
    path = tmp_path / "routes.toml"
    path.write_text(ROUTES, encoding="utf-8")
    return path


async def store(
    engine: AsyncEngine, db_url: str, routes_file: Path, posts: list[tuple[timedelta, bytes]]
) -> list[str]:
    """Post each body through the real ingest at T0 + its offset; the stored events' ids."""
    clock = FakeClock(T0)
    settings = make_settings(db_url, routes_file=routes_file)
    ids = []
    async with running_app(settings, engine, clock=clock) as client:
        for offset, body in posts:
            clock.advance(T0 + offset - clock.now())
            response = await post_webhook(client, body)
            assert response.status_code == 200, response.text
            ids.append(response.json()["eventId"])
    return ids


async def statuses(engine: AsyncEngine) -> dict[Key, str]:
    """Every delivery's status by (event id, route)."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            sa.select(DELIVERIES.c.event_id, DELIVERIES.c.route, DELIVERIES.c.status)
        )
        return {(event_id, route): status for event_id, route, status in rows}


async def delivery_ids(engine: AsyncEngine) -> dict[Key, str]:
    """Every delivery's id by (event id, route)."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            sa.select(DELIVERIES.c.event_id, DELIVERIES.c.route, DELIVERIES.c.id)
        )
        return {(event_id, route): delivery_id for event_id, route, delivery_id in rows}


async def set_status(engine: AsyncEngine, status: str, keys: list[Key] | None = None) -> None:
    """Finish deliveries by hand (`keys`, or all): no worker runs in these tests to do it."""
    stmt = sa.update(DELIVERIES).values(status=status)
    if keys is not None:
        stmt = stmt.where(sa.tuple_(DELIVERIES.c.event_id, DELIVERIES.c.route).in_(keys))
    async with engine.begin() as connection:
        await connection.execute(stmt)


async def cli(db_url: str, routes_file: Path, tmp_path: Path, *args: str) -> CompletedProcess[str]:
    """Run the CLI on `db_url` with the test routes (off the event loop, which may be listening)."""
    env = receiver_env(db_url) | {"ROUTES_FILE": str(routes_file)}
    return await asyncio.to_thread(run_cli, list(args), cwd=tmp_path, env=env)


@asynccontextmanager
async def notifications(engine: AsyncEngine, db_url: str) -> AsyncIterator[list[str]]:
    """On PostgreSQL, what arrives on the workers' channel while inside; elsewhere nothing."""
    received: list[str] = []
    if engine.dialect.name != "postgresql":
        yield received
        return
    dsn = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn=dsn, timeout=3)

    def heard(*args: Any) -> None:
        received.append(args[2])

    try:
        await connection.add_listener(NOTIFY_CHANNEL, heard)
        yield received
        # A notification is sent at commit; give it time to arrive, even on a busy machine.
        for _ in range(60):
            if received:
                break
            await asyncio.sleep(0.05)
    finally:
        await connection.close()


def iso(at: datetime) -> str:
    """RFC 3339 with a Z, as an operator would type it."""
    return at.isoformat().replace("+00:00", "Z")


async def test_replay_one_event_requeues_it(
    engine: AsyncEngine, db_url: str, routes_file: Path, tmp_path: Path
) -> None:
    """`replay --event` makes the event's succeeded and dead deliveries pending again, under
    the same ids; `--dry-run` first only counts; PostgreSQL workers are woken."""
    [event, _other] = await store(
        engine,
        db_url,
        routes_file,
        [(timedelta(0), w3_body(job_id="job-a")), (timedelta(0), w3_body(job_id="job-b"))],
    )
    await set_status(engine, "succeeded")
    await set_status(engine, "dead", [(event, "training")])
    before, ids = await statuses(engine), await delivery_ids(engine)

    dry = await cli(db_url, routes_file, tmp_path, "replay", "--event", event, "--dry-run")
    assert (dry.returncode, dry.stdout) == (0, "would replay 1 events, queue 2 deliveries\n")
    assert await statuses(engine) == before

    async with notifications(engine, db_url) as heard:
        done = await cli(db_url, routes_file, tmp_path, "replay", "--event", event)
    assert (done.returncode, done.stdout) == (0, "replayed 1 events, queued 2 deliveries\n")
    assert await statuses(engine) == before | {
        (event, "log"): "pending",
        (event, "training"): "pending",
    }
    assert await delivery_ids(engine) == ids
    if engine.dialect.name == "postgresql":
        assert heard, "no NOTIFY reached a listening worker"


async def test_replay_since_until_and_route(
    engine: AsyncEngine, db_url: str, routes_file: Path, tmp_path: Path
) -> None:
    """`--since/--until` replays only events received in [since, until) to the routes each one
    matches; `--route` queues to that route alone, as the admin replay does."""
    hour = timedelta(hours=1)
    ids = await store(
        engine,
        db_url,
        routes_file,
        [
            (0 * hour, w3_body("training.completed", job_id="job-a")),
            (1 * hour, w3_body("training.completed", job_id="job-b")),
            (1.5 * hour, w3_body("model.deployed", job_id="job-b", deploymentId="dep-1")),
            (2 * hour, w3_body("training.failed", job_id="job-c")),
        ],
    )
    first, second, deployed, last = ids
    await set_status(engine, "succeeded")

    window = ("--since", iso(T0 + hour / 2), "--until", iso(T0 + 2 * hour))
    done = await cli(db_url, routes_file, tmp_path, "replay", *window)
    assert (done.returncode, done.stdout) == (0, "replayed 2 events, queued 3 deliveries\n")
    pending = {key for key, status in (await statuses(engine)).items() if status == "pending"}
    assert pending == {(second, "log"), (second, "training"), (deployed, "log")}
    # Off a terminal the progress is one summary line on stderr, never redrawn.
    assert done.stderr.count("replay: 2 events, 3 deliveries in ") == 1
    assert "\r" not in done.stderr

    await set_status(engine, "succeeded")
    routed = await cli(
        db_url, routes_file, tmp_path, "replay", "--since", iso(T0), "--route", "training"
    )
    assert (routed.returncode, routed.stdout) == (0, "replayed 4 events, queued 4 deliveries\n")
    after = await statuses(engine)
    assert {key for key, status in after.items() if status == "pending"} == {
        (event_id, "training") for event_id in ids
    }
    # Like POST /admin/events/{id}/replay with a route: queued there even though
    # model.deployed is not one of its patterns (a new delivery).
    assert after[(deployed, "training")] == "pending"
    assert after[(first, "log")] == after[(last, "log")] == "succeeded"


async def test_events_received_pages_by_keyset(
    engine: AsyncEngine, db_url: str, routes_file: Path
) -> None:
    """The batch query walks [since, until) oldest first by (received_at, id) without skipping
    or repeating events that share a received_at, whatever the batch size."""
    minute = timedelta(minutes=1)
    posts = [(minute * (i // 2), w3_body(job_id=f"job-{i}")) for i in range(7)]
    ids = await store(engine, db_url, routes_file, posts)
    expected = [
        (T0 + minute * (i // 2), event_id) for i, event_id in enumerate(ids) if 1 <= i // 2 < 3
    ]
    expected.sort()
    sessions = make_sessionmaker(engine)
    for limit in (1, 3, 10):
        walked: list[tuple[datetime, str]] = []
        async with sessions() as session:
            while batch := await events.events_received(
                session,
                since=T0 + minute,
                until=T0 + 3 * minute,
                after=walked[-1] if walked else None,
                limit=limit,
            ):
                walked += [(ref.received_at, ref.id) for ref in batch]
        assert walked == expected, limit


async def test_retry_dead(
    engine: AsyncEngine, db_url: str, routes_file: Path, tmp_path: Path
) -> None:
    """`retry-dead` makes the dead deliveries its filters match pending and says how many;
    `--dry-run` only counts; other statuses are left alone; PostgreSQL workers are woken."""
    [a, b] = await store(
        engine,
        db_url,
        routes_file,
        [(timedelta(0), w3_body(job_id="job-a")), (timedelta(0), w3_body(job_id="job-b"))],
    )
    await set_status(engine, "dead")
    await set_status(engine, "succeeded", [(b, "log")])
    before = await statuses(engine)

    dry = await cli(db_url, routes_file, tmp_path, "retry-dead", "--job-id", "job-a", "--dry-run")
    assert (dry.returncode, dry.stdout) == (0, "would retry 2 dead deliveries\n")
    assert await statuses(engine) == before

    async with notifications(engine, db_url) as heard:
        done = await cli(db_url, routes_file, tmp_path, "retry-dead", "--route", "training")
    assert (done.returncode, done.stdout) == (0, "retried 2 dead deliveries\n")
    assert await statuses(engine) == {
        (a, "log"): "dead",
        (a, "training"): "pending",
        (b, "log"): "succeeded",
        (b, "training"): "pending",
    }
    if engine.dialect.name == "postgresql":
        assert heard, "no NOTIFY reached a listening worker"


async def test_unknown_event_exits_1(
    engine: AsyncEngine, db_url: str, routes_file: Path, tmp_path: Path
) -> None:
    """`replay --event` of an id not stored exits 1 with one line naming it."""
    result = await cli(db_url, routes_file, tmp_path, "replay", "--event", "evt_missing")
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == ["llmtune-receiver: no event 'evt_missing'"]
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "option"),
    [
        # (A configured but disabled route, `off`, takes the same path and message.)
        pytest.param(["--event", "evt_x", "--route", "nope"], "--route", id="unknown-route"),
        pytest.param(["--since", "yesterday"], "--since", id="bad-since"),
        pytest.param(
            ["--since", "2025-06-01T00:00:00Z", "--until", "soon"], "--until", id="bad-until"
        ),
    ],
)
def test_bad_options_exit_2(
    routes_file: Path, tmp_path: Path, args: list[str], option: str
) -> None:
    """A route that is not an enabled one, or a bad time, exits 2 with one line naming the
    option, before the database is opened."""
    db_path = tmp_path / "never-opened.db"
    env = receiver_env(f"sqlite+aiosqlite:///{db_path}") | {"ROUTES_FILE": str(routes_file)}
    result = run_cli(["replay", *args], cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"llmtune-receiver: {option}: "), line
    assert not db_path.exists()

"""`llmtune-receiver purge` as a real process against both databases.

Events are stored by the real ingest in process, a `FakeClock` setting how long ago they were
received; the command runs as `python -m service purge ...` with the service's own engine (so
SQLite's foreign keys, and the cascades with them, are as in production); the tables are then
read with SQLAlchemy. No worker runs: deliveries stay `pending` until the test finishes them.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import CompletedProcess

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.clock import FakeClock, SystemClock
from service.store.tables import ATTEMPTS, DEDUP_TOMBSTONES, DELIVERIES, EVENTS, JOBS
from tests.e2e.server import free_port, receiver_env, run_cli, running_server
from tests.helpers import make_settings, post_webhook, running_app, w3_body, w3_headers

pytestmark = pytest.mark.e2e

ROUTES = """
[[routes]]
name = "log"
handler = "log"
events = ["*"]

[[routes]]
name = "audit"
handler = "log"
events = ["*"]
"""
DAY = timedelta(days=1)
SUMMARY = re.compile(
    r"purge: (?P<did>deleted|would delete) (?P<events>\d+) events \((?P<deliveries>\d+) "
    r"deliveries\) older than (?P<cutoff>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) in \d+\.\d s; "
    r"(?P<kept_word>kept|would keep) (?P<kept>\d+) with unfinished deliveries; "
    r"(?P=did) (?P<tombstones>\d+) dedup keys of events older than "
    r"(?P<dedup_cutoff>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\n"
)


@pytest.fixture
def routes_file(tmp_path: Path) -> Path:
    """Routes `log` and `audit`, both for every event: two deliveries per event."""
    path = tmp_path / "routes.toml"
    path.write_text(ROUTES, encoding="utf-8")
    return path


async def store(
    engine: AsyncEngine, db_url: str, routes_file: Path, ages: list[timedelta]
) -> list[str]:
    """One event per age, received that long before now through the real ingest; their ids."""
    now = SystemClock().now()
    clock = FakeClock(now)
    settings = make_settings(db_url, routes_file=routes_file)
    ids = []
    async with running_app(settings, engine, clock=clock) as client:
        for n, age in enumerate(ages):
            clock.advance(now - age - clock.now())
            response = await post_webhook(client, w3_body(job_id=f"job-{n}"))
            assert response.status_code == 200, response.text
            ids.append(response.json()["eventId"])
    return ids


async def finish(engine: AsyncEngine, status: str, event_ids: list[str]) -> None:
    """Give these events' deliveries `status` and one attempt each, as a worker would have."""
    async with engine.begin() as connection:
        rows = await connection.execute(
            sa.update(DELIVERIES)
            .where(DELIVERIES.c.event_id.in_(event_ids))
            .values(status=status)
            .returning(DELIVERIES.c.id)
        )
        for (delivery_id,) in rows.all():
            await connection.execute(
                sa.insert(ATTEMPTS).values(
                    delivery_id=delivery_id,
                    number=1,
                    started_at=SystemClock().now(),
                    duration_ms=3.0,
                    outcome="ok" if status == "succeeded" else "failed",
                )
            )


async def snapshot(engine: AsyncEngine) -> tuple[set[str], int, int]:
    """The stored event ids, and how many deliveries and attempts there are in all."""
    async with engine.connect() as connection:
        events = set((await connection.scalars(sa.select(EVENTS.c.id))).all())
        count = sa.select(sa.func.count())
        deliveries = await connection.scalar(count.select_from(DELIVERIES))
        attempts = await connection.scalar(count.select_from(ATTEMPTS))
    return events, deliveries or 0, attempts or 0


async def cli(
    db_url: str, tmp_path: Path, *args: str, dedup_days: int | None = None
) -> CompletedProcess[str]:
    """Run `purge ARGS` on `db_url` (off the event loop), with DEDUP_RETENTION_DAYS if given."""
    env = receiver_env(db_url)
    if dedup_days is not None:
        env["DEDUP_RETENTION_DAYS"] = str(dedup_days)
    return await asyncio.to_thread(run_cli, ["purge", *args], cwd=tmp_path, env=env)


def summary(result: CompletedProcess[str]) -> dict[str, str]:
    """The final line's parts; it must be the whole of stdout."""
    assert result.returncode == 0, result.stderr
    match = SUMMARY.fullmatch(result.stdout)
    assert match is not None, result.stdout
    return match.groupdict()


async def test_purge_and_dry_run(
    engine: AsyncEngine, db_url: str, routes_file: Path, tmp_path: Path
) -> None:
    """Events over 90 days old go with their deliveries and attempts, in batches of one;
    an old event with a pending delivery, a recent event and the job rows stay; `--dry-run`
    first reports the same counts and deletes nothing."""
    succeeded, dead, waiting, recent = await store(
        engine, db_url, routes_file, [120 * DAY, 100 * DAY, 95 * DAY, DAY]
    )
    await finish(engine, "succeeded", [succeeded, recent])
    await finish(engine, "dead", [dead])
    async with engine.begin() as connection:  # one of two: the other is still to make
        await connection.execute(
            sa.update(DELIVERIES)
            .where(DELIVERIES.c.event_id == waiting, DELIVERIES.c.route == "log")
            .values(status="succeeded")
        )
        jobs = await connection.scalar(sa.select(sa.func.count()).select_from(JOBS))
    before = await snapshot(engine)
    assert before == ({succeeded, dead, waiting, recent}, 8, 6)

    started = SystemClock().now()
    dry = summary(await cli(db_url, tmp_path, "--older-than", "90d", "--dry-run"))
    assert dry | {"cutoff": "", "dedup_cutoff": ""} == {
        "did": "would delete",
        "events": "2",
        "deliveries": "4",
        "cutoff": "",
        "kept_word": "would keep",
        "kept": "1",
        "tombstones": "0",
        "dedup_cutoff": "",
    }
    cutoff = datetime.strptime(dry["cutoff"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert started - 90 * DAY - timedelta(seconds=1) <= cutoff <= SystemClock().now() - 90 * DAY
    assert await snapshot(engine) == before

    done = await cli(db_url, tmp_path, "--older-than", "90d", "--batch-size", "1")
    assert summary(done) | {"cutoff": "", "dedup_cutoff": ""} == dry | {
        "did": "deleted",
        "kept_word": "kept",
        "cutoff": "",
        "tombstones": "0",
        "dedup_cutoff": "",
    }
    # Off a terminal the progress is one summary line on stderr, never redrawn.
    assert done.stderr.count("purge: 2 events, 4 deliveries, 1 kept in ") == 1
    assert "\r" not in done.stderr
    # The attempts went with their deliveries (the cascade runs in the command's own engine).
    assert await snapshot(engine) == ({waiting, recent}, 4, 2)
    async with engine.connect() as connection:
        assert await connection.scalar(sa.select(sa.func.count()).select_from(JOBS)) == jobs

    again = summary(await cli(db_url, tmp_path, "--older-than", "90d"))
    assert (again["events"], again["deliveries"], again["kept"]) == ("0", "0", "1")


async def test_hours_and_minutes(
    engine: AsyncEngine, db_url: str, routes_file: Path, tmp_path: Path
) -> None:
    """`--older-than` in hours and minutes draws the line that many hours or minutes ago."""
    two_hours, ten_minutes = await store(
        engine, db_url, routes_file, [timedelta(hours=2), timedelta(minutes=10)]
    )
    await finish(engine, "succeeded", [two_hours, ten_minutes])

    hours = summary(await cli(db_url, tmp_path, "--older-than", "1h"))
    assert (hours["events"], hours["deliveries"]) == ("1", "2")
    minutes = summary(await cli(db_url, tmp_path, "--older-than", "5m"))
    assert (minutes["events"], minutes["deliveries"]) == ("1", "2")
    assert (await snapshot(engine))[0] == set()


async def tombstoned(engine: AsyncEngine) -> set[str]:
    """The event ids the stored dedup tombstones stand for."""
    async with engine.connect() as connection:
        return set((await connection.scalars(sa.select(DEDUP_TOMBSTONES.c.event_id))).all())


async def test_replay_after_purge_is_a_duplicate(
    engine: AsyncEngine, db_url: str, routes_file: Path, tmp_path: Path
) -> None:
    """After the real `purge`, a real server answers a replay of a purged event's signed body
    `duplicate: true` with the original id and stores or fans out nothing; an event received
    before DEDUP_RETENTION_DAYS left no tombstone, so its body is new again. A later purge with
    a shorter retention deletes the remaining tombstone and counts it in its summary."""
    within, beyond = await store(engine, db_url, routes_file, [95 * DAY, 120 * DAY])
    bodies = [w3_body(job_id=f"job-{n}") for n in range(2)]  # as `store` sent them
    await finish(engine, "succeeded", [within, beyond])

    first = summary(await cli(db_url, tmp_path, "--older-than", "90d", dedup_days=100))
    assert (first["events"], first["deliveries"], first["tombstones"]) == ("2", "4", "0")
    cutoff = datetime.strptime(first["dedup_cutoff"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert cutoff <= SystemClock().now() - 100 * DAY
    assert await snapshot(engine) == (set(), 0, 0)
    assert await tombstoned(engine) == {within}

    env = receiver_env(db_url) | {"ROUTES_FILE": str(routes_file), "RUN_WORKER": "false"}
    with running_server(tmp_path, env, "--no-init-env") as server:
        async with httpx.AsyncClient(trust_env=False, timeout=10.0) as client:
            replays = [
                await client.post(server.webhook_url, content=body, headers=w3_headers(body))
                for body in bodies
            ]
    assert [r.status_code for r in replays] == [200, 200], [r.text for r in replays]
    replayed, renewed = (r.json() for r in replays)
    assert (replayed["duplicate"], replayed["eventId"]) == (True, within)
    assert renewed["duplicate"] is False
    # Only the body whose key was forgotten is stored again, with its two deliveries.
    assert await snapshot(engine) == ({renewed["eventId"]}, 2, 0)

    later = summary(await cli(db_url, tmp_path, "--older-than", "90d", dedup_days=1))
    assert (later["events"], later["tombstones"]) == ("0", "1")
    assert await tombstoned(engine) == set()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        pytest.param(["--older-than", "0d"], "--older-than: must be more than zero: '0d'", id="0"),
        pytest.param(
            ["--older-than=-5d"],
            "--older-than: not a whole number of days, hours or minutes such as 90d, 12h or "
            "30m: '-5d'",
            id="negative",
        ),
        pytest.param(
            ["--older-than", "ninety days"],
            "--older-than: not a whole number of days, hours or minutes such as 90d, 12h or "
            "30m: 'ninety days'",
            id="garbage",
        ),
        pytest.param(
            ["--older-than", "90d", "--batch-size", "0"],
            "--batch-size: must be from 1 to 10000: 0",
            id="batch-0",
        ),
        pytest.param(
            ["--older-than", "90d", "--batch-size", "10001"],
            "--batch-size: must be from 1 to 10000: 10001",
            id="batch-too-big",
        ),
    ],
)
def test_bad_arguments_exit_2(tmp_path: Path, args: list[str], line: str) -> None:
    """A bad age or batch size exits 2 with one line naming the option, before the database
    is opened."""
    db_path = tmp_path / "never-opened.db"
    result = run_cli(
        ["purge", *args], cwd=tmp_path, env=receiver_env(f"sqlite+aiosqlite:///{db_path}")
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [f"llmtune-receiver: {line}"]
    assert not db_path.exists()


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="no-age"),
        pytest.param(["--older-than", "90d", "--batch-size", "many"], id="batch-not-a-number"),
    ],
)
def test_argparse_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    """A missing --older-than or a batch size that is no number is argparse's usage error."""
    result = run_cli(["purge", *args], cwd=tmp_path, env=receiver_env("sqlite+aiosqlite://"))
    assert result.returncode == 2
    assert "llmtune-receiver purge: error: " in result.stderr


def test_store_unavailable_exits_1(tmp_path: Path) -> None:
    """A database that cannot be reached exits 1 with one line saying so."""
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    result = run_cli(["purge", "--older-than", "90d"], cwd=tmp_path, env=receiver_env(url))
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    [line] = [text for text in result.stderr.splitlines() if not text.startswith("{")]
    assert line.startswith("llmtune-receiver: store unavailable: "), line

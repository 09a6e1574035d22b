"""Reading a polled job status into the lifecycle event it stands for. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from service.jobs.poll import Polled, event_for_poll, next_poll_delay, poll_body
from service.webhooks.normalize import normalize, parse_body

CASES = [
    pytest.param("training", "pending", "training.started", id="training-moves-pending"),
    pytest.param("RUNNING", "submitted", "training.started", id="any-case"),
    pytest.param("completed", "running", "training.completed", id="completed"),
    pytest.param("succeeded", "pending", "training.completed", id="synonym"),
    pytest.param("failed", "running", "training.failed", id="failed"),
    pytest.param("cancelled", "running", "training.failed", id="cancelled-is-failure"),
    pytest.param("deployed", "completed", "model.deployed", id="deployed"),
    pytest.param("pending", "submitted", None, id="pending-is-not-news"),
    pytest.param("training", "running", None, id="same-status"),
    pytest.param("training", "completed", None, id="never-backwards"),
    pytest.param("failed", "completed", None, id="terminal-is-final"),
    pytest.param("warming_up", "pending", None, id="unknown-word"),
    pytest.param(None, "pending", None, id="no-status"),
]


@pytest.mark.parametrize(("status", "current", "expected"), CASES)
def test_event_for_poll(status: str | None, current: str, expected: str | None) -> None:
    """A status becomes an event only when it moves the job forward."""
    assert event_for_poll(Polled("ft-1", status), current) == expected


def test_poll_body_dedups_like_the_webhook() -> None:
    """The poll's body normalizes to the same dedup key as the lost webhook would have."""
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    polled = Polled("ft-1", "completed", artifact="ft:base:ft-1", metrics={"loss": 0.4})
    raw = poll_body(polled, "training.completed", now)
    event = normalize(parse_body(raw), raw)
    webhook = orjson.dumps({"event": "training.completed", "data": {"jobId": "ft-1"}})
    assert event.dedup_key == normalize(parse_body(webhook), webhook).dedup_key
    assert (event.type, event.job_id, event.artifact, event.metrics) == (
        "training.completed",
        "ft-1",
        "ft:base:ft-1",
        {"loss": 0.4},
    )


@pytest.mark.parametrize(("quiet", "minutes"), [(0, 10), (1, 20), (2, 40), (5, 240), (40, 240)])
def test_next_poll_delay_backs_off_to_a_cap(quiet: int, minutes: int) -> None:
    """Each quiet poll doubles the wait, up to the cap."""
    delay = next_poll_delay(timedelta(minutes=10), quiet, cap=timedelta(hours=4))
    assert delay == timedelta(minutes=minutes)

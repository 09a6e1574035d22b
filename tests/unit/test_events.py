"""The domain event's pure helpers: dedup keys, key parts, times and metric labels."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from service.events import dedup_key, key_part, metric_label, parse_time

BODY_KEY = "body:" + hashlib.sha256(b"{}").hexdigest()


class TestDedupKey:
    def test_kinds_never_collide(self) -> None:
        """An id that looks like a semantic key stays in the id namespace."""
        key = dedup_key(
            event_type="x", external_id="sem:training.started:j", job_id=None, subject=None, raw=b""
        )
        assert key == "id:sem:training.started:j"

    @pytest.mark.parametrize(
        ("event_type", "job_id", "subject", "expected"),
        [
            pytest.param("training.started", "j", None, "sem:training.started:j", id="training"),
            pytest.param("model.deployed", "j", "d", "sem:model.deployed:j:d", id="deploy-of-job"),
            pytest.param("model.deployed", None, "d", "sem:model.deployed:d", id="deploy-no-job"),
            pytest.param(
                "deployment.deleted", "j", "d", "sem:deployment.deleted:j:d", id="deleted-of-job"
            ),
            pytest.param("model.deployed", "j", None, BODY_KEY, id="deploy-needs-subject"),
            pytest.param("deployment.paused", None, "d", BODY_KEY, id="not-one-shot"),
            pytest.param("training.failed", None, "m", BODY_KEY, id="training-needs-job"),
        ],
    )
    def test_semantic_keys(
        self, event_type: str, job_id: str | None, subject: str | None, expected: str
    ) -> None:
        """One-shot events key on their job (training), or on their job, when named, and
        subject (the others)."""
        key = dedup_key(
            event_type=event_type, external_id=None, job_id=job_id, subject=subject, raw=b"{}"
        )
        assert key == expected


class TestParseTime:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("2025-11-08T14:22:31.000Z", datetime(2025, 11, 8, 14, 22, 31, tzinfo=UTC)),
            ("2025-11-08T14:22:31Z", datetime(2025, 11, 8, 14, 22, 31, tzinfo=UTC)),
            ("2025-11-08T16:22:31+02:00", datetime(2025, 11, 8, 14, 22, 31, tzinfo=UTC)),
            ("2025-11-08T14:22:31", datetime(2025, 11, 8, 14, 22, 31, tzinfo=UTC)),
            ("2025-11-08T14:22:31.123456Z", datetime(2025, 11, 8, 14, 22, 31, 123456, tzinfo=UTC)),
        ],
    )
    def test_iso_forms(self, value: str, expected: datetime) -> None:
        """ISO-8601 with or without fraction and offset; naive means UTC."""
        assert parse_time(value) == expected

    @pytest.mark.parametrize("value", ["yesterday", "", 1731075751, None, "2025-13-40T00:00:00Z"])
    def test_unparsable_is_absent(self, value: object) -> None:
        """A bad time is not an error: the field is just absent."""
        assert parse_time(value) is None


def test_key_part_keeps_short_values() -> None:
    """Short values are stored as they are."""
    assert key_part("job-1") == "job-1"


@pytest.mark.parametrize(
    ("event_type", "label"),
    [
        ("training.started", "training.started"),
        ("delivery.dead", "delivery.dead"),
        ("unknown", "unknown"),
        ("evil\nlabel", "other"),
    ],
)
def test_metric_label_is_bounded(event_type: str, label: str) -> None:
    """Metric labels are known names or `other`, never body text."""
    assert metric_label(event_type) == label

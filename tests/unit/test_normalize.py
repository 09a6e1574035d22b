"""Normalization of every documented delivery shape, dedup keys, and strict parsing."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.webhooks.normalize import MAX_DEPTH, BodyError, nesting_exceeds, normalize, parse_body

W3 = {
    "event": "training.completed",
    "data": {"jobId": "job-uuid", "modelName": "meta-llama/Llama-3.3-70B-Instruct"},
    "timestamp": "2025-11-08T14:22:31.000Z",
}
W2_GENERIC = {
    "event": "training.completed",
    "data": {
        "jobId": "job-uuid",
        "baseModel": "meta-llama/Llama-3.3-70B-Instruct",
        "artifact": "ionet-finetune-model-id",
        "metrics": {"loss": 1.12, "tokens": 3250000, "duration_seconds": 1450},
    },
    "deliveredAt": "2025-11-08T14:22:31Z",
}
W2_TRAINING = {
    "event": "training.completed",
    "data": {
        "jobId": "job-uuid",
        "baseModel": "meta-llama/Llama-3.3-70B-Instruct",
        "trainingMethod": "sft",
        "status": "completed",
        "metrics": {"loss": 1.12, "evalLoss": 1.02, "tokensPerSecond": 178, "totalTokens": 3250000},
        "createdAt": "2025-11-01T15:23:54Z",
        "completedAt": "2025-11-01T16:45:12Z",
    },
}
W2_DEPLOYMENT = {
    "event": "model.deployed",
    "data": {
        "deploymentId": "deploy-uuid",
        "modelId": "meta-llama/Llama-3.3-70B-Instruct",
        "version": "v1",
    },
}
W1 = {
    "id": "evt_12345",
    "type": "training.completed",
    "workspace_id": "ws_6789",
    "data": {
        "job_id": "ft_job_abc",
        "model_id": "meta/llama-3.1-8b",
        "metrics": {"loss": 1.12, "tokens": 3250000, "duration_seconds": 1450},
    },
    "created_at": "2025-11-09T10:15:00Z",
    "signature": "sha256=...",
}
LLAMA = "meta-llama/Llama-3.3-70B-Instruct"


def _event(payload: dict[str, Any]) -> Any:
    raw = orjson.dumps(payload)
    return normalize(parse_body(raw), raw)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(
            W3,
            {
                "type": "training.completed",
                "job_id": "job-uuid",
                "model": LLAMA,
                "external_id": None,
                "occurred_at": datetime(2025, 11, 8, 14, 22, 31, tzinfo=UTC),
                "dedup_key": "sem:training.completed:job-uuid",
            },
            id="w3",
        ),
        pytest.param(
            W2_GENERIC,
            {
                "type": "training.completed",
                "job_id": "job-uuid",
                "model": LLAMA,
                "artifact": "ionet-finetune-model-id",
                "metrics": {"loss": 1.12, "tokens": 3250000, "duration_seconds": 1450},
                "occurred_at": datetime(2025, 11, 8, 14, 22, 31, tzinfo=UTC),
                "dedup_key": "sem:training.completed:job-uuid",
            },
            id="w2-generic",
        ),
        pytest.param(
            W2_TRAINING,
            {
                "type": "training.completed",
                "job_id": "job-uuid",
                "occurred_at": None,
                "metrics": {
                    "loss": 1.12,
                    "evalLoss": 1.02,
                    "tokensPerSecond": 178,
                    "totalTokens": 3250000,
                },
                "dedup_key": "sem:training.completed:job-uuid",
            },
            id="w2-training-no-timestamp",
        ),
        pytest.param(
            W2_DEPLOYMENT,
            {
                "type": "model.deployed",
                "job_id": None,
                "deployment_id": "deploy-uuid",
                "model": LLAMA,
                "dedup_key": "sem:model.deployed:deploy-uuid",
            },
            id="w2-deployment",
        ),
        pytest.param(
            W1,
            {
                "type": "training.completed",
                "external_id": "evt_12345",
                "job_id": "ft_job_abc",
                "model": "meta/llama-3.1-8b",
                "occurred_at": datetime(2025, 11, 9, 10, 15, tzinfo=UTC),
                "dedup_key": "id:evt_12345",
            },
            id="w1",
        ),
    ],
)
def test_documented_examples(payload: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every example in the contract file normalizes to the same fields."""
    event = _event(payload)
    for field, value in expected.items():
        assert getattr(event, field) == value, field


class TestDedupKey:
    def test_retries_with_new_delivered_at_share_a_key(self) -> None:
        """A W2 retry re-stamped with a new deliveredAt is still the same event."""
        first = _event(W2_GENERIC)
        retry = _event({**W2_GENERIC, "deliveredAt": "2025-11-08T14:30:00Z"})
        assert first.dedup_key == retry.dedup_key

    def test_unknown_event_uses_body_hash(self) -> None:
        """Events outside the one-shot list are keyed by their exact bytes."""
        raw = b'{"event":"usage.threshold_reached","data":{"metric":"spend"}}'
        event = normalize(parse_body(raw), raw)
        assert event.dedup_key == "body:" + hashlib.sha256(raw).hexdigest()

    def test_lifecycle_event_without_job_id_uses_body_hash(self) -> None:
        """A missing key part falls back to the body hash."""
        event = _event({"event": "training.started", "data": {}})
        assert event.dedup_key.startswith("body:")

    def test_deployment_without_id_uses_model(self) -> None:
        """model.deployed without a deploymentId is keyed by its model."""
        event = _event({"event": "model.deployed", "data": {"modelId": "m-1"}})
        assert event.dedup_key == "sem:model.deployed:m-1"

    def test_numeric_id_is_an_id(self) -> None:
        """Numeric ids count; booleans and objects do not."""
        assert _event({"id": 42, "event": "x"}).dedup_key == "id:42"
        assert _event({"id": True, "event": "x"}).dedup_key.startswith("body:")
        assert _event({"id": {"a": 1}, "event": "x"}).dedup_key.startswith("body:")

    def test_deployments_of_two_jobs_differ(self) -> None:
        """Two jobs deploying one model id are two events (W3 names no deploymentId)."""
        first = _event({"event": "model.deployed", "data": {"jobId": "j-1", "modelId": "m-1"}})
        second = _event({"event": "model.deployed", "data": {"jobId": "j-2", "modelId": "m-1"}})
        assert (first.dedup_key, second.dedup_key) == (
            "sem:model.deployed:j-1:m-1",
            "sem:model.deployed:j-2:m-1",
        )

    def test_long_parts_are_hashed(self) -> None:
        """Parts over 200 characters become their SHA-256 (index entries are bounded)."""
        long_job = "j" * 5000
        event = _event({"event": "training.started", "data": {"jobId": long_job}})
        digest = hashlib.sha256(long_job.encode()).hexdigest()
        assert event.job_id == f"sha256:{digest}"
        assert event.dedup_key == f"sem:training.started:sha256:{digest}"
        assert len(event.dedup_key) < 300


class TestFields:
    @pytest.mark.parametrize(
        ("payload", "expected"),
        [
            pytest.param({"event": "a", "type": "b"}, "a", id="event-wins-over-type"),
            pytest.param({"type": "b"}, "b", id="w1-type"),
            pytest.param({}, "unknown", id="missing"),
            pytest.param({"event": 7}, "unknown", id="not-a-string"),
            pytest.param({"event": ""}, "unknown", id="empty"),
            pytest.param({"event": "a\x00b"}, "a\ufffdb", id="nul-replaced"),
        ],
    )
    def test_event_type(self, payload: dict[str, Any], expected: str) -> None:
        """The name comes from `event`, then `type`; otherwise it is `unknown`."""
        assert _event(payload).type == expected

    @pytest.mark.parametrize(
        ("error", "expected"),
        [
            pytest.param("OOM", "OOM", id="string"),
            pytest.param(
                {"message": "cancelled by user"}, "cancelled by user", id="object-message"
            ),
            pytest.param({"code": 3}, '{"code":3}', id="object-without-message"),
            pytest.param(None, None, id="absent"),
            pytest.param("", None, id="empty"),
            pytest.param("x" * 5000, "x" * 2000, id="clipped"),
        ],
    )
    def test_error(self, error: object, expected: str | None) -> None:
        """`data.error` may be a string, an object or absent."""
        assert _event({"event": "training.failed", "data": {"error": error}}).error == expected

    def test_metrics_keep_only_scalars(self) -> None:
        """Nested metric values are dropped so stored JSON stays flat."""
        metrics = {"loss": 1.0, "nested": {"a": 1}, "name": "x\x00", "list": [1]}
        event = _event({"event": "training.completed", "data": {"metrics": metrics}})
        assert event.metrics == {"loss": 1.0, "name": "x\ufffd"}

    @pytest.mark.parametrize(
        ("payload", "expected"),
        [
            pytest.param({"event": "ping.test"}, True, id="dot-test-name"),
            pytest.param({"event": "training.completed", "test": True}, True, id="top-level-flag"),
            pytest.param({"event": "x", "data": {"isTest": True}}, True, id="data-flag"),
            pytest.param({"event": "x", "test": "yes"}, False, id="non-boolean-flag"),
            pytest.param(W3, False, id="real-event"),
        ],
    )
    def test_is_test(self, payload: dict[str, Any], expected: bool) -> None:
        """Recognisable test deliveries are flagged (never hidden)."""
        assert _event(payload).is_test is expected

    def test_data_not_an_object(self) -> None:
        """A `data` that is not an object yields no fields, not an error."""
        event = _event({"event": "training.started", "data": [1, 2]})
        assert event.job_id is None


class TestParseBody:
    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            pytest.param(b"", "invalid_json", id="empty"),
            pytest.param(b"not json", "invalid_json", id="text"),
            pytest.param(b'{"a": NaN}', "invalid_json", id="nan"),
            pytest.param(b'{"a": Infinity}', "invalid_json", id="infinity"),
            pytest.param(b'{"a": "\xff"}', "invalid_json", id="bad-utf8"),
            pytest.param(b'{"a": "\\ud800"}', "invalid_json", id="lone-surrogate"),
            pytest.param(b"[1, 2]", "not_an_object", id="array"),
            pytest.param(b'"text"', "not_an_object", id="string"),
            pytest.param(b"null", "not_an_object", id="null"),
            pytest.param(b'{"a":' * 300 + b"1" + b"}" * 300, "too_deep", id="too-deep"),
            pytest.param(b"[" * 5000 + b"]" * 5000, "invalid_json", id="parser-depth-limit"),
        ],
    )
    def test_rejected(self, raw: bytes, reason: str) -> None:
        """Only strict JSON objects are accepted; each refusal has a reason."""
        with pytest.raises(BodyError) as caught:
            parse_body(raw)
        assert caught.value.reason == reason

    @pytest.mark.parametrize(
        ("opener", "closer"),
        [pytest.param(b'{"a":', b"}", id="objects"), pytest.param(b"[", b"]", id="arrays")],
    )
    def test_nesting_bound_is_exact(self, opener: bytes, closer: bytes) -> None:
        """`MAX_DEPTH` containers parse; one more is `too_deep`."""
        inner = b'{"a":' + opener * (MAX_DEPTH - 1) + b"1" + closer * (MAX_DEPTH - 1) + b"}"
        assert isinstance(parse_body(inner), dict)
        deeper = b'{"a":' + opener * MAX_DEPTH + b"1" + closer * MAX_DEPTH + b"}"
        with pytest.raises(BodyError) as caught:
            parse_body(deeper)
        assert caught.value.reason == "too_deep"


def _depth(value: object) -> int:
    """Container depth by recursion: the slow, obvious oracle for `nesting_exceeds`."""
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


BRACKETY_TEXT = st.text(alphabet='[]{}"\\ax', max_size=8)
JSON_VALUES = st.recursive(
    st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | BRACKETY_TEXT,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(BRACKETY_TEXT, children, max_size=3)
    ),
    max_leaves=40,
)


class TestNestingExceeds:
    @given(value=JSON_VALUES, limit=st.integers(min_value=0, max_value=12))
    def test_agrees_with_a_recursive_walk(self, value: object, limit: int) -> None:
        """Brackets inside strings, escapes and mixed kinds never fool the byte scan."""
        raw = orjson.dumps(value)
        assert nesting_exceeds(raw, limit) == (_depth(value) > limit)

    @pytest.mark.parametrize(
        ("raw", "limit", "expected"),
        [
            pytest.param(b'{"a":"[[[[[["}', 1, False, id="brackets-in-string"),
            pytest.param(b'{"a":"\\"}', 1, False, id="escaped-backslash"),
            pytest.param(b'{"a":"\\"[]"}', 1, False, id="escaped-quote"),
            pytest.param(b'{"a":[{}]}', 2, True, id="mixed-kinds"),
            pytest.param(b"[[],[],[]]", 2, False, id="siblings-are-not-depth"),
        ],
    )
    def test_cases(self, raw: bytes, limit: int, expected: bool) -> None:
        """Hand-picked shapes around strings and siblings."""
        assert nesting_exceeds(raw, limit) is expected

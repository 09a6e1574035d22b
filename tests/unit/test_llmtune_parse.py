"""The LLMTune client's pure parts: reading error bodies and answers, Retry-After, retry delays,
request bodies and paths. No network here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from service.llmtune.answers import read_batch, read_inference, read_job_id, read_job_status
from service.llmtune.client import (
    MAX_DELAY,
    FineTuneRequest,
    fine_tune_body,
    model_path,
    path_segment,
    retry_delay,
)
from service.llmtune.errors import (
    MAX_MESSAGE,
    BadRequest,
    LLMTuneError,
    NotFound,
    PaymentRequired,
    RateLimited,
    ServerError,
    Unauthorized,
    UnexpectedAnswer,
    Unreachable,
    error_class,
    parse_error_body,
)

NOW = datetime(2025, 11, 8, 14, 0, tzinfo=UTC)


class TestParseErrorBody:
    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            pytest.param(
                b'{"error": {"message": "Invalid API key", "code": "UNAUTHORIZED"}}',
                ("Invalid API key", "UNAUTHORIZED", None),
                id="nested",
            ),
            pytest.param(
                b'{"error": {"message": "bad", "code": "INVALID", "details": {"field": "x"}}}',
                ("bad", "INVALID", {"field": "x"}),
                id="nested-details",
            ),
            pytest.param(
                b'{"error": {"message": "slow down", "type": "rate_limit"}}',
                ("slow down", "rate_limit", None),
                id="nested-type-as-code",
            ),
            pytest.param(
                b'{"error": {"code": "NO_CREDITS"}, "message": "top-up needed"}',
                ("top-up needed", "NO_CREDITS", None),
                id="nested-code-outer-message",
            ),
            pytest.param(
                b'{"error": {"message": "bad", "details": ["a", "b"]}}',
                ("bad", "", {"value": ["a", "b"]}),
                id="nested-list-details",
            ),
            pytest.param(b'{"error": "Model not found"}', ("Model not found", "", None), id="flat"),
            pytest.param(
                b'{"error": "invalid_dataset", "message": "dataset is unreadable"}',
                ("dataset is unreadable", "invalid_dataset", None),
                id="flat-slug-and-message",
            ),
            pytest.param(
                b'{"error": "Bad Request", "message": "dataset is required"}',
                ("dataset is required", "", None),
                id="flat-phrase-and-message",
            ),
            pytest.param(
                b'{"message": "Insufficient credits", "code": "PAYMENT_REQUIRED"}',
                ("Insufficient credits", "PAYMENT_REQUIRED", None),
                id="message-only",
            ),
            pytest.param(
                b'{"statusCode": 400, "message": ["a is required", "b is wrong"]}',
                ("a is required; b is wrong", "", None),
                id="message-list",
            ),
            pytest.param(b'{"error": {"message": 42}}', ("42", "", None), id="non-string-message"),
            pytest.param(b"upstream timed out\n", ("upstream timed out", "", None), id="text"),
            pytest.param(b"<html>502</html>", ("<html>502</html>", "", None), id="html"),
            pytest.param(b"", ("", "", None), id="empty"),
            pytest.param(b"[1, 2]", ("[1, 2]", "", None), id="json-array"),
            pytest.param(b'"just a string"', ('"just a string"', "", None), id="json-string"),
            pytest.param(b"{}", ("", "", None), id="empty-object"),
            pytest.param(b'{"error": null}', ("", "", None), id="null-error"),
            pytest.param(b"\xff\xfe oops", ("\ufffd\ufffd oops", "", None), id="not-utf8"),
            pytest.param('{"error": "é"}', ("é", "", None), id="str-input"),
        ],
    )
    def test_shapes(self, body: bytes | str, expected: tuple[str, str, Any]) -> None:
        """Nested, flat, message-only and non-JSON bodies all read, without raising."""
        assert parse_error_body(body) == expected

    def test_long_messages_are_cut(self) -> None:
        """An error page does not become a megabyte exception message."""
        message, _, _ = parse_error_body(b"x" * 100_000)
        assert len(message) == MAX_MESSAGE

    def test_deep_nesting_does_not_raise(self) -> None:
        """JSON nested past the parser's limit is read as text."""
        body = b"[" * 5000 + b"]" * 5000
        message, code, details = parse_error_body(body)
        assert (code, details) == ("", None)
        assert message.startswith("[[[")


class TestErrors:
    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            pytest.param(400, BadRequest, id="400"),
            pytest.param(401, Unauthorized, id="401"),
            pytest.param(402, PaymentRequired, id="402"),
            pytest.param(404, NotFound, id="404"),
            pytest.param(429, RateLimited, id="429"),
            pytest.param(500, ServerError, id="500"),
            pytest.param(503, ServerError, id="503"),
            pytest.param(599, ServerError, id="599"),
            pytest.param(403, UnexpectedAnswer, id="403"),
            pytest.param(409, UnexpectedAnswer, id="409"),
            pytest.param(302, UnexpectedAnswer, id="redirect"),
        ],
    )
    def test_error_class(self, status: int, expected: type[LLMTuneError]) -> None:
        """Each documented status has its type; anything else is an unexpected answer."""
        assert error_class(status) is expected

    @pytest.mark.parametrize(
        ("error", "retryable"),
        [
            pytest.param(RateLimited("x", status=429), True, id="rate-limited"),
            pytest.param(ServerError("x", status=500), True, id="server-error"),
            pytest.param(Unreachable("x"), True, id="unreachable"),
            pytest.param(BadRequest("x", status=400), False, id="bad-request"),
            pytest.param(Unauthorized("x", status=401), False, id="unauthorized"),
            pytest.param(PaymentRequired("x", status=402), False, id="payment-required"),
            pytest.param(NotFound("x", status=404), False, id="not-found"),
            pytest.param(UnexpectedAnswer("x", status=200), False, id="unexpected"),
        ],
    )
    def test_retryable(self, error: LLMTuneError, retryable: bool) -> None:
        """Only 429, 5xx and no answer at all are worth another attempt."""
        assert error.retryable is retryable

    def test_default_code_and_text(self) -> None:
        """Without a code from LLMTune the class supplies one; str() shows status and code."""
        error = PaymentRequired("Insufficient credits", status=402)
        assert (error.code, error.message) == ("PAYMENT_REQUIRED", "Insufficient credits")
        assert str(error) == "HTTP 402 PAYMENT_REQUIRED: Insufficient credits"
        assert str(Unreachable("ConnectError: refused")) == "UNREACHABLE: ConnectError: refused"


@pytest.mark.parametrize(
    ("attempt", "retry_after", "jitter", "expected"),
    [
        pytest.param(0, None, 0.0, 0.5, id="first-no-jitter"),
        pytest.param(0, None, 1.0, 0.25, id="first-full-jitter"),
        pytest.param(1, None, 0.0, 1.0, id="second-doubles"),
        pytest.param(2, None, 0.5, 1.5, id="third-half-jitter"),
        pytest.param(20, None, 0.0, MAX_DELAY, id="backoff-capped"),
        pytest.param(0, 7.0, 0.9, 7.0, id="retry-after-wins"),
        pytest.param(3, 0.0, 0.9, 0.0, id="retry-after-zero"),
        pytest.param(0, 3600.0, 0.0, MAX_DELAY, id="retry-after-capped"),
    ],
)
def test_retry_delay(
    attempt: int, retry_after: float | None, jitter: float, expected: float
) -> None:
    """Retry-After when given (capped), else doubling backoff with up to half taken off."""
    assert retry_delay(attempt, retry_after, backoff=0.5, jitter=jitter) == pytest.approx(expected)


class TestPaths:
    @pytest.mark.parametrize(
        ("model_id", "expected"),
        [
            pytest.param(
                "meta-llama/Llama-3.3-70B-Instruct",
                "meta-llama/Llama-3.3-70B-Instruct",
                id="org-and-name",
            ),
            pytest.param("dep_123", "dep_123", id="plain"),
            pytest.param("org/my model?v=1#x", "org/my%20model%3Fv%3D1%23x", id="quoted-parts"),
            pytest.param("a/b/c", "a/b/c", id="three-segments"),
        ],
    )
    def test_model_path(self, model_id: str, expected: str) -> None:
        """Slashes stay path separators; everything else in a segment is percent-encoded."""
        assert model_path(model_id) == expected

    @pytest.mark.parametrize(
        "model_id",
        [
            pytest.param("", id="empty"),
            pytest.param("../fine-tune", id="dot-dot"),
            pytest.param("org//name", id="empty-segment"),
            pytest.param("/org/name", id="leading-slash"),
            pytest.param("org/.", id="dot"),
        ],
    )
    def test_model_path_refuses_escapes(self, model_id: str) -> None:
        """A model id cannot climb out of `/models/` or collapse a segment."""
        with pytest.raises(BadRequest) as raised:
            model_path(model_id)
        assert raised.value.status is None

    @pytest.mark.parametrize(
        ("job_id", "expected"),
        [
            pytest.param("job_abc-123", "job_abc-123", id="plain"),
            pytest.param("a/b", "a%2Fb", id="slash-encoded"),
            pytest.param("x?y#z", "x%3Fy%23z", id="query-and-fragment"),
        ],
    )
    def test_path_segment(self, job_id: str, expected: str) -> None:
        """A job id is always exactly one segment."""
        assert path_segment(job_id) == expected


def test_fine_tune_body() -> None:
    """camelCase fields; hyperparameters as given."""
    request = FineTuneRequest(
        base_model="meta-llama/Llama-3.3-70B-Instruct",
        dataset="s3://bucket/data.jsonl",
        hyperparameters={"learningRate": 0.0001, "epochs": 3, "batchSize": 64},
        webhook_url="https://receiver.example/webhooks/llmtune/jobs/t1",
    )
    assert fine_tune_body(request) == {
        "baseModel": "meta-llama/Llama-3.3-70B-Instruct",
        "dataset": "s3://bucket/data.jsonl",
        "trainingMethod": "sft",
        "hyperparameters": {"learningRate": 0.0001, "epochs": 3, "batchSize": 64},
        "webhookUrl": "https://receiver.example/webhooks/llmtune/jobs/t1",
    }


def test_fine_tune_body_leaves_out_what_is_not_set() -> None:
    """No webhookUrl and no empty hyperparameters object when none were given."""
    body = fine_tune_body(FineTuneRequest(base_model="m", dataset="d", training_method="dpo"))
    assert body == {"baseModel": "m", "dataset": "d", "trainingMethod": "dpo"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"jobId": "job_1"}, "job_1", id="jobId"),
        pytest.param({"id": "job_2"}, "job_2", id="id"),
        pytest.param({"job_id": "job_3"}, "job_3", id="job_id"),
        pytest.param({"data": {"jobId": "job_4"}}, "job_4", id="data-jobId"),
        pytest.param({"data": {"id": "job_5"}}, "job_5", id="data-id"),
        pytest.param({"data": {"job_id": "job_6"}}, "job_6", id="data-job_id"),
        pytest.param({"job": {"id": "job_7"}}, "job_7", id="job-id"),
        pytest.param({"id": "req_1", "data": {"jobId": "job_8"}}, "job_8", id="jobId-beats-id"),
        pytest.param({"jobId": 42}, "42", id="number"),
        pytest.param({"jobId": " job_9 "}, "job_9", id="trimmed"),
        pytest.param({"jobId": "", "id": "job_10"}, "job_10", id="empty-skipped"),
        pytest.param({"jobId": True}, None, id="bool"),
        pytest.param({"jobId": None}, None, id="null"),
        pytest.param({"status": "queued"}, None, id="none"),
        pytest.param({"data": ["job_11"]}, None, id="data-not-object"),
        pytest.param({}, None, id="empty"),
    ],
)
def test_read_job_id(body: dict[str, Any], expected: str | None) -> None:
    """The job id wherever the undocumented submission answer puts it."""
    assert read_job_id(body) == expected


class TestReadJobStatus:
    def test_full_answer(self) -> None:
        """Every documented field is read."""
        body = {
            "jobId": "job_1",
            "status": "completed",
            "progress": 100,
            "metrics": {"loss": 0.12},
            "artifact": "s3://models/job_1",
        }
        assert read_job_status(body, job_id="asked") == read_job_status(body, job_id="job_1")
        status = read_job_status(body, job_id="asked")
        assert (status.job_id, status.status, status.progress) == ("job_1", "completed", 100.0)
        assert (status.metrics, status.error) == ({"loss": 0.12}, None)
        assert status.artifact == "s3://models/job_1"
        assert status.raw is body

    @pytest.mark.parametrize(
        ("body", "field", "expected"),
        [
            pytest.param({}, "job_id", "asked", id="job-id-from-request"),
            pytest.param({"data": {"status": "training"}}, "status", "training", id="nested"),
            pytest.param({"progress": "42.5%"}, "progress", 42.5, id="progress-percent-string"),
            pytest.param({"progress": "NaN"}, "progress", None, id="progress-nan"),
            pytest.param({"progress": "soon"}, "progress", None, id="progress-garbage"),
            pytest.param({"progress": True}, "progress", None, id="progress-bool"),
            pytest.param({"progress": {"step": 3}}, "progress", None, id="progress-object"),
            pytest.param({"metrics": [1]}, "metrics", None, id="metrics-not-object"),
            pytest.param({"error": "OOM"}, "error", "OOM", id="error-string"),
            pytest.param({"error": {"message": "OOM"}}, "error", "OOM", id="error-object"),
            pytest.param({"error": {"code": 7}}, "error", '{"code":7}', id="error-object-bare"),
            pytest.param({"modelId": "org/ft-1"}, "artifact", "org/ft-1", id="modelId"),
            pytest.param({"model_id": "ft-2"}, "artifact", "ft-2", id="model_id"),
            pytest.param({"fineTunedModel": "ft-3"}, "artifact", "ft-3", id="fineTunedModel"),
            pytest.param({"artifact": 5, "modelId": "ft-4"}, "artifact", "ft-4", id="bad-artifact"),
            pytest.param({"status": 3}, "status", None, id="status-not-string"),
        ],
    )
    def test_fields(self, body: dict[str, Any], field: str, expected: object) -> None:
        """Odd or missing values read as None, never as an exception."""
        assert getattr(read_job_status(body, job_id="asked"), field) == expected


class TestReadInference:
    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            pytest.param(
                {"text": "hi", "tokens": 228, "model": "m", "latency": 234},
                ("hi", 228, "m", 234.0),
                id="llmtune",
            ),
            pytest.param(
                {
                    "model": "m",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "yo"}}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
                },
                ("yo", 7, "m", None),
                id="openai-chat",
            ),
            pytest.param(
                {"choices": [{"text": "done"}], "usage": {"totalTokens": 9}},
                ("done", 9, None, None),
                id="openai-completion",
            ),
            pytest.param({"text": ""}, ("", None, None, None), id="empty-text"),
            pytest.param({"text": "a", "tokens": "many"}, ("a", None, None, None), id="bad-tokens"),
            pytest.param({"text": "a", "latencyMs": 1.5}, ("a", None, None, 1.5), id="latencyMs"),
            pytest.param({"data": {"text": "nested"}}, ("nested", None, None, None), id="nested"),
        ],
    )
    def test_shapes(self, body: dict[str, Any], expected: tuple[object, ...]) -> None:
        """LLMTune's own shape and the OpenAI one."""
        result = read_inference(body)
        assert result is not None
        assert (result.text, result.tokens, result.model, result.latency_ms) == expected

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param({}, id="empty"),
            pytest.param({"choices": []}, id="no-choices"),
            pytest.param({"choices": ["x"]}, id="choice-not-object"),
            pytest.param({"choices": [{"message": {"content": None}}]}, id="null-content"),
            pytest.param({"text": 5}, id="text-not-string"),
        ],
    )
    def test_no_text(self, body: dict[str, Any]) -> None:
        """An answer without text is not a result."""
        assert read_inference(body) is None


class TestReadBatch:
    def test_documented_answer(self) -> None:
        """The documented acceptance: id, status and summary."""
        body = {"batchId": "batch-1", "status": "queued", "summary": {"total": 2, "accepted": 2}}
        batch = read_batch(body)
        assert (batch.batch_id, batch.status) == ("batch-1", "queued")
        assert batch.summary == {"total": 2, "accepted": 2}
        assert (batch.results, batch.errors) == ([], [])

    def test_results_and_errors_kept_apart(self) -> None:
        """Items that carry an error go to `errors`, with any top-level `errors`."""
        body = {
            "id": "b2",
            "results": [
                {"id": "req-1", "text": "ok"},
                {"id": "req-2", "error": {"message": "too long"}},
                {"id": "req-3", "error": None, "text": "fine"},
                "odd",
            ],
            "errors": [{"id": "req-4", "error": "refused"}, "bare"],
        }
        batch = read_batch(body)
        assert batch.batch_id == "b2"
        assert batch.results == [
            {"id": "req-1", "text": "ok"},
            {"id": "req-3", "error": None, "text": "fine"},
            {"value": "odd"},
        ]
        assert batch.errors == [
            {"id": "req-2", "error": {"message": "too long"}},
            {"id": "req-4", "error": "refused"},
            {"error": "bare"},
        ]

    def test_nothing_readable(self) -> None:
        """An answer with none of the fields is still an acceptance, with nothing known."""
        batch = read_batch({"results": "x", "summary": [1]})
        assert (batch.batch_id, batch.status, batch.summary) == (None, None, None)
        assert (batch.results, batch.errors) == ([], [])

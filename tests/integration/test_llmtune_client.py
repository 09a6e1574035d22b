"""The LLMTune client over real HTTP, against the recording sink on 127.0.0.1 playing LLMTune
with scripted answers. Waits between attempts go to a recorder instead of the clock.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import httpx
import orjson
import pytest
from structlog.testing import capture_logs

from service.llmtune.client import (
    MAX_DELAY,
    BatchItem,
    FineTuneRequest,
    LLMTuneClient,
)
from service.llmtune.errors import (
    BadRequest,
    LLMTuneError,
    NotFound,
    PaymentRequired,
    RateLimited,
    ServerError,
    Unauthorized,
    UnexpectedAnswer,
    Unreachable,
)
from tests.sinks import HttpSink, Reply, http_sink

API_KEY = "sk_live_test_0123456789abcdef"
MODEL = "meta-llama/Llama-3.3-70B-Instruct"
REQUEST = FineTuneRequest(
    base_model=MODEL,
    dataset="s3://bucket/data.jsonl",
    hyperparameters={"learningRate": 0.0001, "epochs": 3, "batchSize": 64},
    webhook_url="https://receiver.example/webhooks/llmtune/jobs/t1",
)


def answer(status: int = 200, body: object = None, **headers: str) -> Reply:
    """A JSON answer from the sink (`{}` when no body is given)."""
    text = orjson.dumps(body if body is not None else {}).decode()
    return Reply(status=status, body=text, headers=headers, content_type="application/json")


@dataclass
class Sleeps:
    """Records the waits the client asks for, without waiting."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, delay: float) -> None:
        """The injected `sleep`."""
        self.delays.append(delay)


@dataclass
class Sent:
    """The URLs the client sent, as encoded on the wire."""

    urls: list[httpx.URL] = field(default_factory=list)

    async def hook(self, request: httpx.Request) -> None:
        """An httpx request event hook."""
        self.urls.append(request.url)


MakeClient = Callable[..., LLMTuneClient]


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    """LLMTune's stand-in: a recording HTTP server on 127.0.0.1."""
    async with http_sink() as server:
        yield server


@pytest.fixture
def sleeps() -> Sleeps:
    """The recorder of waits between attempts."""
    return Sleeps()


@pytest.fixture
def sent() -> Sent:
    """The recorder of outgoing URLs."""
    return Sent()


@pytest.fixture
async def http(sent: Sent) -> AsyncIterator[httpx.AsyncClient]:
    """A real HTTP client (no proxies from the environment)."""
    async with httpx.AsyncClient(
        trust_env=False, timeout=5.0, event_hooks={"request": [sent.hook]}
    ) as client:
        yield client


@pytest.fixture
def make_client(http: httpx.AsyncClient, sink: HttpSink, sleeps: Sleeps) -> MakeClient:
    """Builds a client for the sink's `/v1` (trailing slash included, as operators write it)."""

    def make(**options: Any) -> LLMTuneClient:
        options.setdefault("base_url", f"{sink.url}/v1/")
        return LLMTuneClient(http, api_key=API_KEY, sleep=sleeps, **options)

    return make


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class TestFineTune:
    async def test_submission(self, sink: HttpSink, make_client: MakeClient) -> None:
        """POST /v1/fine-tune with Bearer key, Idempotency-Key and the camelCase body."""
        sink.script.append(answer(201, {"jobId": "job_1", "status": "queued"}))
        job = await make_client().submit_fine_tune(REQUEST, idempotency_key="sub-1")
        assert (job.job_id, job.status) == ("job_1", "queued")
        [received] = sink.received
        assert (received.method, received.path) == ("POST", "/v1/fine-tune")
        assert received.headers["authorization"] == f"Bearer {API_KEY}"
        assert received.headers["idempotency-key"] == "sub-1"
        assert received.headers["content-type"] == "application/json"
        assert orjson.loads(received.body) == {
            "baseModel": MODEL,
            "dataset": "s3://bucket/data.jsonl",
            "trainingMethod": "sft",
            "hyperparameters": {"learningRate": 0.0001, "epochs": 3, "batchSize": 64},
            "webhookUrl": "https://receiver.example/webhooks/llmtune/jobs/t1",
        }

    async def test_job_id_nested_in_data(self, sink: HttpSink, make_client: MakeClient) -> None:
        """An answer that wraps the job in `data` still yields its id."""
        sink.script.append(answer(200, {"data": {"id": "job_2", "status": "pending"}}))
        job = await make_client().submit_fine_tune(REQUEST, idempotency_key="sub-2")
        assert (job.job_id, job.status) == ("job_2", "pending")

    @pytest.mark.parametrize(
        "reply",
        [
            pytest.param(answer(200, {"status": "queued"}), id="no-job-id"),
            pytest.param(Reply(status=200, body="accepted"), id="not-json"),
            pytest.param(answer(200, ["job_3"]), id="json-array"),
            pytest.param(Reply(status=204, body=""), id="no-content"),
        ],
    )
    async def test_unreadable_submission_answer(
        self, sink: HttpSink, make_client: MakeClient, reply: Reply
    ) -> None:
        """A success without a readable job id is an UnexpectedAnswer carrying the status."""
        sink.script.append(reply)
        with pytest.raises(UnexpectedAnswer) as raised:
            await make_client().submit_fine_tune(REQUEST, idempotency_key="sub-3")
        assert raised.value.status == reply.status
        assert not raised.value.retryable

    async def test_blank_idempotency_key_is_refused(
        self, sink: HttpSink, make_client: MakeClient
    ) -> None:
        """Without a key a retried submission could start a second job: nothing is sent."""
        with pytest.raises(BadRequest):
            await make_client().submit_fine_tune(REQUEST, idempotency_key=" ")
        assert sink.received == []

    async def test_status(self, sink: HttpSink, make_client: MakeClient, sent: Sent) -> None:
        """GET /v1/fine-tune/{jobId}, the id percent-encoded as one segment."""
        sink.script.append(
            answer(200, {"status": "failed", "progress": 40, "error": {"message": "OOM"}})
        )
        status = await make_client().get_fine_tune("job/7 x")
        assert [url.raw_path for url in sent.urls] == [b"/v1/fine-tune/job%2F7%20x"]
        assert sink.received[0].method == "GET"
        assert (status.job_id, status.status, status.progress) == ("job/7 x", "failed", 40.0)
        assert status.error == "OOM"


class TestErrors:
    @pytest.mark.parametrize(
        ("status", "kind"),
        [
            pytest.param(400, BadRequest, id="400"),
            pytest.param(401, Unauthorized, id="401"),
            pytest.param(402, PaymentRequired, id="402"),
            pytest.param(404, NotFound, id="404"),
            pytest.param(429, RateLimited, id="429"),
            pytest.param(500, ServerError, id="500"),
            pytest.param(503, ServerError, id="503"),
            pytest.param(403, UnexpectedAnswer, id="403"),
            pytest.param(302, UnexpectedAnswer, id="redirect-not-followed"),
        ],
    )
    async def test_status_maps_to_type(
        self, sink: HttpSink, make_client: MakeClient, status: int, kind: type[LLMTuneError]
    ) -> None:
        """Each status raises its own type, with the status and LLMTune's message."""
        sink.default = answer(status, {"error": {"message": "no", "code": "X"}}, location="/v1")
        with pytest.raises(kind) as raised:
            await make_client(max_retries=0).get_fine_tune("job_1")
        assert (raised.value.status, raised.value.message, raised.value.code) == (status, "no", "X")
        assert len(sink.received) == 1

    async def test_nested_error_body(self, sink: HttpSink, make_client: MakeClient) -> None:
        """`{"error": {"message", "code", "details"}}` is read whole."""
        body = {"error": {"message": "bad rate", "code": "INVALID", "details": {"f": "lr"}}}
        sink.script.append(answer(400, body))
        with pytest.raises(BadRequest) as raised:
            await make_client().submit_fine_tune(REQUEST, idempotency_key="k")
        error = raised.value
        assert (error.message, error.code, error.details) == ("bad rate", "INVALID", {"f": "lr"})

    async def test_flat_error_body(self, sink: HttpSink, make_client: MakeClient) -> None:
        """`{"error": "...", "message": "..."}` is read too; the class supplies a missing code."""
        sink.script.append(answer(402, {"error": "Payment Required", "message": "No credits"}))
        with pytest.raises(PaymentRequired) as raised:
            await make_client().inference(MODEL, "hi")
        assert (raised.value.message, raised.value.code) == ("No credits", "PAYMENT_REQUIRED")

    async def test_text_error_body(self, sink: HttpSink, make_client: MakeClient) -> None:
        """A proxy's plain-text page becomes the message."""
        sink.script.append(Reply(status=404, body="no route"))
        with pytest.raises(NotFound) as raised:
            await make_client().get_fine_tune("job_1")
        assert raised.value.message == "no route"

    async def test_empty_error_body(self, sink: HttpSink, make_client: MakeClient) -> None:
        """With nothing to read the HTTP reason phrase is the message."""
        sink.script.append(Reply(status=401, body=""))
        with pytest.raises(Unauthorized) as raised:
            await make_client().get_fine_tune("job_1")
        assert raised.value.message == "Unauthorized"

    async def test_key_stays_out_of_errors_and_logs(
        self, sink: HttpSink, make_client: MakeClient
    ) -> None:
        """Neither the exception nor the retry log lines show the API key."""
        sink.default = Reply(status=500, body="boom")
        with capture_logs() as lines, pytest.raises(ServerError) as raised:
            await make_client().get_fine_tune("job_1")
        assert [line["event"] for line in lines] == ["llmtune_retry", "llmtune_retry"]
        assert API_KEY not in f"{raised.value!s} {raised.value!r} {lines}"


class TestRetries:
    async def test_retry_after_then_success_keeps_the_key(
        self, sink: HttpSink, make_client: MakeClient, sleeps: Sleeps
    ) -> None:
        """429 with Retry-After: 7 waits 7 s, then succeeds; both attempts carry the same key."""
        sink.script += [answer(429, {"error": "slow down"}, **{"retry-after": "7"})]
        sink.script += [answer(200, {"jobId": "job_1"})]
        job = await make_client().submit_fine_tune(REQUEST, idempotency_key="sub-9")
        assert job.job_id == "job_1"
        assert sleeps.delays == [7.0]
        first, second = sink.received
        assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == "sub-9"
        assert first.body == second.body

    async def test_retry_after_as_http_date(
        self, sink: HttpSink, make_client: MakeClient, sleeps: Sleeps
    ) -> None:
        """An HTTP-date Retry-After is waited for until that moment."""
        when = formatdate(time.time() + 20, usegmt=True)
        sink.script += [answer(429, {}, **{"retry-after": when}), answer(200, {"text": "ok"})]
        await make_client().inference(MODEL, "hi")
        [delay] = sleeps.delays
        assert 15 <= delay <= 20

    async def test_long_retry_after_is_capped(
        self, sink: HttpSink, make_client: MakeClient, sleeps: Sleeps
    ) -> None:
        """An hour's Retry-After waits only the cap, then the last 429 is raised with it."""
        sink.default = answer(429, {"error": {"message": "quota"}}, **{"retry-after": "3600"})
        with pytest.raises(RateLimited) as raised:
            await make_client(max_retries=1).inference(MODEL, "hi")
        assert sleeps.delays == [MAX_DELAY]
        assert raised.value.retry_after == 3600.0
        assert len(sink.received) == 2

    async def test_server_errors_back_off_then_raise(
        self, sink: HttpSink, make_client: MakeClient, sleeps: Sleeps
    ) -> None:
        """Three 500s: two growing, jittered waits, three requests, then ServerError."""
        sink.default = Reply(status=500, body="down")
        with pytest.raises(ServerError):
            await make_client(max_retries=2, backoff_seconds=0.5).get_fine_tune("job_1")
        assert len(sink.received) == 3
        first, second = sleeps.delays
        assert 0.25 <= first <= 0.5
        assert 0.5 <= second <= 1.0

    @pytest.mark.parametrize(
        ("status", "kind"),
        [
            pytest.param(400, BadRequest, id="400"),
            pytest.param(401, Unauthorized, id="401"),
            pytest.param(402, PaymentRequired, id="402"),
            pytest.param(404, NotFound, id="404"),
        ],
    )
    async def test_client_errors_are_not_retried(
        self,
        sink: HttpSink,
        make_client: MakeClient,
        sleeps: Sleeps,
        status: int,
        kind: type[LLMTuneError],
    ) -> None:
        """400/401/402/404 are final: exactly one request, no wait."""
        sink.default = answer(status, {"error": "nope"})
        with pytest.raises(kind):
            await make_client(max_retries=3).submit_fine_tune(REQUEST, idempotency_key="k")
        assert len(sink.received) == 1
        assert sleeps.delays == []

    async def test_connection_refused(
        self, http: httpx.AsyncClient, sleeps: Sleeps, sent: Sent
    ) -> None:
        """A closed port: every attempt made, then Unreachable without a status."""
        base_url = f"http://127.0.0.1:{closed_port()}/v1"
        client = LLMTuneClient(http, base_url=base_url, api_key=API_KEY, sleep=sleeps)
        with pytest.raises(Unreachable) as raised:
            await client.get_fine_tune("job_1")
        assert raised.value.status is None
        assert raised.value.retryable
        assert raised.value.message.startswith("ConnectError")
        assert (len(sent.urls), len(sleeps.delays)) == (3, 2)
        assert API_KEY not in str(raised.value)

    async def test_timeout(self, sink: HttpSink, sleeps: Sleeps) -> None:
        """No answer in time is Unreachable, retried like a refused connection."""
        sink.default = answer(200, {"text": "late"})
        sink.script.append(Reply(delay=0.3))
        async with httpx.AsyncClient(trust_env=False, timeout=0.1) as http:
            client = LLMTuneClient(http, base_url=f"{sink.url}/v1", api_key=API_KEY, sleep=sleeps)
            result = await client.inference(MODEL, "hi")
        assert result.text == "late"
        assert len(sleeps.delays) == 1


class TestInference:
    async def test_model_id_with_slash(
        self, sink: HttpSink, make_client: MakeClient, sent: Sent
    ) -> None:
        """`org/name` stays two path segments under /v1/models/; the body is camelCase."""
        sink.script.append(answer(200, {"text": "Hello", "tokens": 5, "model": MODEL}))
        result = await make_client().inference(
            MODEL, "Say hi", temperature=0.2, max_tokens=16, metadata={"conversationId": "c1"}
        )
        assert (result.text, result.tokens, result.model) == ("Hello", 5, MODEL)
        [received] = sink.received
        assert received.path == f"/v1/models/{MODEL}/inference"
        assert [url.raw_path for url in sent.urls] == [f"/v1/models/{MODEL}/inference".encode()]
        assert orjson.loads(received.body) == {
            "prompt": "Say hi",
            "temperature": 0.2,
            "maxTokens": 16,
            "metadata": {"conversationId": "c1"},
        }
        assert received.headers["authorization"] == f"Bearer {API_KEY}"

    async def test_openai_shaped_answer(self, sink: HttpSink, make_client: MakeClient) -> None:
        """`choices` and `usage` are read as well as `text` and `tokens`."""
        body = {"choices": [{"message": {"content": "Hey"}}], "usage": {"total_tokens": 12}}
        sink.script.append(answer(200, body))
        result = await make_client().inference(MODEL, "hi")
        assert (result.text, result.tokens, result.raw) == ("Hey", 12, body)

    async def test_answer_without_text(self, sink: HttpSink, make_client: MakeClient) -> None:
        """A success that carries no text is an UnexpectedAnswer."""
        sink.script.append(answer(200, {"tokens": 3}))
        with pytest.raises(UnexpectedAnswer):
            await make_client().inference(MODEL, "hi")

    async def test_escaping_model_id_is_refused(
        self, sink: HttpSink, make_client: MakeClient
    ) -> None:
        """A model id with `..` segments never reaches the network."""
        with pytest.raises(BadRequest):
            await make_client().inference("../../fine-tune", "hi")
        assert sink.received == []

    async def test_playground(self, sink: HttpSink, make_client: MakeClient) -> None:
        """POST /v1/playground/inference with the model in the body; unset options left out."""
        sink.script.append(answer(200, {"text": "ok", "latency": 12}))
        result = await make_client().playground_inference(MODEL, "ping", max_tokens=800)
        assert result.latency_ms == 12.0
        [received] = sink.received
        assert received.path == "/v1/playground/inference"
        body = orjson.loads(received.body)
        assert body == {"modelId": MODEL, "prompt": "ping", "maxTokens": 800}


class TestBatch:
    async def test_accepted(self, sink: HttpSink, make_client: MakeClient) -> None:
        """POST /v1/batch/inference with the documented body and an Idempotency-Key."""
        sink.script.append(
            answer(200, {"batchId": "b-1", "status": "queued", "summary": {"total": 2}})
        )
        items = [BatchItem("req-1", "First"), BatchItem("req-2", "Second")]
        batch = await make_client().batch_inference(
            MODEL, items, webhook_url="https://receiver.example/batch"
        )
        assert (batch.batch_id, batch.status, batch.summary) == ("b-1", "queued", {"total": 2})
        [received] = sink.received
        assert received.path == "/v1/batch/inference"
        assert received.headers["idempotency-key"]
        assert orjson.loads(received.body) == {
            "modelId": MODEL,
            "requests": [{"id": "req-1", "prompt": "First"}, {"id": "req-2", "prompt": "Second"}],
            "webhookUrl": "https://receiver.example/batch",
        }

    async def test_retry_resends_the_same_key(
        self, sink: HttpSink, make_client: MakeClient
    ) -> None:
        """The key made for a call is the same on its retry, so the batch is queued once."""
        sink.script += [Reply(status=502, body="bad gateway"), answer(200, {"batchId": "b-2"})]
        await make_client().batch_inference(MODEL, [BatchItem("r", "p")])
        first, second = sink.received
        assert first.headers["idempotency-key"] == second.headers["idempotency-key"]

    @pytest.mark.parametrize("count", [0, 101], ids=["empty", "over-100"])
    async def test_wrong_size_is_refused_before_sending(
        self, sink: HttpSink, make_client: MakeClient, count: int
    ) -> None:
        """Outside 1 to 100 requests: BadRequest and no HTTP call at all."""
        items = [BatchItem(f"req-{n}", "p") for n in range(count)]
        with pytest.raises(BadRequest) as raised:
            await make_client().batch_inference(MODEL, items)
        assert (raised.value.status, raised.value.code) == (None, "BATCH_SIZE")
        assert sink.received == []


@pytest.mark.parametrize(
    "base_url", ["ftp://api.example/v1", "/v1", "api.llmtune.io/v1", "https://[::1/v1"]
)
def test_base_url_must_be_http(http: httpx.AsyncClient, base_url: str) -> None:
    """A base URL the client could never reach is refused when it is built."""
    with pytest.raises(ValueError, match="base_url"):
        LLMTuneClient(http, base_url=base_url, api_key=API_KEY)


@pytest.mark.parametrize(
    "options",
    [{"max_retries": -1}, {"backoff_seconds": -0.5}],
    ids=["retries", "backoff"],
)
def test_negative_retry_settings_are_refused(
    http: httpx.AsyncClient, options: dict[str, Any]
) -> None:
    """Negative retry counts or waits are a configuration mistake, refused at once."""
    with pytest.raises(ValueError, match="must not be negative"):
        LLMTuneClient(http, base_url="https://api.llmtune.io/v1", api_key=API_KEY, **options)

"""`commands/tail.py` without a server: the SSE parser, and the follow loop against
`httpx.MockTransport` (reconnecting with `Last-Event-ID`, backoff, one line per loss)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from service.commands.admin_client import ClientError
from service.commands.tail import Follow, Message, SseParser


def parse(text: str) -> list[Message]:
    parser = SseParser()
    return [m for line in text.split("\n") if (m := parser.feed(line)) is not None]


class TestSseParser:
    def test_messages_with_id_event_and_data(self) -> None:
        """Fields up to a blank line make one message; comments and `retry` are skipped."""
        text = "retry: 2000\n\n: keep-alive\n\nid: p1\nevent: event\ndata: {}\n\n"
        assert parse(text) == [Message("event", "{}", "p1")]

    def test_data_lines_are_joined_and_defaults_apply(self) -> None:
        """Several `data:` lines join with newlines; no `event:` means `message`, no id None."""
        assert parse("data: a\ndata:b\n\n") == [Message("message", "a\nb", None)]

    def test_an_unfinished_message_is_not_returned(self) -> None:
        """Without its blank line a message has not arrived yet."""
        assert parse("event: event\ndata: {}") == []


def sse(*frames: tuple[str, str, dict[str, object]]) -> bytes:
    """A stream body: `(id, event, data)` frames."""
    body = b"retry: 2000\n\n"
    for frame_id, event, data in frames:
        body += f"id: {frame_id}\nevent: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"
    return body


class Script:
    """Answers each stream request with the next of `answers`, and records the requests."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers: Iterator[httpx.Response | Exception] = iter(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = next(self.answers)
        if isinstance(answer, Exception):
            raise answer
        return answer


def follow(script: Script) -> tuple[Follow, list[Message], list[float]]:
    shown: list[Message] = []
    slept: list[float] = []
    run = Follow("http://svc", "t0ken", shown.append, sleep=slept.append)
    return run, shown, slept


def test_reconnects_resuming_after_the_last_message(capsys: pytest.CaptureFixture[str]) -> None:
    """A dropped stream is reopened with `Last-Event-ID`; the loss and the return are each said
    once, whatever the attempts in between; the backoff doubles while it lasts."""
    refused = httpx.ConnectError("connection refused")
    unauthorized = httpx.Response(401, json={"error": {"message": "no", "code": "UNAUTHORIZED"}})
    script = Script(
        httpx.Response(200, content=sse(("p1", "event", {"id": "evt_1"}))),
        refused,
        refused,
        httpx.Response(200, content=sse(("p2", "delivery", {"id": "dlv_1"}))),
        unauthorized,
    )
    run, shown, slept = follow(script)
    with httpx.Client(transport=httpx.MockTransport(script)) as client, pytest.raises(ClientError):
        run.run(client)
    assert [(m.event, m.id) for m in shown] == [("event", "p1"), ("delivery", "p2")]
    sent = [r.headers.get("last-event-id") for r in script.requests]
    assert sent == [None, "p1", "p1", "p1", "p2"]
    assert script.requests[0].headers["authorization"] == "Bearer t0ken"
    assert slept == [0.5, 1.0, 2.0, 0.5]
    notes = capsys.readouterr().err.splitlines()
    assert notes == [
        "llmtune-receiver: following http://svc (Ctrl-C to stop)",
        "llmtune-receiver: connection lost (the service ended the stream); reconnecting",
        "llmtune-receiver: reconnected",
        "llmtune-receiver: connection lost (the service ended the stream); reconnecting",
    ]


def test_the_first_connection_must_work() -> None:
    """A wrong URL or token is an error at once, not a retry loop."""
    script = Script(httpx.ConnectError("connection refused"))
    run, _, slept = follow(script)
    with (
        httpx.Client(transport=httpx.MockTransport(script)) as client,
        pytest.raises(ClientError, match="cannot follow http://svc: connection refused"),
    ):
        run.run(client)
    assert slept == []


def test_an_error_message_is_the_reason_for_the_loss(capsys: pytest.CaptureFixture[str]) -> None:
    """The stream's own `error` message (the store failed) is what the loss line says."""
    error: dict[str, object] = {
        "error": {"message": "storage unavailable: locked", "code": "STORAGE_UNAVAILABLE"}
    }
    script = Script(
        httpx.Response(200, content=sse(("p1", "error", error))),
        httpx.Response(403, json={"error": {"message": "read only", "code": "FORBIDDEN"}}),
    )
    run, shown, _ = follow(script)
    with (
        httpx.Client(transport=httpx.MockTransport(script)) as client,
        pytest.raises(ClientError, match=r"read only \(403 FORBIDDEN\)"),
    ):
        run.run(client)
    assert shown == []
    assert "connection lost (storage unavailable: locked)" in capsys.readouterr().err

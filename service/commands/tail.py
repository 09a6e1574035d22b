"""`tail`: follow a running service's new events and delivery outcomes live, one line each, until
Ctrl-C or SIGTERM (exit 0), like `stripe listen`. Reads `GET /admin/stream` (server-sent events).

The first connection must work: a wrong `--url` or token ends the command at once (exit 1). After
that, a dropped connection is retried with backoff (0.5 s doubling to 15 s), resuming after the
last message received (`Last-Event-ID`), so nothing stored meanwhile is skipped. The loss is
reported once and the return once, however many attempts lie between. An answer of 4xx (the
token was removed) ends the command.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NoReturn

import httpx
import orjson

from service.commands import table
from service.commands.admin_client import ClientError, api_error, read_token, terminal_width

STREAM_PATH = "/admin/stream"
# Four missed heartbeats (15 s each): a connection silent that long is dead, not idle.
READ_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
FIRST_DELAY, MAX_DELAY = 0.5, 15.0


@dataclass(frozen=True, slots=True)
class Message:
    """One server-sent event."""

    event: str
    data: str
    id: str | None


@dataclass
class SseParser:
    """Server-sent events from lines (the fields the stream sends: id, event, data; comments and
    `retry` are skipped)."""

    _event: str = "message"
    _data: list[str] = field(default_factory=list)
    _id: str | None = None

    def feed(self, line: str) -> Message | None:
        """Take one line (without its line break); a complete message at a blank line."""
        if not line:
            message = Message(self._event, "\n".join(self._data), self._id) if self._data else None
            self._event, self._data, self._id = "message", [], None
            return message
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None


@dataclass
class Follow:
    """One `tail` run: where it resumes from and whether the connection is currently lost."""

    url: str
    token: str
    show: Callable[[Message], None]
    last_id: str | None = None
    connected: bool = False
    lost: bool = False
    sleep: Callable[[float], None] = time.sleep

    def run(self, client: httpx.Client) -> NoReturn:
        """Read the stream forever, reconnecting; raises `ClientError` when it should stop."""
        delay = FIRST_DELAY
        while True:
            try:
                reason = self._read(client)
            except httpx.HTTPError as exc:
                reason = str(exc) or type(exc).__name__
            if not self.connected:
                raise ClientError(f"cannot follow {self.url}: {reason}")
            if self.lost:
                delay = min(delay * 2, MAX_DELAY)
            else:
                delay = FIRST_DELAY
                self.lost = True
                note(f"connection lost ({reason}); reconnecting")
            self.sleep(delay)

    def _read(self, client: httpx.Client) -> str:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"}
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        url = self.url.rstrip("/") + STREAM_PATH
        with client.stream("GET", url, headers=headers) as response:
            if response.status_code != 200:
                response.read()
                if 400 <= response.status_code < 500 or not self.connected:
                    raise ClientError(api_error(response))
                return f"HTTP {response.status_code}"
            if not self.connected:
                note(f"following {self.url} (Ctrl-C to stop)")
            elif self.lost:
                note("reconnected")
            self.connected, self.lost = True, False
            return self._consume(response.iter_lines())

    def _consume(self, lines: Iterator[str]) -> str:
        parser = SseParser()
        for line in lines:
            message = parser.feed(line)
            if message is None:
                continue
            if message.event == "error":
                return _error_text(message.data)
            if message.id is not None:
                self.last_id = message.id
            self.show(message)
        return "the service ended the stream"


def _error_text(data: str) -> str:
    try:
        return str(orjson.loads(data)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return "the service reported an error"


def note(text: str) -> None:
    """One status line on stderr."""
    print(f"llmtune-receiver: {text}", file=sys.stderr, flush=True)


def printer(as_json: bool, width: int | None) -> Callable[[Message], None]:
    """What prints a message: one table line, or one JSON line `{"kind", "data"}`."""

    def show(message: Message) -> None:
        if message.event not in ("event", "delivery"):
            return  # a kind this client does not know yet
        data = orjson.loads(message.data)
        if as_json:
            print(orjson.dumps({"kind": message.event, "data": data}).decode(), flush=True)
        else:
            print(table.tail_line(message.event, data, width=width), flush=True)

    return show


def cmd_tail(args: argparse.Namespace) -> int:
    """Print new events and delivery outcomes as they happen, until Ctrl-C or SIGTERM."""
    try:
        token = read_token(args.token)
    except ClientError as exc:
        note(str(exc))
        return exc.code
    follow = Follow(args.url, token, printer(args.json, terminal_width()))
    # SIGTERM ends it like Ctrl-C: KeyboardInterrupt, wherever it is waiting.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with httpx.Client(timeout=READ_TIMEOUT) as client:
            follow.run(client)
    except KeyboardInterrupt:
        return 0
    except ClientError as exc:
        note(str(exc))
        return exc.code
    finally:
        signal.signal(signal.SIGTERM, previous)

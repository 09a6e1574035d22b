"""The `slack` handler: one Block Kit message per event, through an incoming webhook or the Web
API (`chat.postMessage` with a bot token, where each job's events read as one thread).

Formatting is pure and lives in `service.handlers.slack_format` (`message`, `escape`, `clip`); it
keeps every text within Slack's limits, and event values are arbitrary text even from a signed
body, so they are always escaped. This module validates the options and does the sending. Neither
the bot token nor the webhook URL (itself a secret) ever reaches a log line or an outcome text.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, ClassVar

import httpx
from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError
from yarl import URL

from service.handlers.base import (
    MAX_ERROR_TEXT,
    Delivery,
    Fail,
    HandlerDeps,
    Ok,
    Options,
    OptionsError,
    Outcome,
    Retry,
    outcome_for_status,
    validated,
)
from service.handlers.outbound import Answer, NoAddress, SendError
from service.handlers.slack_format import message
from service.ports import MemoryUnavailable
from service.retry_after import parse_retry_after

DEFAULT_API_URL = "https://slack.com/api/"
TIMEOUT = 10.0  # seconds per request; a slow Slack is retried, not waited for
# Slack's answers are small (a posted message echoed back); a longer one is read no further.
MAX_ANSWER_BYTES = 1 << 20

# Web API errors that no retry can fix: credentials, the channel, or the message itself.
_PERMANENT_API_ERRORS = frozenset(
    {
        "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
        "missing_scope", "not_allowed_token_type", "no_permission", "access_denied",
        "ekm_access_denied", "team_access_not_granted", "channel_not_found", "not_in_channel",
        "is_archived", "restricted_action", "invalid_blocks", "invalid_blocks_format",
        "msg_too_long", "msg_blocks_too_long", "no_text", "invalid_arguments",
        "invalid_arg_name", "invalid_json", "json_not_object", "invalid_charset",
        "method_deprecated", "deprecated_endpoint",
    }
)  # fmt: skip
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S+")
# Enough jobs to cover any that are still running; an evicted job just opens a new thread.
_MAX_THREADS = 10_000


@dataclass(frozen=True, slots=True)
class _Webhook:
    url: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class _WebApi:
    token: str = field(repr=False)
    channel: str
    api_url: str


@dataclass(slots=True)
class _Thread:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ts: str | None = None


def _text_value(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("option", "must be a non-empty string")
    if value != value.strip():
        raise PydanticCustomError("option", "must not start or end with whitespace")
    return value


def _url_value(value: str) -> str:
    # Never quote the value: a webhook URL is a secret.
    try:
        url = httpx.URL(value)
        URL(value)  # as it will be sent
    except (httpx.InvalidURL, ValueError):
        raise PydanticCustomError("option", "not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise PydanticCustomError("option", "must be an http:// or https:// URL")
    return value


_Text = Annotated[str, AfterValidator(_text_value)]
_Url = Annotated[str, AfterValidator(_text_value), AfterValidator(_url_value)]


class SlackOptions(Options):
    """The `slack` handler's options; which of them go together is checked by
    `parse_options`."""

    must: ClassVar[Mapping[str, str]] = {
        "webhook_url": "must be a non-empty string",
        "bot_token": "must be a non-empty string",
        "channel": "must be a non-empty string",
        "api_url": "must be a non-empty string",
    }
    webhook_url: _Url | None = Field(None, repr=False)  # a secret, as the token is
    bot_token: _Text | None = Field(None, repr=False)
    channel: _Text | None = None
    api_url: _Url | None = None


def parse_options(options: Mapping[str, Any]) -> _Webhook | _WebApi:
    """Where the route posts: its webhook, or the Web API with its token and channel; else
    `OptionsError("<option>: <what is wrong>")`, which never quotes a value."""
    found = validated(SlackOptions, options)
    webhook, token, channel = found.webhook_url, found.bot_token, found.channel
    api_url = found.api_url
    if webhook is not None:
        if token is not None:
            raise OptionsError("webhook_url: give either webhook_url or bot_token + channel")
        if channel is not None or api_url is not None:
            raise OptionsError(f"{'channel' if channel else 'api_url'}: only used with bot_token")
        return _Webhook(webhook)
    if token is None:
        missing = "bot_token: required with channel" if channel else "webhook_url: required"
        raise OptionsError(f"{missing} (give webhook_url, or bot_token + channel)")
    if channel is None:
        raise OptionsError("channel: required with bot_token")
    if not (token.isascii() and token.isprintable()) or " " in token:
        raise OptionsError("bot_token: must be printable ASCII without spaces")
    base = api_url or DEFAULT_API_URL
    return _WebApi(token, channel, base if base.endswith("/") else base + "/")


def _text(answer: Answer) -> str:
    return answer.body.decode("utf-8", errors="replace")


def _api_outcome(answer: Answer, now: datetime) -> tuple[Outcome, str | None]:
    """A `chat.postMessage` answer as an outcome, and the posted message's ts when there is one."""
    retry_after = answer.headers.get("retry-after")
    status = answer.status
    if not 200 <= status < 300:
        body = _text(answer)[:MAX_ERROR_TEXT]
        return outcome_for_status(status, body=body, retry_after=retry_after, now=now), None
    try:
        data = json.loads(answer.body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return Retry(f"HTTP {status}: not a Slack API answer"), None
    if data.get("ok") is True:
        ts = data.get("ts")
        return (Ok(f"ts {ts}"), ts) if isinstance(ts, str) and ts else (Ok("posted, no ts"), None)
    error = re.sub(r"[^\w.-]", "?", str(data.get("error") or "unknown_error"))[:100]
    if error == "ratelimited":
        return Retry(f"slack: {error}", after=parse_retry_after(retry_after, now)), None
    if error in _PERMANENT_API_ERRORS:
        return Fail(f"slack: {error}"), None
    return Retry(f"slack: {error}"), None


class SlackHandler:
    """Posts each delivery to Slack, by incoming webhook or by bot token (one thread per job)."""

    name: ClassVar[str] = "slack"

    def __init__(self, *, target: _Webhook | _WebApi, deps: HandlerDeps) -> None:
        self._target = target
        self._deps = deps
        # job id -> thread: a cache in front of `deps.memory`, which keeps each job's thread
        # across restarts and worker processes (without it, per process only). Deliveries of one
        # job to one route never run at once in any two workers, so the cache cannot go stale.
        self._threads: OrderedDict[str, _Thread] = OrderedDict()

    @classmethod
    def from_options(cls, options: Mapping[str, Any], deps: HandlerDeps) -> SlackHandler:
        """Either `webhook_url`, or `bot_token` + `channel` (+ optional `api_url`); anything
        else raises `OptionsError("<option>: <what is wrong>")`."""
        return cls(target=parse_options(options), deps=deps)

    async def handle(self, delivery: Delivery) -> Outcome:
        """Post the event's message; Ok, Retry or Fail by Slack's answer, never raising for it."""
        body = message(delivery, public_url=self._deps.public_url)
        body |= {"unfurl_links": False, "unfurl_media": False}
        if isinstance(self._target, _Webhook):
            return await self._post_webhook(self._target, body, delivery)
        job = delivery.event.job_id
        if not job:
            return (await self._post_api(self._target, body, delivery))[0]
        thread = self._thread(job)
        memory = self._deps.memory
        scope = f"slack-thread:{delivery.route}"
        # One post at a time per job, so a job's second event cannot open a second thread.
        async with thread.lock:
            try:
                if thread.ts is None and memory is not None:
                    thread.ts = await memory.recall(scope, job)
                if thread.ts is not None:
                    body["thread_ts"] = thread.ts
                outcome, ts = await self._post_api(self._target, body, delivery)
                if thread.ts is None and ts is not None:
                    thread.ts = ts if memory is None else await memory.remember(scope, job, ts)
            except MemoryUnavailable as exc:
                # Posting without the thread would split the job's conversation: try later.
                return Retry(f"slack: thread memory unavailable ({exc})")
        return outcome

    async def _post_webhook(
        self, target: _Webhook, body: dict[str, Any], delivery: Delivery
    ) -> Outcome:
        sent = await self._post(target.url, body, delivery, token=None)
        if isinstance(sent, Retry):
            return sent
        return outcome_for_status(
            sent.status,
            body=self._redact(_text(sent)[:MAX_ERROR_TEXT]),
            retry_after=sent.headers.get("retry-after"),
            now=self._deps.clock.now(),
        )

    def _thread(self, job_id: str) -> _Thread:
        thread = self._threads.get(job_id)
        if thread is None:
            thread = self._threads[job_id] = _Thread()
            if len(self._threads) > _MAX_THREADS:
                self._threads.popitem(last=False)
        self._threads.move_to_end(job_id)
        return thread

    async def _post_api(
        self, target: _WebApi, body: dict[str, Any], delivery: Delivery
    ) -> tuple[Outcome, str | None]:
        url = target.api_url + "chat.postMessage"
        sent = await self._post(
            url, body | {"channel": target.channel}, delivery, token=target.token
        )
        if isinstance(sent, Retry):
            return sent, None
        return _api_outcome(sent, self._deps.clock.now())

    async def _post(
        self, url: str, body: dict[str, Any], delivery: Delivery, *, token: str | None
    ) -> Answer | Retry:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            # Slack ignores it; sinks and proxies can use it to drop a repeated attempt.
            "X-Idempotency-Key": delivery.id,
        }
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        content = json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            # No address check: Slack's URLs are the operator's own configuration, as they
            # always were; the connection is still pinned and kept alive.
            return await self._deps.outbound.post(
                URL(url),
                body=content,
                headers=headers,
                time_limit=TIMEOUT,
                limit=MAX_ANSWER_BYTES,
                allow_private=True,
                secret_path=token is None,  # a webhook URL's path is its secret
            )
        except TimeoutError:
            return Retry(f"TimeoutError: no answer within {TIMEOUT:g} s")
        except (SendError, NoAddress, OSError) as exc:
            # Class name and message only, and redacted anyway: a message may quote the URL.
            detail = self._redact(str(exc))
            if isinstance(exc, SendError):
                return Retry(detail[:MAX_ERROR_TEXT])
            error = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
            return Retry(error[:MAX_ERROR_TEXT])

    def _redact(self, text: str) -> str:
        """`text` without the token, the webhook URL or any other URL (errors may quote them)."""
        secret = self._target.url if isinstance(self._target, _Webhook) else self._target.token
        return _URL_IN_TEXT.sub("[url]", text.replace(secret, "[redacted]"))

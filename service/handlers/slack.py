"""The `slack` handler: one Block Kit message per event, through an incoming webhook or the Web
API (`chat.postMessage` with a bot token, where each job's events read as one thread).

Formatting is pure (`message`, `escape`, `clip`) and keeps every text within Slack's limits;
event values are arbitrary text even from a signed body, so they are always escaped. Neither the
bot token nor the webhook URL (itself a secret) ever reaches a log line or an outcome text.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from service.handlers.base import (
    MAX_ERROR_TEXT,
    Delivery,
    Fail,
    HandlerDeps,
    Ok,
    OptionsError,
    Outcome,
    Retry,
    outcome_for_status,
    parse_retry_after,
)

DEFAULT_API_URL = "https://slack.com/api/"
TIMEOUT = 10.0  # seconds per request; a slow Slack is retried, not waited for

# Slack's documented limits (Block Kit reference): section text 3000 characters; section fields
# at most 10, each 2000; button text 75, button URL 3000; 50 blocks per message; chat.postMessage
# truncates `text` past 40,000 characters. Our budgets below are at most half of each limit, so a
# text made only of characters outside the BMP (two UTF-16 units each) fits however Slack counts,
# and a whole message stays far below the ~13k characters past which Slack answers
# `msg_blocks_too_long` without any documented limit (slackapi/bolt-js#2509).
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
MAX_FIELDS = 10
MAX_BLOCKS = 50
BUTTON_URL_MAX = 3000
TEXT_MAX = 40_000
TYPE_BUDGET = 150
VALUE_BUDGET = 500
METRICS_BUDGET = 1400
METRIC_PART_BUDGET = 60
ERROR_BUDGET = 1400
EVENT_ID_BUDGET = 200
FALLBACK_BUDGET = 1000

_ELLIPSIS = "…"
_KINDS: dict[str, tuple[str, str]] = {
    "training.started": (":hourglass_flowing_sand:", "Training started"),
    "training.completed": (":white_check_mark:", "Training completed"),
    "training.failed": (":x:", "Training failed"),
    "model.deployed": (":rocket:", "Model deployed"),
}
_OTHER_KIND = (":bell:", "LLMTune event")

_OPTIONS = ("api_url", "bot_token", "channel", "webhook_url")
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


def escape(text: str) -> str:
    """`text` as literal mrkdwn: `&`, `<` and `>` become entities, so `<!channel>` or
    `<https://x|label>` is shown, never acted on; lone surrogates (unencodable) become `?`."""
    clean = text.encode("utf-8", "replace").decode("utf-8")
    return clean.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """`text` escaped, at most `limit` characters, cut with an ellipsis but never inside an
    entity (a half `&amp;` would show as garbage)."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    amp = cut.rfind("&", len(cut) - 4)
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + _ELLIPSIS


def metric_value(value: Any) -> str:
    """A metric value as short text: floats to 6 significant digits, the rest as compact JSON."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (ValueError, TypeError, RecursionError):  # huge ints, cycles, absurd nesting
        return "?"


def metrics_line(metrics: Mapping[str, Any]) -> str:
    """`name: value · …`, escaped, within `METRICS_BUDGET`; says how many were left out."""
    parts: list[str] = []
    used = 0
    for index, (name, value) in enumerate(metrics.items()):
        shown = clip(metric_value(value), METRIC_PART_BUDGET)
        part = f"{clip(str(name), METRIC_PART_BUDGET)}: {shown}"
        # Leave room for the separator and the "… +N more" tail.
        if used + len(part) + 3 > METRICS_BUDGET - 20:
            parts.append(f"{_ELLIPSIS} +{len(metrics) - index} more")
            break
        parts.append(part)
        used += len(part) + 3
    return " · ".join(parts)


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _fields(delivery: Delivery) -> list[dict[str, Any]]:
    event = delivery.event
    named = (
        ("Job", event.job_id),
        ("Model", event.model),
        ("Artifact", event.artifact),
        ("Deployment", event.deployment_id),
    )
    return [_mrkdwn(f"*{label}*\n{clip(value, VALUE_BUDGET)}") for label, value in named if value]


def _when(delivery: Delivery) -> str:
    occurred = delivery.event.occurred_at
    moment: datetime = occurred or delivery.received_at
    word = "occurred" if occurred else "received"
    return f"{word} {moment.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}"


def event_link(public_url: str, event_id: str) -> str | None:
    """The receiver's admin page for the event, or None when it cannot be a Slack button URL."""
    if not public_url.startswith(("https://", "http://")):
        return None
    url = f"{public_url.rstrip('/')}/admin/events/{quote(event_id, safe='')}"
    return url if len(url) <= BUTTON_URL_MAX else None


def message(delivery: Delivery, *, public_url: str) -> dict[str, Any]:
    """The Slack message for one delivery: `text` (the notification fallback) and `blocks`."""
    event = delivery.event
    emoji, phrase = _KINDS.get(event.type, _OTHER_KIND)
    test = " _(test event)_" if event.is_test else ""
    title = f"{emoji} *{clip(event.type, TYPE_BUDGET)}* · {phrase}{test}"
    blocks: list[dict[str, Any]] = [_section(title)]
    if fields := _fields(delivery):
        blocks.append({"type": "section", "fields": fields})
    if event.metrics:
        blocks.append(_section(f"*Metrics*\n{metrics_line(event.metrics)}"))
    if event.error:
        blocks.append(_section(f"*Error*\n```{clip(event.error, ERROR_BUDGET)}```"))
    context = f"Event {clip(delivery.event_id, EVENT_ID_BUDGET)} · {_when(delivery)}"
    blocks.append({"type": "context", "elements": [_mrkdwn(context)]})
    if link := event_link(public_url, delivery.event_id):
        blocks.append(_button("Open in receiver", link))
    return {"text": _fallback(delivery, phrase), "blocks": blocks}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def _button(label: str, url: str) -> dict[str, Any]:
    text = {"type": "plain_text", "text": label}
    element = {"type": "button", "text": text, "url": url, "action_id": "open_event"}
    return {"type": "actions", "elements": [element]}


def _fallback(delivery: Delivery, phrase: str) -> str:
    # Notifications and clients without Block Kit show only this, so it names the event first.
    event = delivery.event
    text = f"{event.type}: {phrase}"
    if event.job_id:
        text += f" (job {event.job_id})"
    if event.error:
        text += f": {event.error}"
    return clip(text, FALLBACK_BUDGET)


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


def _text_option(options: Mapping[str, Any], key: str) -> str | None:
    if key not in options:
        return None
    value = options[key]
    if not isinstance(value, str) or not value.strip():
        raise OptionsError(f"{key}: must be a non-empty string")
    if value != value.strip():
        raise OptionsError(f"{key}: must not start or end with whitespace")
    return value


def _http_url(key: str, value: str) -> str:
    # Never quote the value: a webhook URL is a secret.
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        raise OptionsError(f"{key}: not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise OptionsError(f"{key}: must be an http:// or https:// URL")
    return value


def _target(options: Mapping[str, Any]) -> _Webhook | _WebApi:
    unknown = sorted(str(key) for key in options if key not in _OPTIONS)
    if unknown:
        raise OptionsError(f"{unknown[0]}: unknown option (known: {', '.join(_OPTIONS)})")
    webhook, token, channel, api_url = (
        _text_option(options, key) for key in ("webhook_url", "bot_token", "channel", "api_url")
    )
    if webhook is not None:
        if token is not None:
            raise OptionsError("webhook_url: give either webhook_url or bot_token + channel")
        if channel is not None or api_url is not None:
            raise OptionsError(f"{'channel' if channel else 'api_url'}: only used with bot_token")
        return _Webhook(_http_url("webhook_url", webhook))
    if token is None:
        missing = "bot_token: required with channel" if channel else "webhook_url: required"
        raise OptionsError(f"{missing} (give webhook_url, or bot_token + channel)")
    if channel is None:
        raise OptionsError("channel: required with bot_token")
    if not (token.isascii() and token.isprintable()) or " " in token:
        raise OptionsError("bot_token: must be printable ASCII without spaces")
    base = _http_url("api_url", api_url or DEFAULT_API_URL)
    return _WebApi(token, channel, base if base.endswith("/") else base + "/")


def _api_outcome(response: httpx.Response, now: datetime) -> tuple[Outcome, str | None]:
    """A `chat.postMessage` answer as an outcome, and the posted message's ts when there is one."""
    retry_after = response.headers.get("retry-after")
    if not response.is_success:
        body = response.text[:MAX_ERROR_TEXT]
        status = response.status_code
        return outcome_for_status(status, body=body, retry_after=retry_after, now=now), None
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return Retry(f"HTTP {response.status_code}: not a Slack API answer"), None
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
        # job id -> thread, in this process only: a restart (or another worker process) opens a
        # new thread for a job already under way. A later change may persist it with the job.
        self._threads: OrderedDict[str, _Thread] = OrderedDict()

    @classmethod
    def from_options(cls, options: Mapping[str, Any], deps: HandlerDeps) -> SlackHandler:
        """Either `webhook_url`, or `bot_token` + `channel` (+ optional `api_url`); anything
        else raises `OptionsError("<option>: <what is wrong>")`."""
        return cls(target=_target(options), deps=deps)

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
        # One post at a time per job, so a job's second event cannot open a second thread.
        async with thread.lock:
            if thread.ts is not None:
                body["thread_ts"] = thread.ts
            outcome, ts = await self._post_api(self._target, body, delivery)
            if thread.ts is None and ts is not None:
                thread.ts = ts
        return outcome

    async def _post_webhook(
        self, target: _Webhook, body: dict[str, Any], delivery: Delivery
    ) -> Outcome:
        sent = await self._post(target.url, body, delivery, token=None)
        if isinstance(sent, Retry):
            return sent
        return outcome_for_status(
            sent.status_code,
            body=self._redact(sent.text[:MAX_ERROR_TEXT]),
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
    ) -> httpx.Response | Retry:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            # Slack ignores it; sinks and proxies can use it to drop a repeated attempt.
            "X-Idempotency-Key": delivery.id,
        }
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        content = json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            return await self._deps.http.post(
                url, content=content, headers=headers, timeout=TIMEOUT
            )
        except httpx.RequestError as exc:
            # Class name and message only: some httpx messages quote the URL, so redact anyway.
            detail = self._redact(str(exc))
            error = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
            return Retry(error[:MAX_ERROR_TEXT])

    def _redact(self, text: str) -> str:
        """`text` without the token, the webhook URL or any other URL (errors may quote them)."""
        secret = self._target.url if isinstance(self._target, _Webhook) else self._target.token
        return _URL_IN_TEXT.sub("[url]", text.replace(secret, "[redacted]"))

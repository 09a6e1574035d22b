"""Slack message formatting for the `slack` handler: one Block Kit message per event
(`message`) with its notification fallback text, and the mrkdwn escaping and clipping (`escape`,
`clip`) that keep every text within Slack's limits. Event values are arbitrary text even from a
signed body, so they are always escaped, and always shown in code (inline, or a block for the
error): Slack has no escape for `*`, `_` and `~`, but formats nothing inside code, and a backtick
in a value becomes U+02CB (which looks like one) so that no value can end its code early.
Everything here is pure (no I/O, no clock, no secrets): `service.handlers.slack` validates the
options and does the sending.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from service.handlers.base import Delivery
from service.links import event_page

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
# Looks like a backtick but neither opens nor closes code in mrkdwn.
_BACKTICK_LOOKALIKE = "\u02cb"
_KINDS: dict[str, tuple[str, str]] = {
    "training.started": (":hourglass_flowing_sand:", "Training started"),
    "training.completed": (":white_check_mark:", "Training completed"),
    "training.failed": (":x:", "Training failed"),
    "model.deployed": (":rocket:", "Model deployed"),
}
_OTHER_KIND = (":bell:", "LLMTune event")


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


def literal(text: str, limit: int) -> str:
    """`text` clipped and escaped for the inside of a code block: no backtick left to end it."""
    return clip(text, limit).replace("`", _BACKTICK_LOOKALIKE)


def inline(text: str, limit: int) -> str:
    """`text` for the inside of inline code: `literal` and on one line (a line break ends it)."""
    return literal(text, limit).replace("\r", " ").replace("\n", " ")


def code(text: str, limit: int) -> str:
    """`text` as inline code, which Slack does not format; never empty (an empty pair of
    backticks shows as two backticks)."""
    shown = inline(text, limit)
    return f"`{shown}`" if shown else "`-`"


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
    """`name: value · …`, escaped, one line without backticks (it is shown as inline code),
    within `METRICS_BUDGET`; says how many were left out."""
    parts: list[str] = []
    used = 0
    for index, (name, value) in enumerate(metrics.items()):
        shown = inline(metric_value(value), METRIC_PART_BUDGET)
        part = f"{inline(str(name), METRIC_PART_BUDGET)}: {shown}"
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
    return [_mrkdwn(f"*{label}*\n{code(value, VALUE_BUDGET)}") for label, value in named if value]


def _when(delivery: Delivery) -> str:
    occurred = delivery.event.occurred_at
    moment: datetime = occurred or delivery.received_at
    word = "occurred" if occurred else "received"
    return f"{word} {moment.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}"


def event_link(public_url: str, event_id: str) -> str | None:
    """The event's console page, or None when it cannot be a Slack button URL."""
    if not public_url.startswith(("https://", "http://")):
        return None
    url = event_page(public_url, event_id)
    return url if len(url) <= BUTTON_URL_MAX else None


def message(delivery: Delivery, *, public_url: str) -> dict[str, Any]:
    """The Slack message for one delivery: `text` (the notification fallback) and `blocks`."""
    event = delivery.event
    emoji, phrase = _KINDS.get(event.type, _OTHER_KIND)
    test = " _(test event)_" if event.is_test else ""
    title = f"{emoji} {code(event.type, TYPE_BUDGET)} · *{phrase}*{test}"
    blocks: list[dict[str, Any]] = [_section(title)]
    if fields := _fields(delivery):
        blocks.append({"type": "section", "fields": fields})
    if event.metrics:
        blocks.append(_section(f"*Metrics*\n`{metrics_line(event.metrics)}`"))
    if event.error:
        blocks.append(_section(f"*Error*\n```{literal(event.error, ERROR_BUDGET)}```"))
    context = f"Event {code(delivery.event_id, EVENT_ID_BUDGET)} · {_when(delivery)}"
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

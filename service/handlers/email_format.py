"""Mail composition for the `email` handler: `compose` builds the whole notification for one
delivery (multipart/alternative, plain text and HTML, a one-line `subject`, a stable `message_id`),
with header text cleaned and folded so that event values can never inject a header. Everything here
is pure (no I/O, no SMTP, no clock: the handler passes the Date), so tests parse the result back
as a mail client would; `service.handlers.email` validates the options and does the sending.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any

from service.handlers.base import Delivery, event_document
from service.links import event_page

MAX_HEADER_TEXT = 200  # characters; mail clients show far less, and header folding stays cheap
_SURROGATE = re.compile("[\ud800-\udfff]")
_MESSAGE_ID_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,100}")


def _header_text(value: str, limit: int = MAX_HEADER_TEXT) -> str:
    """One line of text: control and line-break characters become spaces (no header injection),
    runs of whitespace collapse, lone surrogates (unencodable) become U+FFFD."""
    text = _SURROGATE.sub("\ufffd", value)
    text = "".join(" " if unicodedata.category(c) in {"Cc", "Zl", "Zp"} else c for c in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _body_text(value: str) -> str:
    """Text for a body: newlines kept (errors are often multi-line), other controls spaces."""
    text = _SURROGATE.sub("\ufffd", value).replace("\r\n", "\n").replace("\r", "\n")
    return "".join(
        c if c in "\n\t" or unicodedata.category(c) not in {"Cc", "Zl", "Zp"} else " " for c in text
    )


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def subject(delivery: Delivery) -> str:
    """`<event type>: job <id> (<model>)`, the deployment when there is no job; one clean line."""
    event = delivery.event
    parts = [f"{event.type}:"]
    if event.job_id:
        parts.append(f"job {event.job_id}")
    elif event.deployment_id:
        parts.append(f"deployment {event.deployment_id}")
    if event.model:
        parts.append(f"({event.model})")
    text = _header_text(" ".join(parts).rstrip(":"))
    return f"{text} [test]" if event.is_test else text


def _rows(delivery: Delivery) -> list[tuple[str, str]]:
    """The labelled values shown in both bodies, absent ones left out."""
    doc = event_document(delivery)
    rows = [
        ("Event", doc["type"]),
        ("Job", doc["jobId"]),
        ("Model", doc["model"]),
        ("Artifact", doc["artifact"]),
        ("Deployment", doc["deploymentId"]),
        ("Error", doc["error"]),
        ("Occurred at", doc["occurredAt"]),
        ("Received at", doc["receivedAt"]),
        ("Event ID", doc["id"]),
        ("Test event", "yes" if doc["isTest"] else None),
    ]
    return [(label, _body_text(value)) for label, value in rows if value is not None]


def _metrics(delivery: Delivery) -> list[tuple[str, str]]:
    metrics = delivery.event.metrics or {}
    return [(_body_text(str(key)), _body_text(_scalar(value))) for key, value in metrics.items()]


def event_link(public_url: str, event_id: str) -> str:
    """The console page of the event behind the delivery."""
    return event_page(public_url, event_id)


def _plain(rows: list[tuple[str, str]], metrics: list[tuple[str, str]], link: str) -> str:
    lines = []
    for label, value in rows:
        first, *rest = value.split("\n")
        lines.append(f"{label}: {first}")
        lines.extend(f"    {line}" for line in rest)
    if metrics:
        lines.append("Metrics:")
        lines.extend(f"    {name}: {value}" for name, value in metrics)
    lines += ["", f"Details: {_body_text(link)}", ""]
    return "\n".join(lines)


def _html(rows: list[tuple[str, str]], metrics: list[tuple[str, str]], link: str) -> str:
    esc = html.escape
    cells = [
        f'<tr><th align="left">{esc(label)}</th>'
        f'<td style="white-space: pre-wrap">{esc(value)}</td></tr>'
        for label, value in rows
    ]
    if metrics:
        items = "".join(f"<li>{esc(name)}: {esc(value)}</li>" for name, value in metrics)
        cells.append(f'<tr><th align="left">Metrics</th><td><ul>{items}</ul></td></tr>')
    href = esc(_body_text(link))
    return (
        '<!DOCTYPE html>\n<html><body>\n<table cellpadding="4">\n'
        + "\n".join(cells)
        + f'\n</table>\n<p><a href="{href}">Details</a></p>\n</body></html>\n'
    )


def _set_text_header(message: EmailMessage, name: str, text: str) -> None:
    """Store a one-line text header folded so that its first line starts with the text.

    The policy's own folder puts a value that would fit on a line of its own wholly on the next
    line (`Subject:\r\n training.completed: …`), and Python's parser then keeps the fold's space,
    so the subject would no longer start with the event type. The classic `Header` folder fills
    the first line; text that is not plain ASCII, or that looks like an encoded word, is encoded
    whole so that readers show exactly `text`.
    """
    charset = "us-ascii" if text.isascii() and "=?" not in text else "utf-8"
    folded = Header(text, charset, header_name=name).encode(splitchars=" ", linesep="\r\n")
    message.set_raw(name, folded)


def message_id(delivery_id: str) -> str:
    """`<id@llmtune-receiver>`, the same on every attempt so recipients' mailers can dedupe; an id
    that is not a plain token is replaced by its SHA-256 so the header stays well-formed."""
    if not _MESSAGE_ID_TOKEN.fullmatch(delivery_id):
        digest = _SURROGATE.sub("\ufffd", delivery_id).encode("utf-8")
        delivery_id = hashlib.sha256(digest).hexdigest()
    return f"<{delivery_id}@llmtune-receiver>"


def compose(
    delivery: Delivery,
    *,
    sender: str,
    recipients: Sequence[str],
    public_url: str,
    date: datetime | None = None,
) -> EmailMessage:
    """The notification for `delivery`: multipart/alternative, text and HTML, stable Message-ID.

    `date` is the Date header (the handler passes the send time); it defaults to the time the
    event was received so the message is reproducible.
    """
    message = EmailMessage(policy=SMTP)
    _set_text_header(message, "Subject", subject(delivery))
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(date or delivery.received_at)
    message["Message-ID"] = message_id(delivery.id)
    _set_text_header(message, "X-LLMTune-Event-Id", _header_text(delivery.event_id))
    # RFC 3834: a machine-made notification; vacation responders must not answer it.
    message["Auto-Submitted"] = "auto-generated"
    rows, metrics = _rows(delivery), _metrics(delivery)
    link = event_link(public_url, delivery.event_id)
    message.set_content(_plain(rows, metrics, link))
    message.add_alternative(_html(rows, metrics, link), subtype="html")
    return message

"""Plain-text views of the admin API's JSON for the `events|deliveries|jobs` and `tail` commands.

Pure: items in, lines out. Lists are tables of fixed columns (each cut to its own width), detail
views are `field: value` lines followed by tables of what belongs to the item. Times are shown in
UTC as `2025-11-08 14:22:31`. With a `width`, every line is cut to it (the terminal's); without
one (output piped to another program), lines are whole and so are ids, ready to paste into
`show`. Values come from webhooks senders
control, so control, bidi and invisible characters are shown as escapes (`\\u202e`,
`service.display`) before anything reaches the terminal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from service.display import visible

Kind = Literal["text", "time", "json"]
ELLIPSIS = "…"
GAP = "  "
MISSING = "-"


@dataclass(frozen=True, slots=True)
class Column:
    """One table column: its title, the item's field it shows, and its widest width (`whole`:
    an id, never cut when the table has no width)."""

    title: str
    field: str
    width: int
    kind: Kind = "text"
    whole: bool = False


def utc_time(value: object) -> str:
    """An RFC 3339 time from the API as `2025-11-08 14:22:31` (UTC), or the value as it is."""
    if not isinstance(value, str):
        return MISSING if value is None else str(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def printable(text: str) -> str:
    """`text` on one line, with hidden characters (newlines, escape sequences, bidi controls)
    written as escapes."""
    return visible(text)


def cell(value: object, kind: Kind = "text") -> str:
    """One value as text: `-` for none, yes/no, UTC times, compact JSON for objects."""
    if value is None or value == "":
        return MISSING
    if kind == "time":
        return printable(utc_time(value))
    if isinstance(value, bool):
        return "yes" if value else "no"
    if kind == "json" or isinstance(value, dict | list):
        return printable(orjson.dumps(value).decode())
    return printable(str(value))


def clip(text: str, width: int | None) -> str:
    """`text` cut to `width` characters, the last one an ellipsis when anything was cut."""
    if width is None or len(text) <= width:
        return text
    return text[: max(0, width - 1)] + ELLIPSIS if width > 0 else ""


def render_table(
    columns: Sequence[Column], items: Iterable[Mapping[str, Any]], *, width: int | None
) -> list[str]:
    """A header line and one line per item; each column as wide as its widest cell, at most
    its own width (ids whole without a `width`); every line cut to `width`."""
    sizes = [None if c.whole and width is None else c.width for c in columns]
    cells = [
        [
            clip(cell(item.get(c.field), c.kind), size)
            for c, size in zip(columns, sizes, strict=True)
        ]
        for item in items
    ]
    widths = [
        max([len(column.title), *(len(row[index]) for row in cells)])
        for index, column in enumerate(columns)
    ]
    lines = []
    for row in [[column.title for column in columns], *cells]:
        text = GAP.join(value.ljust(size) for value, size in zip(row, widths, strict=True))
        lines.append(clip(text.rstrip(), width))
    return lines


def render_fields(
    item: Mapping[str, Any], fields: Sequence[tuple[str, Kind]], *, width: int | None
) -> list[str]:
    """`field: value` lines for the fields present in `item` (times with ` UTC`)."""
    label_width = max((len(name) for name, _ in fields), default=0) + 1
    lines = []
    for name, kind in fields:
        if name not in item:
            continue
        value = cell(item[name], kind)
        if kind == "time" and item[name] is not None:
            value += " UTC"
        lines.append(clip(f"{name + ':':<{label_width}} {value}", width))
    return lines


def render_json_block(title: str, value: object, *, width: int | None) -> list[str]:
    """A titled block of indented JSON (a payload, metrics), each line cut to `width`."""
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    return [f"{title}:", *(clip("  " + printable(line), width) for line in text.splitlines())]


def section(
    title: str, columns: Sequence[Column], items: Sequence[Mapping[str, Any]], width: int | None
) -> list[str]:
    """A blank line, `title (N):` and the table of `items` (or `none`)."""
    head = ["", f"{title} ({len(items)}):"]
    return head + (render_table(columns, items, width=width) if items else ["  none"])


EVENT_COLUMNS = (
    Column("RECEIVED (UTC)", "receivedAt", 19, "time"),
    Column("ID", "id", 32, whole=True),
    Column("TYPE", "type", 24),
    Column("JOB", "jobId", 24, whole=True),
    Column("SOURCE", "source", 12),
    Column("VERIFIED", "verified", 8),
    Column("DUPS", "duplicateCount", 4),
)
DELIVERY_COLUMNS = (
    Column("UPDATED (UTC)", "updatedAt", 19, "time"),
    Column("ID", "id", 32, whole=True),
    Column("STATUS", "status", 9),
    Column("ROUTE", "route", 20),
    Column("TRIES", "attempts", 5),
    Column("EVENT", "eventId", 32, whole=True),
    Column("NEXT ATTEMPT (UTC)", "nextAttemptAt", 19, "time"),
    Column("LAST ERROR", "lastError", 60),
)
JOB_COLUMNS = (
    Column("CREATED (UTC)", "createdAt", 19, "time"),
    Column("ID", "id", 32, whole=True),
    Column("LLMTUNE JOB", "llmtuneJobId", 24, whole=True),
    Column("STATUS", "status", 9),
    Column("BASE MODEL", "baseModel", 36),
    Column("ARTIFACT", "artifact", 48),
)
ATTEMPT_COLUMNS = (
    Column("#", "number", 3),
    Column("STARTED (UTC)", "startedAt", 19, "time"),
    Column("MS", "durationMs", 7),
    Column("OUTCOME", "outcome", 10),
    Column("DETAIL", "detail", 80),
)
TIMELINE_COLUMNS = (
    Column("AT (UTC)", "at", 19, "time"),
    Column("KIND", "kind", 9),
    Column("WHAT", "what", 100),
)
RUN_COLUMNS = (
    Column("MODEL", "model", 40),
    Column("STATUS", "status", 9),
    Column("MS", "latencyMs", 7),
    Column("PROMPT", "prompt", 30),
    Column("OUTPUT", "output", 60),
)
EVENT_FIELDS: tuple[tuple[str, Kind], ...] = (
    ("id", "text"),
    ("type", "text"),
    ("source", "text"),
    ("workspace", "text"),
    ("jobId", "text"),
    ("externalId", "text"),
    ("dedupKey", "text"),
    ("receivedAt", "time"),
    ("occurredAt", "time"),
    ("verified", "text"),
    ("isTest", "text"),
    ("duplicateCount", "text"),
    ("lastDuplicateAt", "time"),
    ("bodyBytes", "text"),
)
DELIVERY_FIELDS: tuple[tuple[str, Kind], ...] = (
    ("id", "text"),
    ("status", "text"),
    ("route", "text"),
    ("handler", "text"),
    ("eventId", "text"),
    ("jobId", "text"),
    ("attempts", "text"),
    ("nextAttemptAt", "time"),
    ("lastError", "text"),
    ("createdAt", "time"),
    ("updatedAt", "time"),
)
JOB_FIELDS: tuple[tuple[str, Kind], ...] = (
    ("id", "text"),
    ("llmtuneJobId", "text"),
    ("status", "text"),
    ("baseModel", "text"),
    ("dataset", "text"),
    ("trainingMethod", "text"),
    ("hyperparameters", "json"),
    ("artifact", "text"),
    ("deploymentId", "text"),
    ("metrics", "json"),
    ("error", "json"),
    ("submitError", "text"),
    ("webhookUrl", "text"),
    ("submittedAt", "time"),
    ("startedAt", "time"),
    ("finishedAt", "time"),
    ("deployedAt", "time"),
    ("createdAt", "time"),
    ("updatedAt", "time"),
)


def event_detail(event: Mapping[str, Any], *, width: int | None) -> list[str]:
    """`events show`: the event's fields, headers, payload and deliveries."""
    lines = render_fields(event, EVENT_FIELDS, width=width)
    headers = event.get("headers") or []
    lines += ["", f"headers ({len(headers)}):"]
    lines += [clip(f"  {cell(h.get('name'))}: {cell(h.get('value'))}", width) for h in headers]
    lines += ["", *render_json_block("payload", event.get("payload"), width=width)]
    return lines + section("deliveries", DELIVERY_COLUMNS, event.get("deliveries") or [], width)


def delivery_detail(delivery: Mapping[str, Any], *, width: int | None) -> list[str]:
    """`deliveries show`: the delivery's fields and every attempt."""
    lines = render_fields(delivery, DELIVERY_FIELDS, width=width)
    return lines + section("attempts", ATTEMPT_COLUMNS, delivery.get("attempts") or [], width)


def timeline_what(entry: Mapping[str, Any]) -> str:
    """One timeline entry of a job in words (its kind-specific fields)."""
    skip = {"at", "kind"}
    return " ".join(f"{key}={cell(value)}" for key, value in entry.items() if key not in skip)


def job_detail(job: Mapping[str, Any], *, width: int | None) -> list[str]:
    """`jobs show`: the job's fields, timeline and inference runs."""
    lines = render_fields(job, JOB_FIELDS, width=width)
    timeline = [{**entry, "what": timeline_what(entry)} for entry in job.get("timeline") or []]
    lines += section("timeline", TIMELINE_COLUMNS, timeline, width)
    return lines + section("inference runs", RUN_COLUMNS, job.get("inferenceRuns") or [], width)


def tail_line(kind: str, data: Mapping[str, Any], *, width: int | None) -> str:
    """One line of `tail` for a streamed event or delivery change."""
    if kind == "event":
        at, what = data.get("receivedAt"), f"{cell(data.get('type')):<24}"
        what += f" job={cell(data.get('jobId'))} source={cell(data.get('source'))}"
    else:
        at, what = data.get("updatedAt"), f"{cell(data.get('status')):<9}"
        what += f" route={cell(data.get('route'))} attempts={cell(data.get('attempts'))}"
        what += f" event={cell(data.get('eventId'))}"
        if data.get("lastError"):
            what += f" error={cell(data.get('lastError'))}"
    line = f"{utc_time(at)}  {kind:<8}  {cell(data.get('id')):<32}  {what}"
    return clip(printable(line), width)

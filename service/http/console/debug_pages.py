"""The console's debugging pages: the overview (events per hour, deliveries by status), one
delivery with every attempt, and the rejections log (refused webhook requests: a wrong secret
shows up here). Pure: the views `reads.py` assembles in, `Markup` out.
"""

from __future__ import annotations

from datetime import datetime

from markupsafe import Markup

from service.http.console.charts import Bar, bar_chart
from service.http.console.columns import Column, Filter, View, cells, choices, fields, filter_form
from service.http.console.columns import listing as listed
from service.http.console.markup import (
    MONTHS,
    Viewer,
    coloured,
    h,
    id_link,
    link,
    path,
    post_form,
    table,
    url,
)
from service.http.console.pages import (
    ATTEMPT_COLUMNS,
    DELIVERY_COLUMNS,
    more_link,
    outcome_label,
    page,
)
from service.http.rejections import REASONS

# What each refusal reason means to the person who sent the request.
REASON_TEXT = {
    "no_secret_configured": "no webhook secret is configured here",
    "missing_signature": "no signature header",
    "body_signature_unsupported": "signed in a way this receiver does not accept",
    "malformed_signature": "signature header unreadable",
    "signature_mismatch": "signature matches no configured secret (wrong secret?)",
    "invalid_json": "body is not JSON",
    "not_an_object": "body is not a JSON object",
    "too_deep": "body nests too deeply",
    "too_large": "body too large",
    "headers_too_large": "headers too large",
    "body_timeout": "body arrived too slowly",
    "client_disconnected": "sender hung up before the body ended",
    "not_found": "no such webhook address (or callback token)",
}


def overview_page(body: View, viewer: Viewer) -> Markup:
    """Events per hour over the last 24 hours and deliveries by status, as bar pictures with
    the numbers in tables beside them for reading and linking."""
    hours = body["eventsPerHour"]
    bars = [
        Bar(
            value=hour["count"],
            label=_hour(hour["start"]) if index % 3 == 0 else "",
            title=f"{_day_hour(hour['start'])} UTC: {hour['count']} events",
        )
        for index, hour in enumerate(hours)
    ]
    total = sum(hour["count"] for hour in hours)
    events = h(
        "<h2>Events per hour, last 24 hours (UTC)</h2>{}<p>{} events. {}</p>",
        bar_chart(bars, "Events per hour over the last 24 hours"),
        total,
        link(path("events"), "See the events"),
    )
    counts = body["deliveriesByStatus"]
    status_bars = [
        Bar(
            c["count"],
            c["status"].replace("_", " "),
            f"{c['status']}: {c['count']}",
            f"s-{c['status']}",
        )
        for c in counts
    ]
    rows = [
        (link(url(path("deliveries"), status=c["status"]), c["status"]), c["count"]) for c in counts
    ]
    deliveries = h(
        "<h2>Deliveries by status</h2>{}{}",
        bar_chart(status_bars, "Deliveries by status", bar_width=60.0),
        table(("Status", "Deliveries"), rows),
    )
    return page("Overview", viewer, events, deliveries)


def _hour(start: str) -> str:
    return start[11:13]


def _day_hour(start: str) -> str:
    moment = datetime.fromisoformat(start)
    return f"{MONTHS[moment.month - 1]} {moment:%d %H}:00"


DELIVERY_FIELDS = (
    *DELIVERY_COLUMNS[:1],
    Column("Event", "eventId"),
    Column("Job", "jobId"),
    *DELIVERY_COLUMNS[1:],
    Column("Updated", "updatedAt", "time"),
)


def http_status(detail: str | None) -> str:
    """The HTTP status an attempt's detail starts with ("HTTP 503: ..."), else empty."""
    if detail and detail.startswith("HTTP ") and detail[5:8].isdigit():
        return detail[5:8]
    return ""


def delivery_page(d: View, viewer: Viewer) -> Markup:
    """One delivery: where it stands, the request it carries (the event's headers, secrets
    redacted), and every attempt with its result, HTTP status, duration and the answer's
    preview."""
    given = {
        "id": id_link(path("deliveries", d["id"]), d["id"]),
        "eventId": id_link(path("events", d["eventId"]), d["eventId"]),
        "jobId": link(path("jobs", d["jobId"]), d["jobId"]) if d["jobId"] else "",
        "status": coloured(d["status"]),
        # The admin API's delivery detail lists its attempts under `attempts`.
        "attempts": len(d["attempts"]),
    }
    summary = fields(d, DELIVERY_FIELDS, **given)
    retry = Markup()
    if viewer.can_write and d["status"] in ("dead", "retrying"):
        retry = post_form(path("deliveries", d["id"], "retry"), "Retry now", viewer)
    headers = table(("Name", "Value"), [(x["name"], x["value"]) for x in d["requestHeaders"]])
    columns = (*ATTEMPT_COLUMNS[:3], Column("HTTP status", "httpStatus"), *ATTEMPT_COLUMNS[3:4])
    preview = Column("Response preview / detail", "detail")
    rows = [
        cells(
            {**a, "httpStatus": http_status(a["detail"])},
            (*columns, preview),
            outcome=outcome_label(a["outcome"]),
        )
        for a in d["attempts"]
    ]
    attempts = listed((*columns, preview), rows, "No attempt yet.")
    parts = "{}<h2>Request headers</h2>{}<h2>Attempts</h2>{}"
    title = f"Delivery to {d['route']}"
    return page(title, viewer, summary, h(parts, retry, headers, attempts))


REJECTION_COLUMNS = (
    Column("Received", "receivedAt", "time"),
    Column("Client address", "clientAddress"),
    Column("Reason", "reason"),
    Column("Status", "status"),
    Column("Route", "path"),
    Column("Workspace", "workspace"),
    Column("Body bytes", "bodyBytes"),
    Column("Header names", "headerNames"),
)
REJECTION_FILTERS = (
    Filter("reason", "Reason", choices(REASONS)),
    Filter("since", "Since"),
    Filter("until", "Until"),
)


def _reason(code: str) -> Markup:
    return h('{} <span class="muted">({})</span>', REASON_TEXT.get(code, code), code)


def rejections_page(body: View, viewer: Viewer) -> Markup:
    """Refused webhook requests, newest first: when, from where, why, to which route. A wrong
    signing secret shows as `signature_mismatch`."""
    base = path("rejections")
    rows = [
        cells(
            r,
            REJECTION_COLUMNS,
            reason=_reason(r["reason"]),
            headerNames=", ".join(r["headerNames"]),
        )
        for r in body["items"]
    ]
    intro = h(
        "<p>Webhook requests this receiver refused (bodies and header values are never kept)."
        " A delivery signed with the wrong secret shows as {}.</p>",
        _reason("signature_mismatch"),
    )
    form = filter_form(base, viewer, *REJECTION_FILTERS)
    shown = listed(REJECTION_COLUMNS, rows, "No refused requests.")
    return page("Rejections", viewer, intro, form, shown, more=more_link(base, body, viewer))

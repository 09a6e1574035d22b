"""The console's pages, rendered from the admin API's own JSON views (`admin/schemas.py`), so the
console shows what the API would answer, under headers a person reads (`columns.py`). Pure:
dicts in, `Markup` out.
"""

from __future__ import annotations

import orjson
from markupsafe import Markup

from service.delivery_status import DELIVERY_STATUSES, RETRYABLE
from service.http.console.columns import (
    YES_NO,
    Column,
    Filter,
    View,
    cells,
    choices,
    fields,
    filter_form,
    listing,
)
from service.http.console.markup import (
    Viewer,
    chip,
    coloured,
    document,
    h,
    id_link,
    join,
    link,
    path,
    post_form,
    pre,
    table,
    url,
    when,
)
from service.http.console.metrics import training_metrics
from service.job_status import JOB_STATUSES

NOTICES = {
    "retried": "Queued for retry.",
    "test-sent": "Test event stored and routed.",
    "revoked": "Session revoked.",
}
DELIVERY_COLUMNS = (
    Column("ID", "id"),
    Column("Created", "createdAt", "time"),
    Column("Route", "route"),
    Column("Handler", "handler"),
    Column("Status", "status"),
    Column("Attempts", "attempts"),
    Column("Next attempt", "nextAttemptAt", "time"),
    Column("Last error", "lastError"),
)
# How the deliveries of an event are summed up on its row: the statuses each chip counts.
CHIPS = (
    ("succeeded", ("succeeded",)),
    ("pending", ("pending", "in_flight")),
    ("failed", ("retrying",)),
    ("dead", ("dead",)),
)


def login_page(nonce: str, error: str = "") -> Markup:
    """The sign-in form (the token is posted, never put in a URL)."""
    problem = h('<p class="error">{}</p>', error) if error else ""
    form = h(
        '<form method="post" action="{}"><input type="hidden" name="login_csrf" value="{}">'
        '<label>Admin token <input type="password" name="token" autocomplete="current-password"'
        " required autofocus></label> <button>Sign in</button></form>",
        path("login"),
        nonce,
    )
    return document("Sign in", join([h("<h1>Sign in</h1>"), problem, form]))


def error_page(code: int, message: str, viewer: Viewer | None = None) -> Markup:
    """A friendly error with a way back."""
    back = (
        link(path("overview"), "Back to the overview") if viewer else link(path("login"), "Sign in")
    )
    body = h('<h1>{}</h1><p class="error">{}</p><p>{}</p>', code, message, back)
    return document(f"Error {code}", body, viewer)


def page(title: str, viewer: Viewer, *parts: Markup, more: str | None = None) -> Markup:
    """A signed-in page: its heading, `parts`, the next-page link when there is one, and the
    notice left by the action that led here."""
    if more is not None:
        parts = (*parts, h("<p>{}</p>", link(more, "Next page →")))
    body = join([h("<h1>{}</h1>", title), *parts])
    return document(title, body, viewer, NOTICES.get(viewer.notice, ""))


def more_link(base: str, body: View, viewer: Viewer) -> str | None:
    """The next page's link, keeping the filters, or None on the last page."""
    cursor = body["nextCursor"]
    return url(base, **viewer.filters, cursor=cursor) if cursor else None


def delivery_chips(counts: View) -> Markup:
    """How an event's deliveries stand, as counted chips ("2 succeeded", "1 dead")."""
    found = [(label, sum(counts.get(s, 0) for s in of)) for label, of in CHIPS]
    return join(chip(count, label, label) for label, count in found if count)


EVENT_COLUMNS = (
    Column("ID", "id"),
    Column("Received", "receivedAt", "time"),
    Column("Type", "type"),
    Column("Job", "jobId"),
    Column("Source", "source"),
    Column("Test", "isTest", "flag"),
    Column("Duplicates", "duplicateCount"),
    Column("Deliveries", "deliveryCounts"),
)
EVENT_FILTERS = (
    Filter("type", "Type"),
    Filter("jobId", "Job"),
    Filter("test", "Test", YES_NO),
    Filter("duplicate", "Duplicate", YES_NO),
    Filter("since", "Since"),
    Filter("until", "Until"),
)


def events_page(body: View, viewer: Viewer) -> Markup:
    """Events, newest first, each with its deliveries' status chips; filters, next page."""
    base = path("events")
    rows = [
        cells(
            e,
            EVENT_COLUMNS,
            id=id_link(path("events", e["id"]), e["id"]),
            type=link(url(base, type=e["type"]), e["type"]),
            jobId=link(url(base, jobId=e["jobId"]), e["jobId"]) if e["jobId"] else "",
            deliveryCounts=delivery_chips(e.get("deliveryCounts", {})),
        )
        for e in body["items"]
    ]
    form = filter_form(base, viewer, *EVENT_FILTERS)
    shown = listing(EVENT_COLUMNS, rows, "No events match.")
    return page("Events", viewer, form, shown, more=more_link(base, body, viewer))


def delivery_row(d: View, viewer: Viewer, columns: tuple[Column, ...]) -> list[object]:
    """A delivery's cells: its id linked to its page, coloured status, a retry button when it
    may be retried by this viewer."""
    retry = ""
    if viewer.can_write and d["status"] in RETRYABLE:
        retry = post_form(path("deliveries", d["id"], "retry"), "Retry", viewer)
    given = {
        "id": id_link(path("deliveries", d["id"]), d["id"]),
        "status": coloured(d["status"]),
        "eventId": id_link(path("events", d["eventId"]), d["eventId"]),
    }
    return [*cells(d, columns, **given), retry]


ATTEMPT_COLUMNS = (
    Column("#", "number"),
    Column("Started", "startedAt", "time"),
    Column("Result", "outcome"),
    Column("Duration", "durationMs", "ms"),
    Column("Detail", "detail"),
)
OUTCOMES = {
    "ok": "succeeded",
    "retry": "failed, retry scheduled",
    "fail": "failed for good: dead",
    "dead": "failed, no attempt left: dead",
}


def outcome_label(outcome: str) -> Markup:
    """An attempt's recorded outcome as a sentence, coloured by where it left the delivery."""
    kind = {"ok": "succeeded", "fail": "dead", "dead": "dead"}.get(outcome, "retrying")
    return h('<span class="s-{}">{}</span>', kind, OUTCOMES.get(outcome, outcome))


def _attempts(d: View) -> Markup:
    rows = [
        cells(a, ATTEMPT_COLUMNS, outcome=outcome_label(a["outcome"])) for a in d["attemptList"]
    ]
    shown = listing(ATTEMPT_COLUMNS, rows, "No attempt yet.")
    return h(
        "<h3>Attempts of {} ({})</h3>{}",
        d["route"],
        id_link(path("deliveries", d["id"]), d["id"]),
        shown,
    )


EVENT_FIELDS = (
    Column("ID", "id"),
    Column("Source", "source"),
    Column("Workspace", "workspace"),
    Column("Job", "jobId"),
    Column("Received", "receivedAt", "time"),
    Column("Occurred", "occurredAt", "time"),
    Column("Signature verified", "verified", "flag"),
    Column("Test", "isTest", "flag"),
    Column("Duplicates", "duplicateCount"),
    Column("Dedup key", "dedupKey"),
)


def event_page(event: View, viewer: Viewer) -> Markup:
    """One event: its fields, payload, redacted headers, deliveries (each with `attemptList`)."""
    job = event["jobId"]
    summary = fields(event, EVENT_FIELDS, jobId=link(path("jobs", job), job) if job else "")
    payload = orjson.dumps(event["payload"], option=orjson.OPT_INDENT_2).decode()
    headers = table(("Name", "Value"), [(x["name"], x["value"]) for x in event["headers"]])
    sent = [delivery_row(d, viewer, DELIVERY_COLUMNS) for d in event["deliveries"]]
    tries = join(_attempts(d) for d in event["deliveries"])
    parts = "<h2>Payload</h2>{}<h2>Request headers</h2>{}<h2>Deliveries</h2>{}{}"
    shown = listing(DELIVERY_COLUMNS, sent, "No route took this event.", extra=1)
    return page(event["type"], viewer, summary, h(parts, pre(payload), headers, shown, tries))


def deliveries_page(body: View, viewer: Viewer) -> Markup:
    """Deliveries with status and route filters, a retry button each, and bulk retry."""
    base, columns = path("deliveries"), (*DELIVERY_COLUMNS, Column("Event", "eventId"))
    form = filter_form(
        base,
        viewer,
        Filter("status", "Status", choices(DELIVERY_STATUSES)),
        Filter("route", "Route"),
    )
    route = viewer.filters.get("route")
    bulk = Markup()
    if viewer.can_write:
        label = "Retry all dead" + (f" of {route}" if route else "")
        bulk = post_form(url(path("deliveries", "retry"), route=route), label, viewer)
    rows = [delivery_row(d, viewer, columns) for d in body["items"]]
    shown = listing(columns, rows, "No deliveries match.", extra=1)
    return page("Deliveries", viewer, form, bulk, shown, more=more_link(base, body, viewer))


JOB_COLUMNS = (
    Column("ID", "id"),
    Column("Created", "createdAt", "time"),
    Column("LLMTune job", "llmtuneJobId"),
    Column("Status", "status"),
    Column("Base model", "baseModel"),
    Column("Finished", "finishedAt", "time"),
)


def jobs_page(body: View, viewer: Viewer) -> Markup:
    """Jobs, newest first, filtered by status (a drop-down)."""
    base = path("jobs")
    rows = [
        cells(
            j, JOB_COLUMNS, id=id_link(path("jobs", j["id"]), j["id"]), status=coloured(j["status"])
        )
        for j in body["items"]
    ]
    form = filter_form(base, viewer, Filter("status", "Status", choices(JOB_STATUSES)))
    shown = listing(JOB_COLUMNS, rows, "No jobs match.")
    return page("Jobs", viewer, form, shown, more=more_link(base, body, viewer))


def _what(entry: View) -> Markup:
    kind, state = entry["kind"], coloured(entry.get("status", ""))
    event = id_link(path("events", entry.get("eventId", "")), entry.get("eventId", ""))
    if kind == "event":
        return join(
            [link(path("events", entry["eventId"]), entry["type"]), f" ({entry['source']})"]
        )
    if kind == "delivery":
        delivery = link(path("deliveries", entry["deliveryId"]), entry["route"])
        return join([delivery, ": ", state, " of ", event])
    if kind == "inference":
        return join([entry["model"], ": ", state])
    return join([entry.get("jobId")])


JOB_FIELDS = (
    Column("ID", "id"),
    Column("LLMTune job", "llmtuneJobId"),
    Column("Status", "status"),
    Column("Base model", "baseModel"),
    Column("Dataset", "dataset"),
    Column("Artifact", "artifact"),
    Column("Deployment", "deploymentId"),
    Column("Error", "error"),
    Column("Submission error", "submitError"),
    Column("Created", "createdAt", "time"),
)


def job_page(job: View, viewer: Viewer) -> Markup:
    """One job, its training metrics (loss drawn over its events) when the console read them,
    and its timeline: submission, events, deliveries, inference runs."""
    metrics = training_metrics(job.get("trainingMetrics", []))
    summary = fields(job, JOB_FIELDS, status=coloured(job["status"]))
    rows = [(when(e["at"]), e["kind"], _what(e)) for e in job["timeline"]]
    timeline = table(("When", "Kind", "What"), rows)
    return page(f"Job {job['id']}", viewer, summary, metrics, h("<h2>Timeline</h2>"), timeline)


ROUTE_COLUMNS = (
    Column("Name", "name"),
    Column("Handler", "handler"),
    Column("Events", "events"),
    Column("Enabled", "enabled", "flag"),
    Column("Signing", "signing"),
    Column("Public key", "publicKey"),
    Column("Destination host", "destinationHost"),
)


def routes_page(body: View, viewer: Viewer) -> Markup:
    """The configured routes; an `http` route's signing, `v1a` public key and destination host
    (the public key is what the destination's owner verifies with)."""
    rows = [cells(r, ROUTE_COLUMNS, events=", ".join(r["events"])) for r in body["items"]]
    return page("Routes", viewer, listing(ROUTE_COLUMNS, rows, "No routes."))


SESSION_COLUMNS = (
    Column("ID", "id", "id"),
    Column("Token", "token"),
    Column("Signed in", "createdAt", "time"),
    Column("Expires", "expiresAt", "time"),
    Column("Client address", "clientAddress"),
)


def sessions_page(body: View, viewer: Viewer) -> Markup:
    """Live console sessions (write scope only), each with a revoke button; yours is marked."""
    rows = [
        [
            *cells(s, SESSION_COLUMNS),
            "this session" if s["id"] == body["current"] else "",
            post_form(path("sessions", s["id"], "revoke"), "Revoke", viewer),
        ]
        for s in body["items"]
    ]
    return page("Console sessions", viewer, listing(SESSION_COLUMNS, rows, "No live sessions.", 2))

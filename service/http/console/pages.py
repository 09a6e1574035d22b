"""The console's pages, rendered from the admin API's own JSON views (`admin/schemas.py`), so the
console shows what the API would answer, under the API's field names. Pure: dicts in, `Markup` out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from markupsafe import Markup

from service.delivery_status import DELIVERY_STATUSES, RETRYABLE
from service.http.console.markup import (
    Viewer,
    attr,
    coloured,
    document,
    h,
    join,
    link,
    path,
    post_form,
    pre,
    table,
    url,
)

BOOL = ("true", "false")
NOTICES = {
    "retried": "Queued for retry.",
    "test-sent": "Test event stored and routed.",
    "revoked": "Session revoked.",
}
DELIVERY_KEYS = "createdAt route handler status attempts nextAttemptAt lastError"
ATTEMPT_KEYS = "number startedAt durationMs outcome detail"
View = Mapping[str, Any]
SELECTED = Markup(" selected")


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
    back = link(path("events"), "Back to events") if viewer else link(path("login"), "Sign in")
    body = h('<h1>{}</h1><p class="error">{}</p><p>{}</p>', code, message, back)
    return document(f"Error {code}", body, viewer)


def _input(name: str, value: str, options: Sequence[str]) -> Markup:
    if not options:
        return h('<label>{} <input name="{}" value="{}"></label> ', name, name, attr(value))
    opts = join(
        h(
            '<option value="{}"{}>{}</option>',
            o,
            SELECTED if o == value else "",
            o or "any",
        )
        for o in ("", *options)
    )
    return h('<label>{} <select name="{}">{}</select></label> ', name, name, opts)


def _filters(base: str, viewer: Viewer, **options: Sequence[str]) -> Markup:
    given = viewer.filters
    inputs = join(_input(name, given.get(name, ""), opts) for name, opts in options.items())
    form = '<form class="filters" method="get" action="{}">{} <button>Filter</button> {}</form>'
    return h(form, base, inputs, link(base, "clear"))


def _cells(view: View, keys: str, **shown: object) -> list[object]:
    """The values of `keys` (space-separated), except those given as `shown`."""
    return [shown[key] if key in shown else view.get(key) for key in keys.split()]


def _fields(view: View, keys: str, **shown: object) -> Markup:
    return table(("field", "value"), zip(keys.split(), _cells(view, keys, **shown), strict=True))


def _page(title: str, viewer: Viewer, *parts: Markup, more: str | None = None) -> Markup:
    if more is not None:
        parts = (*parts, h("<p>{}</p>", link(more, "Next page →")))
    body = join([h("<h1>{}</h1>", title), *parts])
    return document(title, body, viewer, NOTICES.get(viewer.notice, ""))


def _more(base: str, body: View, viewer: Viewer) -> str | None:
    cursor = body["nextCursor"]
    return url(base, **viewer.filters, cursor=cursor) if cursor else None


def events_page(body: View, viewer: Viewer) -> Markup:
    """Events, newest first, with filters and the next-page link."""
    base, keys = path("events"), "receivedAt type jobId source isTest duplicateCount id"
    form = _filters(base, viewer, type=(), jobId=(), test=BOOL, duplicate=BOOL, since=(), until=())
    rows = [
        _cells(
            e,
            keys,
            type=link(url(base, type=e["type"]), e["type"]),
            jobId=link(url(base, jobId=e["jobId"]), e["jobId"]) if e["jobId"] else "",
            id=link(path("events", e["id"]), e["id"]),
        )
        for e in body["items"]
    ]
    listing = table(keys.split(), rows, "No events match.")
    return _page("Events", viewer, form, listing, more=_more(base, body, viewer))


def _delivery_row(d: View, viewer: Viewer, keys: str) -> list[object]:
    retry = ""
    if viewer.can_write and d["status"] in RETRYABLE:
        retry = post_form(path("deliveries", d["id"], "retry"), "Retry", viewer)
    event = link(path("events", d["eventId"]), d["eventId"])
    return [*_cells(d, keys, status=coloured(d["status"]), eventId=event), retry]


def _attempts(d: View) -> Markup:
    rows = [_cells(a, ATTEMPT_KEYS) for a in d["attemptList"]]
    listing = table(ATTEMPT_KEYS.split(), rows, "No attempt yet.")
    return h("<h3>Attempts of {} ({})</h3>{}", d["route"], d["id"], listing)


def event_page(event: View, viewer: Viewer) -> Markup:
    """One event: its fields, payload, redacted headers, deliveries (each with `attemptList`)."""
    job = event["jobId"]
    keys = "id source workspace jobId receivedAt occurredAt verified isTest duplicateCount dedupKey"
    summary = _fields(event, keys, jobId=link(path("jobs", job), job) if job else "")
    payload = orjson.dumps(event["payload"], option=orjson.OPT_INDENT_2).decode()
    headers = table(("name", "value"), [(x["name"], x["value"]) for x in event["headers"]])
    sent = [_delivery_row(d, viewer, DELIVERY_KEYS) for d in event["deliveries"]]
    tries = join(_attempts(d) for d in event["deliveries"])
    parts = "<h2>Payload</h2>{}<h2>Headers</h2>{}<h2>Deliveries</h2>{}{}"
    listing = table([*DELIVERY_KEYS.split(), ""], sent)
    return _page(event["type"], viewer, summary, h(parts, pre(payload), headers, listing, tries))


def deliveries_page(body: View, viewer: Viewer) -> Markup:
    """Deliveries with status and route filters, a retry button each, and bulk retry."""
    base, keys = path("deliveries"), f"{DELIVERY_KEYS} eventId"
    form = _filters(base, viewer, status=DELIVERY_STATUSES, route=())
    route = viewer.filters.get("route")
    bulk = Markup()
    if viewer.can_write:
        label = "Retry all dead" + (f" of {route}" if route else "")
        bulk = post_form(url(path("deliveries", "retry"), route=route), label, viewer)
    rows = [_delivery_row(d, viewer, keys) for d in body["items"]]
    listing = table([*keys.split(), ""], rows, "No deliveries match.")
    return _page("Deliveries", viewer, form, bulk, listing, more=_more(base, body, viewer))


def jobs_page(body: View, viewer: Viewer) -> Markup:
    """Jobs, newest first."""
    base, keys = path("jobs"), "createdAt id llmtuneJobId status baseModel finishedAt"
    rows = [
        _cells(j, keys, id=link(path("jobs", j["id"]), j["id"]), status=coloured(j["status"]))
        for j in body["items"]
    ]
    listing = table(keys.split(), rows, "No jobs match.")
    form = _filters(base, viewer, status=())
    return _page("Jobs", viewer, form, listing, more=_more(base, body, viewer))


def _what(entry: View) -> Markup:
    kind, state = entry["kind"], coloured(entry.get("status", ""))
    event = link(path("events", entry.get("eventId", "")), entry.get("eventId"))
    if kind == "event":
        return join(
            [link(path("events", entry["eventId"]), entry["type"]), f" ({entry['source']})"]
        )
    if kind == "delivery":
        return join([entry["route"], ": ", state, " of ", event])
    if kind == "inference":
        return join([entry["model"], ": ", state])
    return join([entry.get("jobId")])


def job_page(job: View, viewer: Viewer) -> Markup:
    """One job and its timeline: submission, events, deliveries, inference runs."""
    keys = "id llmtuneJobId status baseModel dataset artifact deploymentId error submitError"
    summary = _fields(job, f"{keys} createdAt", status=coloured(job["status"]))
    rows = [(e["at"], e["kind"], _what(e)) for e in job["timeline"]]
    timeline = table(("at", "kind", "what"), rows)
    return _page(f"Job {job['id']}", viewer, summary, h("<h2>Timeline</h2>"), timeline)


def routes_page(body: View, viewer: Viewer) -> Markup:
    """The configured routes; an `http` route's signing, `v1a` public key and destination host
    (the public key is what the destination's owner verifies with)."""
    keys = "name handler events enabled signing publicKey destinationHost"
    rows = [_cells(r, keys, events=", ".join(r["events"])) for r in body["items"]]
    return _page("Routes", viewer, table(keys.split(), rows, "No routes."))


def sessions_page(body: View, viewer: Viewer) -> Markup:
    """Live console sessions (write scope only), each with a revoke button; yours is marked."""
    keys = "id token createdAt expiresAt clientAddress"
    rows = [
        [
            *_cells(s, keys),
            "this session" if s["id"] == body["current"] else "",
            post_form(path("sessions", s["id"], "revoke"), "Revoke", viewer),
        ]
        for s in body["items"]
    ]
    listing = table([*keys.split(), "", ""], rows, "No live sessions.")
    return _page("Console sessions", viewer, listing)

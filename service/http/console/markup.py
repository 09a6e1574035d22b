"""The console's tiny templating over markupsafe: a `Markup` is safe to emit, everything else
is escaped by markupsafe on the way in (`h`, `join`) after `service.display.visible`, so a stored
`<script>` shows as text and an invisible or bidi-control character as its escape (`\\u202e`);
`attr` keeps a form value exact. Also the page frame, its stylesheet and the
Content-Security-Policy that admits exactly that stylesheet. Pure.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode

from markupsafe import Markup, escape

from service.display import visible
from service.ids import looks_like_id
from service.links import console_path

# The console names its paths this way; kept here so pages and routes import one module.
path = console_path

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{display:flex;gap:1rem;align-items:center;padding:.6rem 1.2rem;background:#1d2b3a}
header a,header span{color:#fff;text-decoration:none}header .who{margin-left:auto;opacity:.8}
main{padding:1rem 1.2rem}h1{font-size:1.3rem;margin:.2rem 0 .8rem}h2{font-size:1.05rem}
table{border-collapse:collapse;background:#fff;width:100%;margin-bottom:1rem}
th,td{border-bottom:1px solid #e2e5ea;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#eef1f5}pre{background:#fff;border:1px solid #e2e5ea;padding:.6rem;overflow:auto}
form.inline{display:inline}form.filters{margin-bottom:.8rem}input,select,button{font:inherit}
.notice{background:#e5f5e8;padding:.4rem .6rem}.error{background:#fde8e8;padding:.4rem .6rem}
.s-dead,.s-failed{color:#b42318;font-weight:600}.s-succeeded,.s-deployed{color:#067647}
time,.id,.chip{white-space:nowrap}.id{font-family:ui-monospace,monospace;font-size:.92em}
.chip{display:inline-block;border-radius:.7rem;padding:0 .45rem;margin:0 .2rem .1rem 0;
font-size:.85em;background:#eef1f5}.c-succeeded{background:#dcf3e2;color:#05603a}
.c-failed{background:#fdebd0;color:#93370d}.c-dead{background:#fde2e1;color:#b42318}
.c-pending{background:#e6eefb;color:#1d4ed8}
figure.chart{margin:.2rem 0 1rem}figure.chart svg{background:#fff;border:1px solid #e2e5ea}
.chart path{fill:none;stroke:#2563eb;stroke-width:2}.chart circle{fill:#2563eb}
.chart rect{fill:#64748b}.chart .s-succeeded rect{fill:#12b76a}.chart .s-dead rect{fill:#d92d20}
.chart .s-retrying rect{fill:#f79009}.chart text{font-size:9px;text-anchor:middle;fill:#475467}
figcaption{font-size:.85em;color:#475467}.muted{color:#667085}
"""
# The one script: it rewrites each `<time>` in the viewer's time zone. Pages are whole without
# it (the server writes UTC), and the CSP admits it as a same-origin file, never inline.
LOCAL_TIME_SCRIPT = "local-time.js"
LOCAL_TIME_JS = """"use strict";
(function () {
  var months = ["Jan","Feb","Mar","Apr","May","Jun","Jul","Aug","Sep","Oct","Nov","Dec"];
  function two(n) { return (n < 10 ? "0" : "") + n; }
  function zone(d) {
    try {
      var parts = new Intl.DateTimeFormat(undefined, {timeZoneName: "short"}).formatToParts(d);
      for (var i = 0; i < parts.length; i++) {
        if (parts[i].type === "timeZoneName") { return " " + parts[i].value; }
      }
    } catch (e) {}
    return "";
  }
  function local(el) {
    var d = new Date(el.getAttribute("datetime"));
    if (isNaN(d.getTime())) { return; }
    el.textContent = months[d.getMonth()] + " " + two(d.getDate()) + " " + two(d.getHours()) +
      ":" + two(d.getMinutes()) + ":" + two(d.getSeconds()) + zone(d);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("time[datetime]").forEach(local);
  });
})();
"""
_STYLE_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
CSP = (
    f"default-src 'self'; script-src 'self'; style-src 'sha256-{_STYLE_HASH}'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def text(value: object) -> Markup:
    """`value` as markup: markup kept, None empty, anything else escaped as visible text."""
    if isinstance(value, Markup):
        return value
    return escape(visible("" if value is None else str(value)))


def attr(value: str) -> Markup:
    """A form field's value exactly as given (HTML-escaped only), so the browser sends it back
    unchanged; never use it for text that is shown."""
    return escape(value)


def pre(shown: str) -> Markup:
    """Preformatted text: escaped and visible, but its line breaks kept."""
    return h("<pre>{}</pre>", escape(visible(shown, keep="\n")))


def h(template: str, *args: object) -> Markup:
    """`template` (trusted markup with `{}` holes) filled with `args` as `text`."""
    # Every hole gets `text` first: markupsafe alone would not write hidden characters out.
    return Markup(template).format(*map(text, args))  # noqa: S704 - templates are our literals


def join(parts: Iterable[object]) -> Markup:
    """The parts as `text`, one after another."""
    return Markup().join(map(text, parts))


def url(path: str, **query: str | None) -> str:
    """`path` with the non-empty `query` values encoded."""
    kept = {name: value for name, value in query.items() if value}
    return f"{path}?{urlencode(kept)}" if kept else path


def link(href: str, text: object) -> Markup:
    """An `<a>`."""
    return h('<a href="{}">{}</a>', href, text)


def coloured(value: object) -> Markup:
    """A status word, coloured by its kind."""
    return h('<span class="s-{}">{}</span>', value, value)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], empty: str = "None.") -> Markup:
    """A table of escaped cells (markup cells kept), or `empty` when there are no rows."""
    body = join(h("<tr>{}</tr>", join(h("<td>{}</td>", c) for c in row)) for row in rows)
    if not body:
        return h("<p>{}</p>", empty)
    head = join(h("<th>{}</th>", name) for name in headers)
    return h("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking (for the header, and whether to offer actions), from which page, with
    which list filters, and the notice left by the action that led here."""

    name: str
    scope: str
    can_write: bool
    csrf: str
    here: str
    filters: Mapping[str, str] = field(default_factory=dict)
    notice: str = ""


def post_form(action: str, label: str, viewer: Viewer, **hidden: str) -> Markup:
    """A one-button POST form carrying the session's CSRF token and the way back."""
    values = {"csrf": viewer.csrf, "next": viewer.here, **hidden}
    inputs = join(
        h('<input type="hidden" name="{}" value="{}">', k, attr(v)) for k, v in values.items()
    )
    return h(
        '<form class="inline" method="post" action="{}">{}<button>{}</button></form>',
        action,
        inputs,
        label,
    )


def document(title: str, body: Markup, viewer: Viewer | None = None, notice: str = "") -> Markup:
    """A whole page: the header (navigation, who is signed in, logout) and `body`."""
    nav = Markup("<span>llmtune-receiver</span>")
    if viewer is not None:
        shown = (
            "overview",
            "events",
            "deliveries",
            "jobs",
            "rejections",
            "routes",
            *(("sessions",) * viewer.can_write),
        )
        pages = join(link(path(p), p.title()) for p in shown)
        test = post_form(path("test-event"), "Send test event", viewer) if viewer.can_write else ""
        who = h('<span class="who">{} ({})</span>', viewer.name, viewer.scope)
        nav = join([nav, pages, test, who, post_form(path("logout"), "Log out", viewer)])
    banner = h('<p class="notice">{}</p>', notice) if notice else ""
    return h(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{} · console</title>'
        '<meta name="viewport" content="width=device-width"><style>{}</style>'
        '<script src="{}" defer></script></head>'
        "<body><header>{}</header><main>{}{}</main></body></html>",
        title,
        Markup(CSS),  # noqa: S704 - our own constant stylesheet
        path(LOCAL_TIME_SCRIPT),
        nav,
        banner,
        body,
    )


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def when(value: str | None) -> Markup:
    """An RFC 3339 time from the API as a short UTC `<time>` (the script shows it in the
    viewer's zone), the full time on hover; empty for None, as given when unreadable."""
    if not value:
        return Markup()
    try:
        moment = datetime.fromisoformat(value).astimezone(UTC)
    except ValueError:
        return text(value)
    short = f"{MONTHS[moment.month - 1]} {moment:%d %H:%M:%S} UTC"
    machine = f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"
    return h('<time datetime="{}" title="{}">{}</time>', machine, value, short)


def short_id(value: str) -> str:
    """One of our ids (`evt_` + 28 hex digits) cut to its prefix and last 8 digits (the random
    part, so ids of one moment stay apart); any other value unchanged."""
    prefix, _, rest = value.partition("_")
    if looks_like_id(value) and len(rest) > 12:
        return f"{prefix}_…{rest[-8:]}"
    return value


def id_link(href: str, value: str) -> Markup:
    """A link to `href` showing `value` shortened, the whole of it on hover."""
    return h('<a class="id" href="{}" title="{}">{}</a>', href, value, short_id(value))


def yes_no(value: object) -> str:
    """`yes` or `no` for a flag, empty when unknown."""
    return "" if value is None else ("yes" if value else "no")


def chip(count: int, label: str, kind: str) -> Markup:
    """A small coloured count, such as "2 succeeded"."""
    return h('<span class="chip c-{}">{} {}</span>', kind, count, label)

"""The web console at `/admin/`: server-rendered pages over the admin API's own endpoint
functions (same queries, same validation), behind a session cookie opened with an admin token.

Every POST carries the session's CSRF token (the login form: a double-submit nonce) or gets a
403 page; a read-scoped session may look but not act. Cookies are HttpOnly, SameSite=Strict,
and Secure when the request came over https (behind a proxy uvicorn takes the scheme from
X-Forwarded-Proto, but only from FORWARDED_ALLOW_IPS) or PUBLIC_URL is https. A valid cookie
opens the console only while its session is live in the database (`sessions.py`).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import structlog
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from service.http.admin import schemas
from service.http.admin.audit import audit_target, write_audit_line
from service.http.admin.auth import authenticate, count_failure
from service.http.admin.deliveries import list_deliveries, retry_deliveries, retry_delivery
from service.http.admin.jobs import list_jobs
from service.http.admin.rejections import list_rejections
from service.http.admin.route_config import list_routes
from service.http.admin.routes import get_event
from service.http.admin.synthetic import synthetic_payload
from service.http.console import debug_pages, pages, reads, session, sessions
from service.http.console.markup import CSP, LOCAL_TIME_JS, LOCAL_TIME_SCRIPT, Viewer, path
from service.http.context import services
from service.http.errors import ApiError
from service.links import CONSOLE as BASE
from service.services import Services
from service.store import deliveries

log = structlog.get_logger(__name__)

MAX_FORM_BYTES = 16 * 1024
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
Fetch = Callable[[Request, Services], Awaitable[Any]]
Endpoint = Callable[[Request], Awaitable[Response]]
POST = ["POST"]


def _html(content: Markup, status: int = 200) -> Response:
    return HTMLResponse(content, status_code=status, headers=HEADERS)


def _redirect(to: str) -> Response:
    return RedirectResponse(to, status_code=303, headers=HEADERS)


def _set_cookie(request: Request, response: Response, name: str, value: str, **kw: Any) -> None:
    https = request.url.scheme == "https"
    secure = https or services(request).settings.public_url.startswith("https://")
    response.set_cookie(name, value, httponly=True, samesite="strict", secure=secure, **kw)


async def _session(request: Request, svc: Services) -> session.Session | None:
    return await sessions.current(request, svc)


def _viewer(request: Request, found: session.Session, notice: str = "") -> Viewer:
    query = request.url.query
    filters = {k: v for k, v in request.query_params.items() if k != "cursor"}
    token = found.token
    # Re-encoded: the decoded path may hold any character an id does (`_back` wants ASCII).
    here = quote(request.url.path, safe="/") + (f"?{query}" if query else "")
    return Viewer(token.name, token.scope, token.can_write, found.csrf, here, filters, notice)


async def _form(request: Request) -> dict[str, str]:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _own(request: Request) -> Request:
    """The request without blank query values (an empty filter field means "any"; the admin
    parsers would call it malformed) and with a state of its own: the admin functions keep the
    parsed query and audit targets there, which must not leak into another request."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if v and k != "done"]
    state = dict(request.scope.get("state", {}))
    scope = {**request.scope, "query_string": urlencode(kept).encode(), "state": state}
    return Request(scope, request.receive)


def page(fetch: Fetch, draw: Callable[[Any, Viewer], Markup]) -> Endpoint:
    """A GET page: what `fetch` reads drawn for the signed-in viewer, else the login form."""

    async def endpoint(request: Request) -> Response:
        svc = services(request)
        found = await _session(request, svc)
        if found is None:
            return _redirect(path("login"))
        cleaned = _own(request)
        # The admin functions read the caller's token there (what a read scope may see).
        cleaned.state.admin_token = found.token
        viewer = _viewer(cleaned, found, request.query_params.get("done", ""))
        try:
            return _html(draw(await fetch(cleaned, svc), viewer))
        except ApiError as exc:
            return _html(pages.error_page(exc.status, exc.message, viewer), exc.status)

    return endpoint


def action(act: Fetch, done: str) -> Endpoint:
    """A POST by a signed-in writer with the session's CSRF token, audited, then a 303 to the
    page the action names (a `str` result) or back to the page the form was on."""
    name = f"console_{act.__name__}"

    async def endpoint(original: Request) -> Response:
        request = _own(original)
        svc = services(request)
        found = await _session(request, svc)
        form = await _form(request)
        if found is None or not session.same_secret(found.csrf, form.get("csrf")):
            message = "This form has expired or did not come from the console; reload the page."
            return _html(pages.error_page(403, message), 403)
        viewer = _viewer(request, found)
        request.state.admin_token = found.token
        if not found.token.can_write:
            write_audit_line(request, found.token, action=name, status=403, error="FORBIDDEN")
            return _html(pages.error_page(403, "This token may only read.", viewer), 403)
        try:
            result = await act(request, svc)
        except ApiError as exc:
            write_audit_line(request, found.token, action=name, status=exc.status, error=exc.code)
            return _html(pages.error_page(exc.status, exc.message, viewer), exc.status)
        write_audit_line(request, found.token, action=name, status=303)
        back = result if isinstance(result, str) else _back(form.get("next", ""))
        return _redirect(f"{back}{'&' if '?' in back else '?'}done={done}")

    return endpoint


def _back(to: str) -> str:
    # Only a console page of this site: never an open redirect, never a header break.
    safe = to.startswith(BASE + "/") and to.isascii() and to.isprintable()
    return to if safe else path("events")


async def login_form(request: Request) -> Response:
    """The sign-in page, with a fresh double-submit nonce (cookie and hidden field)."""
    if await _session(request, services(request)) is not None:
        return _redirect(path("overview"))
    return _login_page(request, "", 200)


def _login_page(request: Request, error: str, status: int) -> Response:
    nonce = session.login_nonce()
    response = _html(pages.login_page(nonce, error), status)
    _set_cookie(request, response, session.LOGIN_COOKIE, nonce, path=path("login"), max_age=600)
    return response


async def login(request: Request) -> Response:
    """Check the posted token (constant time); open a session for it."""
    svc = services(request)
    form = await _form(request)
    if not session.same_secret(request.cookies.get(session.LOGIN_COOKIE), form.get("login_csrf")):
        return _login_page(request, "The sign-in form expired; try again.", 403)
    presented = form.get("token", "").strip().encode() or None
    token = authenticate(presented, svc.admin_tokens)
    if token is None:
        log.warning("console_login_refused")
        # An empty form is a slip, not a guess: only a wrong token counts towards the throttle.
        wait = None if presented is None else count_failure(request, svc, "console")
        if wait is not None:
            message = f"Too many failed sign-ins from your address; try again in {wait} s."
            response = _login_page(request, message, 429)
            response.headers["Retry-After"] = str(wait)
            return response
        return _login_page(request, "That token is not valid.", 401)
    cookie = await sessions.start(request, svc, token)
    write_audit_line(request, token, action="console_login", status=303)
    response = _redirect(path("overview"))
    lifetime = session.LIFETIME_SECONDS
    _set_cookie(request, response, session.COOKIE, cookie, path="/admin/", max_age=lifetime)
    response.delete_cookie(session.LOGIN_COOKIE, path=path("login"))
    return response


async def logout(request: Request) -> Response:
    """End the session for every process and forget its cookie (CSRF-checked, so another
    site cannot sign you out)."""
    svc = services(request)
    found = await _session(request, svc)
    form = await _form(request)
    if found is not None and not session.same_secret(found.csrf, form.get("csrf")):
        return _html(pages.error_page(403, "Reload the page and log out again."), 403)
    if found is not None:
        await sessions.end(svc, found.id)
        write_audit_line(request, found.token, action="console_logout", status=303)
    response = _redirect(path("login"))
    response.delete_cookie(session.COOKIE, path="/admin/", httponly=True, samesite="strict")
    return response


async def event_with_attempts(request: Request, svc: Services) -> dict[str, Any]:
    """The admin API's event view, each delivery with its `attemptList`."""
    event = await get_event(request, svc)

    async def read(s: AsyncSession) -> list[dict[str, Any]]:
        return [
            {
                **d,
                "attemptList": [
                    schemas.attempt_view(a) for a in await deliveries.attempts_of(s, d["id"])
                ],
            }
            for d in event["deliveries"]
        ]

    return {**event, "deliveries": await svc.db.read(read)}


async def test_event(request: Request, svc: Services) -> str:
    """Store a `training.completed` flagged as a test, as `POST /admin/test-event` does (routed
    like any other); the page to go to is the new event's."""
    job_id = f"test-{secrets.token_hex(8)}"
    body = synthetic_payload("training.completed", job_id, svc)
    headers = [("content-type", "application/json")]
    accepted = await svc.ingest.accept(body, headers, source="test", trusted=True)
    audit_target(request, event_id=accepted.event_id, job_id=job_id)
    return path("events", accepted.event_id)


async def home(request: Request) -> Response:
    """`/admin/` is the console's overview."""
    return _redirect(path("overview"))


async def local_time_script(request: Request) -> Response:
    """The console's one script (same-origin, so the CSP admits it): times in the viewer's zone."""
    return Response(LOCAL_TIME_JS, media_type="text/javascript", headers=HEADERS)


async def no_such_page(request: Request) -> Response:
    """Any other console path: an HTML 404 page (after signing in), never the API's JSON."""
    found = await _session(request, services(request))
    if found is None:
        return _redirect(path("login"))
    viewer = _viewer(_own(request), found)
    return _html(pages.error_page(404, "There is no such console page.", viewer), 404)


ROUTES = [
    Route("/admin/", home, methods=["GET"]),
    Route(BASE, home, methods=["GET"]),
    Route(path(LOCAL_TIME_SCRIPT), local_time_script, methods=["GET"]),
    Route(path("overview"), page(reads.overview, debug_pages.overview_page), methods=["GET"]),
    Route(path("login"), login_form, methods=["GET"]),
    Route(path("login"), login, methods=POST),
    Route(path("logout"), logout, methods=POST),
    Route(path("events"), page(reads.events_with_counts, pages.events_page), methods=["GET"]),
    Route(BASE + "/events/{event_id}", page(event_with_attempts, pages.event_page)),
    Route(path("deliveries"), page(list_deliveries, pages.deliveries_page), methods=["GET"]),
    Route(path("deliveries", "retry"), action(retry_deliveries, "retried"), methods=POST),
    Route(
        BASE + "/deliveries/{delivery_id}",
        page(reads.delivery_with_request, debug_pages.delivery_page),
        methods=["GET"],
    ),
    Route(
        BASE + "/deliveries/{delivery_id}/retry", action(retry_delivery, "retried"), methods=POST
    ),
    Route(path("jobs"), page(list_jobs, pages.jobs_page), methods=["GET"]),
    # LLMTune's job ids may hold "/" (links encode it as %2F, which routing sees decoded).
    Route(BASE + "/jobs/{job_id:path}", page(reads.job_with_metrics, pages.job_page)),
    Route(path("rejections"), page(list_rejections, debug_pages.rejections_page), methods=["GET"]),
    Route(path("routes"), page(list_routes, pages.routes_page), methods=["GET"]),
    Route(path("test-event"), action(test_event, "test-sent"), methods=POST),
    Route(path("sessions"), page(sessions.list_sessions, pages.sessions_page), methods=["GET"]),
    Route(
        BASE + "/sessions/{session_id}/revoke",
        action(sessions.revoke_session, "revoked"),
        methods=POST,
    ),
    Route(BASE + "/{rest:path}", no_such_page, methods=["GET"]),
]

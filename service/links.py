"""Where a person opens something in the receiver: the web console's paths, and the absolute
link to an event's console page that Slack and email notifications carry. Built here only, so a
notification never points at the JSON API. Pure; imports nothing of ours.
"""

from __future__ import annotations

from urllib.parse import quote

CONSOLE = "/admin/console"
WEBHOOK_PATH = "/webhooks/llmtune"
# Addresses that mean "every interface": a link to one of them names this machine's loopback.
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 - not a bind


def console_path(*parts: str) -> str:
    """A console path; each part (an id, which may come from anywhere, `/` included) is
    percent-encoded, a lone surrogate as `?`."""
    return "/".join([CONSOLE, *(quote(part, safe="", errors="replace") for part in parts)])


def event_page(public_url: str, event_id: str) -> str:
    """The absolute URL of the event's console page under `public_url`."""
    return public_url.rstrip("/") + console_path("events", event_id)


def bound_url(host: str, port: int) -> str:
    """`http://HOST:PORT` for a server bound there; a wildcard address becomes loopback."""
    host = _WILDCARDS.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def webhook_target(url: str) -> str:
    """`url` as a webhook endpoint: a base URL (no path) gets `WEBHOOK_PATH` added."""
    _scheme, sep, rest = url.partition("://")
    if sep and "/" not in rest.rstrip("/"):
        return url.rstrip("/") + WEBHOOK_PATH
    return url

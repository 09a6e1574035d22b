"""Where a person opens something in the receiver: the web console's paths, and the absolute
link to an event's console page that Slack and email notifications carry. Built here only, so a
notification never points at the JSON API. Pure; imports nothing of ours.
"""

from __future__ import annotations

from urllib.parse import quote

CONSOLE = "/admin/console"


def console_path(*parts: str) -> str:
    """A console path; each part (an id, which may come from anywhere, `/` included) is
    percent-encoded, a lone surrogate as `?`."""
    return "/".join([CONSOLE, *(quote(part, safe="", errors="replace") for part in parts)])


def event_page(public_url: str, event_id: str) -> str:
    """The absolute URL of the event's console page under `public_url`."""
    return public_url.rstrip("/") + console_path("events", event_id)

"""`links`: console paths with every id percent-encoded, and the event page that notifications
link to."""

from __future__ import annotations

import pytest

from service.links import console_path, event_page


class TestLinks:
    @pytest.mark.parametrize(
        ("parts", "path"),
        [
            pytest.param(("events",), "/admin/console/events", id="page"),
            pytest.param(("jobs", "ft/org/1"), "/admin/console/jobs/ft%2Forg%2F1", id="slash"),
            pytest.param(("jobs", "a b?#%"), "/admin/console/jobs/a%20b%3F%23%25", id="reserved"),
            pytest.param(("jobs", "é\u202e"), "/admin/console/jobs/%C3%A9%E2%80%AE", id="unicode"),
            pytest.param(("jobs", "\ud800"), "/admin/console/jobs/%3F", id="lone-surrogate"),
        ],
    )
    def test_console_path(self, parts: tuple[str, ...], path: str) -> None:
        """Each part is one path segment, whatever it holds."""
        assert console_path(*parts) == path

    @pytest.mark.parametrize(
        ("public_url", "event_id", "url"),
        [
            pytest.param(
                "https://r.example", "evt_1", "https://r.example/admin/console/events/evt_1", id="p"
            ),
            pytest.param(
                "https://r.example/x/",
                "a/b",
                "https://r.example/x/admin/console/events/a%2Fb",
                id="q",
            ),
        ],
    )
    def test_event_page(self, public_url: str, event_id: str, url: str) -> None:
        """Notifications link to the console page of the event, never the JSON route."""
        assert event_page(public_url, event_id) == url

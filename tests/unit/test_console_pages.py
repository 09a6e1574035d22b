"""The console's pure rendering: escaping, links, forms offered by scope, paging links."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import pytest
from markupsafe import Markup

from service.http.console import debug_pages, markup, pages
from service.http.console import metrics as metrics_view
from service.http.console.markup import Viewer, attr, h, join, table, text, url

EVIL = '<script>alert("x")</script>'
WRITER = Viewer("ops", "write", True, "csrf-1", "/admin/console/deliveries")
READER = Viewer("viewer", "read", False, "csrf-2", "/admin/console/deliveries")


def delivery(status: str = "dead", **extra: Any) -> dict[str, Any]:
    return {
        "id": "dlv_1",
        "eventId": "evt_1",
        "route": EVIL,
        "handler": "http",
        "status": status,
        "attempts": 1,
        "nextAttemptAt": None,
        "lastError": EVIL,
        "createdAt": "2025-11-08T14:00:00.000000Z",
        **extra,
    }


def event() -> dict[str, Any]:
    return {
        "id": "evt_1",
        "type": EVIL,
        "source": "webhook",
        "workspace": "default",
        "jobId": EVIL,
        "receivedAt": "2025-11-08T14:00:00.000000Z",
        "occurredAt": None,
        "verified": True,
        "isTest": False,
        "duplicateCount": 0,
        "dedupKey": EVIL,
        "payload": {"event": EVIL, "data": {"note": EVIL}},
        "headers": [{"name": "x-webhook-signature", "value": "[redacted]"}],
        "deliveries": [delivery(attemptList=[{"number": 1, "outcome": "fail", "detail": EVIL}])],
    }


def visible_text_has_no_markup(page: str) -> None:
    # The page's one script is a same-origin file; no other script element may appear.
    assert page.count("<script") == page.count('<script src="/admin/console/local-time.js"')
    assert "&lt;script&gt;" in page


class TestMarkup:
    @pytest.mark.parametrize(
        ("value", "shown"),
        [
            pytest.param(EVIL, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;", id="script"),
            pytest.param("a'b&c", "a&#39;b&amp;c", id="quotes-amp"),
            pytest.param(None, "", id="none"),
            pytest.param(3, "3", id="int"),
            pytest.param(Markup("<b>ok</b>"), "<b>ok</b>", id="markup-kept"),
            pytest.param("a\u202eb\u200b", "a\\u202eb\\u200b", id="bidi-and-zero-width"),
            pytest.param("<\u202e>", "&lt;\\u202e&gt;", id="hidden-and-markup"),
        ],
    )
    def test_text(self, value: object, shown: str) -> None:
        """Text is escaped (quotes too, for attributes) with hidden characters written out;
        `Markup` passes unchanged."""
        assert text(value) == shown

    def test_template_holes_are_escaped(self) -> None:
        """`h` escapes what goes in the holes, not the template."""
        assert h('<a title="{}">{}</a>', '"><x', "<y>") == '<a title="&#34;&gt;&lt;x">&lt;y&gt;</a>'

    def test_holes_and_joins_show_hidden_characters(self) -> None:
        """A right-to-left override in a hole or a joined part is shown as its escape."""
        assert h("<td>{}</td>", "a\u202eb") == "<td>a\\u202eb</td>"
        assert join(["\u202e", Markup("<br>"), None]) == "\\u202e<br>"

    def test_attr_keeps_the_value_exact(self) -> None:
        """A form value is escaped but not rewritten, so the browser sends back what it got."""
        assert attr('a"\u202e') == "a&#34;\u202e"

    def test_paths_encode_ids(self) -> None:
        """An id from anywhere cannot leave its path segment."""
        assert markup.path("jobs", "../x?y=1#z") == "/admin/console/jobs/..%2Fx%3Fy%3D1%23z"

    def test_url_drops_empty_values(self) -> None:
        """Only given filters end up in a link, encoded."""
        assert url("/p", type="a b&c", jobId=None, test="") == "/p?type=a+b%26c"

    def test_empty_table(self) -> None:
        """No rows: a sentence instead of an empty table."""
        assert table(("a",), [], "Nothing.") == "<p>Nothing.</p>"

    def test_csp_admits_exactly_the_stylesheet(self) -> None:
        """The policy carries the stylesheet's hash and no unsafe-inline."""
        digest = base64.b64encode(hashlib.sha256(markup.CSS.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in markup.CSP
        assert "unsafe-inline" not in markup.CSP
        assert markup.CSS in pages.login_page("n")


class TestPages:
    def test_event_page_escapes_every_field(self) -> None:
        """A hostile payload, type, job id and error all show as text."""
        visible_text_has_no_markup(pages.event_page(event(), WRITER))

    def test_event_page_shows_redacted_headers_and_attempts(self) -> None:
        """Headers as stored (already redacted) and each delivery's attempts."""
        page = pages.event_page(event(), WRITER)
        assert "[redacted]" in page
        assert "Attempts of" in page

    def test_retry_offered_to_writers_for_dead_and_retrying_only(self) -> None:
        """Writers get a retry button on dead and retrying deliveries, and bulk retry."""
        body = {"items": [delivery("dead"), delivery("succeeded", id="dlv_2")], "nextCursor": None}
        page = pages.deliveries_page(body, WRITER)
        assert page.count('action="/admin/console/deliveries/dlv_1/retry"') == 1
        assert "/deliveries/dlv_2/retry" not in page
        assert 'action="/admin/console/deliveries/retry"' in page
        assert 'name="csrf" value="csrf-1"' in page
        visible_text_has_no_markup(page)

    def test_readers_get_no_action(self) -> None:
        """A read-only viewer sees no retry, bulk retry or test-event form."""
        body = {"items": [delivery("dead")], "nextCursor": None}
        page = pages.deliveries_page(body, READER)
        assert "retry" not in page.lower().replace("retrying", "")
        assert "test-event" not in page
        assert "logout" in page

    def test_next_page_keeps_filters(self) -> None:
        """The next-page link re-sends the filters with the cursor."""
        viewer = Viewer("ops", "write", True, "c", "/", filters={"type": "training.completed"})
        page = pages.events_page({"items": [], "nextCursor": "CUR"}, viewer)
        assert 'href="/admin/console/events?type=training.completed&amp;cursor=CUR"' in page

    def test_bulk_retry_carries_the_route_filter(self) -> None:
        """Retry all dead of the route being looked at."""
        viewer = Viewer("ops", "write", True, "c", "/", filters={"route": "a&b"})
        page = pages.deliveries_page({"items": [], "nextCursor": None}, viewer)
        assert 'action="/admin/console/deliveries/retry?route=a%26b"' in page

    def test_filter_form_keeps_choices(self) -> None:
        """The chosen values are selected again."""
        viewer = Viewer("ops", "write", True, "c", "/", filters={"test": "true"})
        page = pages.events_page({"items": [], "nextCursor": None}, viewer)
        assert '<option value="true" selected>' in page

    def test_job_page_timeline(self) -> None:
        """Every kind of timeline entry is shown, linked and escaped."""
        job = {
            "id": "job_1",
            "llmtuneJobId": EVIL,
            "status": "deployed",
            "timeline": [
                {"at": "t0", "kind": "submitted", "jobId": "job_1"},
                {
                    "at": "t1",
                    "kind": "event",
                    "eventId": "evt_1",
                    "type": EVIL,
                    "source": "webhook",
                },
                {
                    "at": "t2",
                    "kind": "delivery",
                    "deliveryId": "dlv_1",
                    "eventId": "evt_1",
                    "route": "r",
                    "status": "dead",
                },
                {"at": "t3", "kind": "inference", "model": EVIL, "status": "succeeded"},
            ],
        }
        page = pages.job_page(job, READER)
        visible_text_has_no_markup(page)
        assert len(re.findall(r'href="/admin/console/events/evt_1"', page)) == 2
        assert '<span class="s-dead">dead</span>' in page

    def test_notice_and_error(self) -> None:
        """A known notice code shows its sentence; an error page escapes its message."""
        viewer = Viewer("ops", "write", True, "c", "/", notice="retried")
        assert "Queued for retry." in pages.jobs_page({"items": [], "nextCursor": None}, viewer)
        visible_text_has_no_markup(pages.error_page(400, EVIL))

    def test_login_page(self) -> None:
        """The token is a password field, posted with the form's nonce."""
        page = pages.login_page('n"1', "That token is not valid.")
        assert 'type="password" name="token"' in page
        assert 'name="login_csrf" value="n&#34;1"' in page
        assert 'method="post"' in page


class TestReadableValues:
    @pytest.mark.parametrize(
        ("value", "shown"),
        [
            pytest.param(
                "2025-11-08T14:00:05.123456Z",
                '<time datetime="2025-11-08T14:00:05.123Z" title="2025-11-08T14:00:05.123456Z">'
                "Nov 08 14:00:05 UTC</time>",
                id="utc-short-full-on-hover",
            ),
            pytest.param(None, "", id="none"),
            pytest.param("", "", id="empty"),
            pytest.param("yesterday", "yesterday", id="unreadable-as-given"),
        ],
    )
    def test_when(self, value: str | None, shown: str) -> None:
        """A time reads short in UTC (the script redraws it locally), the full time on hover."""
        assert markup.when(value) == shown

    @pytest.mark.parametrize(
        ("value", "shown"),
        [
            pytest.param("evt_019a2b3c4d5e6f7a8b9c0d1e2f3a", "evt_…0d1e2f3a", id="ours"),
            pytest.param("job-console-demo", "job-console-demo", id="llmtune-id-kept"),
            pytest.param("dlv_12ab", "dlv_12ab", id="short-kept"),
        ],
    )
    def test_short_id(self, value: str, shown: str) -> None:
        """Our ids keep their kind and their random tail; other ids are shown whole."""
        assert markup.short_id(value) == shown

    @pytest.mark.parametrize(
        ("detail", "status"),
        [
            pytest.param("HTTP 503: down", "503", id="with-preview"),
            pytest.param("HTTP 200", "200", id="bare"),
            pytest.param("TimeoutError: no answer", "", id="no-answer"),
            pytest.param(None, "", id="none"),
            pytest.param("HTTP x", "", id="not-a-status"),
        ],
    )
    def test_http_status(self, detail: str | None, status: str) -> None:
        """The HTTP status is read from an attempt's detail when it starts with one."""
        assert debug_pages.http_status(detail) == status

    @pytest.mark.parametrize(
        ("metrics", "loss"),
        [
            pytest.param({"loss": 1.25}, 1.25, id="loss"),
            pytest.param({"train_loss": 2, "accuracy": 0.5}, 2.0, id="other-name"),
            pytest.param({"loss": True}, None, id="bool-is-not-a-number"),
            pytest.param({"loss": "1.2"}, None, id="text"),
            pytest.param({"loss": float("nan"), "train_loss": 3.0}, 3.0, id="nan-skipped"),
            pytest.param({}, None, id="none"),
        ],
    )
    def test_loss_of(self, metrics: dict[str, Any], loss: float | None) -> None:
        """The loss is the first finite number under a known name."""
        assert metrics_view.loss_of(metrics) == loss

    def test_chips_count_each_status_group(self) -> None:
        """Pending and in flight count as pending, retrying as failed; zeros are left out."""
        shown = pages.delivery_chips({"pending": 1, "in_flight": 2, "retrying": 1, "dead": 0})
        assert shown == (
            '<span class="chip c-pending">3 pending</span>'
            '<span class="chip c-failed">1 failed</span>'
        )

    def test_dead_attempt_reads_as_final(self) -> None:
        """A dead delivery's last attempt is labelled as the final failure, never a retry."""
        assert "no attempt left: dead" in pages.outcome_label("dead")
        assert "retry" not in pages.outcome_label("dead")

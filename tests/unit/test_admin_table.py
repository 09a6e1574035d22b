"""`commands/table.py`: the admin commands' text views, pure: UTC times, cells, truncation to a
column and to the terminal, tables, detail views and `tail` lines."""

from __future__ import annotations

from typing import Any

import pytest

from service.commands import table
from service.commands.table import Column, clip, render_table

EVENT = {
    "id": "evt_018c0f3a2b7c9d1e2f3a4b5c6d7e",
    "type": "training.completed",
    "source": "webhook",
    "workspace": "default",
    "jobId": "job-1",
    "externalId": None,
    "dedupKey": "sem:training.completed:job-1",
    "receivedAt": "2025-11-08T14:22:31.123456Z",
    "occurredAt": None,
    "verified": True,
    "isTest": False,
    "duplicateCount": 0,
    "lastDuplicateAt": None,
    "bodyBytes": 120,
}
DELIVERY = {
    "id": "dlv_018c0f3a2b7c9d1e2f3a4b5c6d7f",
    "eventId": EVENT["id"],
    "route": "slack",
    "handler": "slack",
    "jobId": "job-1",
    "status": "retrying",
    "attempts": 2,
    "nextAttemptAt": "2025-11-08T14:27:31.000000Z",
    "lastError": "HTTP 503 from hooks.slack.com",
    "createdAt": "2025-11-08T14:22:31.123456Z",
    "updatedAt": "2025-11-08T14:22:36.000000Z",
}


class TestCells:
    @pytest.mark.parametrize(
        ("value", "shown"),
        [
            pytest.param("2025-11-08T14:22:31.123456Z", "2025-11-08 14:22:31", id="zulu"),
            pytest.param("2025-11-08T16:22:31+02:00", "2025-11-08 14:22:31", id="offset"),
            pytest.param("2025-11-08T14:22:31", "2025-11-08 14:22:31", id="naive-is-utc"),
            pytest.param(None, "-", id="none"),
            pytest.param("soon", "soon", id="not-a-time"),
        ],
    )
    def test_times_are_shown_in_utc(self, value: object, shown: str) -> None:
        """API times become `YYYY-MM-DD HH:MM:SS` in UTC; anything else is left as it is."""
        assert table.utc_time(value) == shown

    @pytest.mark.parametrize(
        ("value", "shown"),
        [
            pytest.param(None, "-", id="none"),
            pytest.param("", "-", id="empty"),
            pytest.param(True, "yes", id="true"),
            pytest.param(False, "no", id="false"),
            pytest.param(0, "0", id="zero"),
            pytest.param({"loss": 0.1}, '{"loss":0.1}', id="object"),
            pytest.param("a\nb", "a\\nb", id="newline"),
            pytest.param("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m", id="escape-sequence"),
            pytest.param("job-\u202eabc", "job-\\u202eabc", id="bidi-override"),
            pytest.param("caf\u00e9 \u2713", "caf\u00e9 \u2713", id="unicode-kept"),
        ],
    )
    def test_cells(self, value: object, shown: str) -> None:
        """One line per value; control characters (a sender's escape codes) never reach the
        terminal."""
        assert table.cell(value) == shown

    @pytest.mark.parametrize(
        ("text", "width", "clipped"),
        [
            pytest.param("abcdef", None, "abcdef", id="no-width"),
            pytest.param("abcdef", 6, "abcdef", id="fits"),
            pytest.param("abcdef", 4, "abc…", id="cut"),
            pytest.param("abcdef", 1, "…", id="one"),
            pytest.param("abcdef", 0, "", id="zero"),
        ],
    )
    def test_clip(self, text: str, width: int | None, clipped: str) -> None:
        """A cut line ends in an ellipsis and is exactly `width` long."""
        assert clip(text, width) == clipped


class TestTable:
    COLUMNS = (Column("ID", "id", 6), Column("NAME", "name", 10))

    def test_columns_are_as_wide_as_their_widest_cell(self) -> None:
        """Cells are left-aligned under their titles, two spaces apart, no trailing spaces."""
        items: list[dict[str, Any]] = [{"id": "a1", "name": "first"}, {"id": "b22", "name": None}]
        assert render_table(self.COLUMNS, items, width=None) == [
            "ID   NAME",
            "a1   first",
            "b22  -",
        ]

    def test_a_cell_is_cut_to_its_column(self) -> None:
        """A value wider than its column ends in an ellipsis; the next column stays aligned."""
        items = [{"id": "0123456789", "name": "x"}]
        assert render_table(self.COLUMNS, items, width=None) == ["ID      NAME", "01234…  x"]

    @pytest.mark.parametrize(
        ("width", "lines"),
        [
            pytest.param(None, ["ID          NAME", "0123456789  abcdefg…"], id="piped-id-whole"),
            pytest.param(80, ["ID      NAME", "01234…  abcdefg…"], id="terminal-id-cut"),
        ],
    )
    def test_ids_are_whole_without_a_width(self, width: int | None, lines: list[str]) -> None:
        """An id column is cut to its width on a terminal only; other columns always are."""
        columns = (Column("ID", "id", 6, whole=True), Column("NAME", "name", 8))
        items = [{"id": "0123456789", "name": "abcdefghij"}]
        assert render_table(columns, items, width=width) == lines

    def test_lines_are_cut_to_the_terminal(self) -> None:
        """With a width, no line is longer than it."""
        items = [{"id": "a", "name": "a-rather-long-name"}]
        lines = render_table(self.COLUMNS, items, width=8)
        assert lines == ["ID  NAME", "a   a-r…"]
        assert all(len(line) <= 8 for line in lines)

    def test_header_only_when_empty(self) -> None:
        """An empty list is its header line."""
        assert render_table(self.COLUMNS, [], width=80) == ["ID  NAME"]

    def test_event_list_columns(self) -> None:
        """The events table shows time (UTC), id, type, job, source, verified and duplicates."""
        header, row = render_table(table.EVENT_COLUMNS, [EVENT], width=None)
        assert header.split() == [
            *("RECEIVED", "(UTC)", "ID", "TYPE", "JOB", "SOURCE", "VERIFIED", "DUPS"),
        ]
        assert row.split() == [
            *("2025-11-08", "14:22:31", EVENT["id"], "training.completed", "job-1"),
            *("webhook", "yes", "0"),
        ]

    @pytest.mark.parametrize("width", [20, 40, 80, 120])
    def test_every_list_fits_any_terminal(self, width: int) -> None:
        """Delivery and job tables too are cut to the terminal's width."""
        job: dict[str, Any] = {"id": "job_1", "baseModel": "m" * 100, "createdAt": None}
        for columns, item in ((table.DELIVERY_COLUMNS, DELIVERY), (table.JOB_COLUMNS, job)):
            assert all(len(line) <= width for line in render_table(columns, [item], width=width))


class TestDetail:
    def test_fields_show_times_in_utc_and_skip_absent_ones(self) -> None:
        """`field: value` lines, aligned; times say UTC; fields the item lacks are left out."""
        lines = table.render_fields(
            {"id": "x", "receivedAt": "2025-11-08T14:22:31Z", "occurredAt": None},
            (("id", "text"), ("receivedAt", "time"), ("occurredAt", "time"), ("gone", "text")),
            width=None,
        )
        assert lines == ["id:         x", "receivedAt: 2025-11-08 14:22:31 UTC", "occurredAt: -"]

    def test_event_detail_has_headers_payload_and_deliveries(self) -> None:
        """`events show` adds the headers, the payload as indented JSON and the deliveries."""
        event = EVENT | {
            "headers": [{"name": "X-Webhook-Signature", "value": "[redacted]"}],
            "payload": {"event": "training.completed"},
            "deliveries": [DELIVERY],
        }
        lines = table.event_detail(event, width=None)
        assert "  X-Webhook-Signature: [redacted]" in lines
        assert '    "event": "training.completed"' in lines
        assert "deliveries (1):" in lines
        assert any(line.startswith("2025-11-08 14:22:36") and "retrying" in line for line in lines)

    def test_delivery_without_attempts_says_none(self) -> None:
        """An empty section says so."""
        lines = table.delivery_detail(DELIVERY | {"attempts": []}, width=None)
        assert lines[-2:] == ["attempts (0):", "  none"]

    def test_job_timeline_describes_each_entry(self) -> None:
        """A job's timeline lines name what happened, by kind."""
        job = {
            "id": "job_1",
            "status": "running",
            "timeline": [
                {"at": "2025-11-08T14:00:00Z", "kind": "submitted", "jobId": "job_1"},
                {"at": "2025-11-08T14:01:00Z", "kind": "event", "type": "training.started"},
            ],
            "inferenceRuns": [],
        }
        lines = table.job_detail(job, width=None)
        assert "2025-11-08 14:01:00  event      type=training.started" in lines

    def test_detail_lines_fit_the_terminal(self) -> None:
        """Every detail line, payload included, is cut to the width."""
        event = EVENT | {"headers": [], "payload": {"k": "v" * 200}, "deliveries": [DELIVERY]}
        assert all(len(line) <= 30 for line in table.event_detail(event, width=30))


class TestTailLine:
    def test_event_line(self) -> None:
        """Time (UTC), kind, id, type, job and source."""
        line = table.tail_line("event", EVENT, width=None)
        assert line.startswith(f"2025-11-08 14:22:31  event     {EVENT['id']}  training.completed")
        assert line.endswith("job=job-1 source=webhook")

    def test_delivery_line_carries_the_error(self) -> None:
        """A delivery line shows status, route, attempts, event and the last error."""
        line = table.tail_line("delivery", DELIVERY, width=None)
        assert "retrying  route=slack attempts=2" in line
        assert line.endswith("error=HTTP 503 from hooks.slack.com")

    def test_tail_line_is_cut_and_cleaned(self) -> None:
        """A hostile type cannot move the cursor, and the line fits the terminal."""
        line = table.tail_line("event", EVENT | {"type": "x\x1b[2J" + "y" * 200}, width=60)
        assert "\x1b" not in line
        assert len(line) == 60

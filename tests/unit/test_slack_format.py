"""The Slack handler's pure parts: Block Kit formatting within Slack's limits, mrkdwn escaping,
and route option validation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_sdk.models.blocks import Block

from service.clock import SystemClock
from service.handlers.base import Delivery, HandlerDeps, OptionsError
from service.handlers.slack import SlackHandler
from service.handlers.slack_format import (
    BUTTON_URL_MAX,
    FIELD_TEXT_MAX,
    MAX_BLOCKS,
    MAX_FIELDS,
    SECTION_TEXT_MAX,
    TEXT_MAX,
    clip,
    escape,
    message,
)
from tests.deliveries import a_delivery

PUBLIC_URL = "https://receiver.example"
CONSOLE = f"{PUBLIC_URL}/admin/console"
G = "\u02cb"  # what a backtick in a value becomes: it looks alike but ends no code
OCCURRED = datetime(2025, 11, 8, 14, 22, 31, tzinfo=UTC)


def delivery(**values: Any) -> Delivery:
    """A delivery of one event; `values` override the event's fields (and `event_id`)."""
    event_id = values.pop("event_id", "evt_01")
    fields: dict[str, Any] = {
        "dedup_key": "id:evt_01",
        "external_id": "evt_01",
        "artifact": "s3://bucket/job-1/adapter",
        "metrics": {"loss": 0.123456789, "epochs": 3},
        "occurred_at": OCCURRED,
    }
    return a_delivery(
        id="dlv_01",
        route="slack-lifecycle",
        event_id=event_id,
        received_at=OCCURRED,
        **(fields | values),
    )


def utf16_len(text: str) -> int:
    """Length as JavaScript counts it, the strictest way Slack could count."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def texts(value: Any) -> Iterator[str]:
    """Every string value anywhere in a message."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from texts(item)


def assert_valid(msg: dict[str, Any]) -> None:
    """`msg` passes slack-sdk's Block Kit models and the documented limits they do not check."""
    assert 0 < utf16_len(msg["text"]) <= TEXT_MAX
    assert 0 < len(msg["blocks"]) <= MAX_BLOCKS
    for block in msg["blocks"]:
        parsed = Block.parse(block)
        assert parsed is not None
        assert parsed.to_dict() == block  # validates, recursively; nothing unknown dropped
        if "text" in block:
            assert 0 < utf16_len(block["text"]["text"]) <= SECTION_TEXT_MAX
        fields = block.get("fields", [])
        assert len(fields) <= MAX_FIELDS
        assert all(0 < utf16_len(f["text"]) <= FIELD_TEXT_MAX for f in fields)
        for element in block.get("elements", []):
            if element["type"] == "mrkdwn":
                assert 0 < utf16_len(element["text"]) <= SECTION_TEXT_MAX
            if element["type"] == "button":
                assert len(element["url"]) <= BUTTON_URL_MAX


def first_line(msg: dict[str, Any]) -> str:
    """The text of the message's first block."""
    text: str = msg["blocks"][0]["text"]["text"]
    return text


def block_texts(msg: dict[str, Any]) -> str:
    """All mrkdwn of the message's blocks, joined."""
    return "\n".join(texts(msg["blocks"]))


class TestMessage:
    @pytest.mark.parametrize(
        ("event_type", "emoji"),
        [
            pytest.param("training.started", ":hourglass_flowing_sand:", id="started"),
            pytest.param("training.completed", ":white_check_mark:", id="completed"),
            pytest.param("training.failed", ":x:", id="failed"),
            pytest.param("model.deployed", ":rocket:", id="deployed"),
            pytest.param("deployment.paused", ":bell:", id="other-known"),
            pytest.param("unknown", ":bell:", id="unknown"),
        ],
    )
    def test_first_line_names_the_type(self, event_type: str, emoji: str) -> None:
        """The first line and the fallback text name the event type verbatim, with its emoji."""
        msg = message(delivery(type=event_type), public_url=PUBLIC_URL)
        assert first_line(msg).startswith(f"{emoji} `{event_type}` · *")
        assert msg["text"].startswith(f"{event_type}: ")
        assert_valid(msg)

    def test_fields_metrics_and_context(self) -> None:
        """Job, model, artifact, deployment, metrics, event id and time all appear."""
        msg = message(delivery(deployment_id="dep-9"), public_url=PUBLIC_URL)
        fields = [f["text"] for f in msg["blocks"][1]["fields"]]
        assert fields == [
            "*Job*\n`job-1`",
            "*Model*\n`meta-llama/Llama-3.3-70B-Instruct`",
            "*Artifact*\n`s3://bucket/job-1/adapter`",
            "*Deployment*\n`dep-9`",
        ]
        assert msg["blocks"][2]["text"]["text"] == "*Metrics*\n`loss: 0.123457 · epochs: 3`"
        context = msg["blocks"][-2]["elements"][0]["text"]
        assert context == "Event `evt_01` · occurred 2025-11-08 14:22:31 UTC"

    def test_error_shown_for_failed(self) -> None:
        """A failed event shows its error in a block and in the fallback text."""
        msg = message(
            delivery(type="training.failed", error="CUDA out of memory"), public_url=PUBLIC_URL
        )
        assert "*Error*\n```CUDA out of memory```" in block_texts(msg)
        assert msg["text"] == "training.failed: Training failed (job job-1): CUDA out of memory"

    def test_absent_values_leave_no_fields(self) -> None:
        """An event without job, model, metrics or error gets no empty fields or sections."""
        msg = message(
            delivery(type="unknown", job_id=None, model=None, artifact=None, metrics=None),
            public_url=PUBLIC_URL,
        )
        assert [b["type"] for b in msg["blocks"]] == ["section", "context", "actions"]
        assert "received" not in block_texts(msg)

    def test_received_time_when_occurrence_unknown(self) -> None:
        """Without an occurrence time the context line says when it was received."""
        msg = message(delivery(occurred_at=None), public_url=PUBLIC_URL)
        assert "received 2025-11-08 14:22:31 UTC" in msg["blocks"][-2]["elements"][0]["text"]

    def test_test_events_are_marked(self) -> None:
        """A test event says so on its first line."""
        msg = message(delivery(is_test=True), public_url=PUBLIC_URL)
        assert first_line(msg).endswith("_(test event)_")

    @pytest.mark.parametrize(
        ("public_url", "event_id", "expected"),
        [
            pytest.param(PUBLIC_URL, "evt_01", f"{CONSOLE}/events/evt_01", id="plain"),
            pytest.param(PUBLIC_URL + "/", "a/b c", f"{CONSOLE}/events/a%2Fb%20c", id="quoted"),
            pytest.param("", "evt_01", None, id="no-public-url"),
            pytest.param(PUBLIC_URL, "e" * 3000, None, id="url-too-long"),
        ],
    )
    def test_link_button(self, public_url: str, event_id: str, expected: str | None) -> None:
        """The button opens the event's console page (not the JSON route); without a usable URL
        there is none."""
        msg = message(delivery(event_id=event_id), public_url=public_url)
        buttons = [b["elements"][0] for b in msg["blocks"] if b["type"] == "actions"]
        assert [b["url"] for b in buttons] == ([expected] if expected else [])
        assert_valid(msg)


HOSTILE = "<!channel> <https://evil.example|click> <@U123> & more"


class TestHostileValues:
    @pytest.mark.parametrize(
        "values",
        [
            pytest.param({"error": "e" * 10_000, "type": "training.failed"}, id="huge-error"),
            pytest.param({"metrics": {f"m{i}": i / 7 for i in range(200)}}, id="200-metrics"),
            pytest.param({"job_id": "j" * 3000}, id="3k-job-id"),
            pytest.param({"model": "&" * 5000}, id="escapes-grow-past-limits"),
            pytest.param({"error": "😀" * 5000}, id="astral-error"),
            pytest.param({"metrics": {"x" * 5000: "y" * 5000}}, id="huge-metric"),
            pytest.param({"metrics": {"big": 10**5000, "nested": [[[]]], "n": None}}, id="odd"),
            pytest.param({"event_id": "i" * 5000}, id="huge-event-id"),
            pytest.param({"type": "t" * 5000}, id="huge-type"),
            pytest.param({"artifact": "\ud800 lone surrogate"}, id="surrogate"),
        ],
    )
    def test_always_valid(self, values: dict[str, Any]) -> None:
        """Oversized or odd values are cut to fit and the message stays valid Block Kit."""
        assert_valid(message(delivery(**values), public_url=PUBLIC_URL))

    def test_long_values_are_cut_with_ellipsis(self) -> None:
        """A 10k error and 200 metrics are shortened visibly, not silently."""
        msg = message(
            delivery(error="e" * 10_000, metrics={f"m{i}": i for i in range(200)}),
            public_url=PUBLIC_URL,
        )
        metrics, error = msg["blocks"][2]["text"]["text"], msg["blocks"][3]["text"]["text"]
        assert error.endswith("e…```")
        assert metrics.startswith("*Metrics*\n`m0: 0 · m1: 1")
        assert metrics.endswith(" more`")
        assert "…" in msg["text"]

    @pytest.mark.parametrize(
        "field", ["job_id", "model", "artifact", "deployment_id", "error", "event_id"]
    )
    def test_markup_is_escaped(self, field: str) -> None:
        """Mentions and links in values are shown as text, never acted on."""
        msg = message(delivery(**{field: HOSTILE}), public_url=PUBLIC_URL)
        for text in texts(msg):
            assert "<" not in text
            assert ">" not in text
        assert "&lt;!channel&gt; &lt;https://evil.example|click&gt; &lt;@U123&gt; &amp; more" in (
            block_texts(msg)
        )

    def test_metric_markup_is_escaped(self) -> None:
        """Metric names and values are escaped like every other value."""
        msg = message(delivery(metrics={"<!here>": "<https://x|y>"}), public_url=PUBLIC_URL)
        assert "&lt;!here&gt;: &lt;https://x|y&gt;" in msg["blocks"][2]["text"]["text"]

    def test_backticks_in_an_error_cannot_end_its_code_block(self) -> None:
        """A ``` in an error cannot close the code block early, so the `*` and `_` after it
        stay unformatted text; the block's only backticks are its own fences."""
        error = "boom ```\n*all caps* _it_ ~gone~ `x` <!here>"
        msg = message(delivery(type="training.failed", error=error), public_url=PUBLIC_URL)
        assert_valid(msg)
        block = msg["blocks"][3]["text"]["text"]
        assert block.startswith("*Error*\n```")
        assert block.endswith("```")
        inside = block.removeprefix("*Error*\n```").removesuffix("```")
        assert "`" not in inside
        assert inside == f"boom {G}{G}{G}\n*all caps* _it_ ~gone~ {G}x{G} &lt;!here&gt;"

    @pytest.mark.parametrize(
        "field", ["job_id", "model", "artifact", "deployment_id", "event_id", "type"]
    )
    def test_formatting_characters_in_values_stay_text(self, field: str) -> None:
        """`*`, `_`, `~` and backticks in any value are shown inside inline code, which Slack
        does not format, and cannot end that code early (not even with a line break)."""
        value = "*bold* _it_ ~st~ `code`\n*x*"
        msg = message(delivery(**{field: value}), public_url=PUBLIC_URL)
        assert_valid(msg)
        shown = f"`*bold* _it_ ~st~ {G}code{G} *x*`"
        assert shown in block_texts(msg)
        assert "*bold*" not in block_texts(msg).replace(shown, "")

    def test_metric_formatting_stays_text(self) -> None:
        """Metric names and values are inline code too, on one line, without backticks."""
        msg = message(delivery(metrics={"*n*": "`v`\n~s~"}), public_url=PUBLIC_URL)
        assert msg["blocks"][2]["text"]["text"] == f"*Metrics*\n`*n*: {G}v{G} ~s~`"

    def test_newlines_and_non_ascii_kept(self) -> None:
        """Line breaks and non-ASCII text reach Slack as they are."""
        msg = message(delivery(error="Ошибка\n第二行 ü 😀"), public_url=PUBLIC_URL)
        assert "Ошибка\n第二行 ü 😀" in block_texts(msg)

    @given(
        text=st.text(max_size=6000),
        metric_value=st.one_of(st.text(max_size=500), st.floats(), st.integers()),
        metric_count=st.integers(min_value=0, max_value=300),
    )
    @settings(max_examples=150, deadline=None)
    def test_any_text_validates(self, text: str, metric_value: object, metric_count: int) -> None:
        """Whatever the text in error, model, job id and metrics, the message validates."""
        metrics = {f"{text[:50]}{i}": metric_value for i in range(metric_count)}
        msg = message(
            delivery(error=text, model=text, job_id=text, metrics=metrics, type="training.failed"),
            public_url=PUBLIC_URL,
        )
        assert_valid(msg)
        assert all("<" not in t for t in texts(msg))


class TestEscaping:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param("a & b", "a &amp; b", id="amp"),
            pytest.param("<!channel>", "&lt;!channel&gt;", id="mention"),
            pytest.param("&lt;", "&amp;lt;", id="entity-is-text"),
            pytest.param("ü*_~`", "ü*_~`", id="formatting-and-unicode-kept"),
        ],
    )
    def test_escape(self, text: str, expected: str) -> None:
        """Only `&`, `<` and `>` are replaced, as Slack's mrkdwn requires."""
        assert escape(text) == expected

    @pytest.mark.parametrize(
        ("text", "limit", "expected"),
        [
            pytest.param("abc", 3, "abc", id="fits"),
            pytest.param("abcd", 3, "ab…", id="cut"),
            pytest.param("ab&c", 5, "ab…", id="no-half-entity"),
            pytest.param("ab&cd", 8, "ab&amp;…", id="whole-entity-kept"),
            pytest.param("<<<", 9, "&lt;&lt;…", id="escapes-count"),
        ],
    )
    def test_clip(self, text: str, limit: int, expected: str) -> None:
        """Escaped text is cut to the limit with an ellipsis, never inside an entity."""
        assert clip(text, limit) == expected


@pytest.fixture
async def deps() -> AsyncIterator[HandlerDeps]:
    """Handler dependencies with a real (unused) HTTP client."""
    async with httpx.AsyncClient() as http:
        yield HandlerDeps(http=http, clock=SystemClock(), public_url=PUBLIC_URL)


WEBHOOK = "https://hooks.slack.com/services/T000/B000/SECRETPART"


class TestOptions:
    @pytest.mark.parametrize(
        ("options", "option"),
        [
            pytest.param({}, "webhook_url", id="nothing"),
            pytest.param({"webhook_url": ""}, "webhook_url", id="empty-url"),
            pytest.param({"webhook_url": "  "}, "webhook_url", id="blank-url"),
            pytest.param({"webhook_url": 42}, "webhook_url", id="url-not-string"),
            pytest.param({"webhook_url": WEBHOOK + "\n"}, "webhook_url", id="url-newline"),
            pytest.param({"webhook_url": "ftp://x/SECRETPART"}, "webhook_url", id="url-scheme"),
            pytest.param({"webhook_url": "https:///SECRETPART"}, "webhook_url", id="no-host"),
            pytest.param({"webhook_url": "hooks.slack.com/SECRETPART"}, "webhook_url", id="bare"),
            pytest.param(
                {"webhook_url": WEBHOOK, "bot_token": "xoxb-1", "channel": "C1"},
                "webhook_url",
                id="both-modes",
            ),
            pytest.param({"webhook_url": WEBHOOK, "channel": "C1"}, "channel", id="url-channel"),
            pytest.param({"webhook_url": WEBHOOK, "api_url": PUBLIC_URL}, "api_url", id="url-api"),
            pytest.param({"webhook_url": WEBHOOK, "colour": "red"}, "colour", id="unknown"),
            pytest.param({"bot_token": "xoxb-1"}, "channel", id="token-without-channel"),
            pytest.param({"channel": "C1"}, "bot_token", id="channel-without-token"),
            pytest.param({"bot_token": "", "channel": "C1"}, "bot_token", id="empty-token"),
            pytest.param({"bot_token": ["x"], "channel": "C1"}, "bot_token", id="token-list"),
            pytest.param({"bot_token": "xoxb 1", "channel": "C1"}, "bot_token", id="token-space"),
            pytest.param({"bot_token": "xoxb-ü", "channel": "C1"}, "bot_token", id="token-ascii"),
            pytest.param({"bot_token": "xoxb-1", "channel": None}, "channel", id="channel-none"),
            pytest.param(
                {"bot_token": "xoxb-1", "channel": "C1", "api_url": "slack.com"},
                "api_url",
                id="api-url-bare",
            ),
        ],
    )
    async def test_bad_options(
        self, deps: HandlerDeps, options: dict[str, Any], option: str
    ) -> None:
        """Each bad option is refused with a message that starts with its name."""
        with pytest.raises(OptionsError) as caught:
            SlackHandler.from_options(options, deps)
        assert str(caught.value).startswith(f"{option}: ")
        assert "SECRETPART" not in str(caught.value)

    @pytest.mark.parametrize(
        "options",
        [
            pytest.param({"webhook_url": WEBHOOK}, id="webhook"),
            pytest.param({"webhook_url": "http://127.0.0.1:9/hook"}, id="local-webhook"),
            pytest.param({"bot_token": "xoxb-1-2", "channel": "#ml"}, id="bot"),
            pytest.param(
                {"bot_token": "xoxb-1", "channel": "C1", "api_url": "http://127.0.0.1:9/api"},
                id="bot-with-api-url",
            ),
        ],
    )
    async def test_good_options(self, deps: HandlerDeps, options: dict[str, Any]) -> None:
        """Either mode builds a handler whose settings' `repr` hides the token and webhook URL."""
        handler = SlackHandler.from_options(options, deps)
        assert handler.name == "slack"
        for secret in ("SECRETPART", "xoxb", "127.0.0.1:9/hook"):
            assert secret not in repr(handler._target)

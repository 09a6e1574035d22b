"""`display.visible`: invisible and bidi-control characters shown as escapes, everything a reader
can see kept as it is."""

from __future__ import annotations

import pytest

from service.display import visible


class TestVisible:
    @pytest.mark.parametrize(
        ("text", "shown"),
        [
            pytest.param("job-1", "job-1", id="ascii-kept"),
            pytest.param("", "", id="empty"),
            pytest.param("café ✓ Ошибка 第二 😀", "café ✓ Ошибка 第二 😀", id="letters-kept"),
            pytest.param("exe.\u202etxt", "exe.\\u202etxt", id="rtl-override"),
            pytest.param("\u202a\u202b\u202c\u202d", "\\u202a\\u202b\\u202c\\u202d", id="embeds"),
            pytest.param(
                "\u2066a\u2067b\u2068c\u2069", "\\u2066a\\u2067b\\u2068c\\u2069", id="iso"
            ),
            pytest.param("a\u200bb\u200cc\u200dd", "a\\u200bb\\u200cc\\u200dd", id="zero-width"),
            pytest.param("\u200e\u200f\u061c", "\\u200e\\u200f\\u061c", id="direction-marks"),
            pytest.param("\ufeffbom", "\\ufeffbom", id="bom"),
            pytest.param("\u00adsoft", "\\xadsoft", id="soft-hyphen"),
            pytest.param("\U000e0041tag", "\\U000e0041tag", id="tag-character"),
            pytest.param("a\nb\r\tc", "a\\nb\\r\\tc", id="line-breaks-named"),
            pytest.param("\x00\x1b[2J\x7f\x85", "\\x00\\x1b[2J\\x7f\\x85", id="c0-c1-controls"),
            pytest.param("a\u2028b\u2029c", "a\\u2028b\\u2029c", id="separators"),
            pytest.param("\ud800x", "\\ud800x", id="lone-surrogate"),
            pytest.param("\ue000", "\\ue000", id="private-use"),
            pytest.param("\u3164\u115f\uffa0", "\\u3164\\u115f\\uffa0", id="hangul-fillers"),
            pytest.param("a b\u00a0c", "a b\u00a0c", id="spaces-kept"),
            pytest.param("\\u202e", "\\u202e", id="backslash-text-kept"),
        ],
    )
    def test_visible(self, text: str, shown: str) -> None:
        """Hidden characters become escapes; visible text, spaces included, is unchanged."""
        assert visible(text) == shown

    @pytest.mark.parametrize(
        ("text", "keep", "shown"),
        [
            pytest.param("a\nb\u202e", "\n", "a\nb\\u202e", id="newline-kept"),
            pytest.param("a\tb\n", "\t", "a\tb\\n", id="only-what-is-named"),
        ],
    )
    def test_keep(self, text: str, keep: str, shown: str) -> None:
        """Characters named in `keep` stay as they are (a `<pre>`'s line breaks)."""
        assert visible(text, keep=keep) == shown

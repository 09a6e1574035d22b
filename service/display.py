"""`visible(text)`: text as it may be shown to a person, with every character that is invisible
or that changes how its neighbours are drawn written out as an escape (`\\u202e`), so a job id
holding a right-to-left override cannot pass for another word. Pure; imports nothing of ours.
"""

from __future__ import annotations

import unicodedata

# Default-ignorable letters and marks outside the C categories: fillers that draw as nothing.
_INVISIBLE_LETTERS = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0")
# Line and paragraph separators break lines where no newline is seen.
_SEPARATORS = frozenset({"Zl", "Zp"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escaped(char: str) -> str:
    """One character as a Python-style escape: `\\n`, `\\x1b`, `\\u202e` or `\\U000e0041`."""
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def hidden(char: str) -> bool:
    """True for a character a reader cannot see as itself: controls, format characters (bidi
    overrides and isolates, zero-width ones, the BOM, tags), surrogates, private-use and
    unassigned code points, line and paragraph separators, and invisible fillers."""
    category = unicodedata.category(char)
    return category[0] == "C" or category in _SEPARATORS or char in _INVISIBLE_LETTERS


def visible(text: str, *, keep: str = "") -> str:
    """`text` with every hidden character but those in `keep` (say a newline in a `<pre>`)
    written as its escape."""
    if text.isascii() and text.isprintable():
        return text  # the common case, without a look at each character
    return "".join(escaped(c) if c not in keep and hidden(c) else c for c in text)

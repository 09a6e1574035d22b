"""Opaque, prefixed, roughly time-ordered ids (`evt_…`, `job_…`, `dlv_…`)."""

from __future__ import annotations

import re
import secrets
import time

_SHAPE = re.compile(r"[a-z]{1,8}_[0-9a-f]{1,32}")


def looks_like_id(value: str) -> bool:
    """True when `value` has the shape of an id we issue (anything else cannot be stored)."""
    return _SHAPE.fullmatch(value) is not None


def new_id(prefix: str) -> str:
    """`<prefix>_` + 12 hex digits of milliseconds + 16 random hex digits."""
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"

"""The fake's misbehaviour switches and what they decide, as functions over plain data. Pure.

Webhook side: `plan_sends` turns a job's fresh webhooks into what goes on the wire (dropped,
duplicated, `training.started` held back behind the terminal event). API side: `take_failure`
says whether this request answers with the injected status, counting down `fail_times`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol, TypeVar

# Events after which a held-back `training.started` goes out (reorder).
TERMINAL_TRAINING = frozenset({"training.completed", "training.failed"})
ERROR_CODES = {
    400: "INVALID_REQUEST",
    401: "UNAUTHORIZED",
    402: "INSUFFICIENT_CREDITS",
    404: "NOT_FOUND",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
}
RETRY_AFTER_SECONDS = "1"


class SwitchError(ValueError):
    """A switch value that makes no sense; the message names it."""


@dataclass(frozen=True, slots=True)
class Switches:
    """How the fake misbehaves; all off by default."""

    duplicates: bool = False
    reorder: bool = False
    drop: tuple[str, ...] = ()
    fail_status: int | None = None
    # How many more API requests get `fail_status`; None: every one while it is set.
    fail_times: int | None = None
    flat_errors: bool = False
    slow_seconds: float = 0.0


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_events(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_status(value: Any) -> bool:
    return value is None or (_is_int(value) and 400 <= value <= 599)


def _is_count(value: Any) -> bool:
    return value is None or (_is_int(value) and value >= 1)


def _is_seconds(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


# switch -> (accepts the JSON value?, what it must be)
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "duplicates": (_is_bool, "true or false"),
    "reorder": (_is_bool, "true or false"),
    "drop": (_is_events, "a list of event names"),
    "fail_status": (_is_status, "null or an HTTP status from 400 to 599"),
    "fail_times": (_is_count, "null or a whole number of at least 1"),
    "flat_errors": (_is_bool, "true or false"),
    "slow_seconds": (_is_seconds, "a number of seconds, 0 or more"),
}


def _converted(name: str, value: Any) -> Any:
    accepts, expected = RULES[name]
    if not accepts(value):
        raise SwitchError(f"{name} must be {expected}")
    if name == "drop":
        return tuple(dict.fromkeys(value))
    return float(value) if name == "slow_seconds" else value


NAMES = tuple(f.name for f in fields(Switches))


def apply_patch(current: Switches, patch: Mapping[str, Any]) -> Switches:
    """`current` with the switches named in `patch` replaced; SwitchError on a bad one."""
    unknown = sorted(set(patch) - set(NAMES))
    if unknown:
        raise SwitchError(f"unknown switch {unknown[0]!r}; known: {', '.join(NAMES)}")
    return replace(current, **{name: _converted(name, value) for name, value in patch.items()})


def switches_json(switches: Switches) -> dict[str, Any]:
    """The switches as the control endpoint shows them."""
    return {name: getattr(switches, name) for name in NAMES} | {"drop": list(switches.drop)}


@dataclass(frozen=True, slots=True)
class Failure:
    """An injected API error answer."""

    status: int
    headers: dict[str, str]


def take_failure(switches: Switches) -> tuple[Failure | None, Switches]:
    """The failure this request answers with (if any), and the switches after counting it."""
    if switches.fail_status is None:
        return None, switches
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if switches.fail_status == 429 else {}
    failure = Failure(switches.fail_status, headers)
    if switches.fail_times is None:
        return failure, switches
    if switches.fail_times > 1:
        return failure, replace(switches, fail_times=switches.fail_times - 1)
    # The last counted failure: back to normal.
    return failure, replace(switches, fail_status=None, fail_times=None)


def error_body(status: int, message: str, *, flat: bool) -> dict[str, Any]:
    """An error body: nested `{"error": {"message", "code"}}` (O2/I2) or flat (E2/I1/I3)."""
    if flat:
        return {"error": message, "message": message}
    return {"error": {"message": message, "code": ERROR_CODES.get(status, "ERROR")}}


class HasEvent(Protocol):
    @property
    def event(self) -> str: ...


W = TypeVar("W", bound=HasEvent)


def plan_sends(
    fresh: Sequence[W], held: Sequence[W], switches: Switches
) -> tuple[tuple[W, ...], tuple[W, ...]]:
    """What to send now, in order, and what stays held back for later (one job's webhooks)."""
    pending = list(fresh)
    if not switches.reorder:
        # Reordering switched off while something was held: release it first, in order.
        pending, held = [*held, *pending], ()
    out: list[W] = []
    waiting = list(held)
    for webhook in pending:
        if switches.reorder and webhook.event == "training.started":
            waiting.append(webhook)
            continue
        out.append(webhook)
        if webhook.event in TERMINAL_TRAINING:
            out.extend(waiting)
            waiting = []
    kept = [webhook for webhook in out if webhook.event not in switches.drop]
    if switches.duplicates:
        kept = [copy for webhook in kept for copy in (webhook, webhook)]
    return tuple(kept), tuple(waiting)

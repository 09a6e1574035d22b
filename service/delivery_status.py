"""Where one delivery (an event on its way to one route) stands. Pure, and spelled once here so
the store, the worker, the admin API, the console and the command line agree.

`pending → in_flight → succeeded`, or back to `retrying` and in flight again, or `dead` at last;
a retry or replay puts a finished delivery back to `pending`.
"""

from __future__ import annotations

from typing import Literal, get_args

DeliveryStatus = Literal["pending", "in_flight", "retrying", "succeeded", "dead"]

DELIVERY_STATUSES: tuple[DeliveryStatus, ...] = get_args(DeliveryStatus)
# Still the worker's: not to be purged, replayed over or counted as done.
UNFINISHED: tuple[DeliveryStatus, ...] = ("pending", "in_flight", "retrying")
# What a retry may put back to `pending` (a dead delivery, or one waiting for its next attempt).
RETRYABLE: tuple[DeliveryStatus, ...] = ("dead", "retrying")
# Already on its way: retrying it again changes nothing.
UNDER_WAY: tuple[DeliveryStatus, ...] = ("pending", "in_flight")

"""A job's training metrics on its console page: the metrics each of its events carried (read
from the stored body by the same normalizer ingest uses), and the loss drawn over those events
as an inline SVG line. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup

from service.http.console.charts import line_chart
from service.http.console.markup import h, id_link, path, table, when
from service.webhooks.normalize import BodyError, normalize, parse_body

# The names LLMTune's versions and trainers use for the training loss, most usual first.
LOSS_NAMES = ("loss", "train_loss", "trainLoss", "training_loss", "trainingLoss")


def loss_of(metrics: Mapping[str, Any]) -> float | None:
    """The training loss among `metrics`: the first of `LOSS_NAMES` holding a finite number."""
    for name in LOSS_NAMES:
        value = metrics.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def metrics_entry(event_id: str, event_type: str, received_at: str, raw: bytes) -> dict[str, Any]:
    """One event's metrics as the job page lists them (`metrics` None when it carried none)."""
    try:
        metrics = normalize(parse_body(raw), raw).metrics
    except BodyError:
        metrics = None
    return {"eventId": event_id, "type": event_type, "receivedAt": received_at, "metrics": metrics}


def _others(metrics: Mapping[str, Any]) -> str:
    return ", ".join(f"{name} {value}" for name, value in metrics.items() if name not in LOSS_NAMES)


def training_metrics(entries: Sequence[Mapping[str, Any]]) -> Markup:
    """The "Training metrics" section: the loss over the job's events and a row per event
    that carried metrics; a sentence when none did."""
    carried = [e for e in entries if e.get("metrics")]
    if not carried:
        return h("<h2>Training metrics</h2><p>No event of this job carried metrics.</p>")
    losses = [loss_of(e["metrics"]) for e in carried]
    points = [(float(i), loss) for i, loss in enumerate(losses) if loss is not None]
    chart = line_chart(points, "Loss over the job's events") if points else Markup()
    rows = [
        (
            when(e["receivedAt"]),
            id_link(path("events", e["eventId"]), e["eventId"]),
            e["type"],
            "" if loss is None else f"{loss:.6g}",
            _others(e["metrics"]),
        )
        for e, loss in zip(carried, losses, strict=True)
    ]
    listing = table(("Received", "Event", "Type", "Loss", "Other metrics"), rows)
    return h("<h2>Training metrics</h2>{}{}", chart, listing)

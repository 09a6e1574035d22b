"""Small inline SVG pictures for the console: a line through points (a job's loss) and a row of
bars (events per hour, deliveries by status). Pure: numbers in, `Markup` out. No script and no
`style` attribute (the Content-Security-Policy admits neither): shapes take the stylesheet's
classes and SVG presentation attributes. Whatever the input, no coordinate is NaN or infinite.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

from service.http.console.markup import h, join

Point = tuple[float, float]
WIDTH, HEIGHT, PAD = 480.0, 120.0, 6.0


def _finite(points: Sequence[Point]) -> list[Point]:
    return [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]


def _scale(value: float, low: float, high: float, start: float, end: float) -> float:
    """`value` from [low, high] onto [start, end]; the middle when the range is a single value."""
    # Halved first, so that even the widest pair of floats has a finite difference.
    span = high / 2 - low / 2
    if span <= 0:
        return (start + end) / 2
    return start + (value / 2 - low / 2) / span * (end - start)


def plot(points: Sequence[Point], width: float = WIDTH, height: float = HEIGHT) -> list[Point]:
    """The finite `points` in SVG coordinates inside a box of `width` by `height` less a margin,
    larger y drawn higher (SVG's y grows downwards)."""
    kept = _finite(points)
    if not kept:
        return []
    xs, ys = [x for x, _ in kept], [y for _, y in kept]
    left, right, top, bottom = PAD, width - PAD, PAD, height - PAD
    return [
        (
            round(_scale(x, min(xs), max(xs), left, right), 1),
            round(_scale(y, min(ys), max(ys), bottom, top), 1),
        )
        for x, y in kept
    ]


def line_path(points: Sequence[Point], width: float = WIDTH, height: float = HEIGHT) -> str:
    """The `d` of an SVG path through `points` scaled to the box: "" for none, a lone move for
    one."""
    plotted = plot(points, width, height)
    return " ".join(
        f"{'M' if index == 0 else 'L'}{x:g},{y:g}" for index, (x, y) in enumerate(plotted)
    )


def line_chart(points: Sequence[Point], label: str) -> Markup:
    """A line through `points` with a dot on each, the highest and lowest value written at the
    side; `label` names it for screen readers. Empty markup when no point is finite."""
    plotted = plot(points)
    if not plotted:
        return Markup()
    ys = [y for _, y in _finite(points)]
    dots = join(
        h('<circle cx="{}" cy="{}" r="2.5"></circle>', f"{x:g}", f"{y:g}") for x, y in plotted
    )
    return h(
        '<figure class="chart"><svg role="img" aria-label="{}" viewBox="0 0 {} {}" width="{}"'
        ' height="{}"><path d="{}"></path>{}</svg><figcaption>{}: from {} to {}, lowest {},'
        " highest {}</figcaption></figure>",
        label,
        f"{WIDTH:g}",
        f"{HEIGHT:g}",
        f"{WIDTH:g}",
        f"{HEIGHT:g}",
        line_path(points),
        dots,
        label,
        _number(ys[0]),
        _number(ys[-1]),
        _number(min(ys)),
        _number(max(ys)),
    )


def _number(value: float) -> str:
    return f"{value:.4g}"


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: its value, a short label under it, the text shown on hover, and a class."""

    value: int
    label: str
    title: str
    kind: str = ""


def bar_heights(values: Sequence[int], height: float) -> list[float]:
    """Each value's bar height, the largest reaching `height`; all 0 when every value is 0
    (or negative, which a count never is)."""
    top = max((v for v in values if v > 0), default=0)
    return [round(max(v, 0) / top * height, 1) if top else 0.0 for v in values]


def bar_chart(bars: Sequence[Bar], label: str, *, bar_width: float = 18.0) -> Markup:
    """A row of bars with their labels beneath and their titles on hover."""
    gap, plot_height, text_room = 4.0, 80.0, 16.0
    heights = bar_heights([bar.value for bar in bars], plot_height)
    width = max(len(bars) * (bar_width + gap), bar_width)
    shapes = join(
        h(
            '<g class="{}"><title>{}</title><rect x="{}" y="{}" width="{}" height="{}"></rect>'
            '<text x="{}" y="{}">{}</text></g>',
            f"bar {bar.kind}".strip(),
            bar.title,
            f"{index * (bar_width + gap):g}",
            f"{plot_height - tall:g}",
            f"{bar_width:g}",
            f"{tall:g}",
            f"{index * (bar_width + gap) + bar_width / 2:g}",
            f"{plot_height + text_room - 4:g}",
            bar.label,
        )
        for index, (bar, tall) in enumerate(zip(bars, heights, strict=True))
    )
    return h(
        '<figure class="chart"><svg role="img" aria-label="{}" viewBox="0 0 {} {}" width="{}"'
        ' height="{}">{}</svg></figure>',
        label,
        f"{width:g}",
        f"{plot_height + text_room:g}",
        f"{width:g}",
        f"{plot_height + text_room:g}",
        shapes,
    )

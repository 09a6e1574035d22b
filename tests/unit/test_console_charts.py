"""The console's inline SVG pictures: points to a path, bar heights, and what the markup holds."""

from __future__ import annotations

import math
import re

import pytest

from service.http.console.charts import Bar, bar_chart, bar_heights, line_chart, line_path, plot

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    ("points", "path"),
    [
        pytest.param([], "", id="empty"),
        pytest.param([(0, 5)], "M240,60", id="one-point-centred"),
        pytest.param([(0, 2), (1, 1)], "M6,6 L474,114", id="falling"),
        pytest.param([(0, 1), (1, 2), (2, 3)], "M6,114 L240,60 L474,6", id="rising"),
        pytest.param([(0, 1), (1, 1), (2, 1)], "M6,60 L240,60 L474,60", id="flat-line-mid"),
        pytest.param([(3, 1), (3, 2)], "M240,114 L240,6", id="one-x-value"),
        pytest.param([(0, 1), (1, NAN), (2, 3)], "M6,114 L474,6", id="nan-dropped"),
        pytest.param([(0, INF), (1, -INF)], "", id="only-infinities"),
        pytest.param([(0, 1e-9), (1, 2e-9)], "M6,114 L474,6", id="tiny-values"),
        pytest.param([(0, -1e300), (1, 1e300)], "M6,114 L474,6", id="huge-values"),
    ],
)
def test_line_path(points: list[tuple[float, float]], path: str) -> None:
    """Points are scaled into the box (larger values higher), non-finite ones dropped, and a
    single value or x sits in the middle instead of dividing by zero."""
    assert line_path(points) == path


@pytest.mark.parametrize(
    "points",
    [
        pytest.param([(0, 0.0), (1, 0.0)], id="zeros"),
        pytest.param([(NAN, 1), (1, 2)], id="nan-x"),
        pytest.param([(0, 1.7976931348623157e308), (1, -1.7976931348623157e308)], id="extremes"),
    ],
)
def test_plot_is_always_finite(points: list[tuple[float, float]]) -> None:
    """No coordinate is ever NaN or infinite, whatever comes in."""
    assert all(math.isfinite(c) for point in plot(points) for c in point)


@pytest.mark.parametrize(
    ("values", "heights"),
    [
        pytest.param([], [], id="none"),
        pytest.param([0, 0], [0.0, 0.0], id="all-zero"),
        pytest.param([1, 4, 2], [20.0, 80.0, 40.0], id="scaled-to-largest"),
        pytest.param([7], [80.0], id="one"),
        pytest.param([-3, 2], [0.0, 80.0], id="negative-is-zero"),
    ],
)
def test_bar_heights(values: list[int], heights: list[float]) -> None:
    """The largest bar fills the height; zeros stay flat without dividing by zero."""
    assert bar_heights(values, 80.0) == heights


def test_line_chart_markup() -> None:
    """An SVG image with a label, a path, a dot per point and a caption of the values."""
    chart = line_chart([(0, 2.5), (1, 1.25)], "Loss <x>")
    assert chart.count("<circle") == 2
    assert 'aria-label="Loss &lt;x&gt;"' in chart
    assert "from 2.5 to 1.25, lowest 1.25, highest 2.5" in chart
    assert "style=" not in chart
    assert line_chart([], "Loss") == ""


def test_bar_chart_markup() -> None:
    """One rect per bar with its title (hover) and label; kinds become classes."""
    chart = bar_chart([Bar(3, "14", "14:00: 3 events", "ok"), Bar(0, "15", "<b>")], "Events")
    assert chart.count("<rect") == 2
    assert '<g class="bar ok"><title>14:00: 3 events</title>' in chart
    assert "<title>&lt;b&gt;</title>" in chart
    assert re.search(r'height="0"></rect><text[^>]*>15</text>', chart)
    assert "style=" not in chart

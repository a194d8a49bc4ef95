"""Charts drawn on the server as inline SVG: no JavaScript library, nothing to load.

A chart is an SVG scaled by its viewBox to the width of the page (its frame scrolls sideways on a
narrow phone rather than shrink the text to nothing), named by <title> and <desc> for screen
readers, with its legend in HTML (it wraps) and every number in a table under a <details>.
`tracking/partials/chart.html` renders a Chart, or its empty state when there is nothing to draw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 14, 34
PLOT_WIDTH, PLOT_HEIGHT = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
Y_TICKS = 4
X_TICKS = 6
# Points are marked (each with its value as a tooltip) only while they stay apart.
MARKED_POINTS = 48
BAR_LABEL_CHARS = 12

# Colours readable on white (contrast 4.5:1 or more for the strong ones), by name.
COLOURS = {
    "blue": "#1f5bd8",
    "green": "#17703a",
    "red": "#b3261e",
    "orange": "#a14a00",
    "grey": "#5a6478",
}


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]
    colour: str = "blue"
    # "line": a solid line (what people did); "area": a dashed line over a light fill (raw counts
    # that include machines); "bar": bars of a bar chart.
    style: str = "line"

    @property
    def hex(self) -> str:
        return COLOURS[self.colour]


@dataclass(frozen=True)
class LegendEntry:
    name: str
    swatch: SafeString


@dataclass(frozen=True)
class Chart:
    chart_id: str
    title: str
    description: str
    empty: bool
    svg: SafeString
    legend: list[LegendEntry]
    # The table under the chart: a header row (first cell: what the labels are), then one row
    # per label with each series' value, formatted.
    table_header: list[str]
    table_rows: list[list[str]]


def count_format(value: float) -> str:
    return f"{round(value):,}"


def percent_format(value: float) -> str:
    return f"{value:.1f}%"


def line_chart(
    *,
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    label_heading: str,
    axis_labels: Sequence[str] | None = None,
) -> Chart:
    """A line (and area) chart of counts: `series` over `labels` (times, oldest first).
    `axis_labels`, shorter, name the ticks of the x axis; `labels` name the rows of the table."""
    count = len(labels)
    shown = axis_labels or labels

    def x_of(index: int) -> float:
        return LEFT + (PLOT_WIDTH / 2 if count == 1 else index * PLOT_WIDTH / (count - 1))

    def plot(top: float) -> list[str]:
        parts = []
        for index in _spread(count, X_TICKS):
            x = x_of(index)
            parts.append(_line(x, TOP + PLOT_HEIGHT, x, TOP + PLOT_HEIGHT + 4, "#5a6478"))
            anchor = (
                "start" if index == 0 and count > 1 else "end" if index == count - 1 else "middle"
            )
            parts.append(_text(x, HEIGHT - 12, shown[index], anchor=anchor))
        # Areas first, so that the lines of what people did are drawn over them.
        for item in sorted(series, key=lambda s: s.style != "area"):
            points = [
                (x_of(i), TOP + PLOT_HEIGHT - value / top * PLOT_HEIGHT)
                for i, value in enumerate(item.values)
            ]
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            raw = item.style == "area"
            if raw:
                base = TOP + PLOT_HEIGHT
                parts.append(
                    f'<polygon points="{points[0][0]:.1f},{base} {path} {points[-1][0]:.1f},{base}" '
                    f'fill="{item.hex}" fill-opacity="0.12" stroke="none"/>'
                )
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{item.hex}" '
                f'stroke-width="{1.5 if raw else 2.5}" stroke-linejoin="round"'
                + (' stroke-dasharray="5 4"/>' if raw else "/>")
            )
            if count <= MARKED_POINTS:
                for (x, y), label, value in zip(points, labels, item.values, strict=True):
                    parts.append(
                        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{item.hex}">'
                        f"<title>{escape(item.name)}, {escape(label)}: "
                        f"{escape(count_format(value))}</title></circle>"
                    )
        return parts

    return _chart(chart_id, title, description, labels, series, label_heading, count_format, plot)


def bar_chart(
    *,
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    label_heading: str,
    value_format: Callable[[float], str] = percent_format,
) -> Chart:
    """Grouped bars: one group per label (e.g. a broadcast), one bar per series in it; of
    percentages, or of counts with `value_format=count_format`."""
    group = PLOT_WIDTH / max(len(labels), 1)
    bar = group * 0.7 / max(len(series), 1)

    def plot(top: float) -> list[str]:
        parts = []
        for index, label in enumerate(labels):
            left = LEFT + index * group + group * 0.15
            for position, item in enumerate(series):
                value = item.values[index]
                height = value / top * PLOT_HEIGHT
                parts.append(
                    f'<rect x="{left + position * bar:.1f}" y="{TOP + PLOT_HEIGHT - height:.1f}" '
                    f'width="{bar * 0.92:.1f}" height="{height:.1f}" fill="{item.hex}">'
                    f"<title>{escape(label)}: {escape(item.name)} {escape(value_format(value))}"
                    "</title></rect>"
                )
            short = label if len(label) <= BAR_LABEL_CHARS else label[: BAR_LABEL_CHARS - 1] + "…"
            parts.append(_text(LEFT + (index + 0.5) * group, HEIGHT - 12, short, anchor="middle"))
        return parts

    return _chart(chart_id, title, description, labels, series, label_heading, value_format, plot)


def _chart(
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    label_heading: str,
    value_format: Callable[[float], str],
    plot: Callable[[float], list[str]],
) -> Chart:
    """The chart's frame (y axis, title, legend, table) around what `plot` draws, given the top
    value of the y axis; `plot` is not called when there is nothing to draw."""
    empty = _is_empty(labels, series)
    svg = ""
    if not empty:
        top, step = _scale(series, value_format)
        svg = (
            f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
            f'aria-labelledby="{chart_id}-title {chart_id}-desc" '
            'font-family="system-ui, sans-serif" font-size="12">'
            f'<title id="{chart_id}-title">{escape(title)}</title>'
            f'<desc id="{chart_id}-desc">{escape(description)}</desc>'
            + "".join(_y_axis(top, step, value_format) + plot(top))
            + "</svg>"
        )
    return Chart(
        chart_id=chart_id,
        title=title,
        description=description,
        empty=empty,
        svg=mark_safe(svg),  # noqa: S308 - every text in it went through escape()
        legend=[LegendEntry(name=item.name, swatch=_swatch(item)) for item in series],
        table_header=[label_heading, *(item.name for item in series)],
        table_rows=[
            [label, *(value_format(item.values[index]) for item in series)]
            for index, label in enumerate(labels)
        ],
    )


def _is_empty(labels: Sequence[str], series: Sequence[Series]) -> bool:
    return not labels or not any(value for item in series for value in item.values)


def _scale(series: Sequence[Series], value_format: Callable[[float], str]) -> tuple[float, float]:
    """The top of the y axis and its step: the largest value rounded up to a whole number of
    steps of 1, 2 or 5 times a power of ten, so that the ticks read as round numbers (and, for
    counts, whole ones)."""
    maximum = max((max(item.values, default=0) for item in series), default=0)
    if maximum <= 0:
        return 1.0, 1.0
    rough = maximum / Y_TICKS
    magnitude = 10 ** math.floor(math.log10(rough))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= rough)
    if value_format is count_format:
        step = max(step, 1.0)
    return step * math.ceil(maximum / step), step


def _y_axis(top: float, step: float, value_format: Callable[[float], str]) -> list[str]:
    parts = []
    for tick in range(round(top / step) + 1):
        value = tick * step
        y = TOP + PLOT_HEIGHT - value / top * PLOT_HEIGHT
        parts.append(_line(LEFT, y, LEFT + PLOT_WIDTH, y, "#5a6478" if tick == 0 else "#dfe3ea"))
        label = value_format(value) if value_format is count_format else f"{value:g}%"
        parts.append(_text(LEFT - 6, y + 4, label, anchor="end"))
    return parts


def _spread(count: int, most: int) -> list[int]:
    """Up to `most` indexes spread evenly from the first to the last."""
    if count <= most:
        return list(range(count))
    return sorted({round(n * (count - 1) / (most - 1)) for n in range(most)})


def _line(x1: float, y1: float, x2: float, y2: float, colour: str) -> str:
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}" '
        'stroke-width="1"/>'
    )


def _text(x: float, y: float, text: str, *, anchor: str) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="#5a6478">{escape(text)}</text>'
    )


def _swatch(item: Series) -> SafeString:
    if item.style == "bar":
        shape = f'<rect x="2" y="1" width="20" height="10" fill="{item.hex}"/>'
    elif item.style == "area":
        shape = (
            f'<rect x="0" y="2" width="24" height="8" fill="{item.hex}" fill-opacity="0.12"/>'
            f'<line x1="0" y1="6" x2="24" y2="6" stroke="{item.hex}" stroke-width="1.5" '
            'stroke-dasharray="5 4"/>'
        )
    else:
        shape = f'<line x1="0" y1="6" x2="24" y2="6" stroke="{item.hex}" stroke-width="2.5"/>'
    return mark_safe(  # noqa: S308 - no text from outside
        f'<svg width="24" height="12" viewBox="0 0 24 12" aria-hidden="true">{shape}</svg>'
    )

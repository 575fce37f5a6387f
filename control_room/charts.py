"""Server-rendered bar charts: geometry computed here, drawn as inline SVG by templates."""

import math
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    title: str


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    plot_left: int
    plot_bottom: int
    bars: list[Bar]
    ticks: list[Tick]
    x_labels: list[Bar]
    empty: bool
    description: str


def _nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value``."""
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    for factor in (1, 2, 5):
        if factor * magnitude >= value:
            return factor * magnitude
    return 10 * magnitude


def bar_chart(
    points: list[tuple[str, float | Decimal | int]],
    *,
    fmt=str,
    title: str = "",
    width: int = 760,
    height: int = 200,
    label_every: int = 5,
) -> Chart:
    """A bar chart of (label, value) points; ``fmt`` formats values for ticks and titles."""
    left, right, top, bottom = 64, 8, 10, 24
    plot_w = width - left - right
    plot_h = height - top - bottom
    values = [float(value or 0) for _label, value in points]
    peak = _nice_max(max(values, default=0))
    slot = plot_w / max(len(points), 1)
    bars, labels = [], []
    for index, ((label, raw), value) in enumerate(zip(points, values, strict=True)):
        bar_h = plot_h * value / peak if peak else 0
        x = left + index * slot + slot * 0.15
        bars.append(
            Bar(
                x=round(x, 2),
                y=round(top + plot_h - bar_h, 2),
                width=round(slot * 0.7, 2),
                height=round(bar_h, 2),
                label=label,
                title=f"{label}: {fmt(raw or 0)}",
            )
        )
        if index % label_every == 0 or index == len(points) - 1:
            labels.append(Bar(round(x + slot * 0.35, 2), height - 6, 0, 0, label, label))
    empty = not any(values)
    ticks = []
    for i in range(1 if empty else 5):  # an empty chart has only its zero line
        label = fmt(peak * i / 4)
        if ticks and label == ticks[-1].label:
            continue  # whole-number values under 4: no repeated labels
        ticks.append(Tick(round(top + plot_h * (1 - i / 4), 2), label))
    return Chart(
        width=width,
        height=height,
        plot_left=left,
        plot_bottom=top + plot_h,
        bars=bars,
        ticks=ticks,
        x_labels=labels,
        empty=empty,
        description=title,
    )

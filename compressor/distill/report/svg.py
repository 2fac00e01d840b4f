"""Small inline SVG charts for the HTML report: latency boxes, a scatter with its Pareto front, loss curves.

Every chart is one ``<svg data-chart="ID" data-marks="N">`` element whose data marks carry ``class="mark"``, so
a reader (or a test) can tell a chart that drew its data from an empty frame. No scripts, no fonts, no links:
the SVG is meant to sit inline in an HTML5 page (no namespace declaration needed there)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Sequence

PALETTE = ("#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777", "#4b5563")
ROLE_COLOURS = {"student": "#2563eb", "teacher": "#ea580c", "baseline": "#6b7280"}
FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif"


@dataclass(frozen=True)
class Box:
    """One engine's latency distribution: the five statistics a profile keeps, and its samples when kept."""

    label: str
    minimum: float
    p50: float
    p90: float
    p99: float
    maximum: float
    colour: str = PALETTE[0]
    samples: tuple[float, ...] = ()
    emphasis: bool = False


@dataclass(frozen=True)
class Point:
    """One engine on the accuracy/latency plane."""

    label: str
    x: float
    y: float
    colour: str = PALETTE[0]
    on_front: bool = False
    emphasis: bool = False


@dataclass(frozen=True)
class Series:
    """One curve: ``xs`` and ``ys`` of equal length."""

    name: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    colour: str = PALETTE[0]


class Scale:
    """Maps data values on ``[lo, hi]`` to pixels on ``[start, end]``, linearly or on a log axis."""

    def __init__(self, lo: float, hi: float, start: float, end: float, *, log: bool = False) -> None:
        if log:
            lo, hi = math.log10(lo), math.log10(hi)
        if hi <= lo:
            pad = abs(lo) * 0.05 or 1.0
            lo, hi = lo - pad, hi + pad
        self.lo, self.hi, self.start, self.end, self.log = lo, hi, start, end, log

    def __call__(self, value: float) -> float:
        v = math.log10(value) if self.log else value
        return self.start + (v - self.lo) / (self.hi - self.lo) * (self.end - self.start)

    def ticks(self, count: int = 5) -> list[float]:
        """Round tick values inside the scale's range."""
        if self.log:
            values = []
            for exponent in range(math.floor(self.lo), math.ceil(self.hi) + 1):
                for mantissa in (1, 2, 5):
                    v = mantissa * 10.0 ** exponent
                    if self.lo - 1e-9 <= math.log10(v) <= self.hi + 1e-9:
                        values.append(v)
            return values
        return nice_ticks(self.lo, self.hi, count)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round values (steps of 1, 2 or 5 times a power of ten) covering ``[lo, hi]``."""
    span = hi - lo
    if not span > 0 or not math.isfinite(span):
        return [lo]
    raw = span / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def padded_range(values: Sequence[float], *, log: bool = False, pad: float = 0.06) -> tuple[float, float]:
    """``[min, max]`` of ``values`` widened a little so marks do not sit on the frame."""
    lo, hi = min(values), max(values)
    if log:
        ratio = (hi / lo) ** pad if hi > lo else 1.5
        return lo / ratio, hi * ratio
    span = hi - lo or abs(hi) * 0.1 or 1.0
    return lo - span * pad, hi + span * pad


def fmt_number(value: float) -> str:
    """A tick label: short, no trailing zeros."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e4 or magnitude < 1e-3:
        return f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e")
    text = f"{value:.4g}"
    return text


def _text(x: float, y: float, text: str, *, anchor: str = "start", size: int = 12, colour: str = "#374151",
          extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{colour}" text-anchor="{anchor}"{extra}>'
            f"{escape(text)}</text>")


def _frame(chart_id: str, width: int, height: int, title: str, marks: int, body: list[str]) -> str:
    return (f'<svg class="chart" data-chart="{escape(chart_id)}" data-marks="{marks}" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" style="{FONT}"><title>{escape(title)}</title>'
            + "".join(body) + "</svg>")


def _x_axis(scale: Scale, top: float, bottom: float, label: str, width: float) -> list[str]:
    out = []
    for t in scale.ticks():
        x = scale(t)
        out.append(f'<line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" stroke="#e5e7eb"/>')
        out.append(_text(x, bottom + 16, fmt_number(t), anchor="middle", size=11, colour="#6b7280"))
    out.append(f'<line x1="{scale.start:.1f}" y1="{bottom:.1f}" x2="{scale.end:.1f}" y2="{bottom:.1f}" '
               'stroke="#9ca3af"/>')
    out.append(_text((scale.start + scale.end) / 2, bottom + 34, label, anchor="middle", size=12))
    return out


def _y_axis(scale: Scale, left: float, right: float, label: str) -> list[str]:
    out = []
    for t in scale.ticks():
        y = scale(t)
        out.append(f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        out.append(_text(left - 6, y + 4, fmt_number(t), anchor="end", size=11, colour="#6b7280"))
    out.append(f'<line x1="{left:.1f}" y1="{scale.end:.1f}" x2="{left:.1f}" y2="{scale.start:.1f}" '
               'stroke="#9ca3af"/>')
    middle = (scale.start + scale.end) / 2
    out.append(_text(14, middle, label, anchor="middle", size=12,
                     extra=f' transform="rotate(-90 14 {middle:.1f})"'))
    return out


def wants_log(values: Sequence[float]) -> bool:
    """A log axis when the values are positive and span more than a factor of 20."""
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) and bool(positive) and max(positive) / min(positive) > 20


def box_chart(chart_id: str, boxes: Sequence[Box], *, unit: str = "ms", width: int = 960) -> str:
    """Horizontal latency distributions, one row per engine: a line from min to p99, a box from the median to
    p90, a bar at the median, a dot at the maximum; the samples as faint dots when present."""
    label_width, row, top = 250, 34, 12
    height = top + row * len(boxes) + 48
    values = [v for b in boxes for v in (b.minimum, b.maximum, *b.samples)]
    log = wants_log(values)
    lo, hi = padded_range(values, log=log, pad=0.03)
    x = Scale(max(lo, 0.0) if not log else lo, hi, label_width, width - 20, log=log)
    bottom = top + row * len(boxes)
    body = _x_axis(x, top, bottom, f"latency ({unit}){', log scale' if log else ''}", width)
    for i, b in enumerate(boxes):
        mid = top + row * i + row / 2
        weight = ' font-weight="600"' if b.emphasis else ""
        body.append(_text(label_width - 10, mid + 4, b.label, anchor="end", size=12, extra=weight))
        for s in b.samples:
            body.append(f'<circle cx="{x(s):.1f}" cy="{mid:.1f}" r="1.5" fill="{b.colour}" fill-opacity="0.25"/>')
        body.append(f'<line class="mark" x1="{x(b.minimum):.1f}" y1="{mid:.1f}" x2="{x(b.p99):.1f}" y2="{mid:.1f}" '
                    f'stroke="{b.colour}" stroke-width="1.5"/>')
        for v in (b.minimum, b.p99):
            body.append(f'<line x1="{x(v):.1f}" y1="{mid - 6:.1f}" x2="{x(v):.1f}" y2="{mid + 6:.1f}" '
                        f'stroke="{b.colour}" stroke-width="1.5"/>')
        left, right = x(b.p50), max(x(b.p90), x(b.p50) + 2)
        body.append(f'<rect class="mark" x="{left:.1f}" y="{mid - 9:.1f}" width="{right - left:.1f}" height="18" '
                    f'fill="{b.colour}" fill-opacity="0.35" stroke="{b.colour}" stroke-width="1.5"><title>'
                    f'{escape(b.label)}: min {b.minimum:.4g}, median {b.p50:.4g}, p90 {b.p90:.4g}, p99 {b.p99:.4g}, '
                    f'max {b.maximum:.4g} {unit}</title></rect>')
        body.append(f'<line x1="{left:.1f}" y1="{mid - 9:.1f}" x2="{left:.1f}" y2="{mid + 9:.1f}" '
                    f'stroke="{b.colour}" stroke-width="3"/>')
        body.append(f'<circle cx="{x(b.maximum):.1f}" cy="{mid:.1f}" r="3" fill="white" stroke="{b.colour}" '
                    'stroke-width="1.5"/>')
    return _frame(chart_id, width, height, "latency per engine", len(boxes), body)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: none is at least as fast (lower x) and at least as
    accurate (higher y) while strictly better in one."""
    front = []
    for i, (x, y) in enumerate(points):
        beaten = any((ox <= x and oy >= y) and (ox < x or oy > y) for j, (ox, oy) in enumerate(points) if j != i)
        if not beaten:
            front.append(i)
    return front


def scatter_chart(chart_id: str, points: Sequence[Point], *, x_label: str, y_label: str, width: int = 960,
                  height: int = 420) -> str:
    """Points labelled by engine, the Pareto front (faster and at least as accurate) joined by a step line."""
    left, right, top, bottom = 70, width - 30, 16, height - 52
    xs = [p.x for p in points]
    log = wants_log(xs)
    x = Scale(*padded_range(xs, log=log, pad=0.08), left, right, log=log)
    y = Scale(*padded_range([p.y for p in points], pad=0.12), bottom, top)
    body = _x_axis(x, top, bottom, x_label + (", log scale" if log else ""), width) + _y_axis(y, left, right, y_label)
    front = sorted((p for p in points if p.on_front), key=lambda p: p.x)
    if len(front) > 1:
        path = [f"M{x(front[0].x):.1f},{y(front[0].y):.1f}"]
        for a, b in zip(front, front[1:]):
            path.append(f"L{x(b.x):.1f},{y(a.y):.1f}L{x(b.x):.1f},{y(b.y):.1f}")
        body.append(f'<path d="{"".join(path)}" fill="none" stroke="#16a34a" stroke-width="2" '
                    'stroke-dasharray="6 4"/>')
    placed: list[tuple[float, float]] = []
    for p in points:
        cx, cy = x(p.x), y(p.y)
        radius = 7 if p.emphasis else 5
        ring = ' stroke="#16a34a" stroke-width="3"' if p.on_front else ' stroke="white" stroke-width="1.5"'
        body.append(f'<circle class="mark" cx="{cx:.1f}" cy="{cy:.1f}" r="{radius}" fill="{p.colour}"{ring}>'
                    f"<title>{escape(p.label)}: {p.x:.4g} / {p.y:.5g}</title></circle>")
        ly = cy - 10
        while any(abs(ly - py) < 13 and abs(cx - px) < 150 for px, py in placed):
            ly += 14  # keep labels of nearby points apart
        placed.append((cx, ly))
        anchor, lx = ("end", cx - 9) if cx > right - 170 else ("start", cx + 9)
        body.append(_text(lx, ly, p.label, anchor=anchor, size=11, extra=' font-weight="600"' if p.emphasis else ""))
    return _frame(chart_id, width, height, f"{y_label} against {x_label}", len(points), body)


def line_chart(chart_id: str, series: Sequence[Series], *, x_label: str, y_label: str, title: str,
               width: int = 318, height: int = 230) -> str:
    """Curves sharing one pair of axes (log y when the values span more than a factor of 20)."""
    left, right, top, bottom = 62, width - 22, 30, height - 46
    xs = [v for s in series for v in s.xs]
    ys = [v for s in series for v in s.ys if math.isfinite(v)]
    log = wants_log(ys)
    x = Scale(min(xs), max(xs), left, right)
    y = Scale(*padded_range(ys, log=log, pad=0.05), bottom, top, log=log)
    body = [_text(width / 2, 16, title, anchor="middle", size=13, extra=' font-weight="600"')]
    body += _x_axis(x, top, bottom, x_label, width) + _y_axis(y, left, right, y_label + (" (log)" if log else ""))
    marks = 0
    for s in series:
        pairs = [(a, b) for a, b in zip(s.xs, s.ys) if math.isfinite(b) and (b > 0 or not log)]
        if not pairs:
            continue
        points = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in pairs)
        body.append(f'<polyline class="mark" points="{points}" fill="none" stroke="{s.colour}" stroke-width="2"/>')
        body += [f'<circle cx="{x(a):.1f}" cy="{y(b):.1f}" r="2.5" fill="{s.colour}"/>' for a, b in pairs]
        marks += 1
    return _frame(chart_id, width, height, title, marks, body)

"""Line charts of measured points: an SVG for a notebook, a table for a terminal.

    chart = line_chart({"downtime": [(1, 0.7), (10, 0.8), (30, 8.4)]}, x_label="dirty rate (pages/ms)",
                       y_label="downtime (ms)", log_x=True)

Each series is drawn as dots joined by a line, in its own colour, with a legend; axes carry
five ticks each. `marks` are horizontal lines with a label (a published figure beside the
measured ones, say). At most WIDTH points wide, for a projector.
"""

from __future__ import annotations

import html
import math

from vlab.viz.chart import Chart
from vlab.viz.gantt import COLOURS

WIDTH, HEIGHT, LEFT, BOTTOM, TOP, RIGHT = 640, 300, 70, 44, 28, 150  # points


def line_chart(series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str, title: str = "",
               log_x: bool = False, log_y: bool = False, marks: dict[str, float] | None = None) -> Chart:
    """A chart of `series` (name -> (x, y) points); `marks`: label -> y of a horizontal line."""
    marks = marks or {}
    xs = [x for points in series.values() for x, _ in points]
    ys = [y for points in series.values() for _, y in points] + list(marks.values())
    if not xs:
        raise ValueError("a chart needs at least one point")
    fx, fy = (_log if log_x else float), (_log if log_y else float)
    x0, x1 = _span([fx(x) for x in xs])
    y0, y1 = _span([fy(y) for y in ys] + ([] if log_y else [0.0]))
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + inner_w * (fx(x) - x0) / (x1 - x0)

    def py(y: float) -> float:
        return TOP + inner_h * (1 - (fy(y) - y0) / (y1 - y0))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}pt" height="{HEIGHT}pt" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" style="max-width:100%;height:auto" font-family="Helvetica, Arial, sans-serif" font-size="11">',
             f'<text x="{LEFT}" y="16" font-weight="bold">{html.escape(title)}</text>',
             f'<rect x="{LEFT}" y="{TOP}" width="{inner_w}" height="{inner_h}" fill="#fafafa" stroke="#ccc"/>']
    for i in range(5):
        xv, yv = _unscale(x0 + (x1 - x0) * i / 4, log_x), _unscale(y0 + (y1 - y0) * i / 4, log_y)
        parts.append(f'<text x="{px(xv):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{_fmt(xv)}</text>')
        parts.append(f'<text x="{LEFT - 6}" y="{py(yv) + 4:.1f}" text-anchor="end">{_fmt(yv)}</text>')
    parts.append(f'<text x="{LEFT + inner_w / 2}" y="{HEIGHT - 8}" text-anchor="middle">{html.escape(x_label)}</text>')
    parts.append(f'<text x="14" y="{TOP + inner_h / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {TOP + inner_h / 2})">{html.escape(y_label)}</text>')
    for i, (label, y) in enumerate(marks.items()):
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + inner_w}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#888" '
                     f'stroke-dasharray="4 3"/><text x="{LEFT + inner_w + 6}" y="{py(y) + 4:.1f}" fill="#555">'
                     f'{html.escape(label)}</text>')
    for i, (name, points) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in points:
            parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}">'
                         f'<title>{html.escape(name)}: {_fmt(x)}, {_fmt(y)}</title></circle>')
        parts.append(f'<rect x="{WIDTH - RIGHT + 10}" y="{TOP + 16 * i}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{WIDTH - RIGHT + 24}" y="{TOP + 16 * i + 9}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return Chart("".join(parts), _table(series, x_label, y_label, marks))


def _log(value: float) -> float:
    if value <= 0:
        raise ValueError(f"a logarithmic axis cannot show {value}")
    return math.log10(value)


def _unscale(value: float, log: bool) -> float:
    return 10 ** value if log else value


def _span(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi == lo:
        return lo - 1, hi + 1
    pad = (hi - lo) * 0.05
    return lo - pad, hi + pad


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _table(series: dict, x_label: str, y_label: str, marks: dict) -> str:
    lines = [f"{y_label} against {x_label}"]
    for name, points in series.items():
        lines.append(f"  {name}: " + ", ".join(f"{_fmt(x)} -> {_fmt(y)}" for x, y in points))
    lines += [f"  {label}: {_fmt(y)}" for label, y in marks.items()]
    return "\n".join(lines)

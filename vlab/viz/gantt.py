"""A Gantt chart of a schedule: which vCPU ran on which physical CPU, when.

    gantt(trace)          # an SVG in Jupyter, rows of text in a terminal

One row per physical CPU, time from left to right in host ticks (and milliseconds of guest time
at the board's 62.5 MHz counter); each stretch a vCPU ran is a bar in its VM's colour, labelled
when it is wide enough; a world switch is a thin dark bar where it cost time; idle time is blank.
The picture is 720 points (960 px) wide and shrinks to fit a narrower pane, for a projector.
"""

from __future__ import annotations

import html

from vlab.machine.timer import FREQUENCY_HZ
from vlab.viz.chart import Chart

WIDTH, ROW, LEFT, TOP = 720, 30, 64, 24  # points: 960 px, inside a 1280 x 800 slide
COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")
TEXT_COLUMNS = 96


def gantt(segments, pcpus: int, start: int = 0, end: int | None = None, names: dict | None = None,
          switches=()) -> Chart:
    """The chart of `segments` (each with .pcpu, .entity (.vm, .vcpu, .name), .start, .end) on `pcpus`
    physical CPUs, from host tick `start` to `end` (default: the last segment's end). `names` maps a
    VM index to what to call it; `switches` (each with .pcpu, .time, .cost) are drawn where they cost time."""
    segments = [s for s in segments if s.entity is not None]
    end = max((s.end for s in segments), default=start + 1) if end is None else end
    span = max(end - start, 1)
    names = names or {}

    def x(tick: int) -> float:
        return LEFT + (WIDTH - LEFT - 10) * (min(max(tick, start), end) - start) / span

    height = TOP + ROW * pcpus + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}pt" height="{height}pt" '
             f'viewBox="0 0 {WIDTH} {height}" style="max-width:100%;height:auto" font-family="Helvetica, Arial, sans-serif" font-size="11">']
    for p in range(pcpus):
        y = TOP + ROW * p
        parts.append(f'<text x="4" y="{y + ROW / 2 + 4}">pCPU{p}</text>')
        parts.append(f'<rect x="{LEFT}" y="{y + 3}" width="{WIDTH - LEFT - 10}" height="{ROW - 6}" fill="#f4f4f4"/>')
    for s in segments:
        x0, x1 = x(s.start), x(s.end)
        y = TOP + ROW * s.pcpu
        colour = COLOURS[s.entity.vm % len(COLOURS)]
        label = f"{names.get(s.entity.vm, f'vm{s.entity.vm}')}.{s.entity.vcpu}"
        parts.append(f'<rect x="{x0:.1f}" y="{y + 3}" width="{max(x1 - x0, 0.5):.1f}" height="{ROW - 6}" '
                     f'fill="{colour}"><title>{html.escape(label)}: ticks {s.start:,}..{s.end:,}</title></rect>')
        if x1 - x0 > 7 * len(label):
            parts.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{y + ROW / 2 + 4}" text-anchor="middle" '
                         f'fill="white">{html.escape(label)}</text>')
    for w in switches:
        if w.cost:
            parts.append(f'<rect x="{x(w.time):.1f}" y="{TOP + ROW * w.pcpu + 3}" width="{max(x(w.time + w.cost) - x(w.time), 1):.1f}" '
                         f'height="{ROW - 6}" fill="#333"><title>world switch: {w.cost:,} ticks</title></rect>')
    axis = TOP + ROW * pcpus + 14
    for i in range(5):
        tick = start + span * i // 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(f'<text x="{x(tick):.1f}" y="{axis}" text-anchor="{anchor}">{_ms(tick)}</text>')
    parts.append("</svg>")
    return Chart("".join(parts), _text(segments, pcpus, start, end, names))


def host_gantt(host, names: list[str] | None = None) -> Chart:
    """The chart of everything `host` (a vlab.hyp.host.Host) has run, its VMs called `names`."""
    return gantt(host.trace.segments, len(host.pcpus), end=host.trace.end, names=dict(enumerate(names or [])),
                 switches=host.trace.switches)


def _ms(tick: int) -> str:
    return f"{tick * 1000 / FREQUENCY_HZ:.3g} ms"


def _text(segments, pcpus: int, start: int, end: int, names: dict) -> str:
    """One line per pCPU: each column a slice of time, marked with the VM that ran most of it."""
    span = max(end - start, 1)
    rows = [[" "] * TEXT_COLUMNS for _ in range(pcpus)]
    used = [[0] * TEXT_COLUMNS for _ in range(pcpus)]
    for s in segments:
        first, last = (s.start - start) * TEXT_COLUMNS // span, (s.end - 1 - start) * TEXT_COLUMNS // span
        for column in range(max(first, 0), min(last, TEXT_COLUMNS - 1) + 1):
            lo = start + column * span // TEXT_COLUMNS
            hi = start + (column + 1) * span // TEXT_COLUMNS
            ran = min(hi, s.end) - max(lo, s.start)
            if ran > used[s.pcpu][column]:
                used[s.pcpu][column] = ran
                rows[s.pcpu][column] = str(s.entity.vm % 10)
    legend = ", ".join(f"{vm % 10} = {name}" for vm, name in sorted(names.items())) or "digits are VM indices"
    lines = [f"pCPU{p:<2} |{''.join(row)}|" for p, row in enumerate(rows)]
    lines.append(f"        {_ms(start)} .. {_ms(end)}   ({legend}; blank = idle)")
    return "\n".join(lines)

"""A migration drawn along time: each transfer a bar as long as it took on the link, as tall as its pages,
laid end to end (post-copy's pulls happen while a push is on the wire: they are drawn after it).

    timeline(m)       # m: a vlab.hyp.migration.Migration; an SVG in Jupyter, a table in a terminal

Live rounds (the guest runs meanwhile) are blue, with a dark tick for the pages the guest dirtied
during the round -- what the next one must send; the stop-and-copy, the guest paused, is red:
its width is the downtime. Post-copy's pulls (a vCPU waiting for a page) are orange and its
pushes green. At most 960 points wide.
"""

from __future__ import annotations

import html

from vlab.hyp.migration import Migration, ticks_to_ms
from vlab.viz.chart import Chart

WIDTH, HEIGHT, LEFT, TOP, BOTTOM = 960, 210, 70, 30, 40
COLOUR = {"live": "#4e79a7", "stop-and-copy": "#e15759", "pull": "#f28e2b", "push": "#59a14f"}
NAME = {"live": "round (guest runs)", "stop-and-copy": "stop-and-copy (guest paused)",
        "pull": "page pulled (vCPU waits)", "push": "pages pushed"}


def timeline(m: Migration) -> Chart:
    """The transfers of `m` from the first to the last, on one time axis."""
    total = max(m.total_ticks, 1)
    tallest = max([t.pages for t in m.transfers] + [t.dirtied for t in m.transfers] + [1])
    inner_w, inner_h = WIDTH - LEFT - 20, HEIGHT - TOP - BOTTOM

    def x(tick: int) -> float:
        return LEFT + inner_w * tick / total

    def h(pages: int) -> float:
        return inner_h * pages / tallest

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}pt" height="{HEIGHT}pt" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" style="max-width:100%;height:auto" font-family="Helvetica, Arial, sans-serif" font-size="11">',
             f'<text x="{LEFT}" y="16" font-weight="bold">{html.escape(headline(m))}</text>',
             f'<line x1="{LEFT}" x2="{LEFT + inner_w}" y1="{TOP + inner_h}" y2="{TOP + inner_h}" stroke="#999"/>',
             f'<text x="{LEFT - 6}" y="{TOP + 8}" text-anchor="end">{tallest:,}</text>',
             f'<text x="{LEFT - 6}" y="{TOP + inner_h}" text-anchor="end">0 pages</text>']
    start = 0
    for n, t in enumerate(m.transfers, 1):
        x0, x1 = x(start), x(start + t.ticks)
        top = TOP + inner_h - max(h(t.pages), 1)
        parts.append(f'<rect x="{x0:.1f}" y="{top:.1f}" width="{max(x1 - x0 - 0.5, 0.5):.1f}" '
                     f'height="{max(h(t.pages), 1):.1f}" fill="{COLOUR[t.kind]}"><title>{n}: {NAME[t.kind]}, '
                     f'{t.pages:,} pages, {t.bytes:,} bytes, {t.ticks:,} ticks ({ticks_to_ms(t.ticks):.3f} ms)'
                     f'</title></rect>')
        if t.kind == "live":
            y = TOP + inner_h - h(t.dirtied)
            parts.append(f'<line x1="{x0:.1f}" x2="{x1:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#222" '
                         f'stroke-width="2"><title>{t.dirtied:,} pages dirtied meanwhile</title></line>')
        start += t.ticks
    for i in range(5):
        tick = total * i // 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(f'<text x="{x(tick):.1f}" y="{TOP + inner_h + 16}" text-anchor="{anchor}">'
                     f'{ticks_to_ms(tick):.3g} ms</text>')
    legend_y = HEIGHT - 8
    for i, kind in enumerate(k for k in COLOUR if any(t.kind == k for t in m.transfers)):
        parts.append(f'<rect x="{LEFT + 230 * i}" y="{legend_y - 9}" width="10" height="10" fill="{COLOUR[kind]}"/>'
                     f'<text x="{LEFT + 230 * i + 14}" y="{legend_y}">{NAME[kind]}</text>')
    parts.append("</svg>")
    return Chart("".join(parts), table(m))


def headline(m: Migration) -> str:
    """One short line: the mode, the link, the rounds, the downtime, the pages."""
    rounds = f"{m.rounds} live round(s), " if m.mode == "pre-copy" else f"{m.faults} page(s) pulled, "
    return (f"{m.mode} over {m.link}: {rounds}downtime {m.downtime_ticks:,} ticks ({m.downtime_ms:.3f} ms), "
            f"{m.pages_sent:,} pages sent")


def table(m: Migration) -> str:
    """One line per transfer -- its kind, pages, bytes, time on the link, pages dirtied meanwhile --
    and one for each run of pages pulled one after the other (post-copy), with their totals."""
    lines = [m.summary(), f"{'#':>5} {'transfer':<30} {'pages':>7} {'bytes':>11} {'ticks':>10} {'ms':>9} {'dirtied':>8}"]
    n, transfers = 1, m.transfers
    while n <= len(transfers):
        t = transfers[n - 1]
        run = [t]
        while t.kind == "pull" and n + len(run) <= len(transfers) and transfers[n + len(run) - 1].kind == "pull":
            run.append(transfers[n + len(run) - 1])
        pages, size, ticks = sum(r.pages for r in run), sum(r.bytes for r in run), sum(r.ticks for r in run)
        number = f"{n}" if len(run) == 1 else f"{n}-{n + len(run) - 1}"
        what = NAME[t.kind] if len(run) == 1 else f"{len(run)} pages pulled (vCPU waits)"
        dirtied = f"{t.dirtied:8,}" if t.kind == "live" else ""
        lines.append(f"{number:>5} {what:<30} {pages:7,} {size:11,} {ticks:10,} {ticks_to_ms(ticks):9.3f} {dirtied}")
        n += len(run)
    return "\n".join(lines)

"""A balancing run drawn as a grid: one row per host, one column per epoch.

    grid(timeline)    # timeline: a vlab.hyp.balance.Timeline; an SVG in Jupyter, its table in a terminal

Each cell is shaded by the host's utilisation in that epoch (white: idle, dark: every pCPU busy)
and lists the VMs it ran; a host switched off is grey. A dot between two columns marks each
migration the policy asked for at the end of the epoch, on the row of the host it went to.
The mean utilisation of the hosts that were on, and the hosts on, are the last two rows. At
most 960 points wide.
"""

from __future__ import annotations

import html

from vlab.hyp.balance import Timeline
from vlab.viz.chart import Chart

WIDTH, LEFT, TOP, ROW = 960, 70, 24, 46


def grid(timeline: Timeline) -> Chart:
    epochs, hosts = timeline.epochs, timeline.hosts
    cell = (WIDTH - LEFT - 10) / max(len(epochs), 1)
    height = TOP + ROW * (len(hosts) + 1) + 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}pt" height="{height}pt" '
             f'viewBox="0 0 {WIDTH} {height}" style="max-width:100%;height:auto" font-family="Helvetica, Arial, sans-serif" font-size="10">',
             f'<text x="{LEFT}" y="14" font-weight="bold" font-size="11">{html.escape(timeline.summary())}</text>']
    for row, host in enumerate(hosts):
        y = TOP + ROW * row
        parts.append(f'<text x="4" y="{y + ROW / 2 + 4}" font-size="11">{host}</text>')
        for column, epoch in enumerate(epochs):
            x = LEFT + cell * column
            vms = sorted(v for v, where in epoch.placement.items() if where == host)
            if epoch.on[host]:
                u = epoch.utilisation[host]
                fill, ink = _shade(u), "white" if u > 0.55 else "black"
                label = f"{u:.0%}"
            else:
                fill, ink, label = "#d0d0d0", "#666", "off"
            parts.append(f'<rect x="{x:.1f}" y="{y + 2}" width="{cell - 2:.1f}" height="{ROW - 4}" fill="{fill}">'
                         f'<title>epoch {epoch.number}, {host}: {label} {", ".join(vms)}</title></rect>')
            parts.append(f'<text x="{x + 3:.1f}" y="{y + 14}" fill="{ink}">{label}</text>')
            if cell > 50:
                for i, vm in enumerate(vms[:2]):
                    parts.append(f'<text x="{x + 3:.1f}" y="{y + 26 + 10 * i}" fill="{ink}">{html.escape(vm)}'
                                 f'{" +" + str(len(vms) - 2) if i == 1 and len(vms) > 2 else ""}</text>')
            for k, move in enumerate(m for m in epoch.moves if m.destination == host):
                parts.append(f'<circle cx="{x + cell - 1:.1f}" cy="{y + 8 + 7 * k}" r="3" fill="#e15759">'
                             f'<title>{html.escape(move.vm)} {move.source} -> {move.destination}: {move.pages:,} '
                             f'pages, {move.downtime_ticks:,} ticks of downtime</title></circle>')
    y = TOP + ROW * len(hosts)
    parts.append(f'<text x="4" y="{y + 14}" font-size="11">mean</text><text x="4" y="{y + 30}" font-size="11">on</text>')
    for column, epoch in enumerate(epochs):
        x = LEFT + cell * column
        parts.append(f'<text x="{x + 3:.1f}" y="{y + 14}">{timeline.mean_utilisation(epoch):.0%}</text>'
                     f'<text x="{x + 3:.1f}" y="{y + 30}">{sum(epoch.on.values())}</text>')
    parts.append(f'<text x="{LEFT}" y="{height - 6}">epochs 0..{len(epochs) - 1} left to right; red dots: '
                 f'migrations at the end of an epoch, on the row of the host they went to</text>')
    parts.append("</svg>")
    return Chart("".join(parts), timeline.table())


def _shade(utilisation: float) -> str:
    """White for idle, the course's blue for every pCPU busy."""
    u = min(max(utilisation, 0.0), 1.0)
    r, g, b = (round(255 + (c - 255) * u) for c in (0x2a, 0x4d, 0x7a))
    return f"#{r:02x}{g:02x}{b:02x}"

"""The course's rule for pictures: each fits a 1280 x 800 projector, at most 1,000 pt wide (issue #17)."""

from __future__ import annotations

import re

MAX_WIDTH_PT = 1000
_SVG_SIZE = re.compile(r'<svg\b[^>]*?\bwidth="([\d.]+)pt"\s+height="([\d.]+)pt"')


def svg_sizes_pt(text: str) -> list[tuple[float, float]]:
    """(width, height) in points of every graphviz SVG in `text` (a page, or one picture's source)."""
    return [(float(w), float(h)) for w, h in _SVG_SIZE.findall(text)]


def diagram_size_pt(diagram) -> tuple[float, float]:
    """A vlab Diagram's size as `dot` draws it."""
    (size,) = svg_sizes_pt(diagram.graph.pipe(format="svg").decode())
    return size

"""The course's rule for pictures: each fits a 1280 x 800 projector, at most 1,000 pt wide (issue #17)."""

from __future__ import annotations

import base64
import re
import urllib.parse

MAX_WIDTH_PT = 1000
_SVG_SIZE = re.compile(r'<svg\b[^>]*?\bwidth="([\d.]+)pt"\s+height="([\d.]+)pt"')
# An SVG inside a data: URI, as nbconvert embeds an output's picture in an <img>
_SVG_URI = re.compile(r"data:image/svg\+xml(;base64)?,([^\"')\s]+)")


def svg_sizes_pt(text: str) -> list[tuple[float, float]]:
    """(width, height) in points of every graphviz SVG in `text` (a page, or one picture's source),
    inline or in a data: URI."""
    embedded = [base64.b64decode(body).decode(errors="replace") if encoded else urllib.parse.unquote(body)
                for encoded, body in _SVG_URI.findall(text)]
    return [(float(w), float(h)) for part in (text, *embedded) for w, h in _SVG_SIZE.findall(part)]


def diagram_size_pt(diagram) -> tuple[float, float]:
    """A vlab Diagram's size as `dot` draws it."""
    (size,) = svg_sizes_pt(diagram.graph.pipe(format="svg").decode())
    return size

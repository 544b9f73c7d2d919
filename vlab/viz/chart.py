"""A drawn chart, as a notebook and a terminal each show it: `svg` for one, `text` for the other."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chart:
    """A picture (`svg`) and the same content as text (`text`, what prints with no front-end)."""

    svg: str
    text: str

    def __str__(self) -> str:
        return self.text

    def _repr_mimebundle_(self, include=None, exclude=None, **_) -> dict:
        return {"image/svg+xml": self.svg, "text/plain": self.text}

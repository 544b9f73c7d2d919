"""A graphviz picture that also reads as text: the shape every vlab diagram is returned in.

Jupyter shows the SVG; a terminal, a text export or a machine without the
Graphviz `dot` program shows the text (with a note saying what to install).
"""

from __future__ import annotations

from dataclasses import dataclass

import graphviz


@dataclass(frozen=True)
class Diagram:
    """A graphviz graph and its plain-text equivalent."""

    graph: graphviz.Digraph
    text: str

    @property
    def source(self) -> str:
        """The DOT source (what tests and curious students read)."""
        return self.graph.source

    def __str__(self) -> str:
        return self.text

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(self.text)

    def _repr_mimebundle_(self, include=None, exclude=None, **_) -> dict:
        try:
            bundle = dict(self.graph._repr_mimebundle_(include=include, exclude=exclude))
        except graphviz.ExecutableNotFound:
            return {"text/plain": self.text + "\n(install Graphviz's `dot` to see the picture: "
                                              "apt-get install graphviz, or conda install graphviz)"}
        bundle["text/plain"] = self.text
        return bundle

    def html(self) -> str:
        """The SVG for an HTML pane (a widget's), or the text in <pre> when `dot` is missing.

        The picture shrinks to the pane's width rather than overflow it, as JupyterLab shows an
        output's images: on a projector's narrower slide it stays whole.
        """
        import html as html_escape

        try:
            svg = self.graph.pipe(format="svg").decode()
        except graphviz.ExecutableNotFound:
            return f"<pre>{html_escape.escape(self.text)}</pre>"
        return svg.replace("<svg ", '<svg style="max-width:100%;height:auto" ', 1)

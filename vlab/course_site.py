"""A static site of the course: every chapter executed, exported to HTML with its diagrams and a
snapshot of each widget as it stood (vlab.viz.widget_snapshot), and an index page. The pages
load nothing from elsewhere: they read offline, from disk.

    vlab site _build/html        (make book)

Jupyter Book 2 would be the natural tool, but its HTML build downloads its site template from
api.mystmd.org at build time, which is neither a package registry nor reachable here; nbconvert
needs nothing beyond what the course installs.
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

from vlab.viz.widget_snapshot import snapshot_html

SITE_HELP = """Execute every chapter and write the course as a static HTML site: one page a chapter, each
widget as it stood after its cell ran, and an index page. The pages read offline, from disk:
open OUT/index.html in a browser. `make book` does the same."""

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "jupyter" / "nbconvert" / "templates"  # vlab-site: the lab template, fetching nothing
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def chapters() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("*.ipynb"))


def title_of(notebook) -> str:
    first = next((c.source for c in notebook.cells if c.cell_type == "markdown"), "")
    return first.splitlines()[0].lstrip("# ").strip() if first else "untitled"


def with_widget_snapshots(notebook):
    """The executed notebook with each widget output drawn as a static snapshot of its saved state
    (a live widget would need the ipywidgets manager from a CDN), and the state itself dropped."""
    saved = notebook.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).pop(WIDGET_VIEW, None)
            if view is not None:
                output["data"]["text/html"] = snapshot_html(saved, view["model_id"])
    return notebook


def build(out: Path, progress=print) -> list[Path]:
    """Execute every chapter and write OUT/<chapter>.html and OUT/index.html; the pages written."""
    out.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="vlab-site", extra_template_basedirs=[str(TEMPLATES)])
    pages, entries = [], []
    for path in chapters():
        progress(f"executing {path.name} ...")
        notebook = nbformat.read(path, as_version=4)
        NotebookClient(notebook, timeout=600, kernel_name="python3", store_widget_state=True,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        body, _ = exporter.from_notebook_node(with_widget_snapshots(notebook))
        page = out / f"{path.stem}.html"
        page.write_text(body)
        pages.append(page)
        entries.append(f'<li><a href="{page.name}">{html.escape(title_of(notebook))}</a></li>')
    index = out / "index.html"
    index.write_text("<!doctype html><meta charset='utf-8'><title>vlab</title>"
                     "<h1>vlab: a virtualization lab</h1><ol>" + "".join(entries) + "</ol>")
    return [index, *pages]


def add_parser(subparsers) -> None:
    """Register the `site` subcommand."""
    p = subparsers.add_parser("site", help="build a static HTML site of the executed chapters",
                              description=SITE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, nargs="?", default=ROOT / "_build" / "html",
                   help="the folder to write it to (default: _build/html)")
    p.set_defaults(func=site_command)


def site_command(args: argparse.Namespace) -> int:
    try:
        pages = build(args.out, progress=lambda m: print(m, file=sys.stderr))
    except Exception as e:  # noqa: BLE001 - a chapter that fails to run is reported, with its error
        print(f"vlab site: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(pages)} pages; open {pages[0]}")
    return 0

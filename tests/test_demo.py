"""`vlab demo`: the chapters' widgets as Voilà dashboards or slides on localhost, fetched over HTTP (no browser)."""

from __future__ import annotations

import ast
import json
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import nbformat
import pytest
from servers import FETCHED, fetched_from_elsewhere, vlab_demo

from vlab.cli_demo import dashboards
from vlab.viz.live import LiveView

ROOT = Path(__file__).resolve().parent.parent
# A JSON string in the page, escapes included: Voilà embeds each output's mime bundle as JSON.
TEXT_PLAIN = re.compile(r'"text/plain": ("(?:[^"\\]|\\.)*")')
# Each output Voila embeds in the page, as a JSON object.
CELL_OUTPUT = re.compile(r'<script type="application/vnd.voila.cell-output\+json">(.*?)</script>', re.S)


def test_every_chapter_has_a_dashboard():
    chapters = {int(p.name[:2]) for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb") if p.name[:2] != "00"}
    assert set(dashboards()) == chapters


def test_an_unknown_chapter_is_refused_with_the_list():
    done = subprocess.run([sys.executable, "-m", "vlab", "demo", "99"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no dashboard for chapter 99" in done.stderr


@pytest.fixture(scope="module")
def demo_server():
    with vlab_demo() as url:
        yield url


@pytest.fixture(scope="module")
def slides_server():
    with vlab_demo("--slides", "2") as url:
        yield url


def _widgets_built_here(notebook: Path) -> list[LiveView]:
    """Run the dashboard's cells in this process; the vlab widget each cell ends with, in order."""
    namespace: dict = {}
    shown = []
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        body = ast.parse(cell.source).body
        last = body.pop() if body and isinstance(body[-1], ast.Expr) else None
        exec(compile(ast.Module(body, []), notebook.name, "exec"), namespace)
        value = eval(compile(ast.Expression(last.value), notebook.name, "eval"), namespace) if last else None
        if isinstance(value, LiveView):
            shown.append(value)
    return shown


@pytest.mark.timeout(300)
@pytest.mark.parametrize("chapter", sorted(dashboards()))
def test_each_dashboard_serves_its_live_widgets_as_vlab_computes_them(demo_server, chapter):
    notebook = dashboards()[chapter]
    page = urllib.request.urlopen(f"{demo_server}/voila/render/{notebook.name}", timeout=240).read().decode()
    assert '"output_type": "error"' not in page and "Traceback" not in page, page[-3000:]
    expected = _widgets_built_here(notebook)
    assert expected, f"{notebook.name} shows no vlab widget"
    # A live widget (a model the browser connects to), not a picture of one, for every widget shown.
    assert page.count("application/vnd.jupyter.widget-view+json") == len(expected)
    served = [json.loads(s) for s in TEXT_PLAIN.findall(page)]
    # Each widget's headline, as the same code computes it here: the dashboard really ran vlab.
    assert [s.splitlines()[0] for s in served] == [w.text().splitlines()[0] for w in expected]
    assert not fetched_from_elsewhere(page)


@pytest.mark.timeout(300)
def test_a_chapter_is_served_as_slides_with_live_widgets_and_nothing_fetched_elsewhere(slides_server):
    chapter = nbformat.read(ROOT / "notebooks" / "02_trap_and_emulate.ipynb", as_version=4)
    page = urllib.request.urlopen(slides_server, timeout=240).read().decode()
    assert '"output_type": "error"' not in page and "Traceback" not in page, page[-3000:]
    slides = sum(c.metadata.get("slideshow", {}).get("slide_type") == "slide" for c in chapter.cells)
    assert len(re.findall(r"<section\b", page)) >= slides >= 2  # reveal.js sections: a slide, or a slide's parts
    assert page.count("application/vnd.jupyter.widget-view+json") >= 1  # the trap widget, live
    assert not fetched_from_elsewhere(page)
    stylesheets = [u for u in FETCHED.findall(page) if "vlab-slides/static/reveal" in u]
    assert {u.rsplit("/", 1)[1] for u in stylesheets} == {"reveal.css", "vlab.css"}
    for url in stylesheets:  # served by Voila from vlab's template
        assert urllib.request.urlopen(f"{slides_server}{url}", timeout=30).status == 200


@pytest.mark.timeout(300)
def test_the_slides_mark_the_chapters_own_outputs_trusted_so_their_diagrams_show(slides_server):
    page = urllib.request.urlopen(slides_server, timeout=240).read().decode()
    outputs = [json.loads(o) for o in CELL_OUTPUT.findall(page)]
    assert any("image/svg+xml" in o.get("data", {}) for o in outputs)  # the chapter's diagrams
    # untrusted, JupyterLab's renderer shows an SVG as "Cannot display an untrusted SVG"
    assert all(o.get("trusted") is True for o in outputs), [o for o in outputs if not o.get("trusted")][:1]


def test_an_unknown_slideshow_is_refused_with_the_list():
    done = subprocess.run([sys.executable, "-m", "vlab", "demo", "--slides", "99"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "no slideshow for chapter 99" in done.stderr and "0, 1, 2, 3" in done.stderr


def test_a_port_in_use_is_refused_with_what_to_do():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "vlab", "demo", "2", "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and f"port {port} on 127.0.0.1 is in use" in done.stderr and "--port" in done.stderr
    assert "Serving on" not in done.stdout  # no address printed that is not the one served

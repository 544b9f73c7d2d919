"""`vlab demo`: the chapters' widgets as Voilà dashboards on localhost, fetched over HTTP (no browser)."""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from vlab.cli_demo import dashboards
from vlab.viz.live import LiveView

ROOT = Path(__file__).resolve().parent.parent
# A JSON string in the page, escapes included: Voilà embeds each output's mime bundle as JSON.
TEXT_PLAIN = re.compile(r'"text/plain": ("(?:[^"\\]|\\.)*")')


def test_every_chapter_has_a_dashboard():
    chapters = {int(p.name[:2]) for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb") if p.name[:2] != "00"}
    assert set(dashboards()) == chapters


def test_an_unknown_chapter_is_refused_with_the_list():
    done = subprocess.run([sys.executable, "-m", "vlab", "demo", "99"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no dashboard for chapter 99" in done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_server():
    """`vlab demo` (every chapter) on a free localhost port; its URL. Stopped, kernels and all, afterwards."""
    port = _free_port()
    # A session of its own, so that whatever the server started goes down with it.
    server = subprocess.Popen([sys.executable, "-m", "vlab", "demo", "--port", str(port)], start_new_session=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=10)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"vlab demo did not start:\n{server.stdout.read() if server.poll() is not None else ''}")
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


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

"""`vlab demo`: the chapters' widgets as Voilà dashboards on localhost."""

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from vlab.cli_demo import dashboards

ROOT = Path(__file__).resolve().parent.parent


def test_every_chapter_has_a_dashboard():
    chapters = {int(p.name[:2]) for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb") if p.name[:2] != "00"}
    assert set(dashboards()) == chapters


def test_an_unknown_chapter_is_refused_with_the_list():
    done = subprocess.run([sys.executable, "-m", "vlab", "demo", "99"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no dashboard for chapter 99" in done.stderr


@pytest.mark.timeout(180)
def test_the_trap_dashboard_is_served_on_localhost_with_its_live_widget():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "vlab", "demo", "2", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, page = time.monotonic() + 120, ""
        while time.monotonic() < deadline:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=90).read().decode()
                break
            except OSError:
                time.sleep(1)
        assert "application/vnd.jupyter.widget-view+json" in page  # a live widget, not a picture
        assert "sensitive.S with traps TWI|TVM" in page  # computed by vlab as the dashboard ran
    finally:
        server.terminate()
        server.wait(10)

"""`make lab` as a student runs it: it prints the course's address, serves the start page behind
a token, listens on localhost only, runs as root, and JupyterLab carries the course's overrides.

The real Makefile target, in this repository, on a free port; stopped (its whole process group)
at the end.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from servers import free_port, stop

ROOT = Path(__file__).resolve().parent.parent
START = "/lab/tree/notebooks/00_start_here.ipynb"
START_S = 180


@pytest.fixture(scope="module")
def make_lab():
    """(port, token, everything make printed until the server was up) of a running `make lab`."""
    port = free_port()
    # -o: take the installation as it is. `make test` installed it just before; reinstalling
    # here (after an edit to pyproject.toml) would change the environment under the running tests.
    process = subprocess.Popen(["make", "-s", "-o", ".venv/.stamp-install", "lab", f"PORT={port}"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    ready = re.compile(rf"http://127\.0\.0\.1:{port}{re.escape(START)}\?token=(\w+)")
    found: list[str] = []
    announced = threading.Event()

    def read() -> None:  # all make prints, to the end: a full pipe would stall the server
        for line in process.stdout:
            lines.append(line)
            if not found and (match := ready.search(line)):
                found.append(match.group(1))
                announced.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not announced.wait(START_S):
            pytest.fail(f"`make lab` printed no address with a token in {START_S} s:\n" + "".join(lines)[-3000:])
        # The address is printed as the server comes up, not always once it accepts connections.
        deadline = time.monotonic() + START_S
        while _get(f"http://127.0.0.1:{port}/api/status?token={found[0]}")[0] != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("`make lab` announced its address but does not answer there:\n" + "".join(lines)[-3000:])
            time.sleep(0.5)
        yield port, found[0], "".join(lines)
    finally:
        stop(process)


def _get(url: str) -> tuple[int, bytes]:
    """The status and body of a GET; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except urllib.error.URLError:
        return 0, b""


def test_make_lab_says_where_the_course_opens(make_lab):
    port, _, printed = make_lab
    assert f"Opening the course at http://127.0.0.1:{port}{START}" in printed
    assert "Everything vlab needs is here." in printed  # vlab doctor ran first


def test_the_start_page_opens_with_the_token_and_not_without(make_lab):
    port, token, _ = make_lab
    base = f"http://127.0.0.1:{port}"
    status, page = _get(f"{base}{START}?token={token}")
    assert status == 200 and b"jupyter-config-data" in page
    status, body = _get(f"{base}/api/contents/notebooks/00_start_here.ipynb?token={token}&content=0")
    assert status == 200 and json.loads(body)["type"] == "notebook"
    assert _get(f"{base}/api/contents/notebooks?token=wrong")[0] == 403


def test_the_server_listens_on_localhost_only(make_lab):
    port = make_lab[0]
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, local_port = local.split(":")
            if state == "0A" and int(local_port, 16) == port:  # 0A: LISTEN
                listening.add(address)
    assert listening == {"0100007F"}, f"listening on {listening} (hex, little-endian): only 127.0.0.1 expected"


def test_jupyterlab_serves_the_course_overrides(make_lab):
    port, token, _ = make_lab
    overrides = json.loads((ROOT / "jupyter" / "overrides.json").read_text())
    for plugin, values in overrides.items():
        status, body = _get(f"http://127.0.0.1:{port}/lab/api/settings/{plugin}?token={token}")
        assert status == 200
        schema = json.loads(body)["schema"]["properties"]
        assert {key: schema[key]["default"] for key in values} == values, f"{plugin}: overrides not applied"


def test_a_port_in_use_is_refused_with_what_to_do():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(["make", "-s", "-o", ".venv/.stamp-install", "lab", f"PORT={port}"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and f"Port {port} is in use" in done.stdout and "make lab PORT=" in done.stdout
    assert "Opening the course" not in done.stdout

"""Servers the tests start: a free localhost port, a command served until the test is done, and
what a served page would fetch."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def free_port() -> int:
    """A localhost TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(command: list[str], url: str, ready_path: str = "/", start_s: float = 120):
    """Run `command` until `url + ready_path` answers; yield `url`; then stop it, children and all.

    The command gets a session of its own, so whatever it started (kernels) goes down with it.
    """
    server = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + start_s
        while True:
            try:
                urllib.request.urlopen(url + ready_path, timeout=10)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    output = server.stdout.read() if server.poll() is not None else "(still running)"
                    pytest.fail(f"{' '.join(command)} did not start:\n{output}")
                time.sleep(0.5)
        yield url
    finally:
        stop(server)


def stop(process: subprocess.Popen) -> None:
    """Stop a process started with a session of its own, and everything it started."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def vlab_demo(*args: str):
    """`vlab demo ARGS` served on a free port until the block ends; yields its URL."""
    port = free_port()
    return serving([sys.executable, "-m", "vlab", "demo", *args, "--port", str(port)],
                   f"http://127.0.0.1:{port}", ready_path="/voila/static/voila.js")


# A page's references to stylesheets and scripts: what a browser fetches to show it.
FETCHED = re.compile(r"<(?:link|script)\b[^>]*\b(?:href|src)=\"([^\"]+)\"")


def fetched_from_elsewhere(page: str) -> list[str]:
    """The stylesheets and scripts `page` loads from another host (a CDN): none, for an offline course."""
    return [url for url in FETCHED.findall(page) if re.match(r"(https?:)?//", url)]

"""A real JupyterLab and a real browser (Debian's Chromium, driven by Playwright) for the course's notebooks.

The server serves a private copy of notebooks/ and exercises/ (running a notebook in the browser
saves its outputs; the repository's notebooks must stay output-free), on 127.0.0.1, a free port,
with no token -- for this test only -- and JupyterLab's news and update checks turned off.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Without these, headless Chromium reaches for Google's services, which this network refuses.
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings_overrides(folder: Path) -> Path:
    """A settings folder holding the course's overrides (news and update notifications off), as `make` installs."""
    settings = folder / "settings"
    settings.mkdir(parents=True)
    shutil.copy(ROOT / "jupyter" / "overrides.json", settings / "overrides.json")
    return settings


@pytest.fixture(scope="session")
def course_copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("course")
    for folder in ("notebooks", "exercises"):
        shutil.copytree(ROOT / folder, root / folder)
    return root


@pytest.fixture(scope="session")
def lab(course_copy, tmp_path_factory) -> str:
    """The URL of a running JupyterLab serving the course copy."""
    port = _free_port()
    app_dir = tmp_path_factory.mktemp("lab-settings")
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(app_dir / "user"), JUPYTER_CONFIG_DIR=str(app_dir / "config"))
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
               "--expose-app-in-browser", f"--ServerApp.root_dir={course_copy}",
               f"--LabApp.app_settings_dir={_settings_overrides(app_dir)}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = open(app_dir / "lab.log", "w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=course_copy)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail("JupyterLab did not start:\n" + (app_dir / "lab.log").read_text()[-3000:])
            time.sleep(0.5)
    yield url
    server.terminate()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


@pytest.fixture(scope="session")
def browser():
    if CHROMIUM is None:
        pytest.skip("SKIPPED: Debian's Chromium is not installed -- `make test` installs it "
                    "(apt-get install -y chromium); these browser tests did not run")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("SKIPPED: the playwright package is missing -- run `make install`; browser tests did not run")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()

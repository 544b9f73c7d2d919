"""A real JupyterLab and a real browser (Debian's Chromium, driven by Playwright) for the course's notebooks.

One server and one browser for the whole session. The server serves a private copy of notebooks/
and exercises/ (running a notebook in the browser saves its outputs; the repository's notebooks
must stay output-free), on 127.0.0.1, a free port, with no token -- for this test only -- and the
course's JupyterLab settings overrides (jupyter/overrides.json: news and update checks off), as
`make install` puts them under the environment's share/jupyter/lab/settings.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from servers import free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
OVERRIDES = ROOT / "jupyter" / "overrides.json"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Headless and quiet: without the background-networking flags Chromium reaches for Google's
# services at every start, which a closed network (CI, lab machines) refuses over and over.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERVER_START_S = 90


@pytest.fixture(scope="session")
def course_copy(tmp_path_factory) -> Path:
    """A throw-away copy of the course that the browser may run and save."""
    root = tmp_path_factory.mktemp("course")
    for folder in ("notebooks", "exercises"):
        shutil.copytree(ROOT / folder, root / folder)
    return root


@pytest.fixture(scope="session")
def lab(course_copy, tmp_path_factory) -> str:
    """The URL of a running JupyterLab serving the course copy; stopped at the end of the session."""
    port = free_port()
    home = tmp_path_factory.mktemp("lab-home")
    settings = home / "app-settings"  # what `make install` fills in the environment
    settings.mkdir()
    shutil.copy(OVERRIDES, settings / "overrides.json")
    # Private user settings and config, so neither the tester's own JupyterLab choices nor an
    # earlier run's workspace can change what the test sees.
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(home / "user-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"), JUPYTER_CONFIG_DIR=str(home / "config"))
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--IdentityProvider.token=", "--ServerApp.password=",
               "--expose-app-in-browser",  # window.jupyterapp: the test runs commands and reads cell models
               f"--ServerApp.root_dir={course_copy}", f"--LabApp.app_settings_dir={settings}"]
    if os.geteuid() == 0:  # containers and CI run as root; JupyterLab refuses root without this
        command.append("--allow-root")
    log_path = home / "lab.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=course_copy)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + SERVER_START_S
            while True:
                try:
                    urllib.request.urlopen(f"{url}/api/status", timeout=5)
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        pytest.fail("JupyterLab did not start:\n" + log_path.read_text()[-3000:])
                    time.sleep(0.5)
            yield url
        finally:
            server.terminate()  # JupyterLab shuts its kernels down on SIGTERM
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium under Playwright, or a loud skip saying what is missing (never a silent pass)."""
    if CHROMIUM is None:
        pytest.skip("SKIPPED: Debian's Chromium is not installed -- `make test` installs it "
                    "(apt-get install -y chromium); the browser tests did not run")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("SKIPPED: the playwright package is missing -- `make install` installs it "
                    "(pip install -e '.[test]'); the browser tests did not run")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        # Playwright's own browser download is never used: the system Chromium, launched as is.
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()

"""Binder: what repo2docker would build from this repository, the postBuild step, and the badge.

repo2docker's dry run (`--no-build`) needs no Docker engine and no network: it chooses a build
pack from the repository's files and prints the Dockerfile it would build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
START = "urlpath=lab/tree/notebooks/00_start_here.ipynb"


def test_repo2docker_builds_from_environment_yml_then_runs_postbuild():
    repo2docker = Path(sys.executable).with_name("repo2docker")
    done = subprocess.run([str(repo2docker), "--no-build", "--debug", str(ROOT)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dockerfile = done.stdout + done.stderr
    environment = dockerfile.find('env update -p ${NB_PYTHON_PREFIX} --file "environment.yml"')
    post_build = dockerfile.find("RUN ./postBuild")
    assert environment >= 0, "repo2docker did not pick the conda build pack from environment.yml"
    assert post_build > environment, "postBuild must run, after the environment exists"


def test_postbuild_installs_the_course_settings_overrides(tmp_path):
    env = dict(os.environ, NB_PYTHON_PREFIX=str(tmp_path))
    subprocess.run(["bash", str(ROOT / "postBuild")], cwd=ROOT, env=env, check=True, timeout=60)
    installed = tmp_path / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    assert json.loads(installed.read_text()) == json.loads((ROOT / "jupyter" / "overrides.json").read_text())


@pytest.mark.parametrize("remote, repo", [("https://github.com/someone/vlab.git", "someone/vlab"),
                                          ("https://github.com/someone/vlab", "someone/vlab"),
                                          ("git@github.com:a-course/v.lab.git", "a-course/v.lab")])
def test_binder_badge_points_at_the_github_remote_and_the_start_page(tmp_path, remote, repo):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin", remote], check=True)
    done = subprocess.run(["make", "-s", "-f", str(ROOT / "Makefile"), "binder-badge"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (f"[![Binder](https://mybinder.org/badge_logo.svg)]"
                                   f"(https://mybinder.org/v2/gh/{repo}/HEAD?{START})")
    assert (ROOT / START.split("lab/tree/", 1)[1]).is_file(), "the badge opens a notebook that exists"


def test_binder_badge_without_a_github_remote_says_why(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    done = subprocess.run(["make", "-s", "-f", str(ROOT / "Makefile"), "binder-badge"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "No GitHub remote" in done.stderr and not done.stdout


def test_readme_explains_binder_and_conda():
    readme = (ROOT / "README.md").read_text()
    assert "make binder-badge" in readme and "conda env create -f environment.yml" in readme

"""The conda/Binder environment and pyproject.toml describe the same packages, with the same pins."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement such as 'Keystone_Engine==0.9.2'."""
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {_name(r): r.replace(" ", "") for r in listed}


def _environment_pip_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml should have exactly one pip: section"
    return {_name(r): r.replace(" ", "") for r in pip_sections[0] if not r.startswith("-")}


def test_environment_lists_every_pyproject_requirement_with_the_same_pin():
    pyproject, environment = _pyproject_requirements(), _environment_pip_requirements()
    assert sorted(pyproject) == sorted(environment), "the two files list different packages"
    differing = {n: (pyproject[n], environment[n]) for n in pyproject if pyproject[n] != environment[n]}
    assert not differing, f"pins differ (pyproject, environment.yml): {differing}"


def test_environment_installs_vlab_itself_and_the_dot_binary():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_packages = [d for d in env["dependencies"] if isinstance(d, str)]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "graphviz" in conda_packages, "conda-forge's graphviz package provides `dot`"
    assert any(p.startswith("python=3.1") for p in conda_packages)
    assert "-e ." in pip_section, "Binder and conda users need vlab itself installed"

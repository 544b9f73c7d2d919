"""`vlab doctor`: is everything the course needs installed, and does the machine run?

Each check says what it found (a version, a path) or what to do about it. Python
packages are checked against vlab's own requirements (pyproject.toml), so the list
here cannot drift from what `make` installs. Exit status 0 when every required
check passes; optional tools (the cross compiler, QEMU) only warn.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
INSTALL_HINT = "run `make install` (or `pip install -e '.[test]'`) in the vlab checkout"


@dataclass(frozen=True)
class Check:
    """One thing doctor looked at: `found` is a version or path, `advice` what to do when not ok."""
    name: str
    ok: bool
    found: str
    advice: str = ""
    required: bool = True

    def line(self, width: int = 22) -> str:
        """`[ok  ] name  found`, the name padded to `width`; then the advice when not ok."""
        mark = "ok  " if self.ok else ("FAIL" if self.required else "warn")
        text = f"[{mark}] {self.name:<{width}} {self.found}"
        return text if self.ok else f"{text}\n       -> {self.advice}"


def requirements() -> list[Requirement]:
    """vlab's runtime and test requirements, from the installed metadata or else pyproject.toml."""
    try:
        listed = metadata.requires("vlab") or []
    except metadata.PackageNotFoundError:
        project = tomllib.loads(PYPROJECT.read_text())["project"]
        listed = project["dependencies"] + [f'{r}; extra == "test"' for r in project["optional-dependencies"]["test"]]
    return [Requirement(r) for r in listed]


def check_package(requirement: Requirement) -> Check:
    """Is the distribution installed, at a version the requirement allows?"""
    is_test_tool = requirement.marker is not None and "extra" in str(requirement.marker)
    name = requirement.name + (" (tests)" if is_test_tool else "")
    try:
        version = metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        return Check(name, False, "not installed", INSTALL_HINT, required=not is_test_tool)
    if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
        return Check(name, False, f"{version}, but vlab needs {requirement.specifier}",
                     f"pip install '{requirement.name}{requirement.specifier}'", required=not is_test_tool)
    return Check(name, True, version, required=not is_test_tool)


def check_command(command: str, package: str, purpose: str, version_flag: str = "--version",
                  required: bool = True) -> Check:
    """Is an outside program on PATH? Reports its first version line."""
    path = shutil.which(command)
    if path is None:
        return Check(command, False, "not found",
                     f"install the system package '{package}' (Debian/Ubuntu: apt-get install -y {package}; "
                     f"conda: conda install -c conda-forge {package}) {purpose}", required)
    try:
        done = subprocess.run([path, version_flag], capture_output=True, text=True, timeout=10)
        output = (done.stdout + done.stderr).strip().splitlines()
    except (OSError, subprocess.TimeoutExpired) as e:
        return Check(command, False, f"{path} does not run ({e})", f"reinstall '{package}'", required)
    version = re.sub(r"\s+", " ", output[0]) if output else path
    return Check(command, True, version[:60], required=required)


def check_machine() -> Check:
    """Run the hello guest on the bare machine: proves Unicorn, Keystone and vlab's board work together."""
    try:
        from vlab.guests import GUESTS
        from vlab.machine.board import Board
        from vlab.machine.loader import image_from_file, load

        hello = GUESTS["hello"]
        board = Board()
        load(board, image_from_file(hello.path))
        result = board.run(max_insns=100_000, timeout_s=10)
    except Exception as e:  # doctor reports every failure, whatever it is
        return Check("vlab machine", False, f"{type(e).__name__}: {e}", INSTALL_HINT)
    if result.uart != hello.expected_uart:
        return Check("vlab machine", False, f"hello printed {result.uart!r} ({result.message})",
                     "report this as a bug: the hello guest should print " + repr(hello.expected_uart))
    return Check("vlab machine", True, f"hello guest ran {result.instructions} instructions and powered off")


def check_sandbox() -> Check:
    """Whether `vlab grade` can confine students' code here (bubblewrap): only instructors need it."""
    from vlab.grading.sandbox import sandbox_status

    status = sandbox_status()
    return Check("grading sandbox", status.sandboxed, status.how,
                 "vlab grade needs bubblewrap to confine submissions: apt-get install bubblewrap, on a Linux "
                 "that allows unprivileged namespaces (without it, grading is best-effort only)", required=False)


def run_checks() -> list[Check]:
    """Every check, in the order they are printed."""
    checks = [Check("python", sys.version_info >= (3, 11), sys.version.split()[0], "vlab needs Python 3.11+")]
    checks += [check_package(r) for r in requirements()]
    checks.append(check_command("dot", "graphviz", "to draw diagrams (without it they appear as text)", "-V"))
    checks.append(check_command("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu", "to build the C guests",
                                required=False))
    checks.append(check_command("qemu-system-aarch64", "qemu-system-arm",
                                "to compare guests with a real emulator", required=False))
    checks.append(check_sandbox())
    checks.append(check_machine())
    return checks


def add_parser(subparsers) -> None:
    """Register the `doctor` subcommand."""
    p = subparsers.add_parser("doctor", help="check that everything vlab needs is installed",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=doctor_command)


def doctor_command(args: argparse.Namespace) -> int:
    """Print every check; 0 when all required checks pass, 1 otherwise."""
    return 0 if report(run_checks()) else 1


def doctor() -> None:
    """What `vlab doctor` prints, for a notebook cell (it returns nothing, so the cell shows no value)."""
    report(run_checks())


def report(checks: list[Check]) -> bool:
    """Print the checks in one aligned column, then the verdict; True when every required one passed."""
    width = max(len(c.name) for c in checks)
    for check in checks:
        print(check.line(width))
    from vlab.viz.board_diagram import not_modelled  # the board's own list (vlab.machine.board.NOT_MODELLED)

    print("\nQEMU's virt board also has these, which vlab's board does not model (a guest touching them "
          "gets an external abort):\n  " + not_modelled().replace("\n", "\n  "))
    failed = [c.name for c in checks if c.required and not c.ok]
    warned = [c.name for c in checks if not c.required and not c.ok]
    if failed:
        print(f"\n{len(failed)} required check(s) failed: {', '.join(failed)}")
        return False
    print("\nEverything vlab needs is here." + (f" Optional: {', '.join(warned)} missing." if warned else ""))
    return True

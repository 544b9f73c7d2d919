"""The commands the README and the guests' comments tell a reader to type, typed: they must work.

Each is run as written, with bash, in a scratch folder that sees the checkout's `vlab/` as the
reader's checkout would. QEMU's command is also the oracle's (vlab.guests.qemu), so what the
documents say is what the tests compare vlab with.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vlab.guests import GUESTS
from vlab.guests import qemu as oracle

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("aarch64-linux-gnu-as", "aarch64-linux-gnu-ld", oracle.QEMU)


def qemu_block_of_the_readme() -> str:
    """The README's shell block that boots a guest on QEMU."""
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    [block] = [b for b in blocks if oracle.QEMU in b]
    return block


def commands_in_hello_s() -> str:
    """The commands hello.S's header comment gives, one per `//   ` line."""
    return "".join(line[len("//   "):] + "\n" for line in GUESTS["hello"].source().splitlines()
                   if line.startswith("//   "))


def typed(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"SKIPPED: {', '.join(missing)} missing -- install the Debian packages binutils-aarch64-linux-gnu "
                    f"and {oracle.QEMU_PACKAGE} to run the documented QEMU commands")
    (tmp_path / "vlab").symlink_to(ROOT / "vlab")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")  # `vlab` itself
    return subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)


def test_the_readmes_qemu_commands_boot_hello_and_vlab_prints_the_same(tmp_path):
    done = typed(qemu_block_of_the_readme(), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == GUESTS["hello"].expected_uart * 2  # once from QEMU, once from `vlab run`


def test_hello_s_says_how_to_boot_it_on_qemu_and_that_works(tmp_path):
    script = commands_in_hello_s()
    assert oracle.QEMU in script
    done = typed(script, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == GUESTS["hello"].expected_uart


@pytest.mark.parametrize("document", ["README.md", "vlab/guests/hello.S"])
def test_the_documented_qemu_command_is_the_one_the_oracle_runs(document):
    oracles_command = " ".join([oracle.QEMU, *oracle.MACHINE, *oracle.CONSOLE, "-kernel"])
    assert oracles_command in (ROOT / document).read_text()

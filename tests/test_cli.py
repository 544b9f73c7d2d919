"""The `vlab` command as a user runs it: a separate process, text and JSON output, exit statuses."""

import json
import subprocess
import sys

import pytest

from vlab.guests import GUESTS, SELF_CHECK_OK


def vlab(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlab", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("name", sorted(GUESTS))
def test_run_prints_what_the_guest_printed(name):
    done = vlab("run", str(GUESTS[name].path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == GUESTS[name].expected_uart
    assert "[powered_off]" in done.stderr


def test_run_json_has_the_documented_fields():
    done = vlab("run", str(GUESTS["syscall"].path), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["uart"] == GUESTS["syscall"].expected_uart
    assert result["stop"] == "powered_off"
    assert isinstance(result["instructions"], int) and result["instructions"] > 0
    registers = result["registers"]
    for name in [f"x{i}" for i in range(31)] + ["pc", "sp"]:
        assert isinstance(registers[name], int), name
    assert registers["x19"] == SELF_CHECK_OK


def test_budget_stops_an_endless_loop(tmp_path):
    source = tmp_path / "spin.S"
    source.write_text("loop: b loop\n")
    done = vlab("run", str(source), "--json", "--max-insns", "1000")
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["stop"] == "budget" and result["instructions"] == 1000


@pytest.mark.parametrize("content, words", [
    ("mov x0, #1\n  frobnicate x1\n", ["line 2", "frobnicate"]),
    (None, ["no-such-file.S"]),
])
def test_bad_input_is_a_clear_error_with_status_2(tmp_path, content, words):
    path = tmp_path / "no-such-file.S"
    if content is not None:
        path = tmp_path / "bad.S"
        path.write_text(content)
    done = vlab("run", str(path))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in done.stderr


def test_a_non_positive_budget_is_refused():
    done = vlab("run", str(GUESTS["hello"].path), "--max-insns", "0")
    assert done.returncode == 2 and "--max-insns" in done.stderr


def test_no_subcommand_prints_help():
    done = vlab()
    assert done.returncode == 2 and "doctor" in done.stdout and "run" in done.stdout


def test_help_lists_every_subcommand():
    from vlab.cli import SUBCOMMANDS

    done = vlab("--help")
    assert done.returncode == 0
    assert all(f"    {command}" in done.stdout for command in SUBCOMMANDS)


PROBE = """
import sys
from vlab.cli import main
try:
    main(["run", "--help"])
except SystemExit:
    print(sorted(m for m in sys.modules if m.startswith(("vlab.cli_", "vlab.course_site", "vlab.doctor", "nbformat"))))
"""


def test_a_subcommand_imports_only_its_own_module():
    # The start page runs `vlab doctor`: it must not pay for nbformat, nbclient or Voila.
    from vlab.cli import SUBCOMMANDS

    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == repr([SUBCOMMANDS["run"]])


def test_run_virt_json_adds_exit_counts_by_class():
    done = vlab("run", str(GUESTS["syscall"].path), "--virt", "--trap", "TVM,TRVM", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["uart"] == GUESTS["syscall"].expected_uart and result["stop"] == "powered_off"
    # the kernel reads ESR_EL1 once per system call (TRVM), prints through the emulated UART, powers off by HVC
    assert result["exits"]["SYS64"] == 2 and result["exits"]["HVC64"] == 1
    assert result["exits"]["DABT_LOWER"] >= 2 * len(GUESTS["syscall"].expected_uart)


@pytest.mark.parametrize("args, says", [
    (["--virt", "--trap", "TVM,NOPE"], "unknown HCR_EL2 bit 'NOPE'"),
    (["--trap", "TVM"], "add --virt"),
    (["--virt", "--trap", "TWE"], "WFE"),
])
def test_bad_trap_options_are_explained(args, says):
    done = vlab("run", str(GUESTS["hello"].path), *args)
    assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr

"""The `vlab` command as a user runs it: a separate process, text and JSON output, exit statuses."""

import json
import shutil
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


def test_help_speaks_to_users_not_to_developers():
    done = vlab("--help")
    assert done.returncode == 0 and "vlab run FILE" in done.stdout
    for developer_word in ("add_parser", "subparsers", "module", "func"):
        assert developer_word not in done.stdout, developer_word


def test_unknown_trap_names_list_only_the_controls_a_vm_honours():
    from vlab.arch.hcr import HCR
    from vlab.hyp import SUPPORTED_TRAPS

    done = vlab("run", str(GUESTS["hello"].path), "--virt", "--trap", "FOO")
    assert done.returncode == 2 and "unknown HCR_EL2 bit 'FOO'" in done.stderr
    listed = set(done.stderr.split("honour: ")[1].strip().split(", "))
    assert listed == {bit.name for bit in HCR if bit & SUPPORTED_TRAPS}
    for refused in ("VM", "TGE", "E2H"):  # HCR_EL2 bits a VM cannot be given
        assert refused not in listed
        assert vlab("run", str(GUESTS["hello"].path), "--virt", "--trap", refused).returncode == 2


@pytest.mark.parametrize("where", [[], ["--virt"]])
def test_the_timeout_reported_is_the_one_asked_for(tmp_path, where):
    spin = tmp_path / "spin.S"
    spin.write_text("loop: b loop\n")
    done = vlab("run", str(spin), "--timeout", "1", "--max-insns", str(10**12), "--json", *where)
    assert json.loads(done.stdout)["message"] == "wall-clock guard of 1 s reached"


@pytest.mark.parametrize("name, content, says", [
    ("README.md", "# My notes\n", "does not run this kind of file"),
    ("notes", "plain text\n", "does not run this kind of file"),
    ("kernel.elf", "not really an ELF\n", "ELF magic number"),
])
def test_text_is_never_run_as_machine_code(tmp_path, name, content, says):
    path = tmp_path / name
    path.write_text(content)
    done = vlab("run", str(path))
    assert done.returncode == 2 and says in done.stderr and done.stdout == ""
    assert ".bin" in done.stderr or "ELF" in done.stderr


def test_a_c_file_is_built_with_the_cross_compiler_and_run_saying_so(tmp_path):
    from vlab.guests.build import COMPILER, COMPILER_PACKAGE

    if shutil.which(COMPILER) is None:
        pytest.skip(f"SKIPPED: {COMPILER} is missing -- install the Debian package {COMPILER_PACKAGE}")
    program = tmp_path / "mine.c"
    program.write_text('#include "virt.h"\nint main(void) { printf("6 * 7 = %d\\n", 6 * 7); return SELF_CHECK_OK; }\n')
    for where in ([], ["--virt"]):
        done = vlab("run", str(program), "--json", *where)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["uart"] == "6 * 7 = 42\n"
        assert f"built mine.c with {COMPILER}" in done.stderr


def test_a_c_file_that_does_not_compile_shows_the_compiler_s_message(tmp_path):
    from vlab.guests.build import COMPILER

    if shutil.which(COMPILER) is None:
        pytest.skip(f"SKIPPED: {COMPILER} is missing")
    program = tmp_path / "broken.c"
    program.write_text("int main(void) { return missing_name; }\n")
    done = vlab("run", str(program))
    assert done.returncode == 2 and "missing_name" in done.stderr and "Traceback" not in done.stderr

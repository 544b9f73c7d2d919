"""`vlab doctor`: every dependency checked against pyproject.toml, missing things explained."""

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from vlab import doctor
from vlab.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_every_requirement_in_pyproject_is_checked():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] + project["optional-dependencies"]["test"]
    checked = {r.name.lower() for r in doctor.requirements()}
    assert {Requirement(r).name.lower() for r in listed} <= checked


def test_this_installation_passes_every_required_check(capsys):
    # `make test` installs everything first, so a failure here is a real set-up bug.
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out
    for name in ("unicorn", "capstone", "keystone-engine", "dot", "vlab machine"):
        assert name in out


def test_a_missing_package_says_how_to_install_it():
    check = doctor.check_package(Requirement("vlab-no-such-package>=1"))
    assert not check.ok and check.required
    assert "make install" in check.advice and "not installed" in check.line()


def test_a_wrong_version_names_the_pin():
    check = doctor.check_package(Requirement("unicorn==0.0.1"))
    assert not check.ok
    assert "==0.0.1" in check.found and "pip install 'unicorn==0.0.1'" in check.advice


def test_a_test_only_tool_is_not_required_for_the_course():
    check = doctor.check_package(Requirement('vlab-no-such-tool; extra == "test"'))
    assert not check.ok and not check.required and "warn" in check.line()


def test_a_missing_command_names_the_system_package():
    check = doctor.check_command("vlab-no-such-binary", "some-debian-package", "to do things")
    assert not check.ok
    assert "apt-get install -y some-debian-package" in check.advice


def test_a_broken_machine_is_reported_not_raised(monkeypatch):
    def explode(self, **_):
        raise RuntimeError("simulated breakage")

    monkeypatch.setattr("vlab.machine.board.Board.run", explode)
    check = doctor.check_machine()
    assert not check.ok and "simulated breakage" in check.found


def test_a_failed_required_check_makes_the_exit_status_non_zero(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "check_machine", lambda: doctor.Check("vlab machine", False, "broken", "fix it"))
    assert main(["doctor"]) == 1
    assert "1 required check(s) failed: vlab machine" in capsys.readouterr().out


def test_doctor_lists_what_qemu_virt_has_that_vlabs_board_does_not_model(capsys):
    main(["doctor"])
    out = capsys.readouterr().out
    assert "does not model" in out and "PL031" in out and "0x0903_0000" in out and "0x0a00_0000" not in out


def test_the_checks_line_up_in_one_column_whatever_the_longest_name(capsys):
    assert main(["doctor"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    names = [c.name for c in doctor.run_checks()]

    def found_column(row: str, name: str) -> int:
        after = row.index(name) + len(name)
        return after + len(row[after:]) - len(row[after:].lstrip(" "))

    assert len(rows) == len(names)
    assert len({found_column(row, name) for row, name in zip(rows, names)}) == 1, rows


def test_the_start_pages_doctor_cell_prints_the_report_and_shows_no_value():
    import nbformat
    from nbclient import NotebookClient

    path = ROOT / "notebooks" / "00_start_here.ipynb"
    notebook = nbformat.read(path, as_version=4)
    [cell] = [c for c in notebook.cells if c.cell_type == "code" and "doctor" in c.source]
    notebook.cells = [cell]
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    kinds = [out.output_type for out in cell.outputs]
    assert "execute_result" not in kinds, cell.outputs  # it once showed a stray `0`, main()'s exit status
    assert "Everything vlab needs is here." in "".join(out.get("text", "") for out in cell.outputs)


def test_a_machine_that_cannot_confine_submissions_is_a_warning_naming_bubblewrap(monkeypatch):
    from vlab.grading import sandbox

    monkeypatch.setattr(sandbox, "sandbox_status", lambda: sandbox.Status(False, "no sandbox: bwrap is not installed"))
    check = doctor.check_sandbox()
    assert not check.ok and not check.required
    assert "[warn] grading sandbox" in check.line() and "apt-get install bubblewrap" in check.line()

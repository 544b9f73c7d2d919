"""Hostile submissions (issue #18): each scores 0 on what it cheats and leaves the grader's files, the
classmates' files and the machine as they were; every student's row is written, and nothing it wrote
carries a control character."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import socket
import time
from pathlib import Path

import pytest
from submissions import FULL, ROOT, appended, processes_running, submission

from vlab.cli import main
from vlab.grading.sandbox import sandbox_status

TIMEOUT = 3.0
CH01 = {i for i in FULL if i.startswith("ch01.")}
ATTACKS = {
    # fixture: (the exercises it cheats, which score 0; a phrase the student's feedback must hold, or "")
    "replaces_the_runner": (CH01, ""),
    "forges_results": ({"ch01.svc_esr"}, ""),
    "writes_on_the_graders_channel": ({"ch01.svc_esr"}, ""),
    "always_equal": ({"ch01.svc_esr", "ch01.decode_uart_flags"}, "returned an AlwaysEqual object"),
    "delegates_to_vlab": ({"ch01.svc_esr", "ch02.handle_sysreg", "ch02.handle_uart_access",
                           "ch03.decode_stage2_descriptor", "ch03.stage2_translate"}, "vlab's own answer to"),
    "delegates_within_arch": ({"ch01.svc_esr"}, "your code called vlab.arch.esr.imm16_syndrome"),
    "writes_into_the_grader": ({"ch01.svc_esr"}, ""),
    "links_the_solutions": ({"ch01.svc_esr"}, "FileNotFoundError"),
    "snoops_on_classmates": ({"ch01.svc_esr"}, ""),
    "vandal": (set(), ""),
    "kills_the_grader": ({"ch01.svc_esr"}, "its process ended"),
    "ignores_the_alarm": (CH01, f"ran longer than {TIMEOUT:g} s"),
    "prints_40_mb": ({"ch01.svc_esr"}, "ValueError"),
    "fork_bomb": ({"ch01.svc_esr"}, ""),
    "uses_the_network": ({"ch01.svc_esr"}, "ConnectionRefusedError"),  # its own loopback: nobody listens
    "leaves_processes_behind": (set(), ""),
}
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

pytestmark = pytest.mark.skipif(not sandbox_status().sandboxed, reason="needs the sandbox (bubblewrap): "
                                                                       f"{sandbox_status().how}")


def digests(*folders: Path) -> dict[str, str]:
    """Every file under the folders (caches aside), by its content, mode and links."""
    out = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if "__pycache__" in path.parts or not (path.is_file() or path.is_symlink()):
                continue
            info = path.lstat()
            out[str(path)] = f"{hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ''} " \
                             f"{info.st_mode:o} {info.st_nlink}"
        out[str(folder)] = " ".join(sorted(p.name for p in folder.iterdir()))
    return out


def sandbox_processes() -> set[int]:
    return set(processes_running("vlab.grading.confined")) | set(processes_running("bwrap"))


def test_hostile_submissions_cheat_nothing_harm_nothing_and_every_row_is_written(tmp_path):
    classes = tmp_path / "class"
    classes.mkdir()
    classmate = submission(classes, "classmate")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    port = listener.getsockname()[1]
    attackers = [submission(classes, name, appended(name, root=ROOT, classmate=classmate, port=port))
                 for name in ATTACKS]
    grader = digests(ROOT / "vlab", ROOT / "solutions", ROOT / "exercises")
    students = digests(classes)
    before = sandbox_processes()
    out, js, fb = tmp_path / "grades.csv", tmp_path / "grades.json", tmp_path / "feedback"
    start = time.monotonic()
    status = main(["grade", str(classmate), *map(str, attackers), "--jobs", "2", "--timeout", str(TIMEOUT),
                   "--seed", "attacks", "--out", str(out), "--json", str(js), "--feedback", str(fb)])
    elapsed = time.monotonic() - start
    assert status == 0
    time.sleep(0.5)  # the kernel reaps what was killed
    assert sandbox_processes() <= before, "processes outlived grading"
    assert digests(ROOT / "vlab", ROOT / "solutions", ROOT / "exercises") == grader
    assert digests(classes) == students
    with pytest.raises(BlockingIOError):
        listener.accept()  # no connection came from a sandbox
    listener.close()

    rows = {r["student"]: r for r in csv.DictReader(out.open())}
    assert list(rows) == ["classmate", *ATTACKS]
    assert all(float(rows["classmate"][i]) == points for i, points in FULL.items())
    for name, (lost, phrase) in ATTACKS.items():
        got = {i: float(rows[name][i]) for i in FULL}
        assert got == {i: 0.0 if i in lost else points for i, points in FULL.items()}, name
        page = (fb / f"{name}.md").read_text()
        assert phrase in page, (name, page[:1500])
    for written in (out, js, *fb.iterdir()):
        text = written.read_text()
        assert not CONTROL.search(text), written.name
        assert len(text) < 1_000_000, written.name  # 40 MB printed did not land in the results (a class of
        # ~20 submissions over every exercise writes a few hundred KB)
    for student in json.loads(js.read_text()):
        for result in student["exercises"].values():
            for test in result["tests"]:
                assert not CONTROL.search(test["message"] + test["hint"])
    # Time is bounded: each submission at most its tests' limits, whatever it does with signals.
    per_test = sum(len(e.tests) for e in __import__("vlab.grading", fromlist=["EXERCISES"]).EXERCISES.values())
    assert elapsed < (len(ATTACKS) + 1) * 20 + per_test * TIMEOUT, elapsed


def test_a_sandboxed_submission_sees_no_network_no_other_files_and_not_the_grader(tmp_path):
    """What the confined process itself can see, reported by a submission that looks."""
    spy = submission(tmp_path, "spy", lambda module, text: text + '''
import os
import socket


def decode_uart_flags(value):
    seen = set()
    seen.add("root:" + ",".join(sorted(os.listdir("/"))))
    seen.add("proc:" + ",".join(sorted(p for p in os.listdir("/proc") if p.isdigit())))
    seen.add(f"uid:{os.getuid()}")
    try:
        socket.create_connection(("1.1.1.1", 53), timeout=1)
    except OSError as e:
        seen.add(f"network:{e.errno}")
    try:
        open("/submission/ch01_machine.py", "a").close()
    except OSError as e:
        seen.add(f"write:{e.errno}")
    raise ValueError("|" + "|".join(sorted(seen)) + "|")
''' if module == "ch01_machine" else text)
    js = tmp_path / "grades.json"
    assert main(["grade", str(spy), "--timeout", str(TIMEOUT), "--seed", "spy", "--json", str(js)]) == 0
    student, = json.loads(js.read_text())
    message = student["exercises"]["ch01.decode_uart_flags"]["tests"][0]["message"]
    root = re.search(r"\|root:([^|]*)\|", message).group(1).split(",")
    assert set(root) <= {"dev", "grader", "lib", "lib64", "proc", "submission", "tmp", "usr", "root", "opt", "home"}
    assert "work" not in root and "etc" not in root
    assert re.search(r"\|proc:([^|]*)\|", message).group(1) == "1,2"  # bubblewrap's init, and itself
    assert "|network:101|" in message  # ENETUNREACH: no network but its own loopback
    assert re.search(r"\|write:(13|30)\|", message)  # EACCES or EROFS: even its own files are read-only
    if os.getuid() == 0:
        assert "|uid:65534|" in message

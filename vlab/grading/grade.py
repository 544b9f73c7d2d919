"""Grading a class: `jobs` grading sessions, each submission's code in a sandbox of its own.

    grades = grade_all([Path("submissions/alice"), ...], jobs=2, seed="the instructor's secret")

A submission is a folder shaped like exercises/ (`alice/ch01_machine.py`). Its regular `.py`
files -- never symlinks -- are copied into a private folder, and a grading session
(`vlab.grading.session`) grades the copy: the student's code runs in a sandbox
(`vlab.grading.sandbox`), the verdicts are made in the session from plain data. The cases are
drawn once for the class from the seed (`vlab.grading.plan`). Every student gets a row whatever
their code does: a session that fails, or runs past the time limit times its tests and files
plus `SLACK_S`, is ended, and the row says why.
"""

from __future__ import annotations

import json
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vlab.grading import plan
from vlab.grading.runner import TEST_TIMEOUT_S
from vlab.grading.sandbox import make_view
from vlab.grading.sanitize import clean
from vlab.grading.session import tests_and_files
from vlab.grading.specs import EXERCISES

SLACK_S = 30.0  # a session's time beyond its tests' limits: starting up, reporting


@dataclass(frozen=True)
class SubmissionGrade:
    student: str  # the folder's name, cleaned for showing
    exercises: dict[str, dict] = field(default_factory=dict)  # id -> {points, score, problem, delegated, tests}
    error: str = ""  # set when the submission could not be graded at all

    @property
    def total(self) -> float:
        return round(sum(e["score"] for e in self.exercises.values()), 2)

    @staticmethod
    def maximum() -> int:
        return sum(e.points for e in EXERCISES.values())


def student_name(folder: Path) -> str:
    return clean(folder.resolve().name, 100)


def _private_copy(submission: Path, into: Path) -> None:
    into.mkdir()
    for path in submission.iterdir():
        if path.is_file() and not path.is_symlink() and path.suffix == ".py":
            shutil.copyfile(path, into / path.name)


def _failed(student: str, error: str) -> SubmissionGrade:
    zero = {e.id: {"points": e.points, "score": 0.0, "problem": error, "delegated": [], "tests": []}
            for e in EXERCISES.values()}
    return SubmissionGrade(student, zero, error)


class Session:
    """A grading session process (`vlab.grading.session`) grading one submission after another.

    A session that fails, or takes longer than a submission's limit, is ended (with everything it
    started); the next submission gets a new one.
    """

    def __init__(self, plan_file: Path, view: Path, timeout_s: float, log: Path):
        self.timeout_s, self.log = timeout_s, log
        self._config = json.dumps({"plan": str(plan_file), "view": str(view), "timeout": timeout_s}) + "\n"
        self._process: subprocess.Popen | None = None
        self._buffer = b""

    def grade(self, submission: Path, work: Path) -> SubmissionGrade:
        """Grade one student's folder, using `work` (a fresh private folder); never raises for
        anything the submission does."""
        student = student_name(submission)
        if not submission.is_dir():
            return _failed(student, f"{clean(str(submission))} is not a folder")
        copy = work / "submission"
        _private_copy(submission, copy)
        limit = self.timeout_s * tests_and_files() + SLACK_S
        try:
            line = self._ask(json.dumps({"submission": str(copy)}) + "\n", time.monotonic() + limit)
        except TimeoutError:
            self.close()
            return _failed(student, f"grading took longer than its limit ({limit:g} s) and was stopped")
        except OSError:
            status, tail = self.close(), self._log_tail()
            return _failed(student, f"the grading session for this submission failed (exit {status}): {tail}")
        try:
            return SubmissionGrade(student, json.loads(line))
        except ValueError:
            self.close()
            return _failed(student, f"the grading session for this submission failed: {self._log_tail()}")

    def _ask(self, job: str, deadline: float) -> bytes:
        if self._process is None:
            with open(self.log, "ab") as log:
                self._process = subprocess.Popen([sys.executable, "-I", "-m", "vlab.grading.session"],
                                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                                 start_new_session=True)
            self._buffer = b""
            job = self._config + job
        self._process.stdin.write(job.encode())
        self._process.stdin.flush()
        out = self._process.stdout.fileno()
        while b"\n" not in self._buffer:
            if not select.select([out], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError
            data = os.read(out, 1 << 20)
            if not data:
                raise OSError("the session ended")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def _log_tail(self) -> str:
        lines = self.log.read_text(errors="replace").strip().splitlines() if self.log.exists() else []
        return clean(lines[-1] if lines else "no output", 300)

    def close(self) -> int | None:
        """End the session and whatever it started; its exit status."""
        process, self._process = self._process, None
        if process is None:
            return None
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # already gone
        for stream in (process.stdin, process.stdout):
            try:
                stream.close()
            except OSError:
                pass  # a broken pipe: nothing left to flush
        return process.wait()


def grade_all(submissions: list[Path], seed: str, jobs: int = 1, timeout_s: float = TEST_TIMEOUT_S,
              progress: Callable[[int, int, SubmissionGrade], None] | None = None) -> list[SubmissionGrade]:
    """Grade every submission, `jobs` at a time, hidden cases drawn from `seed`; results in the order given."""
    grades: dict[int, SubmissionGrade] = {}
    with tempfile.TemporaryDirectory(prefix="vlab-grade-") as tmp:
        private = Path(tmp)
        plan_file = private / "plan.json"
        plan.write(plan.draw(seed), plan_file)
        view = make_view(private / "view")
        sessions: queue.Queue[Session] = queue.Queue()
        for i in range(max(1, jobs)):
            sessions.put(Session(plan_file, view, timeout_s, private / f"session-{i}.log"))

        def grade_one(i: int, submission: Path) -> SubmissionGrade:
            session = sessions.get()
            try:
                work = private / f"submission-{i}"
                work.mkdir()
                return session.grade(submission, work)
            finally:
                sessions.put(session)

        try:
            with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                futures = {pool.submit(grade_one, i, s): i for i, s in enumerate(submissions)}
                for done, future in enumerate(as_completed(futures), start=1):
                    grades[futures[future]] = future.result()
                    if progress:
                        progress(done, len(submissions), grades[futures[future]])
        finally:
            while not sessions.empty():
                sessions.get().close()
    return [grades[i] for i in range(len(submissions))]

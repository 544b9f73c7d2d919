"""The grader's child process: grade one submission, confined to its own copy, print JSON.

    python -I -m vlab.grading.worker SUBMISSION_COPY

The parent (`vlab.grading.grade`) has copied one student's files into a private temporary
folder and runs this with CPU-time and memory limits. Before it loads any student code this
process installs an audit hook (PEP 578) that refuses to open or list anything outside that
folder and the Python installation, and to start programs. That stops a submission reading
solutions/ or another student's folder by the ordinary means (open, os.listdir, subprocess).

What it is not: a security boundary against a determined attacker. Audit hooks can be
sidestepped from native code (ctypes on a library already loaded). For hostile classes, run
`vlab grade` in a container or as an unprivileged user with no access to other folders.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

from vlab.grading.runner import ExerciseResult, missing, run_tests
from vlab.grading.specs import EXERCISES

import vlab.asm  # noqa: E402
import vlab.machine.board  # noqa: E402

_BLOCKED_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "ctypes.dlopen",
                   "socket.connect", "socket.bind", "os.chdir")
_LISTING_EVENTS = ("os.listdir", "os.scandir", "glob.glob", "os.walk")


def warm_up() -> None:
    """Load every native library the tests use (Keystone, Capstone, Unicorn) before the hook is on."""
    program = vlab.asm.assemble("nop")
    vlab.asm.disassemble(program.code, program.base)
    vlab.machine.board.Board(ram_size=0x1000).run(max_insns=1)


def confine(submission: Path) -> None:
    """From now on, this process may read only the submission, Python and vlab."""
    allowed = [os.path.realpath(p) for p in (submission, sys.prefix, sys.base_prefix, sys.exec_prefix,
                                              Path(vlab.asm.__file__).parent)]
    allowed += ["/dev/null", "/dev/urandom"]

    def inside(path) -> bool:
        if isinstance(path, int):
            return True  # an already-open file descriptor
        if os.fsdecode(path).startswith("/proc/self/"):
            return True  # this process's own status (the memory limit reads it); /proc/self moves with fork
        real = os.path.realpath(os.fsdecode(path))
        return any(real == root or real.startswith(root.rstrip("/") + "/") for root in allowed)

    def hook(event: str, args: tuple) -> None:
        if event == "open" and args and args[0] is not None and not inside(args[0]):
            raise PermissionError(f"grading: reading {args[0]} is not allowed (only your own files)")
        if event in _LISTING_EVENTS and args and args[0] is not None and not inside(args[0]):
            raise PermissionError(f"grading: listing {args[0]} is not allowed (only your own files)")
        if event.startswith(_BLOCKED_EVENTS):
            raise PermissionError(f"grading: {event} is not allowed")

    sys.addaudithook(hook)


def load_module(path: Path):
    """Import a submitted file by path; raises whatever importing it raises."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def grade(submission: Path, timeout_s: float) -> list[ExerciseResult]:
    results = []
    modules: dict[str, object] = {}
    for exercise in EXERCISES.values():
        path = submission / f"{exercise.module}.py"
        if exercise.module not in modules:
            try:
                modules[exercise.module] = load_module(path) if path.exists() else f"{path.name} is missing"
            except BaseException as e:  # noqa: BLE001 - a submission that does not even import
                where = f" (line {e.lineno})" if isinstance(e, SyntaxError) else ""
                modules[exercise.module] = f"{path.name} does not load: {type(e).__name__}: {e}{where}"
        module = modules[exercise.module]
        if isinstance(module, str):
            results.append(missing(exercise, module))
        elif not callable(getattr(module, exercise.function, None)):
            results.append(missing(exercise, f"{path.name} defines no function {exercise.function}"))
        else:
            results.append(run_tests(exercise, getattr(module, exercise.function), hidden=True, timeout_s=timeout_s))
    return results


def as_json(result: ExerciseResult) -> dict:
    return {
        "points": result.exercise.points, "score": result.score, "problem": result.problem,
        "tests": [{"name": t.name, "passed": t.passed, "message": t.message, "hidden": t.hidden}
                  for t in result.tests],
    }


def main() -> None:
    submission, timeout_s = Path(sys.argv[1]).resolve(), float(sys.argv[2])
    sys.path[:0] = [str(submission)]  # a submission may import its own helper modules
    warm_up()
    confine(submission)
    results = grade(submission, timeout_s)
    sys.stdout.write(json.dumps({r.exercise.id: as_json(r) for r in results}))


if __name__ == "__main__":
    main()

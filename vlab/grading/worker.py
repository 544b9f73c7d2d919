"""The grader's child process: grade one submission, confined to its own copy, print JSON.

    python -I -m vlab.grading.worker SUBMISSION_COPY TIMEOUT_PER_TEST

The parent (`vlab.grading.grade`) has copied one student's files into a private temporary
folder and runs this in a session of its own, with a wall-clock limit. This process first
caps its CPU time, memory and output (rlimits every test's child inherits). Before it loads
any student code it installs an audit hook (PEP 578) that refuses to open or list anything outside that
folder and the Python installation, to start programs, and to look up C functions through
ctypes. That stops a submission reading solutions/ or another student's folder by the
ordinary means (open, os.open, pathlib, os.listdir, subprocess, libc through a loaded library).

What it is not: a security boundary against a determined attacker. Audit hooks see only what
Python itself does; native code reached some other way (a function pointer computed from one
ctypes already holds, a C extension shipped in the submission -- only .py files are copied,
but bytes can be written and mapped) is not watched, nor is a fork bomb (RLIMIT_NPROC counts
the user's processes and does not bind root), nor resident memory below the address-space cap.
A submission that finds the results' file descriptor could forge its own results. For hostile
classes, run `vlab grade` in a container (a cgroup caps memory and processes) as an
unprivileged user with no access to other folders.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import signal
import sys
from pathlib import Path

from vlab.grading.runner import ExerciseResult, missing, run_tests
from vlab.grading.specs import EXERCISES

import vlab.asm  # noqa: E402
import vlab.machine.board  # noqa: E402

# ctypes.dlsym: Unicorn's ctypes handle would otherwise hand out libc's open() and read().
_BLOCKED_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                   "ctypes.dlopen", "ctypes.dlsym", "socket.connect", "socket.bind", "os.chdir")
_LISTING_EVENTS = ("os.listdir", "os.scandir", "glob.glob", "os.walk")


CPU_SECONDS_PER_TEST = 20
# Address space, not resident memory: each Unicorn engine reserves about 1 GiB for translated
# code it mostly never touches, and a test may hold several boards until the garbage collector
# runs. Linux offers no per-process rlimit on resident memory; a cgroup (a container) does.
MEMORY_LIMIT = 16 << 30
OUTPUT_LIMIT = 16 << 20  # bytes a submission may print: its output lands in files the parent reads


def limit_resources() -> None:
    """CPU seconds for all the tests, an address-space cap, a cap on output, no core dumps.

    Every test's child inherits them. Printing past OUTPUT_LIMIT fails (OSError EFBIG).
    """
    cpu = CPU_SECONDS_PER_TEST * max(1, sum(len(e.tests) for e in EXERCISES.values()))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_LIMIT, OUTPUT_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


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
        if os.fsdecode(path) == "/proc/self/statm":
            return True  # the memory limit of each test's child reads it (not /proc/self/root/...!)
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


class LoadTimeout(Exception):
    """Importing a submitted file took longer than one test may."""


def _interrupt(signum, frame):
    raise LoadTimeout


def load_module(path: Path, timeout_s: float):
    """Import a submitted file by path, cut off after timeout_s; raises whatever importing it raises.

    Top-level code runs here, in the worker, not in a test's child: a SIGALRM turns an endless
    loop into LoadTimeout (a loop inside C code is left to the CPU-time limit).
    """
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    previous = signal.signal(signal.SIGALRM, _interrupt)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        spec.loader.exec_module(module)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return module


def _load_problem(path: Path, e: BaseException, timeout_s: float) -> str:
    """Why a submitted file does not load, in words a student can act on."""
    if isinstance(e, LoadTimeout):
        return f"{path.name} does not load: its top-level code ran longer than {timeout_s:g} s (an endless loop?)"
    if isinstance(e, MemoryError):
        return f"{path.name} does not load: its top-level code ran out of memory (MemoryError)"
    where = f" (line {e.lineno})" if isinstance(e, SyntaxError) else ""
    return f"{path.name} does not load: {type(e).__name__}: {e}{where}"


def grade(submission: Path, timeout_s: float) -> list[ExerciseResult]:
    results = []
    modules: dict[str, object] = {}
    for exercise in EXERCISES.values():
        path = submission / f"{exercise.module}.py"
        if exercise.module not in modules:
            try:
                modules[exercise.module] = load_module(path, timeout_s) if path.exists() else f"{path.name} is missing"
            except BaseException as e:  # noqa: BLE001 - a submission that does not even import
                modules[exercise.module] = _load_problem(path, e, timeout_s)
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
    # The results go out on a private copy of stdout; whatever the submission prints goes to
    # stderr instead, so a stray print() cannot garble them.
    results_out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.path[:0] = [str(submission)]  # a submission may import its own helper modules
    limit_resources()
    warm_up()
    confine(submission)
    results = grade(submission, timeout_s)
    results_out.write(json.dumps({r.exercise.id: as_json(r) for r in results}))
    results_out.close()


if __name__ == "__main__":
    main()

"""Where a student's code runs while grading: a bubblewrap sandbox, or best effort where there is none.

    status = sandbox_status()            # "bubblewrap" -- or why not, said at the start of grading
    start = confined(copy, view, cpu_s)  # for AnswerProcess(start)

The sandbox (Linux, `bwrap` from Debian's or conda-forge's bubblewrap package):
- its own PID namespace: it sees and can signal only its own processes, and all of them die
  with it (`--die-with-parent`, and the namespace's init is killed with it);
- no network (a network namespace with nothing in it), its own IPC and hostname, no terminal
  to inject keystrokes into (`--new-session`);
- a filesystem that holds only the system's libraries, Python's standard library, a copy of
  the parts of vlab an answer may use (`view`, at /grader) and the student's files (at
  /submission), all read-only, and a private 16 MiB /tmp: no solutions/, no other
  submission, no grader file, nothing to write to but its own /tmp;
- run as root (CI, containers), the process becomes `nobody` before any student code runs;
- rlimits: CPU seconds for all its tests, 4 GiB of address space, 64 processes, 1 MiB files.

Without bubblewrap the same process runs with the same rlimits, in a session of its own (killed
whole), behind the audit hook of `vlab.grading.confined`: a check that determined code gets
around. `vlab grade` says so before it starts.
"""

from __future__ import annotations

import functools
import os
import pwd
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from vlab.grading.answer_process import Child, kill_group

VLAB = Path(__file__).resolve().parent.parent
# The parts of vlab that the confined process holds: what answers may import (answers.py), and
# what serves the grader there. Nothing else of vlab is in its filesystem.
VIEW_FILES = ("__init__.py", "errors.py", "arch", "grading/__init__.py", "grading/confined.py", "grading/serve.py",
              "grading/plain.py", "grading/answers.py", "grading/handler_view.py")
GRADER, SUBMISSION, TMP = "/grader", "/submission", "/tmp"
TMP_BYTES = 16 << 20
MEMORY_LIMIT = 4 << 30
PROCESS_LIMIT = 64
FILE_LIMIT = 1 << 20
_BOOT = "import sys; sys.path.insert(0, {view!r}); from vlab.grading.confined import main; main()"


@dataclass(frozen=True)
class Status:
    sandboxed: bool
    how: str  # one line for the instructor


def make_view(into: Path) -> Path:
    """Copy the parts of vlab the confined process may hold into `into`/vlab; returns `into`."""
    for name in VIEW_FILES:
        source, target = VLAB / name, into / "vlab" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(source, target)
    return into


def _python() -> str:
    """The real interpreter (a virtual environment's `python` is a link to it)."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def _unprivileged() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


def _bwrap_command(view: Path, submission: Path) -> list[str]:
    root = os.getuid() == 0
    command = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
               "--die-with-parent", "--new-session", "--clearenv", "--setenv", "HOME", TMP,
               "--setenv", "LANG", "C.UTF-8", "--proc", "/proc", "--dev", "/dev"]
    command += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"] if root else ["--unshare-user"]
    binds = [(p, p) for p in ("/usr/lib", "/usr/lib64", "/lib", "/lib64") if os.path.exists(p)]
    binds += [(os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_prefix)), (_python(), _python()),
              (str(view), GRADER), (str(submission), SUBMISSION)]
    made: set[str] = set()
    for source, target in sorted(binds, key=lambda b: b[1].count("/")):
        if any(target.startswith(t + "/") for _, t in binds):
            continue  # already there, inside another bind
        # Parents bubblewrap would create with their source's permissions (/root is 0700): readable here.
        for parent in reversed(Path(target).parents[:-1]):
            if str(parent) not in made and not any(str(parent).startswith(t + "/") or str(parent) == t
                                                   for _, t in binds):
                command += ["--perms", "0755", "--dir", str(parent)]
                made.add(str(parent))
        if os.path.islink(source) and source == target:
            command += ["--symlink", os.readlink(source), target]
        else:
            command += ["--ro-bind", source, target]
    command += ["--perms", "1777", "--size", str(TMP_BYTES), "--tmpfs", TMP, "--chdir", TMP]
    return command


def _limits(cpu_seconds: int, processes: int) -> None:
    """rlimits for the confined process and everything it starts (set between fork and exec)."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _processes_of_this_user() -> int:
    """How many processes this user runs now (RLIMIT_NPROC counts them all, not just ours)."""
    uid = os.getuid()
    try:
        return sum(1 for p in Path("/proc").iterdir() if p.name.isdigit() and _owner(p) == uid)
    except OSError:
        return 0


def _owner(path: Path) -> int | None:
    try:
        return path.stat().st_uid
    except OSError:
        return None


@functools.lru_cache(maxsize=1)
def sandbox_status() -> Status:
    """Whether bubblewrap can confine student code on this machine, found by trying it once."""
    if sys.platform != "linux":
        return Status(False, f"no sandbox on {sys.platform} (bubblewrap needs Linux)")
    if shutil.which("bwrap") is None:
        return Status(False, "no sandbox: bubblewrap (bwrap) is not installed (Debian: apt-get install bubblewrap; "
                             "conda: conda install -c conda-forge bubblewrap)")
    view = Path(__file__).resolve().parent.parent.parent  # any folder will do for the trial
    try:
        trial = subprocess.run(_bwrap_command(view, view) + ["--", _python(), "-I", "-S", "-c", "pass"],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return Status(False, f"no sandbox: bubblewrap does not start here ({e})")
    if trial.returncode != 0:
        why = (trial.stderr.strip().splitlines() or [f"exit status {trial.returncode}"])[-1]
        return Status(False, f"no sandbox: bubblewrap cannot create namespaces here ({why})")
    return Status(True, "each submission runs in a bubblewrap sandbox: no network, no other files, "
                        "its own processes only")


def confined(submission: Path, view: Path, cpu_seconds: int):
    """Start function (for AnswerProcess) of the confined process serving `submission` (a private
    copy of the student's files); `view` from make_view()."""
    status = sandbox_status()
    uid, gid = _unprivileged()

    def start() -> Child:
        if status.sandboxed:
            boot = _BOOT.format(view=GRADER)
            command = _bwrap_command(view, submission) + ["--", _python(), "-I", "-S", "-B", "-c", boot,
                                                           SUBMISSION, "sandbox", str(uid), str(gid)]
            cwd, env = None, None
        else:
            boot = _BOOT.format(view=str(view))
            command = [_python(), "-I", "-S", "-B", "-c", boot, str(submission), "best-effort", str(uid), str(gid)]
            cwd, env = str(submission), {"HOME": str(submission), "LANG": "C.UTF-8"}
        processes = PROCESS_LIMIT + (0 if os.getuid() == 0 and status.sandboxed else _processes_of_this_user())
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   cwd=cwd, env=env, start_new_session=True, close_fds=True,
                                   preexec_fn=lambda: _limits(cpu_seconds, processes))
        requests, replies, output = process.stdin.fileno(), process.stdout.fileno(), process.stderr.fileno()

        def kill() -> int | None:
            status_code = kill_group(process.pid)
            process.returncode = -1  # reaped above: Popen must not wait for it again
            for stream in (process.stdin, process.stdout, process.stderr):
                try:
                    stream.close()
                except OSError:
                    pass  # a broken pipe: nothing left to flush
            return status_code
        return Child(requests, replies, output, kill)
    return start

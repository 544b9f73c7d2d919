"""Running student code so that its mistakes cannot hurt anyone: a child process, a time limit.

`run_isolated(function, timeout_s)` forks: the child runs `function()` and sends back its
result; an endless loop is killed after `timeout_s`, a crash or a MemoryError becomes a
message. Forking (not spawning) keeps a function a student defined in a notebook cell
reachable in the child. Linux and macOS only, as JupyterLab on Binder is.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import resource
import signal
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from vlab.errors import VlabError

# Address space a child may add to what it inherited: enough for a dozen of vlab's boards (each
# Unicorn engine reserves about 1 GiB for translated code), not for a runaway allocation.
MEMORY_HEADROOM = 16 << 30


@dataclass(frozen=True)
class Outcome:
    ok: bool
    value: Any = None  # what the function returned, when ok
    error: str = ""  # why not, in words a student can act on


def _limit_memory(headroom: int) -> None:
    """Cap the address space at what this process uses now plus `headroom` (Linux: /proc)."""
    try:
        with open("/proc/self/statm") as statm:
            in_use = int(statm.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return  # no /proc: the time limit still applies
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = in_use + headroom if hard == resource.RLIM_INFINITY else min(in_use + headroom, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _child(function: Callable[[], Any], conn, memory_headroom: int | None) -> None:
    if memory_headroom:
        _limit_memory(memory_headroom)
    try:
        conn.send(Outcome(True, function()))
    except BaseException as e:  # noqa: BLE001 - everything a student's code can raise is a result
        conn.send(Outcome(False, error=_describe(e)))
    finally:
        conn.close()


_GRADER = os.path.dirname(os.path.abspath(__file__))


def _describe(e: BaseException) -> str:
    if isinstance(e, AssertionError):
        return str(e) or "assertion failed"
    if isinstance(e, NotImplementedError):
        return f"not done yet: {e}" if str(e) else "not done yet (NotImplementedError)"
    if isinstance(e, VlabError):
        return f"{type(e).__name__}: {e}"  # it names the guest's own line or address already
    if isinstance(e, MemoryError) or isinstance(e, OSError) and e.errno == errno.ENOMEM:
        return f"{type(e).__name__}: the code asked for more memory than it may use"
    if isinstance(e, OSError) and e.errno == errno.EFBIG:  # past the grader's RLIMIT_FSIZE (Python ignores SIGXFSZ)
        return f"{type(e).__name__}: the code printed more output than the grader keeps"
    # Where in the student's code: the last frame outside the grader (a refusal is raised in its audit hook).
    frames = [f for f in traceback.extract_tb(e.__traceback__) if not f.filename.startswith(_GRADER)]
    where = f" (line {frames[-1].lineno} of {frames[-1].filename.rsplit('/', 1)[-1]})" if frames else ""
    return f"{type(e).__name__}: {e}{where}"


def _death(exitcode: int | None) -> str:
    """Why a test's process ended without an answer; a negative exit code is the signal that killed it."""
    reasons = {signal.SIGXCPU: "the code used up its CPU time", signal.SIGKILL: "the process was killed"}
    if exitcode is not None and exitcode < 0 and -exitcode in reasons:
        return f"{reasons[-exitcode]} ({signal.Signals(-exitcode).name})"
    return f"the code crashed the Python process (exit code {exitcode})"


def run_isolated(function: Callable[[], Any], timeout_s: float,
                 memory_headroom: int | None = MEMORY_HEADROOM) -> Outcome:
    """Call function() in a forked child; its return value must be picklable."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(function, send, memory_headroom), daemon=True)
    child.start()
    send.close()
    try:
        if receive.poll(timeout_s):
            try:
                return receive.recv()
            except (EOFError, OSError):
                pass  # the child died while sending
            except Exception as e:  # noqa: BLE001 - an answer that cannot be sent back
                return Outcome(False, error=f"the answer could not be sent back ({type(e).__name__}: {e})")
        elif child.is_alive():
            return Outcome(False, error=f"timed out after {timeout_s:g} s: does the code loop forever?")
        child.join(1)
        return Outcome(False, error=_death(child.exitcode))
    finally:
        receive.close()
        if child.is_alive():
            child.kill()
        child.join()

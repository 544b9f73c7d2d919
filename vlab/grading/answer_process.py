"""The grader's side of a student's answers: another process, asked over pipes, never waited on forever.

    answers = AnswerProcess(forked({"svc_esr": svc_esr}))      # check(): a fork of the notebook's kernel
    answers = AnswerProcess(sandbox.confined(copy, view, ...))  # vlab grade: bubblewrap (vlab.grading.sandbox)
    called = answers.call("ch01.svc_esr", "ch01_machine", "svc_esr", [[0], [1]], timeout_s=10)

Every reply is read with a deadline. A process that misses it, dies, or sends what is not a
message (`vlab.grading.serve` says what one is) is killed -- with everything it started -- and
the next request starts a fresh one (loading again the modules that loaded before). Whatever
the student's code prints is read as it comes and thrown away but for its last lines, which
are quoted if the process dies.
"""

from __future__ import annotations

import os
import resource
import select
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from vlab.grading import plain
from vlab.grading.serve import Server, Unanswerable

OUTPUT_TAIL = 2000  # bytes of the student's output kept, to quote when its process dies
# Address space a forked child may add to what it inherited: enough for a dozen of vlab's boards
# (each Unicorn engine reserves about 1 GiB), not for a runaway allocation.
FORK_MEMORY_HEADROOM = 16 << 30


class TimedOut(Exception):
    """No reply before the deadline: the process was ended."""


class Ended(Exception):
    """The process ended, or sent what is not a message, before replying: it was ended."""


@dataclass
class Child:
    """A started process serving `vlab.grading.serve` on two pipes; `output` its stdout and stderr, if read."""

    requests: int  # file descriptor we write to
    replies: int  # file descriptor we read from
    output: int | None
    kill: Callable[[], int | None]  # ends it and everything it started; its exit status when known


@dataclass
class Called:
    """What one "call" brought back: a value per case, up to the case that raised (`error`)."""

    values: list = field(default_factory=list)
    error: dict | None = None
    delegated: list = field(default_factory=list)


class AnswerProcess:
    def __init__(self, start: Callable[[], Child]):
        self._start = start
        self._child: Child | None = None
        self._loaded: list[str] = []  # modules that loaded, to load again in a new process
        self._replies = b""
        self._tail = b""
        self._request = 0  # the id of the request being answered (a reply to another is not an answer)

    # --- requests --------------------------------------------------------------------------------

    def load(self, module: str, timeout_s: float) -> dict | None:
        """Import the student's module; None when it loaded, else what it raised (plain data)."""
        reply = self._ask({"op": "load", "module": module}, time.monotonic() + timeout_s)
        if "error" in reply:
            return reply["error"]
        self._loaded.append(module)
        return None

    def call(self, exercise: str, module: str, function: str, cases: list, timeout_s: float) -> Called:
        """The function on each case's arguments (plain data), until one raises."""
        deadline = time.monotonic() + timeout_s
        shared, encoded = plain.encode_cases(cases)
        self._send({"op": "call", "exercise": exercise, "module": module, "function": function,
                    "shared": shared, "cases": encoded}, deadline)
        called = Called()
        while True:
            reply = self._receive(deadline)
            if reply.get("done"):
                called.error = called.error or reply.get("error")
                called.delegated = _names(reply.get("delegated"))
                return called
            if reply.get("case") != len(called.values) or called.error:
                raise self._garbled("a reply out of order")
            if "error" in reply:
                called.error = reply["error"]
            else:
                called.values.append(self._value(reply))

    def handle(self, exercise: str, module: str, function: str, exit: dict, vcpu: Callable[[str, list, list], Any],
               deadline: float) -> tuple[Any, dict | None, list]:
        """Call the student's exit handler. `vcpu(operation, args, changes)` carries out the changes it
        made to the vCPU, in order, then answers its question (operation None: changes only).
        Returns (its return value, what it raised or None, the vlab answers it reached for)."""
        self._send({"op": "handle", "exercise": exercise, "module": module, "function": function, "exit": exit},
                   deadline)
        while True:
            reply = self._receive(deadline)
            done = reply.get("done")
            if not done and type(reply.get("vcpu")) is not str or type(reply.get("args", [])) is not list:
                raise self._garbled("an unknown request")
            try:
                answer = {"value": plain.encode(vcpu(None if done else reply["vcpu"],
                                                     [plain.decode(a) for a in reply.get("args", [])],
                                                     reply.get("changes", [])))}
            except Exception as e:  # noqa: BLE001 - a request the vCPU refused is the handler's mistake
                answer = {"error": {"type": type(e).__name__, "message": str(e)}}
            if done:
                error = reply.get("error") or answer.get("error")
                value = None if error else self._value(reply)
                return value, error, _names(reply.get("delegated"))
            self._send(answer, deadline)

    def close(self) -> int | None:
        """End the process (and whatever it started); its exit status when it had already ended."""
        child, self._child, self._replies = self._child, None, b""
        return child.kill() if child else None

    @property
    def output_tail(self) -> str:
        """The last of what the student's code printed (raw: clean it before showing it)."""
        return self._tail.decode(errors="replace")

    # --- the conversation --------------------------------------------------------------------------

    def _ask(self, message: dict, deadline: float) -> dict:
        self._send(message, deadline)
        reply = self._receive(deadline)
        if not reply.get("done"):
            raise self._garbled("a reply to another question")
        return reply

    def _ensure_started(self, deadline: float) -> Child:
        if self._child is None:
            self._child, self._tail = self._start(), b""
            for module in self._loaded:  # a fresh process: what loaded before loads again
                self._request += 1
                self._send_now({"op": "load", "module": module, "id": self._request}, deadline)
                self._receive(deadline)
        return self._child

    def _send(self, message: dict, deadline: float) -> None:
        self._ensure_started(deadline)
        if "op" in message:
            self._request += 1
            message = {**message, "id": self._request}
        self._send_now(message, deadline)

    def _send_now(self, message: dict, deadline: float) -> None:
        data = plain.dumps(message)
        while data:
            if not select.select([], [self._child.requests], [], max(0.0, deadline - time.monotonic()))[1]:
                raise self._timed_out()
            try:
                data = data[os.write(self._child.requests, data[:65536]):]
            except (BrokenPipeError, OSError):
                raise self._ended() from None

    def _receive(self, deadline: float) -> dict:
        while b"\n" not in self._replies:
            if len(self._replies) > plain.MAX_LINE:
                raise self._garbled("a message too long")
            watched = [self._child.replies] + ([self._child.output] if self._child.output is not None else [])
            ready = select.select(watched, [], [], max(0.0, deadline - time.monotonic()))[0]
            if not ready:
                raise self._timed_out()
            if self._child.output in ready:
                self._tail = (self._tail + os.read(self._child.output, 65536))[-OUTPUT_TAIL:]
            if self._child.replies in ready:
                data = os.read(self._child.replies, 65536)
                if not data:
                    raise self._ended()
                self._replies += data
        line, self._replies = self._replies.split(b"\n", 1)
        try:
            message = plain.loads(line)
        except plain.NotPlain as e:
            raise self._garbled(str(e)) from None
        if message.get("id") != self._request:
            raise self._garbled("a reply to another request")
        return message

    def _value(self, reply: dict) -> Any:
        try:
            return plain.decode(reply.get("value"))
        except plain.NotPlain as e:
            raise self._garbled(str(e)) from None

    def _timed_out(self) -> TimedOut:
        self.close()
        return TimedOut()

    def _ended(self) -> Ended:
        status = self.close()
        return Ended(_death(status))

    def _garbled(self, what: str) -> Ended:
        self.close()
        return Ended(f"the process running it sent {what}, not an answer")


def _names(value) -> list[str]:
    return [str(v) for v in value] if type(value) is list else []


def _death(status: int | None) -> str:
    """Why a process ended, from its wait status."""
    if status is None:
        return "its process ended"
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        why = {signal.SIGXCPU: "it used up its CPU time", signal.SIGKILL: "it was killed",
               signal.SIGSEGV: "it crashed (segmentation fault)"}.get(signum, "it was stopped by a signal")
        return f"its process ended: {why} ({signal.Signals(signum).name})"
    return f"its process ended (exit status {os.WEXITSTATUS(status)}): sys.exit() or os._exit() in the answer?"


def kill_group(pid: int) -> int | None:
    """SIGKILL to the process group `pid` leads; reap the leader; its status."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # already gone
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return None


def forked(functions: dict[str, Callable]) -> Callable[[], Child]:
    """Start function for a fork of this process serving `functions` (by name): `check()` in a notebook,
    where the student's function may live in a cell. The fork gets its own process group (killed
    whole) and an address-space cap."""
    def lookup(module: str, function: str) -> Callable:
        if function not in functions:
            raise Unanswerable(f"no function {function} was given")
        return functions[function]

    def start() -> Child:
        requests_r, requests_w = os.pipe()
        replies_r, replies_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: serve, then leave without running the parent's exit handlers
            try:
                os.setpgid(0, 0)
                os.close(requests_w)
                os.close(replies_r)
                _limit_memory(FORK_MEMORY_HEADROOM)
                Server(os.fdopen(requests_r, "rb"), os.fdopen(replies_w, "wb"), lookup).run()
            finally:
                os._exit(0)
        os.close(requests_r)
        os.close(replies_w)

        def kill() -> int | None:
            for fd in (requests_w, replies_r):
                os.close(fd)
            return kill_group(pid)
        return Child(requests_w, replies_r, None, kill)
    return start


def _limit_memory(headroom: int) -> None:
    """Cap the address space at what this process uses now plus `headroom` (Linux: /proc)."""
    try:
        with open("/proc/self/statm") as statm:
            in_use = int(statm.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return  # no /proc (macOS): the time limit still applies
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = in_use + headroom if hard == resource.RLIM_INFINITY else min(in_use + headroom, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))

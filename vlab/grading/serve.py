"""The student's side: load a submission's answers, call them as the grader asks, answer in plain data.

It runs in the confined process while grading (`vlab.grading.confined`), or in a forked copy
of a notebook's kernel for `check()`. One message per line each way (`vlab.grading.plain`); each request has an "id", which every
message answering it carries:

    grader: {"op": "load", "module": M}                    student's side: {"done": true[, "error": E]}
    grader: {"op": "call", "exercise": X, "module": M, "function": F, "cases": [args, ...]}
                 -> {"case": i, "value": V} for each case, until one raises: {"case": i, "error": E}
                 -> {"done": true, "delegated": [names of vlab's answers it reached for]}
    grader: {"op": "handle", "exercise": X, "module": M, "function": F, "exit": {...}}
                 -> {"vcpu": operation, "args": [...], "changes": [...]}  <- {"value": V} or {"error": E}
                 -> {"done": true, "value": V, "changes": [...], "delegated": [...]}  (or "error": E)
                 (the changes the handler made to the vCPU, in order: vlab.grading.handler_view)

E = {"type": "ValueError", "message": "...", "line": 12, "file": "ch01_machine.py"}: what the
student's code raised and where. Nothing here decides whether an answer is right.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any, BinaryIO, Callable

from vlab.grading import plain
from vlab.grading.handler_view import ExitView, VcpuView

# Frames in these files are not the student's: an error is located in the student's own code.
_NOT_THE_STUDENT = tuple({str(Path(plain.__file__).resolve().parent.parent), sys.base_prefix, sys.prefix,
                          sys.exec_prefix, "<frozen "})

Lookup = Callable[[str, str], Callable]  # (module, function) -> the student's function


class Delegations:
    """Which of vlab's own answers the student's code reached for, per exercise being answered."""

    def __init__(self) -> None:
        self.exercise: str | None = None
        self.names: list[str] = []

    def record(self, name: str) -> None:
        if name not in self.names:
            self.names.append(name)


class Unanswerable(Exception):
    """The function asked for cannot be found (its module did not load, or does not define it)."""


def describe(e: BaseException) -> dict:
    """What the student's code raised, as plain data: type, message, and the line in their own file."""
    try:
        message = str(e)
    except Exception:  # noqa: BLE001 - an exception whose __str__ itself fails
        message = "(its message cannot be shown)"
    out: dict[str, Any] = {"type": type(e).__name__, "message": message[:4000]}
    if isinstance(e, SyntaxError):
        out.update(message=e.msg, line=e.lineno, file=Path(e.filename or "?").name, text=(e.text or "").strip())
        return out
    frames = [f for f in traceback.extract_tb(e.__traceback__) if not f.filename.startswith(_NOT_THE_STUDENT)]
    if frames:
        out.update(line=frames[-1].lineno, file=Path(frames[-1].filename).name)
    return out


def load_module(folder: Path, module: str):
    """Import `folder/module.py` under its own name (its helpers may import it); raises what importing raises."""
    path = folder / f"{module}.py"
    if not path.is_file():
        raise Unanswerable(f"{path.name} is missing")
    spec = importlib.util.spec_from_file_location(module, path)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[module] = loaded
    try:
        spec.loader.exec_module(loaded)
    except BaseException:
        del sys.modules[module]
        raise
    return loaded


class Server:
    """Answers the grader's messages from `inbox` on `outbox` until the inbox ends."""

    def __init__(self, inbox: BinaryIO, outbox: BinaryIO, lookup: Lookup,
                 load: Callable[[str], None] = lambda module: None, delegations: Delegations | None = None):
        self.inbox, self.outbox, self.lookup, self.load = inbox, outbox, lookup, load
        self.delegations = delegations or Delegations()
        self.request = None  # the id of the request being answered: every reply carries it

    def send(self, message: dict) -> None:
        self.outbox.write(plain.dumps({"id": self.request, **message}))
        self.outbox.flush()

    def receive(self) -> dict | None:
        line = self.inbox.readline()
        return plain.loads(line) if line else None

    def run(self) -> None:
        while (message := self.receive()) is not None:
            operation, self.request = message.get("op"), message.get("id")
            try:
                if operation == "load":
                    self._load(message["module"])
                elif operation in ("call", "handle"):
                    self.delegations.exercise, self.delegations.names = message["exercise"], []
                    getattr(self, f"_{operation}")(message)
            except (KeyError, TypeError, ValueError) as e:  # a message this side cannot read: say so
                self.send({"done": True, "error": {"type": "grader", "message": f"unreadable request: {e}"}})
            finally:
                self.delegations.exercise = None

    def _load(self, module: str) -> None:
        try:
            self.load(module)
        except Unanswerable as e:
            self.send({"done": True, "error": {"type": "missing", "message": str(e)}})
        except BaseException as e:  # noqa: BLE001 - a file that does not even import is the student's result
            self.send({"done": True, "error": describe(e)})
        else:
            self.send({"done": True})

    def _function(self, message: dict) -> Callable | None:
        try:
            return self.lookup(message["module"], message["function"])
        except Unanswerable as e:
            self.send({"done": True, "error": {"type": "missing", "message": str(e)}})
            return None

    def _call(self, message: dict) -> None:
        function = self._function(message)
        if function is None:
            return
        for i, args in enumerate(plain.decode_cases(message["shared"], message["cases"], plain.read64_of)):
            try:
                value = function(*args)
            except BaseException as e:  # noqa: BLE001 - whatever the answer raises is its result
                self.send({"case": i, "error": describe(e)})
                break
            self.send({"case": i, "value": plain.encode(value)})
        self.send({"done": True, "delegated": self.delegations.names})

    def _handle(self, message: dict) -> None:
        function = self._function(message)
        if function is None:
            return
        vcpu = VcpuView(message["exit"], self._ask)
        try:
            value = function(vcpu, ExitView.from_plain(message["exit"]))
        except BaseException as e:  # noqa: BLE001
            self.send({"done": True, "error": describe(e), "changes": vcpu.changes,
                       "delegated": self.delegations.names})
            return
        self.send({"done": True, "value": plain.encode(value), "changes": vcpu.changes,
                   "delegated": self.delegations.names})

    def _ask(self, operation: str, args: list, changes: list) -> Any:
        """A question of the handler only the VM can answer, after the changes it made so far."""
        self.send({"vcpu": operation, "args": args, "changes": changes})
        reply = self.receive()
        if reply is None:
            raise SystemExit(0)  # the grader has gone
        if "error" in reply:
            kind = {"TypeError": TypeError, "ValueError": ValueError}.get(reply["error"]["type"], RuntimeError)
            raise kind(reply["error"]["message"])
        return plain.decode(reply["value"])

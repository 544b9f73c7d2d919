"""The confined process: what it does before any student code runs, then it serves the grader.

    python -I -S -c "...; from vlab.grading.confined import main; main()" SUBMISSION MODE UID GID

`vlab.grading.sandbox` starts it inside bubblewrap (MODE "sandbox"): its filesystem is
read-only but for a small /tmp, and holds only Python's standard library, a copy of the parts
of vlab an answer may use (`VIEW`) and the student's files (`SUBMISSION`); no network, its own
PID namespace. Where there is no sandbox (macOS, bubblewrap missing: MODE "best-effort") the
same process runs unconfined but for the checks below, which an attacker can get around.

Before serving, in this order:
1. Run as root (CI, containers), it becomes an unprivileged user (UID, GID): root would be
   exempt from the process limit that stops a fork bomb.
2. The rest of vlab -- hypervisor, MMU, machine, the grader's tests -- is not in its filesystem.
   An import of it gives a stand-in that refuses to be used, saying why (`vlab.grading.answers`).
3. vlab's answers that sit inside what it may import are replaced by functions that refuse,
   while their exercise is being answered.
4. An audit hook (PEP 578) refuses reading vlab's own files once loaded (that would give an
   unguarded copy) and ctypes. In best-effort mode it also refuses files outside the
   submission and Python, listing folders, starting programs, signals, sockets.
5. The grader's messages move off file descriptors 0 and 1: `input()` reads nothing, `print()`
   goes to the output the grader caps.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys
import types
from pathlib import Path

from vlab.grading.answers import ANSWERS, Refused, answered_by, may_import, refusal
from vlab.grading.serve import Delegations, Server, Unanswerable, load_module

VIEW = Path(__file__).resolve().parent.parent.parent  # the folder holding the allowed copy of vlab
_ALWAYS_BLOCKED = ("ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata")
_BLOCKED_WITHOUT_SANDBOX = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                            "os.kill", "os.killpg", "socket.connect", "socket.bind", "os.chdir")
_LISTING = ("os.listdir", "os.scandir", "glob.glob", "os.walk")


class _StandIn:
    """What graded code gets for a part of vlab it may not use: any use raises `Refused`."""

    def __init__(self, name: str, delegations: Delegations):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_delegations", delegations)

    def _refuse(self, *args, **kwargs):
        name, delegations = object.__getattribute__(self, "_name"), object.__getattribute__(self, "_delegations")
        if delegations.exercise in answered_by(name):
            delegations.record(name)
        raise Refused(refusal(name))

    def __getattr__(self, attribute: str):
        if attribute.startswith("__") and attribute.endswith("__"):
            raise AttributeError(attribute)
        return _StandIn(f"{object.__getattribute__(self, '_name')}.{attribute}",
                        object.__getattribute__(self, "_delegations"))

    __call__ = __getitem__ = __iter__ = __len__ = __bool__ = __int__ = __index__ = __mro_entries__ = _refuse
    __setattr__ = __contains__ = __enter__ = _refuse

    def __repr__(self) -> str:
        return f"<not available while grading: {object.__getattribute__(self, '_name')}>"


class _StandInModule(types.ModuleType):
    def __getattr__(self, attribute: str):
        if attribute.startswith("__") and attribute.endswith("__"):
            raise AttributeError(attribute)
        return _StandIn(f"{self.__name__}.{attribute}", self.__delegations)


class _StandIns(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports of vlab modules graded code may not use succeed, and give stand-ins."""

    def __init__(self, delegations: Delegations):
        self.delegations = delegations

    def find_spec(self, name, path=None, target=None):
        if name.startswith("vlab.") and not may_import(name):
            return importlib.util.spec_from_loader(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandInModule(spec.name)
        module._StandInModule__delegations = self.delegations
        return module

    def exec_module(self, module) -> None:
        module.__path__ = []


def _refusing(name: str, original, exercises: list[str], delegations: Delegations):
    """`original` (a function or a property), refusing while one of `exercises` is being answered."""
    def check() -> None:
        if delegations.exercise in exercises:
            delegations.record(name)
            raise Refused(refusal(name))

    if isinstance(original, property):
        def getter(self):
            check()
            return original.fget(self)
        return property(getter)

    def refusing(*args, **kwargs):
        check()
        return original(*args, **kwargs)
    return refusing


def guard_answers(delegations: Delegations) -> None:
    """Step 3: the answers inside the modules graded code may import, replaced by refusing functions."""
    for name in {n for names in ANSWERS.values() for n in names}:
        module_name, _, attribute = name.rpartition(".")
        owner_path: list[str] = []
        while not may_import(module_name) or not _is_module(module_name):
            if "." not in module_name or not module_name.startswith("vlab."):
                break
            module_name, _, outer = module_name.rpartition(".")
            owner_path.insert(0, outer)
        if not may_import(module_name) or module_name == "vlab":
            continue  # not in the confined process at all: step 2 covers it
        owner = importlib.import_module(module_name)
        for part in owner_path:
            owner = getattr(owner, part)
        original = vars(owner)[attribute] if isinstance(owner, type) else getattr(owner, attribute)
        replacement = _refusing(name, original, answered_by(name), delegations)
        setattr(owner, attribute, replacement)
        for module in [m for n, m in sys.modules.items() if n.startswith("vlab.") and m is not owner]:
            for key, value in list(vars(module).items()):
                if value is original:
                    setattr(module, key, replacement)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a name inside a module, not a module
        return False


def preload() -> None:
    """Import every module graded code may use now, while reading vlab's files is still allowed."""
    for path in sorted((VIEW / "vlab").rglob("*.py")):
        parts = path.relative_to(VIEW).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if may_import(name):
            importlib.import_module(name)


def install_audit_hook(submission: Path, sandboxed: bool) -> None:
    """Step 4."""
    view = str(VIEW) + os.sep
    allowed = [os.path.realpath(p) + os.sep for p in (submission, sys.base_prefix, sys.base_exec_prefix)]
    allowed += ["/dev/null", "/dev/urandom"]

    def inside(path) -> bool:
        if isinstance(path, int):
            return True  # an already-open file descriptor
        real = os.path.realpath(os.fsdecode(path))
        return any(real == root.rstrip(os.sep) or real.startswith(root) for root in allowed)

    def hook(event: str, args: tuple) -> None:
        if event == "open" and args and args[0] is not None and not isinstance(args[0], int):
            if os.path.realpath(os.fsdecode(args[0])).startswith(view):
                raise PermissionError(f"grading: reading vlab's own files is not allowed ({args[0]})")
            if not sandboxed and not inside(args[0]):
                raise PermissionError(f"grading: reading {args[0]} is not allowed (only your own files)")
        if event.startswith(_ALWAYS_BLOCKED):
            raise PermissionError(f"grading: {event} is not allowed")
        if not sandboxed:
            if event in _LISTING and args and args[0] is not None and not inside(args[0]):
                raise PermissionError(f"grading: listing {args[0]} is not allowed (only your own files)")
            if event.startswith(_BLOCKED_WITHOUT_SANDBOX):
                raise PermissionError(f"grading: {event} is not allowed")

    sys.addaudithook(hook)


def main() -> None:
    submission, mode, uid, gid = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if os.getuid() == 0 and mode == "sandbox":
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    inbox, outbox = os.fdopen(os.dup(0), "rb"), os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    delegations = Delegations()
    preload()
    guard_answers(delegations)
    sys.meta_path.insert(0, _StandIns(delegations))
    sys.path.insert(0, str(submission))  # a submission may import its own helper modules
    install_audit_hook(submission, sandboxed=mode == "sandbox")
    modules: dict[str, object] = {}

    def load(module: str) -> None:
        modules[module] = load_module(submission, module)

    def lookup(module: str, function: str):
        if module not in modules:
            raise Unanswerable(f"{module}.py did not load")
        answer = getattr(modules[module], function, None)
        if not callable(answer):
            raise Unanswerable(f"{module}.py defines no function {function}")
        return answer

    Server(inbox, outbox, lookup, load, delegations).run()


if __name__ == "__main__":
    main()

"""Graded exercises: `check()` for students in a notebook, `vlab grade` for instructors.

    from vlab.grading import check, load
    ch01 = load("ch01_machine")          # your answers, read from exercises/ as the file is now
    check("ch01.svc_esr", ch01.svc_esr)  # public tests, explained; never raises

solutions/ is the source of truth; exercises/ is generated from it (`vlab exercises`).
The names are loaded on first use: the confined process that runs a student's code while
grading imports parts of this package without the rest of vlab.
"""

__all__ = ["check", "load", "EXERCISES"]


def __getattr__(name: str):
    if name in ("check", "load"):
        import importlib

        module = importlib.import_module("vlab.grading.check")

        # Importing the submodule `check` made it this package's attribute: the function replaces it.
        globals().update(check=module.check, load=module.load)
        return globals()[name]
    if name == "EXERCISES":
        from vlab.grading.specs import EXERCISES

        return EXERCISES
    raise AttributeError(f"module 'vlab.grading' has no attribute {name!r}")

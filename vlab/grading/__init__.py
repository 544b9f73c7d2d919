"""Graded exercises: `check()` for students in a notebook, `vlab grade` for instructors.

    from vlab.grading import check
    check("ch01.svc_esr", svc_esr)      # public tests, explained; never raises

solutions/ is the source of truth; exercises/ is generated from it (`vlab exercises`).
"""

from vlab.grading.check import check
from vlab.grading.specs import EXERCISES

__all__ = ["check", "EXERCISES"]

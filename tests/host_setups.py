"""What the host tests share: every scheduling policy vlab offers, by name, and the built C guests.

The policies come from vlab.sched.registry; until it exists, round-robin is the one policy there
is. Tests parametrize over `POLICIES`, so a new policy joins them as soon as it is registered.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vlab.guests import build as builder
from vlab.sched import Scheduler
from vlab.sched.round_robin import RoundRobin

try:
    from vlab.sched.registry import POLICIES as _REGISTERED, make_policy
except ImportError:  # the registry has not landed yet
    _REGISTERED, make_policy = {"rr": "round-robin"}, None

POLICIES = sorted(_REGISTERED)
PCPUS = (1, 2, 3, 4)
WINDOW_MS = 2  # an ARINC 653 window per VM in the frame the tests use


def scheduler(name: str, pcpus: int, vms: int = 1, slice_ticks: int | None = None) -> Scheduler:
    """A fresh `name` policy for a host of `pcpus` physical CPUs running `vms` VMs, with its default
    slice or `slice_ticks` (an ARINC 653 frame gives each VM an equal window instead)."""
    if make_policy is None:
        return RoundRobin() if slice_ticks is None else RoundRobin(slice_ticks=slice_ticks)
    if name == "arinc653":
        windows = ",".join(f"{vm}={WINDOW_MS}ms" for vm in range(vms)) + f"/frame={WINDOW_MS * vms}ms"
        return make_policy(name, pcpus=pcpus, windows=windows)
    return make_policy(name, pcpus=pcpus, slice_ticks=slice_ticks)


def c_guest(name: str) -> Path:
    """The ELF of a shipped C guest (built once, cached by its sources); skips loudly without the compiler."""
    if shutil.which(builder.COMPILER) is None:
        pytest.skip(f"SKIPPED: {builder.COMPILER} is missing -- install the Debian package "
                    f"{builder.COMPILER_PACKAGE} to test the C guests")
    return builder.build(name)

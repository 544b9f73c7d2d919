"""What the host tests share: every scheduling policy vlab offers, by name, and the built C guests.

Tests parametrize over `POLICIES` (vlab.sched.registry), so a new policy joins them as soon as
it is registered.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import pytest

from vlab.guests import build as builder
from vlab.sched import Scheduler
from vlab.sched.registry import POLICIES as _REGISTERED, make_policy

POLICIES = sorted(_REGISTERED)
PCPUS = (1, 2, 3, 4)
WINDOW_TICKS = 125_000  # an ARINC 653 window (2 ms) in the frame the tests use, unless a slice is given


def scheduler(name: str, pcpus: int, vcpus: Sequence[int] = (1,), slice_ticks: int | None = None) -> Scheduler:
    """A fresh `name` policy for a host of `pcpus` physical CPUs whose VMs have `vcpus` vCPUs each,
    with its default slice or `slice_ticks`. An ARINC 653 frame gives each VM a window of that
    length, or each of its vCPUs one when it has more vCPUs than the host has physical CPUs
    (a VM's window runs vCPU k on physical CPU k)."""
    if name != "arinc653":
        return make_policy(name, pcpus=pcpus, slice_ticks=slice_ticks)
    window = f"{slice_ticks or WINDOW_TICKS}ticks"
    windows = [f"{vm}={window}" if count <= pcpus else ",".join(f"{vm}.{k}={window}" for k in range(count))
               for vm, count in enumerate(vcpus)]
    return make_policy(name, pcpus=pcpus, windows=",".join(windows))


def fits(name: str, pcpus: int, vcpus: Sequence[int]) -> bool:
    """Whether policy `name` can run VMs of `vcpus` vCPUs on `pcpus` physical CPUs: co-scheduling
    runs all of a VM's vCPUs at once, so it refuses a VM with more vCPUs than the host has cores."""
    return name != "cosched" or max(vcpus) <= pcpus


# Policies that never leave a physical CPU idle while a vCPU is runnable (ARINC 653 keeps a window
# for its owner; co-scheduling keeps a blocked vCPU's core for it)
WORK_CONSERVING = {"rr", "credit", "fair"} & set(POLICIES)


def combinations(pcpus: Sequence[int], vcpus: Sequence[int]) -> list[tuple[str, int]]:
    """(policy, physical CPUs) for every policy and core count that can run VMs of `vcpus` vCPUs."""
    return [(name, n) for name in POLICIES for n in pcpus if fits(name, n, vcpus)]


def c_guest(name: str) -> Path:
    """The ELF of a shipped C guest (built once, cached by its sources); skips loudly without the compiler."""
    if shutil.which(builder.COMPILER) is None:
        pytest.skip(f"SKIPPED: {builder.COMPILER} is missing -- install the Debian package "
                    f"{builder.COMPILER_PACKAGE} to test the C guests")
    return builder.build(name)

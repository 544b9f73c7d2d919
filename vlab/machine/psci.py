"""PSCI: the firmware interface through which a kernel powers the machine off.

A kernel calls PSCI with HVC (or SMC) #0, the function id in x0 and arguments
in x1..x3; the result comes back in x0. On QEMU's `virt` board the emulator
itself plays the firmware; on vlab's board so does this module, and inside a
VM the hypervisor does. Function ids and return codes from Arm DEN 0022
(PSCI 1.1).
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple


class PsciFunction(IntEnum):
    PSCI_VERSION = 0x8400_0000
    CPU_OFF = 0x8400_0002
    CPU_ON = 0xC400_0003  # SMC64 calling convention
    AFFINITY_INFO = 0xC400_0004
    SYSTEM_OFF = 0x8400_0008
    SYSTEM_RESET = 0x8400_0009
    PSCI_FEATURES = 0x8400_000A


class PsciReturn(IntEnum):
    SUCCESS = 0
    NOT_SUPPORTED = -1
    INVALID_PARAMETERS = -2
    DENIED = -3
    ALREADY_ON = -4
    INVALID_ADDRESS = -9


VERSION_1_1 = 0x0001_0001
# Dict lookups: the enum's own call costs a microsecond, and every hypercall makes one.
_FUNCTIONS = {fn.value: fn for fn in PsciFunction}
_NAMES = {fn: fn.name for fn in PsciFunction}
# The functions whose x1 is an argument (the others' x1 is not read); CPU_ON also takes x2 and x3.
TAKES_ARGUMENT = frozenset({PsciFunction.PSCI_FEATURES, PsciFunction.CPU_ON, PsciFunction.AFFINITY_INFO})


class PsciOutcome(NamedTuple):
    """What a call did: the value for x0, and whether the machine (or CPU) is now off. (A named
    tuple: every hypercall makes one, and a frozen dataclass costs several times more.)"""

    x0: int
    power_off: bool = False
    reset: bool = False
    function: str = "unknown"


def is_psci(function_id: int) -> bool:
    """PSCI owns the 0x8400_0000 (SMC32) and 0xC400_0000 (SMC64) standard-service ranges."""
    return (function_id & 0xBFFF_FFE0) == 0x8400_0000


def call(function_id: int, args: tuple[int, int, int], cpu_ids: tuple[int, ...] = (0,)) -> PsciOutcome:
    """Serve one PSCI call on a machine whose CPUs (by MPIDR affinity) are all on."""
    fn = _FUNCTIONS.get(function_id)
    if fn is None:
        return PsciOutcome(_u64(PsciReturn.NOT_SUPPORTED))
    name = _NAMES[fn]
    if fn is PsciFunction.PSCI_VERSION:
        return PsciOutcome(VERSION_1_1, function=name)
    if fn is PsciFunction.PSCI_FEATURES:
        supported = args[0] in PsciFunction.__members__.values()
        return PsciOutcome(_u64(PsciReturn.SUCCESS if supported else PsciReturn.NOT_SUPPORTED), function=name)
    if fn in (PsciFunction.SYSTEM_OFF, PsciFunction.CPU_OFF):
        return PsciOutcome(0, power_off=True, function=name)
    if fn is PsciFunction.SYSTEM_RESET:
        return PsciOutcome(0, reset=True, function=name)
    if fn is PsciFunction.CPU_ON:
        known = (args[0] & 0xFF_00FF_FFFF) in cpu_ids
        return PsciOutcome(_u64(PsciReturn.ALREADY_ON if known else PsciReturn.INVALID_PARAMETERS), function=name)
    # AFFINITY_INFO: 0 = ON for a CPU we have
    known = (args[0] & 0xFF_00FF_FFFF) in cpu_ids
    return PsciOutcome(_u64(0 if known else PsciReturn.INVALID_PARAMETERS), function=name)


def _u64(value: int) -> int:
    return value & 0xFFFF_FFFF_FFFF_FFFF

"""PSCI: the firmware interface through which a kernel powers the machine off.

A kernel calls PSCI with HVC (or SMC) #0, the function id in x0 and arguments
in x1..x3; the result comes back in x0. On QEMU's `virt` board the emulator
itself plays the firmware; on vlab's board so does this module, and inside a
VM the hypervisor does. Function ids and return codes from Arm DEN 0022
(PSCI 1.1); which functions are served, and how, as QEMU's firmware serves them
(QEMU 7.2, target/arm/psci.c), since QEMU is vlab's oracle:

- the function id is all 64 bits of x0: 0x1_8400_0000 is no function (NOT_SUPPORTED),
  although the SMC Calling Convention reads W0 only;
- CPU_SUSPEND never powers down: it is a WFI (the CPU waits for an interrupt, taken or
  not), and then returns SUCCESS; a power_state with any of bits [31:17] set (an
  affinity level above 0, or a reserved bit) is INVALID_PARAMETERS;
- CPU_OFF turns the calling CPU off, and the machine stays on (with no CPU running, nothing
  ever runs again);
- AFFINITY_INFO answers ON (0), OFF (1) or ON_PENDING (2) for a CPU the machine has, and
  INVALID_PARAMETERS for one it does not; every level above 0 is ON;
- MIGRATE_INFO_TYPE is 2: no Trusted OS, so none to migrate; MIGRATE is NOT_SUPPORTED;
- PSCI_FEATURES is SUCCESS (0, no feature flags) for each function served, NOT_SUPPORTED
  for any other x1.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Mapping, NamedTuple


class PsciFunction(IntEnum):
    PSCI_VERSION = 0x8400_0000
    CPU_SUSPEND_32 = 0x8400_0001  # SMC32 calling convention
    CPU_SUSPEND = 0xC400_0001  # SMC64
    CPU_OFF = 0x8400_0002
    CPU_ON_32 = 0x8400_0003
    CPU_ON = 0xC400_0003
    AFFINITY_INFO_32 = 0x8400_0004
    AFFINITY_INFO = 0xC400_0004
    MIGRATE_INFO_TYPE = 0x8400_0006
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


class AffinityState(IntEnum):
    """AFFINITY_INFO's answers for a CPU the machine has."""

    ON = 0
    OFF = 1
    ON_PENDING = 2


VERSION_1_1 = 0x0001_0001
MIGRATE_INFO_TYPE_NOT_REQUIRED = 2  # no Trusted OS: nothing that would need migrating
SUSPEND_RESERVED = 0xFFFE_0000  # power_state bits [31:17]: QEMU's CPU_SUSPEND refuses any of them
# Dict lookups: the enum's own call costs a microsecond, and every hypercall makes one.
_FUNCTIONS = {fn.value: fn for fn in PsciFunction}
_NAMES = {fn: fn.name for fn in PsciFunction}
_CPU_ONS = frozenset({PsciFunction.CPU_ON, PsciFunction.CPU_ON_32})
_AFFINITY_INFOS = frozenset({PsciFunction.AFFINITY_INFO, PsciFunction.AFFINITY_INFO_32})
_SUSPENDS = frozenset({PsciFunction.CPU_SUSPEND, PsciFunction.CPU_SUSPEND_32})
# The functions whose x1 is an argument (the others' x1 is not read); AFFINITY_INFO also takes x2,
# CPU_ON x2 and x3.
TAKES_ARGUMENT = frozenset({PsciFunction.PSCI_FEATURES, *_CPU_ONS, *_AFFINITY_INFOS, *_SUSPENDS})
ONLY_CPU_ON = {0: AffinityState.ON}  # a machine with one CPU, MPIDR affinity 0, running: vlab's board
MPIDR_AFFINITY = 0xFF_00FF_FFFF  # Aff3 [39:32], Aff2..Aff0 [23:0]


class PsciOutcome(NamedTuple):
    """What a call did: the value for x0, and whether the calling CPU is now off -- with the whole
    machine (SYSTEM_OFF, SYSTEM_RESET) or alone (CPU_OFF: `cpu_off` too). `suspend`: the calling
    CPU now waits for an interrupt, as a WFI does (CPU_SUSPEND; x0 is already its SUCCESS). (A
    named tuple: every hypercall makes one, and a frozen dataclass costs several times more.)"""

    x0: int
    power_off: bool = False
    reset: bool = False
    function: str = "unknown"
    cpu_off: bool = False
    suspend: bool = False


_VERSION = PsciOutcome(VERSION_1_1, function="PSCI_VERSION")  # the hot path: made once
_UNKNOWN = PsciOutcome((1 << 64) + PsciReturn.NOT_SUPPORTED)


def is_psci(function_id: int) -> bool:
    """PSCI owns the 0x8400_0000 (SMC32) and 0xC400_0000 (SMC64) standard-service ranges. All 64
    bits of x0 count, as on QEMU: with any of bits [63:32] set it is no PSCI call."""
    return (function_id & 0xFFFF_FFFF_BFFF_FFE0) == 0x8400_0000


def call(function_id: int, args: tuple[int, int, int],
         cpus: Mapping[int, int] = ONLY_CPU_ON) -> PsciOutcome:
    """Serve one PSCI call: `function_id` is all of x0, `args` x1..x3, and `cpus` every CPU the
    machine has -- its MPIDR affinity (Aff3..Aff0, as `MPIDR_AFFINITY` keeps it) mapped to its
    AffinityState; only AFFINITY_INFO and CPU_ON read it. Here, CPU_ON starts nothing: it is
    ALREADY_ON for a CPU that is on and INVALID_PARAMETERS for every other (a machine that can
    start a CPU, a VM, serves CPU_ON itself). CPU_OFF, SYSTEM_OFF, SYSTEM_RESET and CPU_SUSPEND
    are only reported, in the outcome: the caller turns the CPU (or machine) off, or makes it wait."""
    fn = _FUNCTIONS.get(function_id)
    if fn is None:
        return _UNKNOWN
    if fn is PsciFunction.PSCI_VERSION:
        return _VERSION
    name = _NAMES[fn]
    if fn is PsciFunction.PSCI_FEATURES:
        supported = args[0] in _FUNCTIONS
        return PsciOutcome(_u64(PsciReturn.SUCCESS if supported else PsciReturn.NOT_SUPPORTED), function=name)
    if fn in _SUSPENDS:
        if args[0] & SUSPEND_RESERVED:
            return PsciOutcome(_u64(PsciReturn.INVALID_PARAMETERS), function=name)
        return PsciOutcome(0, function=name, suspend=True)
    if fn is PsciFunction.CPU_OFF:
        return PsciOutcome(0, power_off=True, function=name, cpu_off=True)
    if fn is PsciFunction.SYSTEM_OFF:
        return PsciOutcome(0, power_off=True, function=name)
    if fn is PsciFunction.SYSTEM_RESET:
        return PsciOutcome(0, reset=True, function=name)
    if fn is PsciFunction.MIGRATE_INFO_TYPE:
        return PsciOutcome(MIGRATE_INFO_TYPE_NOT_REQUIRED, function=name)
    if fn in _CPU_ONS:
        state = cpus.get(args[0])
        on = state is not None and state != AffinityState.OFF
        return PsciOutcome(_u64(PsciReturn.ALREADY_ON if on else PsciReturn.INVALID_PARAMETERS), function=name)
    # AFFINITY_INFO: x1 the target's affinity, x2 the lowest affinity level (above 0: always ON)
    if args[1] != 0:
        return PsciOutcome(0, function=name)
    state = cpus.get(args[0])
    return PsciOutcome(_u64(PsciReturn.INVALID_PARAMETERS) if state is None else int(state), function=name)


def _u64(value: int) -> int:
    return value & 0xFFFF_FFFF_FFFF_FFFF

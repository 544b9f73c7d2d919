"""A 32-bit x86 PC core on Unicorn: protected mode, flat segments, rings 0 and 3, no paging.

    0x0000_0000 .. 0x003f_ffff   RAM (4 MiB)
    0x0030_0000                  the host's own tables (GDT, TSS, IDT), a ring-0 stub and its stack:
                                 what a monitor keeps for itself

The host's GDT, flat (base 0, limit 4 GiB) but for the TSS:

    0x08 ring-0 code   0x10 ring-0 data   0x1b ring-3 code   0x23 ring-3 data   0x28 TSS

`start_ring0` runs a kernel as on the bare machine, as its firmware left it: CPL 0,
this GDT, interrupts off. `start_ring3` deprivileges it: a ring-0 stub loads TR and
`iretd`s to 0x1b:entry with IOPL 0 and IF 1, so the kernel runs as a user program.

Traps: Unicorn never delivers an x86 exception through the IDT. Every one reaches
the interrupt hook with its vector -- a fault such as #GP (13) with EIP still at the
faulting instruction, INT n and INT3 with EIP after them -- and `run`'s trap
handler deals with it there, in place, as a monitor would. One quirk needs care:
QEMU (inside Unicorn) remembers the exception in flight until its delivery
completes (CPUX86State.old_exception), and Unicorn never completes it, so a second
#GP would be taken for a double fault and a third would reset the CPU. After each
exception the machine clears that field, through Unicorn's context save/restore, at
an offset found once by calibration (as vlab.machine.icount finds Unicorn's counter).
"""

from __future__ import annotations

import ctypes
import enum
import functools
import struct
from dataclasses import dataclass
from typing import Callable

from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_HOOK_MEM_WRITE, UC_MODE_32, Uc, UcError
from unicorn import x86_const as X

from vlab.machine.icount import InstructionCounter
from vlab.x86.code import assemble

RAM_SIZE = 0x40_0000
HOST_BASE = 0x30_0000
GDT, TSS, IDT, STUB, HOST_STACK = HOST_BASE, HOST_BASE + 0x1000, HOST_BASE + 0x2000, HOST_BASE + 0x3000, HOST_BASE + 0x8000
IDT_LIMIT = 256 * 8 - 1
KERNEL_CS, KERNEL_DS, USER_CS, USER_DS, TSS_SELECTOR = 0x08, 0x10, 0x1B, 0x23, 0x28
CR0_BOOT = 0x11  # PE (protected mode) and ET, as a 386-class CPU boots into protected mode
IF = 1 << 9
NO_END = 0xFFFF_FFFF  # emu_start's `until`: an address no guest reaches

# vectors
DE, BP, GP = 0, 3, 13

_REGS = {name: getattr(X, f"UC_X86_REG_{name.upper()}") for name in (
    "eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp", "eip", "eflags",
    "ax", "bx", "cx", "dx", "si", "di", "bp", "sp", "cs", "ds", "es", "ss", "fs", "gs", "cr0")}


def segment(base: int, limit: int, access: int, flags: int = 0xC) -> bytes:
    """An 8-byte GDT descriptor (access: P, DPL, S, type; flags: G and D/B)."""
    return struct.pack("<Q", limit & 0xFFFF | (base & 0xFF_FFFF) << 16 | access << 40 | (limit >> 16 & 0xF) << 48
                       | flags << 52 | (base >> 24) << 56)


HOST_GDT = b"".join((
    bytes(8),
    segment(0, 0xF_FFFF, 0x9A),  # 0x08 ring-0 code: present, DPL 0, code, readable
    segment(0, 0xF_FFFF, 0x92),  # 0x10 ring-0 data: present, DPL 0, data, writable
    segment(0, 0xF_FFFF, 0xFA),  # 0x18 ring-3 code: DPL 3
    segment(0, 0xF_FFFF, 0xF2),  # 0x20 ring-3 data: DPL 3
    segment(TSS, 0x67, 0x89, 0x0),  # 0x28 a 32-bit TSS, available, byte granular
))


class Stop(enum.Enum):
    HALTED = "halted"  # the CPU halted (hlt at ring 0), or the trap handler ended the run
    BUDGET = "budget"  # the instruction budget ran out
    MEMORY = "memory"  # the guest touched an address with no RAM


@dataclass(frozen=True)
class Trap:
    """An exception the guest raised: its vector, where EIP stands, and the CPL it ran at."""

    vector: int
    eip: int
    cpl: int


@dataclass(frozen=True)
class Run:
    stop: Stop
    message: str
    instructions: int  # started by this run (the ring-0 stub's included)


class X86Machine:
    """One x86 core with 4 MiB of RAM and the host's tables in place."""

    def __init__(self) -> None:
        self.uc = Uc(UC_ARCH_X86, UC_MODE_32)
        self.uc.mem_map(0, RAM_SIZE)
        self.uc.mem_write(GDT, HOST_GDT)
        tss = bytearray(0x68)
        struct.pack_into("<II", tss, 4, HOST_STACK, KERNEL_DS)  # ESP0, SS0: where ring 0's stack is
        self.uc.mem_write(TSS, bytes(tss))
        self.uc.reg_write(X.UC_X86_REG_GDTR, (0, GDT, len(HOST_GDT) - 1, 0))
        self.uc.reg_write(X.UC_X86_REG_IDTR, (0, IDT, IDT_LIMIT, 0))
        self.uc.reg_write(X.UC_X86_REG_CR0, CR0_BOOT)
        for reg, selector in (("cs", KERNEL_CS), ("ds", KERNEL_DS), ("es", KERNEL_DS), ("ss", KERNEL_DS)):
            self.uc.reg_write(_REGS[reg], selector)
        self._context = self.uc.context_save()
        self._in_flight = ctypes.c_int32.from_address(
            ctypes.cast(self._context.context, ctypes.c_void_p).value + _exception_in_flight_offset())
        self._on_trap: Callable[[Trap], bool] | None = None
        self._error: BaseException | None = None
        self._stopped_by_handler = False
        self._entry = 0
        self.uc.hook_add(UC_HOOK_INTR, self._hook_trap)
        self._counter = InstructionCounter(self.uc)

    # --- memory and registers ------------------------------------------------------

    def contains(self, address: int, size: int) -> bool:
        return 0 <= address and address + size <= RAM_SIZE

    def read(self, address: int, size: int) -> bytes:
        if not self.contains(address, size):
            raise ValueError(f"{size} bytes at {address:#x} are outside the machine's RAM")
        return bytes(self.uc.mem_read(address, size))

    def write(self, address: int, data: bytes) -> None:
        if not self.contains(address, len(data)):
            raise ValueError(f"{len(data)} bytes at {address:#x} are outside the machine's RAM")
        self.uc.mem_write(address, bytes(data))

    def reg(self, name: str) -> int:
        return self.uc.reg_read(_REGS[name])

    def set_reg(self, name: str, value: int) -> None:
        self.uc.reg_write(_REGS[name], value)

    @property
    def cpl(self) -> int:
        return self.reg("cs") & 3

    def descriptor_table(self, name: str) -> tuple[int, int]:
        """(limit, base) of the real GDTR or IDTR."""
        _, base, limit, _ = self.uc.reg_read(X.UC_X86_REG_GDTR if name == "gdtr" else X.UC_X86_REG_IDTR)
        return limit, base

    # --- starting a kernel ----------------------------------------------------------

    def start_ring0(self, entry: int, esp: int, eflags: int = 0x2) -> None:
        """Run from `entry` at CPL 0, as the bare machine's firmware hands over to a kernel."""
        self.set_reg("esp", esp)
        self.set_reg("eflags", eflags)
        self._entry = entry

    def start_ring3(self, entry: int, esp: int, eflags: int = IF | 0x2) -> None:
        """Run from `entry` at CPL 3 (IOPL 0), through a ring-0 stub that loads TR and returns there."""
        stub = assemble(f"""
            mov ax, {TSS_SELECTOR}; ltr ax
            mov ax, {USER_DS}; mov ds, ax; mov es, ax   # iretd to ring 3 would null ring-0 data segments
            push {USER_DS}; push {esp:#x}; push {eflags:#x}; push {USER_CS}; push {entry:#x}
            iretd
        """, STUB)
        self.write(STUB, stub)
        self.set_reg("esp", HOST_STACK)
        self._entry = STUB

    # --- running --------------------------------------------------------------------

    def watch_writes(self, start: int, size: int, callback: Callable[[int, int, int], None]) -> None:
        """Call callback(address, size, value) on each guest store into [start, start + size): an instrument
        on the lab bench, not something the guest can notice."""
        self.uc.hook_add(UC_HOOK_MEM_WRITE, lambda uc, _access, address, n, value, _u: callback(address, n, value),
                         begin=start, end=start + size - 1)

    def run(self, on_trap: Callable[[Trap], bool], max_insns: int = 100_000) -> Run:
        """Run until the trap handler says stop (returns False), the budget runs out, or a bad access.

        The handler is called for every exception, with EIP as the CPU left it; to
        resume elsewhere it sets EIP itself (skipping an emulated instruction, say).
        """
        self._on_trap, self._error, self._stopped_by_handler = on_trap, None, False
        try:
            self.uc.emu_start(self._entry, NO_END, count=max_insns)
        except UcError as e:
            eip = self.reg("eip")
            return Run(Stop.MEMORY, f"the guest stopped at {eip:#x} on a bad memory access ({e})",
                       self._counter.started())
        if self._error is not None:
            raise self._error
        self._entry = self.reg("eip")
        started = self._counter.started()
        if self._stopped_by_handler:
            return Run(Stop.HALTED, f"the monitor stopped the guest at {self._entry:#x}", started)
        if started > max_insns:  # Unicorn counts the instruction it did not get to run
            return Run(Stop.BUDGET, f"{max_insns} instructions ran out at {self._entry:#x}", max_insns)
        return Run(Stop.HALTED, f"the CPU halted (hlt at ring 0) at {self._entry - 1:#x}", started)

    def _hook_trap(self, uc: Uc, vector: int, _user) -> None:
        self._clear_exception_in_flight()
        try:
            if not self._on_trap(Trap(vector, self.reg("eip"), self.cpl)):
                self._stopped_by_handler = True
                uc.emu_stop()
        except Exception as e:  # noqa: BLE001 - a monitor bug stops the run and is raised after it
            self._error = e
            uc.emu_stop()

    def _clear_exception_in_flight(self) -> None:
        """Tell QEMU's exception logic that the last exception was delivered (see the module docstring)."""
        self.uc.context_update(self._context)
        self._in_flight.value = -1
        self.uc.context_restore(self._context)


@functools.cache
def _exception_in_flight_offset() -> int:
    """The byte offset of old_exception inside a saved Unicorn x86 context (found once per process)."""
    candidates: set[int] | None = None
    for program, vector in (("xor edx, edx; xor ecx, ecx; div ecx", DE), ("xor eax, eax; mov ss, ax", GP)):
        uc = Uc(UC_ARCH_X86, UC_MODE_32)
        uc.mem_map(0, 0x10000)
        uc.mem_write(0x1000, assemble(program, 0x1000))
        uc.mem_write(0x2000, HOST_GDT[:24])
        uc.reg_write(X.UC_X86_REG_GDTR, (0, 0x2000, 23, 0))
        uc.reg_write(X.UC_X86_REG_CR0, CR0_BOOT)
        uc.hook_add(UC_HOOK_INTR, lambda u, _v, _d: u.emu_stop())
        before = _context_bytes(uc)
        uc.emu_start(0x1000, NO_END, count=10)
        after = _context_bytes(uc)
        found = {o for o in range(0, len(before) - 3, 4)
                 if struct.unpack_from("<i", before, o)[0] == -1 and struct.unpack_from("<i", after, o)[0] == vector}
        candidates = found if candidates is None else candidates & found
    if not candidates or len(candidates) != 1:
        raise RuntimeError("vlab could not find Unicorn's x86 exception-in-flight field; it needs unicorn==2.1.4 "
                           "(run `vlab doctor`)")
    return candidates.pop()


def _context_bytes(uc: Uc) -> bytes:
    context = uc.context_save()
    return ctypes.string_at(ctypes.cast(context.context, ctypes.c_void_p).value, context.size)

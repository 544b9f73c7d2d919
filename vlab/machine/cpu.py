"""The CPU: one AArch64 core on Unicorn, and the exception entry Unicorn leaves to us.

Unicorn executes guest instructions natively (for us: at full emulator speed,
with no Python on the path). When the guest does something only a privileged
party can complete -- a system call, a hypercall, an undefined instruction, an
access to nothing -- Unicorn stops and tells us a *number*. This module turns
that into what the architecture would report (a `GuestException` with an
ESR-style syndrome), and `take_exception()` does what the hardware does next:
save PSTATE and the return address, write ESR/FAR, switch to EL1 and jump to
the guest kernel's vector table. Interrupts are the exception: the core takes
them by itself, through its IRQ line (vlab.machine.irq_line).

Only this package imports Unicorn; everything above speaks registers,
exceptions and syndromes.
"""

from __future__ import annotations

import ctypes
import enum
import threading
from dataclasses import dataclass
from typing import Callable

from unicorn import (
    UC_ARCH_ARM64, UC_ERR_FETCH_PROT, UC_ERR_FETCH_UNMAPPED, UC_HOOK_CODE, UC_HOOK_EDGE_GENERATED,
    UC_HOOK_INSN, UC_HOOK_INTR, UC_HOOK_TLB_FILL,
    UC_HOOK_MEM_INVALID, UC_MEM_FETCH_PROT, UC_MEM_FETCH_UNMAPPED, UC_MEM_WRITE_PROT,
    UC_MEM_WRITE_UNMAPPED, UC_MODE_ARM, UC_PROT_ALL, UC_PROT_EXEC, UC_PROT_READ, UC_QUERY_TIMEOUT, Uc, UcError,
)
from unicorn import arm64_const as A
from unicorn.unicorn_py3.arch.arm64 import UcRegCP64  # the C struct of a system-register access
from unicorn.unicorn_py3.unicorn import (HOOK_INTR_CFUNC, HOOK_TLB_FILL_CFUNC, UcContext,  # the C library: see _raw
                                         uc_hook_h, uclib)

from vlab.arch import ldst, sysregs
from vlab.arch.esr import DataAbort, ExceptionClass, FaultStatus, Syndrome, SysRegAccess, imm16_syndrome
from vlab.machine.abort_info import AbortInfo
from vlab.machine.icount import InstructionCounter
from vlab.machine.irq_line import IrqLine

# The C library once more, its functions without ctypes' declared argument types: converting the
# arguments costs as much as the call itself (measured: a register read 0.7 us against 1.2 us), and
# an exit makes several. Arguments then go as they are given: the handle (a c_void_p), a register id
# (a C int), pointers made by byref, and every 64-bit integer wrapped in its ctypes type.
_raw = ctypes.CDLL(uclib._name)
_reg_read, _reg_write, _reg_read_batch, _mem_read, _vmem_translate = \
    _raw.uc_reg_read, _raw.uc_reg_write, _raw.uc_reg_read_batch, _raw.uc_mem_read, _raw.uc_vmem_translate
_FOUR = ctypes.c_size_t(4)  # the size of an instruction word, as uc_mem_read's size_t
_ENCODINGS: dict[str, tuple[int, int, int, int, int]] = {}  # register name -> encoding, as names are used
# uc_cb_insn_sys_t: (engine, register of Rt, the access's CP register struct, user data) -> 1 when handled
_SYS_HOOK = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint32, ctypes.POINTER(UcRegCP64),
                             ctypes.c_void_p)

_UC_CTL_TLB_FLUSH = 11  # unicorn_const.UC_CTL_TLB_FLUSH

# Unicorn's (QEMU's) exception numbers, as the UC_HOOK_INTR callback reports them
# QEMU's virt board (without virtualization=on or secure=on) gives its Cortex-A72 no EL2 and no EL3,
# and its ID registers say so; Unicorn's Cortex-A72 has both. The fields vlab's core clears (Arm ARM):
# ID_AA64PFR0_EL1.EL2 [11:8] and EL3 [15:12], ID_PFR1_EL1.Virtualization [15:12] and Security [7:4],
# ID_DFR0_EL1.CopSDbg [7:4] (secure debug).
ABSENT_ON_VIRT = {"ID_AA64PFR0_EL1": 0xFF00, "ID_PFR1_EL1": 0xF0F0, "ID_DFR0_EL1": 0xF0}
_SYSTEM_INSTRUCTION = 0b1101010100  # bits [31:22] of MRS, MSR, SYS and MSR (immediate)
_MSR_DAIF_MASK, _MSR_DAIF = 0xFFFFF0DF, 0xD50340DF  # MSR DAIFSet/DAIFClr, #imm: op1 = 3, CRn = 4, op2 = 6 or 7
_EXCP_UDEF, _EXCP_SWI, _EXCP_PREFETCH_ABORT, _EXCP_DATA_ABORT, _EXCP_BKPT, _EXCP_HVC, _EXCP_SMC = 1, 2, 3, 4, 7, 11, 13
EXCP_HVC, EXCP_SMC = _EXCP_HVC, _EXCP_SMC

_X = [getattr(A, f"UC_ARM64_REG_X{i}") for i in range(29)] + [A.UC_ARM64_REG_X29, A.UC_ARM64_REG_X30]
# The register a system-register hook names (Unicorn's id for Rt) -> Rt; XZR is 31.
_RT = {reg: n for n, reg in enumerate(_X)} | {A.UC_ARM64_REG_XZR: 31}
_WFI, _ERET = 0xD503207F, 0xD69F03E0
_FETCH_FAULTS = (ExceptionClass.IABT_LOWER, ExceptionClass.IABT_CURRENT, ExceptionClass.PC_ALIGN)
_SPSR_EL1 = (3, 0, 4, 0, 0)  # (op0, op1, CRn, CRm, op2)
_VBAR_EL1 = (3, 0, 12, 0, 0)

PSTATE_DAIF = 0xF << 6
PSTATE_NZCV = 0xF << 28
PSTATE_I = 1 << 7
PSTATE_IL = 1 << 20  # illegal execution state: set by an illegal exception return
_FAULT_KINDS = {0x00: "address size fault", 0x04: "translation fault", 0x08: "access flag fault",
                0x0C: "permission fault"}


class Vector(enum.IntEnum):
    """Which kind of exception: the offset inside each 0x200-byte group of the vector table."""

    SYNC = 0x000
    IRQ = 0x080
    FIQ = 0x100
    SERROR = 0x180


@dataclass(frozen=True)
class GuestException:
    """A synchronous exception the guest raised, as the hardware would report it.

    `address` is the instruction that raised it; `return_address` is where the
    guest resumes once it is handled (after an SVC/HVC/SMC, at a faulting
    instruction); `el` is the level it was raised at; `far` the faulting
    address for aborts.
    """

    syndrome: Syndrome
    address: int
    return_address: int
    el: int
    far: int | None = None
    detail: str = ""  # a plain-words explanation, e.g. "no memory or device at 0x1234"
    target_el: int = 1  # the level that takes it: 2 when a hypervisor's trap control routed it there
    # For a stage-2 fault, the intermediate physical address that missed; for an access that reached no
    # memory, its physical address (a VM without stage 2 takes that as a stage-2 miss at this IPA).
    ipa: int | None = None
    word: int | None = None  # the instruction's encoding, when decoding the exception already read it


class StopKind(enum.Enum):
    EXCEPTION = "exception"  # the guest raised a synchronous exception: see .exception
    WFI = "wfi"  # the guest waits for an interrupt
    BUDGET = "budget"  # the instruction budget of this run is spent
    TIMEOUT = "timeout"  # the wall-clock guard fired
    REQUESTED = "requested"  # someone (a device, a trap handler, a widget) asked to stop
    ERROR = "error"  # vlab itself failed inside a hook: see .message
    UNSUPPORTED = "unsupported"  # the guest did something legal the emulator cannot run: .message says what


@dataclass(frozen=True)
class CpuStop:
    """Why one stretch of native execution ended, and how many instructions it retired."""

    kind: StopKind
    retired: int
    exception: GuestException | None = None
    message: str = ""


# A system-register trap handler: called for every MRS/MSR/SYS the guest executes at a
# level allowed to execute it. It returns True when it emulated the access (for a read
# it has put the result in register Rt), False to let the hardware perform it.
SysRegHandler = Callable[["CPU", SysRegAccess, int], bool]
# An exception handler: called with Unicorn's exception number for every exception it raises,
# before the run stops for it. It returns True when it served the exception in place (the guest
# goes on, no stop); CPU.decode_exception(number) says what the exception is.
ExceptionHandler = Callable[["CPU", int], bool]


class Watchdog:
    """A wall-clock guard over a whole run: once `seconds` pass, it stops the CPU (`.fired`).

    Unicorn's own guard, `emu_start(timeout=...)`, starts and joins a thread on
    every call -- about 130 us, more than the rest of an exception round trip --
    so a run loop that resumes the guest after every exception pays it again
    and again. This guard starts one thread per run. Use it as a context manager
    around the loop and check `.fired` after each `CPU.run`.
    """

    _RESTOP_S = 0.01  # keep stopping: a stop that lands between two slices is forgotten

    def __init__(self, stop: Callable[[], None], seconds: float):
        """`stop()` stops whatever engine is running (Unicorn's emu_stop is safe from another thread)."""
        self.fired = False
        self._stop, self._seconds = stop, seconds
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="vlab-watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        if self._done.wait(self._seconds):
            return
        self.fired = True
        while True:
            self._stop()
            if self._done.wait(self._RESTOP_S):
                return


def context_from_bytes(data: bytes):
    """A saved core (a Unicorn context, as `uc.context_save()` makes) rebuilt from `bytes(context)`:
    how a vCPU's state arrives on another host. Unicorn's own unpickling does exactly this."""
    context = UcContext.__new__(UcContext)
    context.__setstate__((bytes(data), len(data), UC_ARCH_ARM64, UC_MODE_ARM))
    return context


class CPU:
    """One AArch64 core. Memory and devices are mapped onto it by the board."""

    def __init__(self) -> None:
        self.uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
        self._uch = self.uc._uch
        self._scratch = ctypes.c_uint64()
        self._scratch_ref = ctypes.byref(self._scratch)
        self._word = ctypes.c_uint32()  # the host is little-endian, as the guest is
        self._word_ref = ctypes.cast(ctypes.pointer(self._word), ctypes.POINTER(ctypes.c_char))
        self._cp = UcRegCP64()
        self._cp_ref = ctypes.byref(self._cp)
        self._direct_hooks: list = []  # see _hook_direct
        self._escaped: BaseException | None = None  # what a hook of _hook_direct let out, for run() to raise
        self._pc_el = (ctypes.c_uint64 * 2)()  # see pc_and_el
        self._pc_el_ids = (ctypes.c_int * 2)(A.UC_ARM64_REG_PC, A.UC_ARM64_REG_PSTATE)
        self._pc_el_refs = (ctypes.c_void_p * 2)(ctypes.addressof(self._pc_el), ctypes.addressof(self._pc_el) + 8)
        self.instructions = 0  # retired since power-on: the guest's clock
        self.sysreg_handler: SysRegHandler | None = None
        self.exception_handler: ExceptionHandler | None = None
        self._accesses: dict[tuple, tuple[SysRegAccess, int]] = {}  # see _on_sysreg
        # Set when vlab translates addresses itself (a VM with stage 2): (guest VA, fetch only) -> the
        # core's physical address, or None (see _physical).
        self.translate_for_reads: Callable[[int, bool], int | None] | None = None
        self._counter = InstructionCounter(self.uc)
        self._exception: GuestException | None = None
        self._memory_fault: tuple[int, int, int] | None = None  # (access, address, size)
        self._hook_error: str | None = None
        self._stop_requested = False
        self._trapped_at: int | None = None  # the counter when trap() was called in this run
        self._make_fault: Callable[[int], GuestException] | None = None  # set by fault()
        self._rollback = None  # set by abort_current(): the state to restore once the run stops
        self._running = False  # inside emu_start: the live counter is part of the clock
        self._abort_info: AbortInfo | None = None  # made at the first exception whose syndrome QEMU computes
        self._unsupported: str | None = None  # why the guest cannot go on, when the emulator cannot run it
        self._misaligned_block: int | None = None  # a block translated at a misaligned PC, to drop before running
        self._eret_watch: int | None = None  # the hook of _on_watched_instruction, while SPSR_EL1 needs it
        self._eret_watch_stale = False  # SPSR_EL1 changed: decide again before the next run (_watch_erets)
        # SCR_EL3.HCE: without it HVC is UNDEFINED. RW (bit 10): EL2 and below are AArch64.
        self.write_sysreg("SCR_EL3", (1 << 8) | (1 << 10) | 1)
        # HCR_EL2.RW: EL1 is AArch64. Unicorn's core has EL2, and with RW = 0 it takes EL1 for
        # AArch32, so every ERET from EL1 to EL1 is an illegal return that sets PSTATE.IL.
        # Firmware on a real board sets RW before it enters an AArch64 kernel at EL1. The IRQ
        # input is HCR_EL2's too (IMO, VI): see vlab.machine.irq_line.
        self.irq = IrqLine(self)
        self.irq.sync()
        # No stop address. Unicorn would otherwise translate the one emu_start is given, as an instruction
        # fetch of the byte before it, after every run -- a guest-visible translation of a page the guest
        # may use (in virtual-TLB mode, a call of vlab's fill hook) -- and stop a guest that runs there.
        # We stop on budgets and events only: an empty set of exits.
        self.uc.ctl_exits_enabled(True)
        self.uc.ctl_set_exits([])
        self._hook_direct(UC_HOOK_INTR, HOOK_INTR_CFUNC, self._on_interrupt)  # every HVC: see _hook_direct
        self.uc.hook_add(UC_HOOK_MEM_INVALID, self._on_memory_fault)
        self.uc.hook_add(UC_HOOK_EDGE_GENERATED, self._on_new_block)
        # One hook per kind of instruction, so the direction is known without reading the instruction;
        # the user data says it: MRS and SYSL read into Rt (1), MSR and SYS write from it (0, arriving as None).
        for insn, is_read in ((A.UC_ARM64_INS_MRS, 1), (A.UC_ARM64_INS_MSR, 0),
                              (A.UC_ARM64_INS_SYS, 0), (A.UC_ARM64_INS_SYSL, 1)):
            self._hook_direct(UC_HOOK_INSN, _SYS_HOOK, self._on_sysreg, is_read, ctypes.c_int(insn))

    def hook_tlb_fill(self, fill: Callable[[int, int, object, object], bool]) -> None:
        """Answer every miss of Unicorn's TLB (in its virtual-TLB mode) with `fill(vaddr, access,
        entry, _)`: set `entry.contents.paddr` and `.perms` and return True, or return False for a fault."""
        self._hook_direct(UC_HOOK_TLB_FILL, HOOK_TLB_FILL_CFUNC, fill)

    def _hook_direct(self, kind: int, functype, callback: Callable, user_data: int = 0, *extra) -> None:
        """Hook `callback(*the C arguments after the engine)` -- the last one `user_data` (0 arrives as
        None) -- straight from the C library. The binding's wrapper (two Python frames and a conversion
        per call) costs about a fifth of an exit served in place. An exception the callback lets out
        (vlab's callbacks catch their errors: a KeyboardInterrupt) stops the run, and `run` raises it."""
        uc = self.uc

        def hook(_engine, *args):
            try:
                return callback(*args)
            except BaseException as e:  # noqa: BLE001 - raised by run(), once Unicorn has stopped
                self._escaped = self._escaped or e
                uc.emu_stop()
                return 0
        pointer, handle = functype(hook), uc_hook_h()
        status = uclib.uc_hook_add(self._uch, ctypes.byref(handle), kind, pointer, ctypes.c_void_p(user_data),
                                   ctypes.c_uint64(1), ctypes.c_uint64(0), *extra)
        if status != 0:
            raise UcError(status)
        self._direct_hooks.append(pointer)  # C holds only the pointer: the function must stay alive

    # --- registers -------------------------------------------------------------

    def _read64(self, reg: int) -> int:
        # Straight to the C library: Unicorn 2.1.4's Python reg_read searches register classes
        # on every call, and a trap round trip reads half a dozen registers (measured: a third
        # of the cost of an exit). Zeroed first: Unicorn writes only 32 bits of PSTATE.
        self._scratch.value = 0
        _reg_read(self._uch, reg, self._scratch_ref)
        return self._scratch.value

    def _write64(self, reg: int, value: int) -> None:
        self._scratch.value = value & (2**64 - 1)
        _reg_write(self._uch, reg, self._scratch_ref)

    def x(self, n: int) -> int:
        """General-purpose register Xn (n = 31 reads as the zero register, as XZR)."""
        return 0 if n == 31 else self._read64(_X[n])

    def set_x(self, n: int, value: int) -> None:
        if n != 31:  # writes to XZR are discarded
            self._write64(_X[n], value)

    @property
    def pc(self) -> int:
        return self._read64(A.UC_ARM64_REG_PC)

    @pc.setter
    def pc(self, value: int) -> None:
        self._write64(A.UC_ARM64_REG_PC, value)

    @property
    def sp(self) -> int:
        """The stack pointer the current level uses (SP_EL0 or SP_ELx)."""
        return self._read64(A.UC_ARM64_REG_SP)

    @sp.setter
    def sp(self, value: int) -> None:
        self._write64(A.UC_ARM64_REG_SP, value)

    @property
    def pstate(self) -> int:
        return self._read64(A.UC_ARM64_REG_PSTATE)

    @property
    def el(self) -> int:
        """The current exception level, PSTATE.EL."""
        return (self._read64(A.UC_ARM64_REG_PSTATE) >> 2) & 3

    def pc_and_el(self) -> tuple[int, int]:
        """(PC, PSTATE.EL) in one call to the engine: what every hypercall's exit reads first."""
        values = self._pc_el
        values[1] = 0  # Unicorn writes only 32 bits of PSTATE
        _reg_read_batch(self._uch, self._pc_el_ids, self._pc_el_refs, 2)
        return values[0], values[1] >> 2 & 3

    def registers(self) -> dict[str, int]:
        """x0..x30, sp, pc, pstate: the state a test or a widget shows."""
        regs = {f"x{i}": self.x(i) for i in range(31)}
        regs.update(sp=self.sp, pc=self.pc, pstate=self.pstate)
        return regs

    def vector_registers(self) -> dict[str, int]:
        """q0..q31, fpcr, fpsr: the SIMD and floating-point state (a world switch must move it too)."""
        regs = {f"q{i}": self.uc.reg_read(A.UC_ARM64_REG_Q0 + i) for i in range(32)}
        regs.update(fpcr=self.uc.reg_read(A.UC_ARM64_REG_FPCR), fpsr=self.uc.reg_read(A.UC_ARM64_REG_FPSR))
        return regs

    def read_sysreg(self, name: str) -> int:
        self._select_sysreg(name)
        _reg_read(self._uch, A.UC_ARM64_REG_CP_REG, self._cp_ref)
        absent = ABSENT_ON_VIRT.get(name)
        return self._cp.val if absent is None else self._cp.val & ~absent

    def write_sysreg(self, name: str, value: int) -> None:
        self._select_sysreg(name)
        self._cp.val = value & (2**64 - 1)
        _reg_write(self._uch, A.UC_ARM64_REG_CP_REG, self._cp_ref)
        if name == "SPSR_EL1" and _eret_needs_vlab(value) != (self._eret_watch is not None):
            self._eret_watch_stale = True

    def note_context_restored(self) -> None:
        """Call after loading a saved context into this core (a world switch): what vlab derives from the
        guest's system registers (here: whether exception returns need watching) is decided again."""
        self._eret_watch_stale = True

    def _select_sysreg(self, name: str) -> None:
        # One struct reused, straight to the C library, as in _read64: every exit reads or writes
        # a few system registers, and the binding's generic path costs several times more.
        cp = self._cp
        encoding = _ENCODINGS.get(name)
        if encoding is None:
            encoding = _ENCODINGS[name] = sysregs.lookup(name).encoding
        cp.op0, cp.op1, cp.crn, cp.crm, cp.op2 = encoding

    def flush_tlb(self) -> None:
        """Forget every translation Unicorn's own TLB holds (its TLB is not tagged by VMID or ASID)."""
        # UC_CTL_TLB_FLUSH, written (op 1 << 30), no argument: straight to the C library, as a world
        # switch does it every time and the binding's generic ctl() costs several times more.
        uclib.uc_ctl(self._uch, 1 << 30 | _UC_CTL_TLB_FLUSH)

    def map_host_buffer(self, address: int, size: int, host_address: int) -> None:
        """Map `size` bytes of host memory at `host_address` (which must outlive this core) at
        physical `address`: several cores mapping one buffer share that memory."""
        self.uc.mem_map_ptr(address, size, UC_PROT_ALL, host_address)

    def read_memory(self, address: int, size: int) -> bytes:
        """`size` bytes of mapped physical memory at `address` (ValueError where any is unmapped)."""
        # One copy, straight to the C library: the binding's mem_read makes three, which
        # dominated comparing a guest's whole RAM after a run (12 ms against 0.4 ms for 4 MiB).
        data = bytearray(size)
        if size and uclib.uc_mem_read(self._uch, address, (ctypes.c_char * size).from_buffer(data), size) != 0:
            raise ValueError(f"{size} bytes at {address:#x} are not all mapped")
        return bytes(data)

    def read_word(self, address: int) -> int | None:
        """The 32-bit word at (guest virtual) address, or None where no memory is mapped."""
        address = self._physical(address)
        if address is None:
            return None
        # Into a reused buffer, straight to the C library: an exit reads its instruction word.
        if _mem_read(self._uch, ctypes.c_uint64(address), self._word_ref, _FOUR) != 0:
            return None
        return self._word.value

    def _physical(self, va: int, fetch_only: bool = False) -> int | None:
        """Where the guest's own MMU puts the instruction at `va`, fetched or else (unless `fetch_only`)
        read; None if nowhere. vlab's own lookup: it makes no fault and no exit.

        With the MMU off that is `va` itself. Executable first: code at EL1 may be unreadable there.
        """
        if self.translate_for_reads is not None:
            return self.translate_for_reads(va, fetch_only)
        for prot in (UC_PROT_EXEC,) if fetch_only else (UC_PROT_EXEC, UC_PROT_READ):
            if _vmem_translate(self._uch, ctypes.c_uint64(va), prot, self._scratch_ref) == 0:
                return self._scratch.value
        return None

    def invalidate_code(self, address: int) -> None:
        """Drop what Unicorn translated of the instruction at (virtual) `address`, so that a hook
        added since is called there. Unicorn finds that code through the guest's translation -- in
        virtual-TLB mode, a call of the fill hook --, so where a fetch from `address` would fault,
        all translated code is dropped instead: vlab's own bookkeeping must not make a translation
        fault the guest would see (an exit, a page paged in, an abort injected)."""
        if self._physical(address, fetch_only=True) is None:
            self.uc.ctl_flush_tb()
        else:
            self.uc.ctl_remove_cache(address, address + 4)

    # --- running ---------------------------------------------------------------

    def clock(self) -> int:
        """Instructions retired so far; inside a hook, those before the current instruction."""
        if not self._running:
            return self.instructions
        return self.instructions + max(self._counter.started() - 1, 0)

    def request_stop(self) -> None:
        """Stop native execution after the current instruction (safe from any hook)."""
        self._stop_requested = True
        self.uc.emu_stop()

    def trap(self, exception: GuestException) -> None:
        """From a system-register handler: the trapped instruction raises `exception` instead.

        The handler must then return True (the access is not performed).
        """
        self._exception = exception
        # Count now: the trapped instruction is the last one started. (Unicorn notices the stop
        # only later -- after the next instruction has started, unless this one ended its block.)
        self._trapped_at = self._counter.started()
        self.request_stop()

    def stop_within(self, instructions: int) -> None:
        """From a hook: end the current run once at most `instructions` more have retired, the
        current one included (e.g. a timer was armed to fire sooner than the run was going to
        last: `clock()` then reaches the deadline exactly). Never lengthens a run."""
        self._counter.limit_to(self._counter.started() - 1 + max(instructions, 1))

    def interrupt_pending(self) -> None:
        """From any hook (a device callback, a system-register access): an interrupt line rose, so
        end the run once the current instruction has retired, so that the interrupt is taken before
        the next one -- not where Unicorn's translated block happens to end. (Unlike request_stop() from a device callback, which leaves PC on the
        access, so that the access would be made again.) Outside a run, nothing to do."""
        if self._running:
            self.stop_within(1)

    def abort_current(self, exception: GuestException) -> None:
        """From a device callback: the current instruction must not complete. Its registers are put
        back as they were before it (the device saw nothing), and it raises `exception` instead.

        Inside the callback the registers are still the instruction's inputs (Unicorn writes the
        loaded value and any writeback after the access), so a snapshot taken now is the state
        before it; the run restores it once the emulator has stopped.
        """
        self._rollback = self.uc.context_save()
        self._exception = exception
        self._trapped_at = self._counter.started()
        self.request_stop()

    def report_hook_error(self, message: str) -> None:
        """From any hook: vlab itself failed; the run stops with this message (never a raise into Unicorn)."""
        self._hook_error = self._hook_error or message
        self.uc.emu_stop()

    def fault(self, make: Callable[[int], GuestException]) -> None:
        """From an address-translation hook: the current instruction raises an exception.

        The hook then reports failure to Unicorn, which stops with PC at the instruction;
        PC is stale inside the hook, so `make(pc)` builds the exception once it is known.
        """
        self._make_fault = make
        self._trapped_at = self._counter.started()  # counted as for trap(): this instruction did not retire

    def run(self, max_insns: int, timeout_us: int = 0) -> CpuStop:
        """Execute from PC until an event, at most max_insns instructions (> 0)."""
        return self._run(max_insns, timeout_us)

    def _run(self, max_insns: int, timeout_us: int) -> CpuStop:
        """One emu_start: until an event or max_insns."""
        if self._misaligned_block is not None:  # translated, never run: Unicorn would run it next time
            self.invalidate_code(self._misaligned_block)
            self._misaligned_block = None
        if self._eret_watch_stale:
            self._watch_erets()
        self._exception = self._memory_fault = self._hook_error = self._trapped_at = self._make_fault = None
        self._unsupported = None
        self._stop_requested = False
        if self.pc & 3:  # Unicorn has no PC alignment check, and would run the misaligned words
            return CpuStop(StopKind.EXCEPTION, 0, self._pc_alignment_fault(self.pc))
        error: UcError | None = None
        self.irq.sync()
        self._running = True
        try:
            self.uc.emu_start(self.pc, 0, timeout=timeout_us, count=max_insns)  # `until` unused: no exits
        except UcError as e:
            error = e
        except Exception as e:  # a Python error in one of our hooks, re-raised by Unicorn's binding
            self._hook_error = self._hook_error or f"{type(e).__name__}: {e}"
        finally:
            self._running = False
        if self._rollback is not None:
            self.uc.context_restore(self._rollback)
            self._rollback = None
        if self._escaped is not None:
            escaped, self._escaped = self._escaped, None
            raise escaped
        started = self._counter.started()
        stop = self._classify(started, self._counter.limit(), error)
        self.instructions += stop.retired
        return stop

    def _classify(self, started: int, max_insns: int, error: UcError | None) -> CpuStop:
        if self._hook_error:
            return CpuStop(StopKind.ERROR, max(started - 1, 0), message=self._hook_error)
        if self._unsupported:
            return CpuStop(StopKind.UNSUPPORTED, max(self._trapped_at - 1, 0), message=self._unsupported)
        if error is not None:
            exc = self._exception or (self._make_fault(self.pc) if self._make_fault else self._fault_exception(error))
            if exc.return_address != exc.address:
                # SVC/HVC/SMC completed (in virtual-TLB mode Unicorn also reports an error after them)
                return CpuStop(StopKind.EXCEPTION, started, exc)
            last_started = self._trapped_at if self._trapped_at is not None else started
            return CpuStop(StopKind.EXCEPTION, _retired_before(exc, last_started), exc)
        if self._exception is not None:
            exc = self._exception
            faulted = exc.return_address == exc.address  # the instruction did not complete
            if faulted:
                self.pc = exc.address  # a trapped MRS/MSR was skipped by Unicorn: PC stays at it
                # Neither the faulting instruction retired nor, after a trap(), the next one that
                # Unicorn may have started before it noticed the stop: count from the trap.
                last_started = self._trapped_at if self._trapped_at is not None else started
                return CpuStop(StopKind.EXCEPTION, _retired_before(exc, last_started), exc)
            return CpuStop(StopKind.EXCEPTION, started, exc)
        if started > max_insns:
            return CpuStop(StopKind.BUDGET, max_insns)
        if self.uc.query(UC_QUERY_TIMEOUT):
            return CpuStop(StopKind.TIMEOUT, started)
        if self._stop_requested:
            return CpuStop(StopKind.REQUESTED, started)
        if self.read_word(self.pc - 4) == _WFI:
            return CpuStop(StopKind.WFI, started)
        return CpuStop(StopKind.REQUESTED, started)

    # --- hooks: keep them small, never let a Python exception escape into Unicorn ---

    def _on_interrupt(self, intno: int, _user) -> None:
        try:
            if self.exception_handler is not None and self.exception_handler(self, intno):
                return  # served in place: the guest goes on without leaving the emulator
            self._exception = self._decode_interrupt(intno)
        except Exception as e:  # noqa: BLE001 - reported as a stop, never raised into Unicorn
            self._hook_error = f"exception {intno}: {type(e).__name__}: {e}"
        self.uc.emu_stop()

    def decode_exception(self, intno: int) -> GuestException:
        """What Unicorn's exception number `intno`, just raised, is in the architecture's terms."""
        return self._decode_interrupt(intno)

    def _decode_interrupt(self, intno: int) -> GuestException:
        pc, el = self.pc, self.el
        if intno in (_EXCP_SWI, _EXCP_HVC, _EXCP_SMC):  # PC is already past the instruction
            ec = {_EXCP_SWI: ExceptionClass.SVC64, _EXCP_HVC: ExceptionClass.HVC64, _EXCP_SMC: ExceptionClass.SMC64}[intno]
            word = self.read_word(pc - 4) or 0
            return GuestException(imm16_syndrome(ec, (word >> 5) & 0xFFFF), pc - 4, pc, el, word=word)
        if intno == _EXCP_BKPT:
            word = self.read_word(pc) or 0
            return GuestException(imm16_syndrome(ExceptionClass.BRK64, (word >> 5) & 0xFFFF), pc, pc, el, word=word)
        if intno == _EXCP_UDEF:
            return self._undefined(pc, el)
        if intno in (_EXCP_DATA_ABORT, _EXCP_PREFETCH_ABORT):
            # Raised by Unicorn's own address translation: the guest's tables refused the access, or,
            # with the MMU off, the address is beyond the physical address range (e.g. a push with
            # SP = 0). QEMU computed the syndrome and the faulting address: read them.
            esr, far = self._computed_by_qemu()
            syndrome = Syndrome.from_esr(esr)
            return GuestException(syndrome, pc, pc, el, far=far, detail=_stage1_fault(syndrome.iss & 0x3F,
                                                                                       self.read_sysreg("SCTLR_EL1") & 1))
        return GuestException(Syndrome(ExceptionClass.UNKNOWN), pc, pc, el,
                              detail=f"emulator exception number {intno} has no AArch64 meaning here")

    def _undefined(self, pc: int, el: int) -> GuestException:
        """An instruction Unicorn refused. A system instruction that a control traps -- CTR_EL0 read at
        EL0 with SCTLR_EL1.UCT = 0, DC ZVA with DZE = 0, DAIF with UMA = 0 -- is EC 0x18, its operands in
        the ISS: QEMU says which it trapped (its syndrome's EC), except MSR DAIFSet/DAIFClr at EL0, which
        Unicorn raises with no syndrome at all. Anything else is EC 0x00, unknown reason."""
        word = self.read_word(pc) or 0
        if word >> 22 == _SYSTEM_INSTRUCTION and (word & _MSR_DAIF_MASK == _MSR_DAIF and el == 0
                                                   or self._computed_by_qemu()[0] >> 26 == ExceptionClass.SYS64):
            return GuestException(Syndrome(ExceptionClass.SYS64, SysRegAccess.of_instruction(word).iss), pc, pc, el,
                                  detail="a system instruction that this EL's controls trap", word=word)
        return GuestException(Syndrome(ExceptionClass.UNKNOWN), pc, pc, el, detail="undefined instruction", word=word)

    def _computed_by_qemu(self) -> tuple[int, int]:
        """(ESR, FAR) of the exception Unicorn is raising, as QEMU worked them out (`AbortInfo`)."""
        if self._abort_info is None:
            self._abort_info = AbortInfo(self.uc)
        return self._abort_info.read()

    def _on_new_block(self, uc: Uc, block, _previous, _user) -> None:
        """Unicorn translated a new block of guest code, about to run it: not at a misaligned PC.

        Unicorn (QEMU 5) has no PC alignment check: a branch to an address that is not a multiple
        of 4 would run the words found there. Every block is translated before its first run, and
        vlab drops one it stops in front of, so no misaligned block ever runs.
        """
        if block.pc & 3:
            self._exception = self._pc_alignment_fault(block.pc)
            self._misaligned_block = block.pc
            uc.emu_stop()

    def _pc_alignment_fault(self, pc: int) -> GuestException:
        return GuestException(Syndrome(ExceptionClass.PC_ALIGN), pc, pc, self.el, far=pc,
                              detail=f"the PC is {pc:#x}, not a multiple of 4 (AArch64 instructions are 4-byte aligned)")

    def _watch_erets(self) -> None:
        """Watch every instruction (slow: a Python hook on each) while SPSR_EL1 holds a return Unicorn
        gets wrong (see `_eret_needs_vlab`); stop watching when it no longer does. (PSTATE.IL is set
        only by such a return, and then its exception saves it in SPSR_EL1: SPSR_EL1 says it all.)"""
        self._eret_watch_stale = False
        needed = _eret_needs_vlab(self.read_sysreg("SPSR_EL1"))
        if needed and self._eret_watch is None:
            self._eret_watch = self.uc.hook_add(UC_HOOK_CODE, self._on_watched_instruction)
            self.uc.ctl_flush_tb()  # blocks translated before hold no call to the new hook
        elif not needed and self._eret_watch is not None:
            self.uc.hook_del(self._eret_watch)
            self._eret_watch = None

    def _on_watched_instruction(self, uc: Uc, address: int, _size: int, _user) -> None:
        """Before each instruction, while watching: after an illegal exception return (PSTATE.IL set),
        this instruction raises an Illegal Execution State exception instead of running (Arm ARM
        D1.11.4); an ERET to AArch32 at EL0 stops the run, which Unicorn cannot emulate."""
        try:
            if self.pstate & PSTATE_IL:
                self.trap(GuestException(Syndrome(ExceptionClass.ILLEGAL_STATE), address, address, self.el,
                                         detail="PSTATE.IL is set: the exception return to here was illegal"))
            elif self.el == 1 and self.read_word(address) == _ERET and self.read_sysreg("SPSR_EL1") & 0x1F == 0x10:
                self._unsupported = (f"beyond what vlab can emulate (a limit of vlab, not an error of the guest): "
                                     f"ERET at {address:#x} returns to AArch32 state at EL0 (SPSR_EL1.M = 0b10000), "
                                     "which a Cortex-A72 runs, but vlab's emulator (Unicorn) executes AArch64 only")
                self._trapped_at = self._counter.started()
                self.request_stop()
        except Exception as e:  # noqa: BLE001 - reported as a stop, never raised into Unicorn
            self.report_hook_error(f"watching exception returns: {type(e).__name__}: {e}")

    def _on_memory_fault(self, uc: Uc, access: int, address: int, size: int, value: int, _user) -> bool:
        self._memory_fault = (access, address, size)
        return False  # let Unicorn stop with the matching UC_ERR_*

    def _fault_exception(self, error: UcError) -> GuestException:
        """An access to no memory, or a write to read-only memory: a synchronous external abort.

        Unicorn names the *physical* address (`ipa`: in a VM without stage 2, the IPA that has no
        RAM); FAR is the virtual one, which with the guest's MMU on is worked out here.
        """
        pc, el = self.pc, self.el
        if self._memory_fault is None:
            if error.errno in (UC_ERR_FETCH_UNMAPPED, UC_ERR_FETCH_PROT):
                self._memory_fault = (UC_MEM_FETCH_UNMAPPED, pc, 4)
            else:
                return GuestException(Syndrome(ExceptionClass.UNKNOWN), pc, pc, el, detail=f"emulator error: {error}")
        access, address, size = self._memory_fault
        lower = el == 0
        mmu_on = bool(self.read_sysreg("SCTLR_EL1") & 1)
        if access in (UC_MEM_FETCH_UNMAPPED, UC_MEM_FETCH_PROT):
            ec = ExceptionClass.IABT_LOWER if lower else ExceptionClass.IABT_CURRENT  # PC is the fetch's VA
            detail = f"instruction fetch from {pc:#x}" + _physically(pc, address) + ", where there is no memory"
            return GuestException(Syndrome(ec, FaultStatus.SYNC_EXTERNAL), pc, pc, el, far=pc, ipa=address,
                                  detail=detail)
        write = access in (UC_MEM_WRITE_UNMAPPED, UC_MEM_WRITE_PROT)
        ec = ExceptionClass.DABT_LOWER if lower else ExceptionClass.DABT_CURRENT
        what = "read-only memory" if access == UC_MEM_WRITE_PROT else "no memory or device"
        far = self._data_address(pc, address) if mmu_on else address
        detail = f"{size}-byte {'write to' if write else 'read from'} {far if far is not None else address:#x}"
        detail += _physically(far, address) + f": {what} there"
        if far is None:
            far, detail = address, detail + " (FAR holds the physical address: vlab could not work out the virtual one)"
        return GuestException(Syndrome(ec, DataAbort(FaultStatus.SYNC_EXTERNAL, wnr=write).iss), pc, pc, el,
                              far=far, ipa=address, detail=detail)

    def _data_address(self, pc: int, physical: int) -> int | None:
        """The virtual address of the byte at `physical` that the load or store at `pc` reached."""
        word = self.read_word(pc)
        start = None if word is None else ldst.effective_address(word, lambda n: self.sp if n == 31 else self.x(n), pc)
        if start is None:
            return None
        va = start & ~0xFFF | physical & 0xFFF  # 4 KB pages or larger: the offset in the page is the same
        return va if va >= start else va + 0x1000  # the access crossed into the next page, which faulted

    def _on_sysreg(self, reg: int, cp_pointer, is_read: int | None) -> bool:
        try:
            cp = cp_pointer.contents
            # The access, decoded once per register, Rt and direction: this hook runs for every
            # MRS/MSR the guest executes, and an exit served in place must stay cheap.
            key = (cp.op0, cp.op1, cp.crn, cp.crm, cp.op2, reg, is_read)
            known = self._accesses.get(key)
            if known is None:
                reg_info = sysregs.BY_ENCODING.get(key[:5])
                id_register = reg_info.name if is_read and reg_info is not None and reg_info.name in ABSENT_ON_VIRT \
                    else None
                known = self._accesses[key] = (SysRegAccess(*key[:5], rt=_RT[reg], is_read=bool(is_read)),
                                               0 if reg_info is None else reg_info.min_el, id_register)
            access, min_el, id_register = known
            if min_el and (min_el > 1 or self.el == 0):
                return False  # UNDEFINED at this level: the hardware raises it, not us
            if not is_read:
                if access.encoding == _VBAR_EL1 and self.irq.asserted:
                    self.request_stop()  # the IRQ vectors move: watch the new ones before the guest can unmask
                elif access.encoding == _SPSR_EL1 and \
                        _eret_needs_vlab(self.x(access.rt)) != (self._eret_watch is not None):
                    self._eret_watch_stale = True  # the hook that watches ERETs goes on (or off) before the next one
                    self.request_stop()
            handler = self.sysreg_handler
            if handler is not None and handler(self, access, cp.val):
                return True
            if id_register is None:
                return False
            self.set_x(access.rt, self.read_sysreg(id_register))  # the ID register of QEMU virt's core
            return True
        except Exception as e:  # noqa: BLE001 - reported as a stop, never raised into Unicorn
            self._hook_error = f"system-register trap handler failed: {type(e).__name__}: {e}"
            self.uc.emu_stop()
            return True

    # --- exception entry: what the hardware does, done by vlab -----------------

    def take_exception(self, kind: Vector, syndrome: Syndrome | None = None,
                       return_address: int | None = None, far: int | None = None) -> int:
        """Enter the EL1 kernel's vector for this exception; returns the vector address.

        Saves PSTATE to SPSR_EL1 and the return address to ELR_EL1, writes the
        syndrome to ESR_EL1 (synchronous exceptions) and the fault address to
        FAR_EL1 (aborts), masks DAIF, moves to EL1 using SP_EL1, and sets PC to
        VBAR_EL1 + group + kind, where the group depends on where we came from:
        0x000 EL1 with SP_EL0, 0x200 EL1 with SP_EL1, 0x400 a lower level (EL0).
        """
        old = self.pstate
        old_el, old_spsel = (old >> 2) & 3, old & 1
        group = 0x400 if old_el == 0 else (0x200 if old_spsel else 0x000)
        vector = (self.read_sysreg("VBAR_EL1") & ~0x7FF) + group + kind
        # The stack pointer is banked: park the current one where it belongs, pick up SP_EL1.
        if old_el == 0 or not old_spsel:
            self.uc.reg_write(A.UC_ARM64_REG_SP_EL0, self.sp)
            new_sp = self.uc.reg_read(A.UC_ARM64_REG_SP_EL1)
        else:
            new_sp = self.sp
        self.uc.reg_write(A.UC_ARM64_REG_PSTATE, (old & PSTATE_NZCV) | PSTATE_DAIF | 0b0101)  # EL1h
        self.sp = new_sp
        # Unicorn applies a new PSTATE.EL only after a system-register write, which these are.
        self.write_sysreg("SPSR_EL1", old)
        self.write_sysreg("ELR_EL1", self.pc if return_address is None else return_address)
        if syndrome is not None:
            self.write_sysreg("ESR_EL1", syndrome.esr)
        if far is not None:
            self.write_sysreg("FAR_EL1", far)
        self.pc = vector
        return vector


def _physically(va: int | None, pa: int) -> str:
    """', physical address PA' where the guest's MMU put the access elsewhere, else nothing."""
    return "" if va == pa or va is None else f" (physical address {pa:#x}, through the guest's page tables)"


def _retired_before(exc: GuestException, last_started: int) -> int:
    """Instructions retired before `exc`: those started, less the faulting one -- unless it never
    started because it could not even be fetched (an instruction abort, a misaligned PC)."""
    return last_started if exc.syndrome.ec in _FETCH_FAULTS else max(last_started - 1, 0)


def _eret_needs_vlab(spsr: int) -> bool:
    """Whether an ERET at EL1 with this SPSR_EL1 is one Unicorn (QEMU 5) gets wrong.

    An illegal return (Arm ARM D1.11.1: to EL2 or EL3, to a reserved mode, to AArch32 at EL1,
    which is AArch64 here) sets PSTATE.IL, and so does a return with SPSR.IL = 1; the next
    instruction must then raise an Illegal Execution State exception, which Unicorn never does.
    A legal return to AArch32 at EL0 (a Cortex-A72 runs A32 there) Unicorn cannot emulate.
    Returns to EL0t, EL1t and EL1h in AArch64 with IL clear are the only ones it runs right.
    """
    return bool(spsr & PSTATE_IL) or spsr & 0x1F not in (0b00000, 0b00100, 0b00101)


def _stage1_fault(fsc: int, mmu_on: bool) -> str:
    """The plain words for a fault status code of an abort raised by the emulator's own table walk."""
    if fsc < 0x10:
        what = f"stage-1 {_FAULT_KINDS[fsc & 0x3C]} at level {fsc & 3}"
    else:
        what = "alignment fault" if fsc == 0x21 else f"fault status {fsc:#04x}"
    if not mmu_on:
        return f"{what}: with the MMU off, the address is beyond the physical address range"
    return f"{what}, found walking the guest's own translation tables"

"""Chapter 2 exercises: trap and emulate. A student's handler replaces vlab's in a VM, and the
guest must end exactly as it does on the bare board (Popek and Goldberg's equivalence)."""

from __future__ import annotations

from vlab.arch.esr import ExceptionClass, SysRegAccess
from vlab.arch.hcr import HCR
from vlab.arch.sysregs import lookup, trapped_by
from vlab.grading.exercise import Case, Exercise, Test
from vlab.grading.kinds import HandlerAnswer, bare_run
from vlab.guests import GUESTS

MODULE = "ch02_trap_and_emulate"
RAM = 0x10_0000  # the guests' stacks start at 0x4010_0000: 1 MiB is all they use (and all compared)
OFF = "    ldr x0, =0x84000008\n    hvc #0\n"
_U32, _U64 = 0xFFFF_FFFF, (1 << 64) - 1


def _guest(label: str, source: str, traps: HCR) -> Case:
    return Case(label, (source, int(traps), RAM), bare_run(source, RAM))


def _named(name: str, traps: HCR):
    return lambda rng: [_guest(f"{name}.S", GUESTS[name].source(), traps)]


def _program(label: str, body: str, traps: HCR):
    return lambda rng: [_guest(label, body + OFF, traps)]


def _skip_forgotten(case: Case, got: dict) -> str | None:
    if "vcpu.skip" in got["message"]:
        return "after emulating the instruction, vcpu.skip(exit) moves the guest past it"


# --- ch02.handle_sysreg -----------------------------------------------------------------------

def _operand(name: str) -> str:
    """The register as MRS/MSR name it by its encoding (Keystone does not know every name)."""
    op0, op1, crn, crm, op2 = lookup(name).encoding
    return f"s{op0}_{op1}_c{crn}_c{crm}_{op2}"


# The EL1 registers the trap controls catch, but SCTLR_EL1: a random value there turns the MMU on.
WRITABLE = sorted(_operand(name) for name, _ in trapped_by(HCR.TVM) if name != "SCTLR_EL1")
ID_REGISTERS = [_operand(name) for name, _ in trapped_by(HCR.TID3)]
SYSREG_TRAPS = HCR.TVM | HCR.TRVM | HCR.TID3


def random_sysreg_program(rng, accesses: int = 20) -> str:
    """Random MSRs and MRSs of the trapped registers, from random general-purpose registers."""
    lines = []
    for _ in range(accesses):
        rt = rng.randrange(1, 31)
        if rng.random() < 0.5:
            lines.append(f"    ldr x{rt}, ={rng.getrandbits(64):#x}\n    msr {rng.choice(WRITABLE)}, x{rt}")
        else:
            lines.append(f"    mrs x{rt}, {rng.choice(WRITABLE + ID_REGISTERS)}")
    return "\n".join(lines) + "\n"


def _every_register(rng) -> list[Case]:
    lines = []
    for name in WRITABLE:
        rt, back = rng.sample(range(1, 31), 2)
        lines.append(f"    ldr x{rt}, ={rng.getrandbits(64):#x}\n    msr {name}, x{rt}\n    mrs x{back}, {name}")
    lines += [f"    mrs x{rng.randrange(1, 31)}, {name}" for name in ID_REGISTERS]
    return [_guest("every trapped register, written and read back", "\n".join(lines) + "\n" + OFF, SYSREG_TRAPS)]


ZERO_REGISTER = """    ldr x1, =0x44ff04
    msr mair_el1, x1
    msr mair_el1, xzr         // writes 0: Rt = 31 is the zero register
    mrs xzr, tcr_el1          // reads into the zero register: the value is discarded
    mrs x30, id_aa64mmfr0_el1
"""


def _mishandled_access(case: Case, got: dict) -> str | None:
    """What the handler did with the first MRS or MSR it got wrong, from the changes it made per exit."""
    for iss, changes in got["exits"]:
        access = SysRegAccess.from_iss(iss)
        if access.is_read and not any(c[:2] == ["set_x", access.rt] for c in changes):
            return "an MRS puts the vCPU's value of the register into x[Rt]: vcpu.set_x(access.rt, vcpu.read_sysreg(name))"
        if not access.is_read and not any(c[0] == "write_sysreg" for c in changes):
            return "an MSR writes x[Rt] into the vCPU's register: vcpu.write_sysreg(name, vcpu.x(access.rt))"
    return None


HANDLE_SYSREG = Exercise(
    id="ch02.handle_sysreg",
    title="Emulate a trapped system-register access",
    statement=("Write the hypervisor's handler for exception class 0x18 (a trapped MRS/MSR): decode the ISS, "
               "read or write the vCPU's copy of the register, move the guest past the instruction, and "
               "return one line saying what it did."),
    points=4,
    module=MODULE,
    kind=HandlerAnswer(ExceptionClass.SYS64, (_skip_forgotten, _mishandled_access)),
    tests=(
        Test("syscall.S with TRVM", _named("syscall", HCR.TRVM),
             hint="for an MRS (is_read), the value goes into register Rt; then vcpu.skip(exit)"),
        Test("sensitive.S with TVM, TRVM and TID3", _named("sensitive", SYSREG_TRAPS),
             hint="an MSR writes x[Rt] into the vCPU's register: vcpu.write_sysreg(name, vcpu.x(rt))"),
        Test("the zero register as Rt", _program("reads and writes of xzr", ZERO_REGISTER, SYSREG_TRAPS),
             hint="Rt = 31 is the zero register: vcpu.x(31) reads 0 and vcpu.set_x(31, v) discards v"),
        Test("random reads and writes", lambda rng: [
            _guest("random reads and writes", random_sysreg_program(rng) + OFF, SYSREG_TRAPS)], hidden=True),
        Test("every trapped register", _every_register, hidden=True,
             hint="name_of(access.encoding) names the register the instruction accessed"),
    ),
)


# --- ch02.handle_uart_access ------------------------------------------------------------------

UART = "    ldr x1, =0x09000000\n"
WIDTHS = UART + """    mov x2, #0x41
    strb w2, [x1]             // a byte to UARTDR
    ldr x2, =0x1234
    strh w2, [x1, #0x24]      // a halfword to UARTIBRD
    ldrb w3, [x1, #0x18]      // UARTFR, a byte
    ldrh w4, [x1, #0x24]      // UARTIBRD, a halfword
    ldr w7, [x1, #0xfe0]      // UARTPeriphID0, a word
    mov x8, #13
    str w8, [x1, #0x24]
    ldr w9, [x1, #0x24]
    str wzr, [x1, #0x24]      // the zero register stores 0
    ldr w10, [x1, #0x24]
    ldr x2, =0xe924
    str w2, [x1, #0x24]
    ldrb w11, [x1, #0x24]     // a byte of UARTIBRD: 0x24 only
"""
SIGN_EXTENSION = UART + """    ldrsb x5, [x1, #0x18]     // UARTFR = 0x90 has bit 7 set: sign-extended to 64 bits
    ldrsb w6, [x1, #0x18]     // sign-extended to 32 bits: the upper half is 0
    ldr x2, =0x8001
    str w2, [x1, #0x24]       // UARTIBRD = 0x8001
    ldrsh x7, [x1, #0x24]     // bit 15 set: sign-extended to 64 bits
    ldrsh w8, [x1, #0x24]     // ... and to 32 bits
    ldrsb x9, [x1, #0xff4]    // UARTPCellID1 = 0xf0
    ldrsb x10, [x1, #0xfe4]   // UARTPeriphID1 = 0x10: bit 7 clear, nothing to extend
    ldrsw x11, [x1, #0x24]    // a word with bit 31 clear
"""
STORE_BYTES = UART + """    ldr x2, =0x7f00000000002141
    strb w2, [x1]             // UARTDR gets 0x41 ('A'), only the low byte of x2
    strh w2, [x1, #0x24]      // UARTIBRD gets 0x2141
    ldr x3, =0x5a5a5a5a0000d00d
    str w3, [x1, #0x28]       // a word store writes the low 32 bits
    ldrh w4, [x1, #0x24]
"""
# vlab's PL011 keeps 16 bits of these registers: stores and loads of any width read back.
STORABLE = (0x24, 0x28, 0x2C, 0x34, 0x38, 0x48)
LOADS = {1: ("ldrb w", "ldrsb w", "ldrsb x"), 2: ("ldrh w", "ldrsh w", "ldrsh x"), 4: ("ldr w", "ldrsw x")}
STORES = {1: "strb w", 2: "strh w", 4: "str w"}


def random_access_program(rng, accesses: int = 16) -> str:
    """Every load of every width once, after a store whose value has that width's sign bit set; then
    random stores (sign bits often set) to UART registers and random loads back."""
    lines = [UART]

    def store_then_load(size: int, load: str, sign: int) -> None:
        offset, rt, rd = rng.choice(STORABLE), *rng.sample(range(2, 29), 2)
        lines.append(f"    ldr x{rt}, ={rng.getrandbits(64) | sign:#x}\n    {STORES[size]}{rt}, [x1, #{offset:#x}]")
        lines.append(f"    ldr x{rd}, ={rng.getrandbits(64):#x}\n    {load}{rd}, [x1, #{offset:#x}]")

    for size, loads in LOADS.items():
        for load in loads:
            store_then_load(2 if size == 4 else size, load, 0x80 << 8 * (min(size, 2) - 1))
    for _ in range(accesses):
        size = rng.choice((1, 2, 4))
        store_then_load(size, rng.choice(LOADS[rng.choice((1, 2, 4))]),
                        0x80 << 8 * rng.randrange(2) if rng.random() < 0.7 else 0)
    lines.append("    ldrsb x29, [x1, #0xffc]\n    ldr wzr, [x1, #0x18]\n    strb wzr, [x1]")
    return "\n".join(lines) + "\n"


def _loaded_register_differs(case: Case, got: dict) -> str | None:
    for name, want in case.expected["state"].items():
        have = got["state"].get(name)
        if not name.startswith("x") or have is None or have == want:
            continue
        for bits in (8, 16, 32):
            if have >> bits == 0 and have >> (bits - 1) & 1:  # zero-extended, its sign bit set
                extended = have | _U64 & ~((1 << bits) - 1)
                if want in (extended, extended & _U32):
                    return ("sign-extend the value read when SSE is set: when bit 8*size-1 is 1, every bit above "
                            "it is 1 too (value - (1 << 8*size))")
        if have & _U32 == want and have >> 32:
            return "keep only 32 bits of a load into a w register (SF = 0): value & 0xffffffff"
        if any(have & ((1 << bits) - 1) == want & ((1 << bits) - 1) for bits in (8, 16)):
            return ("a load of .size bytes keeps only those bytes of the value the device returns "
                    "(value & ((1 << 8*size) - 1)), before sign-extending it")
        return "a load puts the device's value into register SRT: vcpu.set_x(abort.srt, value)"


def _access_differs(case: Case, got: dict) -> str | None:
    for g, e in zip(got["mmio"], case.expected["mmio"]):
        if g == e:
            continue
        if g[0] != e[0]:
            return "the register's offset inside the device is exit.ipa - device.base"
        if g[3] and e[3] and g[2] != e[2] and g[2] & ((1 << 8 * e[1]) - 1) == e[2]:
            return "a store writes only the access's .size low bytes of x[SRT]"
        if g[1] != e[1]:
            return "the access's size is abort.size (from SAS): 1, 2, 4 or 8 bytes"
        return "a store (WnR) writes x[SRT] to the device; a load reads it (is_write=False)"


HANDLE_UART_ACCESS = Exercise(
    id="ch02.handle_uart_access",
    title="Emulate a UART access from a data-abort exit",
    statement=("Write the hypervisor's handler for exception class 0x24 (a data abort from the guest): the guest "
               "touched the UART, which is not mapped; perform its load or store on the emulated PL011 using the "
               "syndrome (ISV, SAS, SSE, SRT, SF, WnR), move the guest past the instruction, and return one line "
               "saying what it did."),
    points=4,
    module=MODULE,
    kind=HandlerAnswer(ExceptionClass.DABT_LOWER, (_skip_forgotten, _access_differs, _loaded_register_differs)),
    tests=(
        Test("hello.S prints through your handler", _named("hello", HCR(0)),
             hint="a store (wnr) writes x[SRT] to the device; a load puts the device's value in x[SRT]"),
        Test("sensitive.S", _named("sensitive", HCR(0)), hint="the register offset is exit.ipa - device.base"),
        Test("bytes, halfwords and words; the zero register", _program("access widths", WIDTHS, HCR(0)),
             hint="the access's size in bytes is abort.size; Rt = 31 is the zero register"),
        Test("loads are sign-extended (SSE) and kept to 32 bits unless SF",
             _program("sign-extending loads", SIGN_EXTENSION, HCR(0)),
             hint="sign-extend from 8*size bits when sse; keep 32 bits unless sf"),
        Test("stores write only the access's bytes", _program("narrow stores of wide registers", STORE_BYTES, HCR(0)),
             hint="a store writes the low .size bytes of x[SRT]"),
        Test("random accesses of every width", lambda rng: [
            _guest("random accesses", random_access_program(rng) + OFF, HCR(0))], hidden=True,
             hint="sign-extend from 8*size bits when sse; keep 32 bits unless sf; store only .size bytes"),
    ),
)

EXERCISES = (HANDLE_SYSREG, HANDLE_UART_ACCESS)

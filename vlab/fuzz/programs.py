"""Random guest programs for the fuzzer: a seed in, an assembly program out, the same every time.

A program is a small EL1 kernel made of *snippets*, each of one kind (the kinds are what the
checker's rules speak of):

    _start:   vector table, data pointer x20, UART pointer x21, stack; maybe the MMU on
              snippet, snippet, ...            e.g. alu, mem, fault, svc, uart, timer, el0, ...
              PSCI SYSTEM_OFF
    vectors:  every synchronous exception is recorded (x23 ESR, x24 FAR, x25 ELR, x26 count)
              and survived: an SVC returns after itself, an instruction abort or a misaligned
              PC back to the caller (x30), an illegal return with a legal SPSR, anything
              else after the faulting instruction; past 64 exceptions the kernel powers off.
              An IRQ (the virtual timer) turns the timer off and returns.

Registers: snippets compute in x1..x15 (x9 is also an address), x16 counts loops, x19 is a
scratch base; x20..x30 belong to the kernel. `program(seed)` is the whole interface;
`program(seed, hostile=True)` mixes in the snippets of HOSTILE, which attack the hypervisor and
whatever runs beside the VM (vlab.fuzz.neighbour): stores across the whole IPA space, stage-1
tables that alias and overlap, TLBI and AT games, hypercalls with wild pointers and lengths,
CPU_ON at wild entries, EL2/EL3 register writes, exception loops, spinning for ever, a virtio
driver gone wild, interrupts left pending.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from vlab.asm import assemble
from vlab.guests.mmu import MMU_ON
from vlab.hyp.memory import HOST_BASE
from vlab.machine.board import FLASH_BASE, RAM_BASE
from vlab.machine.loader import Image, Segment
from vlab.machine.uart import UART_BASE

RAM_SIZE = 0x10_0000  # 1 MiB: code from RAM_BASE, the kernel, tables, data, a stack and untouched pages
KERNEL = RAM_BASE + 0x2_0000  # the vectors and handlers, the same in every program (assembled once)
DATA = RAM_BASE + 0x8_0000
ZEROS = RAM_BASE + 0xC_0000  # a page nothing writes: udf #0 if run
STACK = RAM_BASE + 0xF_0000
TABLES = RAM_BASE + 0x4_0000  # the level-1 table when the MMU is on
ALIAS = 0x8000_0000  # with the MMU on, another VA for RAM
# Where a wild access goes: nowhere (a hole), the flash, the UART, RAM's last bytes (a pair crosses
# out of it), the top of the address space (beyond the physical range), near 0, the alias.
WILD = {"hole": [0x2000_0000, 0x4800_0000, 0x1_0000_0000, 0xC000_0010],
        "flash": [FLASH_BASE + 0x8, FLASH_BASE + 0x10, FLASH_BASE + 0x7F_FFF8],
        "edge": [RAM_BASE + RAM_SIZE - 8, 0xFFFF_FFFF_FFFF_FFF0, ALIAS + 0x8_0000]}
READABLE = ["sctlr_el1", "ttbr0_el1", "tcr_el1", "mair_el1", "vbar_el1", "contextidr_el1", "tpidr_el1",
            "midr_el1", "mpidr_el1", "id_aa64mmfr0_el1", "id_aa64pfr0_el1", "id_aa64isar0_el1", "actlr_el1",
            "cntfrq_el0", "cntvct_el0", "currentel", "esr_el1", "far_el1", "amair_el1", "spsr_el1", "elr_el1",
            "cpacr_el1", "cntkctl_el1", "par_el1", "tpidr_el0", "sp_el0", "daif", "nzcv"]
WRITABLE = ["ttbr1_el1", "mair_el1", "amair_el1", "contextidr_el1", "tpidr_el1", "far_el1", "esr_el1",
            "actlr_el1", "tpidr_el0", "tpidrro_el0", "sp_el0", "cntkctl_el1", "nzcv"]
ILLEGAL_SPSRS = [0x3C9, 0x3CD, 0x3D3, 0x3C7, 0x3C1, 0x1003C5]  # to EL2, EL3, AArch32 EL1, reserved x2, IL set
CONDITIONS = ["eq", "ne", "lt", "ge", "hi", "ls", "mi", "pl"]


@dataclass(frozen=True)
class Program:
    """One generated guest: its seed, its source (run from RAM_BASE; the kernel, the same for every
    program, is `KERNEL_SOURCE` at KERNEL), and the kinds of snippet it is made of."""

    seed: int
    source: str
    kinds: frozenset[str]

    def image(self) -> Image:
        """The program and the kernel, ready to load (both assembled: the kernel once per process)."""
        code = assemble(self.source, RAM_BASE).code
        return Image((Segment(RAM_BASE, code, len(code)), _kernel_segment()), RAM_BASE)


class _Writer:
    """Draws snippets from one random generator; collects their lines and kinds; labels unique."""

    def __init__(self, rng: random.Random):
        self.rng, self.lines, self.kinds, self._labels = rng, [], set(), 0

    def label(self) -> str:
        self._labels += 1
        return f"l{self._labels}"

    def reg(self) -> str:
        return f"x{self.rng.randint(1, 15)}"

    def emit(self, kind: str, *lines: str) -> None:
        self.kinds.add(kind)
        self.lines += [f"    {line}" if not line.endswith(":") else line for line in lines]

    def imm(self, top: int) -> int:
        return self.rng.randint(0, top)


def _alu(w: _Writer) -> None:
    a, b, c = w.reg(), w.reg(), w.reg()
    op = w.rng.choice(["add", "sub", "eor", "orr", "and", "mul", "udiv", "lsl", "asr", "adds", "subs"])
    if op in ("add", "sub", "adds", "subs") and w.rng.random() < 0.5:
        w.emit("alu", f"{op} {a}, {b}, #{w.imm(4095)}")
    elif op in ("lsl", "asr"):
        w.emit("alu", f"{op} {a}, {b}, #{w.imm(63)}")
    else:
        w.emit("alu", f"{op} {a}, {b}, {c}")
    if w.rng.random() < 0.3:
        w.emit("alu", f"csel {w.reg()}, {b}, {c}, {w.rng.choice(CONDITIONS)}")
    if w.rng.random() < 0.2:
        w.emit("alu", f"movk {a}, #{w.imm(0xFFFF):#x}, lsl #{16 * w.rng.randint(0, 3)}")


def _mem(w: _Writer, forms: tuple[str, ...] = ("ldr", "str", "strb", "ldrsh", "ldp", "stp", "pre", "post", "ldur",
                                                 "simd", "st1", "stack")) -> None:
    a, b, offset, vector = w.reg(), w.reg(), 8 * w.imm(255), w.imm(6)
    form = w.rng.choice(forms)
    w.emit("mem", f"add x19, x20, #{offset}")
    line = {"ldr": f"ldr {a}, [x19, #{8 * w.imm(16)}]", "str": f"str {a}, [x19]",
            "strb": f"strb w{a[1:]}, [x19, #{w.imm(255)}]", "ldrsh": f"ldrsh {a}, [x19, #{2 * w.imm(100)}]",
            "ldp": f"ldp {a}, {b}, [x19, #{8 * w.imm(63)}]" if a != b else f"ldr {a}, [x19]",
            "stp": f"stp {a}, {b}, [x19, #-{8 * w.imm(31)}]",
            "pre": f"str {a}, [x19, #{w.imm(255)}]!", "post": f"ldr {a}, [x19], #{8 * w.imm(31)}",
            "ldur": f"ldur w{a[1:]}, [x19, #{w.rng.randint(-256, 255)}]",
            "simd": f"{w.rng.choice(['ldr', 'str'])} q{w.imm(7)}, [x19, #{16 * w.imm(100)}]",
            "st1": f"st1 {{v{vector}.16b, v{vector + 1}.16b}}, [x19]",
            "stack": f"str {a}, [sp, #-16]!\n    ldr {b}, [sp], #16"}[form]
    w.emit("mem", line)


def _branch(w: _Writer) -> None:
    skip = w.label()
    w.emit("branch", f"cmp {w.reg()}, {w.reg()}", f"b.{w.rng.choice(CONDITIONS)} {skip}")
    _alu(w)
    w.emit("branch", f"{skip}:")


def _loop(w: _Writer) -> None:
    top = w.label()
    w.emit("loop", f"mov x16, #{w.rng.randint(1, 200)}", f"{top}:")
    _alu(w)
    w.emit("loop", "subs x16, x16, #1", f"b.ne {top}")


def _wild(w: _Writer, kind: str) -> None:
    """A load or store, single or pair, at an address where there is no RAM (or on its edge)."""
    address = w.rng.choice(WILD[kind])
    access = w.rng.choice([f"ldr {w.reg()}, [x9]", f"str {w.reg()}, [x9]", "ldp x1, x2, [x9]",
                           "stp x3, x4, [x9, #-16]!", "ldrb w5, [x9, #1]"])
    w.emit(kind, f"ldr x9, ={address:#x}", access)


def _fetch(w: _Writer) -> None:
    """A call to where no instruction can be fetched, or to a misaligned address: back via x30."""
    kind, address = w.rng.choice([("fetch", 0x2000_0000), ("fetch", ZEROS), ("flash", FLASH_BASE + 0x100),
                                  ("edge", 0xFFFF_FFFF_FFFF_F000), ("misaligned", None)])
    if address is None:
        here = w.label()
        w.emit("misaligned", f"adr x9, {here}", f"add x9, x9, #{w.rng.randint(1, 3)}", "blr x9", f"{here}:", "nop")
    else:
        w.emit(kind, f"ldr x9, ={address:#x}", "blr x9")


def _exception(w: _Writer) -> None:
    choice = w.rng.choice(["svc", "brk", "udf", "el2"])
    line = {"svc": f"svc #{w.imm(0xFFFF):#x}", "brk": f"brk #{w.imm(0xFFFF):#x}", "udf": f"udf #{w.imm(0xFFFF)}",
            "el2": w.rng.choice(["mrs x1, hcr_el2", "msr vbar_el2, x1", "mrs x2, sctlr_el3"])}[choice]
    w.emit("exception", line)


def _sysreg(w: _Writer) -> None:
    if w.rng.random() < 0.6:
        w.emit("sysreg", f"mrs {w.reg()}, {w.rng.choice(READABLE)}")
    elif w.rng.random() < 0.8:
        w.emit("sysreg", f"msr {w.rng.choice(WRITABLE)}, {w.reg()}")
    else:  # read-modify-write of the ones a guest must not garble (writing back what was read)
        r = w.reg()
        register = w.rng.choice(["sctlr_el1", "tcr_el1", "ttbr0_el1", "vbar_el1", "cpacr_el1"])
        w.emit("sysreg", f"mrs {r}, {register}", f"msr {register}, {r}", "isb")


def _uart(w: _Writer) -> None:
    r = w.reg()
    if w.rng.random() < 0.7:
        w.emit("uart", f"mov w{r[1:]}, #{w.rng.randint(0x20, 0x7E)}", f"strb w{r[1:]}, [x21]")
    else:
        w.emit("uart", f"ldr w{r[1:]}, [x21, #{w.rng.choice([0x18, 0x30, 0xFE0])}]")


def _uart_without_syndrome(w: _Writer) -> None:
    r = w.reg()
    w.emit("device_isv0", f"mov w{r[1:]}, #{w.rng.randint(0x20, 0x7E)}",
           w.rng.choice([f"stp w{r[1:]}, w{r[1:]}, [x21]", f"str w{r[1:]}, [x21, #0]!", "str s0, [x21]",
                         "ldp w1, w2, [x21, #0x18]"]))


def _firmware(w: _Writer) -> None:
    call = w.rng.choice([(0x8400_0000, 0), (0x8400_000A, 0x8400_0008), (0x8400_000A, 0xC400_0003),
                         (0x8400_000A, 0x1234)])
    conduit = w.rng.choice(["hvc", "smc"])
    w.emit("firmware", f"ldr x0, ={call[0]:#x}", f"ldr x1, ={call[1]:#x}", f"{conduit} #0", f"mov {w.reg()}, x0")


def _vlab_hypercall(w: _Writer) -> None:
    w.emit("vlab_hypercall", "ldr x0, =0x86000001", f"mov x1, #{w.rng.randint(0x41, 0x5A)}", "hvc #0")


def _timer(w: _Writer) -> None:
    r, ticks = w.reg(), w.rng.randint(1, 300)
    w.emit("timer", "msr daifset, #2", f"mov {r}, #{ticks}", f"msr cntv_tval_el0, {r}", f"mov {r}, #1",
           f"msr cntv_ctl_el0, {r}")
    if w.rng.random() < 0.5:
        w.emit("timer", "wfi", "msr cntv_ctl_el0, xzr")
    else:  # the interrupt is taken while these run (or after: the kernel turns the timer off then)
        w.emit("timer", "msr daifclr, #2")
        for _ in range(w.rng.randint(1, 4)):
            _alu(w)
        _loop(w)
        w.emit("timer", "msr daifset, #2", "msr cntv_ctl_el0, xzr")


def _illegal_return(w: _Writer) -> None:
    after = w.label()
    w.emit("illegal_return", f"adr x9, {after}", "msr elr_el1, x9", f"ldr x9, ={w.rng.choice(ILLEGAL_SPSRS):#x}",
           "msr spsr_el1, x9", "eret", f"{after}:")


def _el0(w: _Writer) -> None:
    user = w.label()
    w.emit("el0", f"adr x9, {user}", "msr elr_el1, x9", "msr spsr_el1, xzr", f"ldr x9, ={STACK - 0x1000:#x}",
           "msr sp_el0, x9", "eret", f"{user}:")
    for _ in range(w.rng.randint(1, 3)):
        w.rng.choice([_alu, _mem, _exception])(w)
    w.emit("el0", "svc #0")


SNIPPETS = {  # kind -> (generator, weight); the kinds where a VM differs from the board by design are rare
    "alu": (_alu, 6), "mem": (_mem, 5), "branch": (_branch, 2), "loop": (_loop, 1),
    "hole": (lambda w: _wild(w, "hole"), 1), "flash": (lambda w: _wild(w, "flash"), 0.2),
    "edge": (lambda w: _wild(w, "edge"), 1), "fetch": (_fetch, 1), "exception": (_exception, 2),
    "sysreg": (_sysreg, 3), "uart": (_uart, 2), "device_isv0": (_uart_without_syndrome, 0.2),
    "firmware": (_firmware, 1), "vlab_hypercall": (_vlab_hypercall, 0.2), "timer": (_timer, 1),
    "illegal_return": (_illegal_return, 1), "el0": (_el0, 1),
}


# --- hostile snippets: what a guest does to harm its neighbours (program(seed, hostile=True)) ----------

IPA_BITS = 40  # vlab's stage 2 (VTCR_EL2.T0SZ = 24)
HOST_FRAMES = 0x1000 * 4096  # host-physical addresses a guest may guess at: the first 16 MiB of frames
EL2_EL3_REGISTERS = ["hcr_el2", "vttbr_el2", "vtcr_el2", "sctlr_el2", "vbar_el2", "tpidr_el2", "cptr_el2",
                     "mdcr_el2", "cnthctl_el2", "cntvoff_el2", "vpidr_el2", "vmpidr_el2", "elr_el2", "spsr_el2",
                     "sp_el1", "esr_el2", "far_el2", "hpfar_el2", "tcr_el2", "ttbr0_el2", "mair_el2",
                     "ich_hcr_el2", "scr_el3", "sctlr_el3", "vbar_el3", "mdcr_el3", "cptr_el3", "elr_el3"]
TLBIS = ["vmalle1", "vmalle1is", "vae1, {r}", "vale1, {r}", "aside1, {r}", "vaae1, {r}", "vaale1, {r}",
         "vae1is, {r}", "alle1", "alle2", "alle3", "vmalls12e1", "ipas2e1, {r}"]  # the last five: EL2/EL3 only
ATS = ["s1e1r", "s1e1w", "s1e0r", "s1e0w", "s12e1r", "s12e0w", "s1e2r", "s1e3w"]  # the last four: EL2/EL3 only
XEN_CALLS = [17, 18, 29, 48]  # xen_version, console_io, sched_op, vlab_domain_info (vlab.hyp.xen)
ERET, UDF0 = 0xD69F03E0, 0x0000_0000


def _wild_address(w: _Writer) -> int:
    """Somewhere a hostile guest aims: anywhere in or beyond the IPA space, a host frame's address
    (as an IPA, or where host memory sits in a core's physical map), the edges of its RAM."""
    frame = 0x1000 * w.rng.randrange(HOST_FRAMES // 0x1000) + 8 * w.imm(511)
    return w.rng.choice([w.rng.randrange(1 << IPA_BITS), w.rng.randrange(1 << IPA_BITS) & ~((1 << 30) - 1),
                         w.rng.randrange(1 << 64), frame, HOST_BASE + frame, RAM_BASE - 8, RAM_BASE + RAM_SIZE,
                         RAM_BASE + w.rng.randrange(RAM_SIZE), (1 << IPA_BITS) + RAM_BASE, (1 << 64) - 8])


def _ipa_store(w: _Writer) -> None:
    """A store (or a load, or a pair) at a wild address."""
    access = w.rng.choice([f"str {w.reg()}, [x9]", f"ldr {w.reg()}, [x9]", "stp x3, x4, [x9]", "strb w5, [x9]",
                           "dc zva, x9"])
    w.emit("ipa_store", f"ldr x9, ={_wild_address(w) & ~15:#x}", access)


def _ipa_sweep(w: _Writer) -> None:
    """Stores every `stride` bytes from a wild start: across the IPA space, or over the VM's own RAM
    (its code and kernel too, so that it may wreck itself)."""
    top = w.label()
    start, stride, count = w.rng.choice([
        (0, 1 << 34, 64),  # the whole 40-bit IPA space, every 16 GiB
        (w.rng.randrange(1 << IPA_BITS) & ~0xFFF, 1 << w.rng.randint(12, 36), w.rng.randint(2, 16)),
        (RAM_BASE + 0x1000 * w.rng.randrange(RAM_SIZE // 0x1000), 0x1000, w.rng.randint(1, 64)),
        (DATA, 8 * w.rng.randint(1, 512), w.rng.randint(1, 512))])
    w.emit("ipa_sweep", f"ldr x9, ={start:#x}", f"ldr x10, ={stride:#x}", f"ldr x16, ={count}",
           f"ldr x11, ={w.rng.randrange(1 << 64):#x}", f"{top}:", "str x11, [x9]", "add x9, x9, x10",
           "subs x16, x16, #1", f"b.ne {top}")


def _alias_tables(w: _Writer) -> None:
    """Stage-1 tables that alias and overlap: level-1 entries pointing back at the table itself
    (a recursive map: the tables become writable through it), at hostile-written data as a table,
    blocks onto wild IPAs, onto the RAM again; then accesses through them, with or without a TLBI."""
    w.emit("alias_tables", _MMU_ON.rstrip("\n").replace("    ", "", 1))
    for _ in range(w.rng.randint(1, 4)):
        slot = w.rng.randint(3, 511)
        descriptor = w.rng.choice([TABLES | 3, DATA | 3, (_wild_address(w) & ~((1 << 30) - 1) & ((1 << 48) - 1)) | 0x701,
                                   RAM_BASE | 0x705, RAM_BASE | 0x401, TABLES + 0x1000 | 3,
                                   w.rng.randrange(1 << 64) | 1])
        w.emit("alias_tables", f"ldr x19, ={TABLES:#x}", f"ldr x9, ={descriptor:#x}", f"str x9, [x19, #{8 * slot}]")
        if w.rng.random() < 0.7:
            w.emit("alias_tables", w.rng.choice(["tlbi vmalle1", "dsb sy", "isb"]))
        va = slot << 30 | w.rng.choice([0, 1 << 21, 1 << 21 | 1 << 12, 3 << 21 | 3 << 12, w.rng.randrange(1 << 30)]) & ~7
        w.emit("alias_tables", f"ldr x9, ={va:#x}",
               w.rng.choice([f"str {w.reg()}, [x9]", f"ldr {w.reg()}, [x9]", f"at s1e1w, x9\n    mrs {w.reg()}, par_el1"]))
    if w.rng.random() < 0.2:  # a translation table base the guest made up
        w.emit("alias_tables", f"ldr x9, ={w.rng.choice([DATA, TABLES + 8, _wild_address(w)]):#x}",
               "msr ttbr0_el1, x9", "isb", f"ldr {w.reg()}, [x20]")


def _tlbi_at(w: _Writer) -> None:
    """TLB maintenance and address translation with wild operands, the EL2/EL3 forms among them."""
    r = w.reg()
    w.emit("tlbi_at", f"ldr {r}, ={w.rng.choice([w.rng.randrange(1 << 64), _wild_address(w)]):#x}")
    if w.rng.random() < 0.5:
        w.emit("tlbi_at", "tlbi " + w.rng.choice(TLBIS).format(r=r), "dsb sy", "isb")
    else:
        w.emit("tlbi_at", f"at {w.rng.choice(ATS)}, {r}", "isb", f"mrs {w.reg()}, par_el1")


def _wild_hypercall(w: _Writer) -> None:
    """vlab's hypercalls, PSCI and Xen's, with wild function numbers, pointers and lengths."""
    wild, conduit = _wild_address(w), w.rng.choice(["hvc #0", "hvc #0", "smc #0", f"hvc #{w.imm(0xFFFF):#x}"])
    length = w.rng.choice([0, 1, 4095, 4096, 4097, RAM_SIZE, 0xFFFF_FFFF, (1 << 64) - 1, w.rng.randrange(1 << 64)])
    kind = w.rng.choice(["vlab", "psci", "xen"])
    if kind == "vlab":
        w.emit("wild_hypercall", f"ldr x0, ={w.rng.choice([0x8600_0001, 0x8600_0002, 0x8600_0003]):#x}",
               f"ldr x1, ={wild:#x}", f"ldr x2, ={length:#x}", conduit)
    elif kind == "psci":
        fid = w.rng.choice([0x8400_0000 | w.imm(0x1F), 0xC400_0000 | w.imm(0x1F), w.rng.randrange(1 << 64)])
        w.emit("wild_hypercall", f"ldr x0, ={fid:#x}", f"ldr x1, ={wild:#x}", f"ldr x2, ={length:#x}",
               f"ldr x3, ={w.rng.randrange(1 << 64):#x}", conduit)
    else:
        number = w.rng.choice(XEN_CALLS + [w.rng.randrange(64), w.rng.randrange(1 << 64)])
        w.emit("wild_hypercall", f"ldr x16, ={number:#x}", f"ldr x0, ={w.rng.choice([0, 1, 2, 6, 7, w.imm(1 << 16)]):#x}",
               f"ldr x1, ={w.rng.choice([length, wild]):#x}", f"ldr x2, ={wild:#x}", "hvc #0xea1")
    w.emit("wild_hypercall", f"mov {w.reg()}, x0")


def _cpu_on(w: _Writer) -> None:
    """PSCI CPU_ON of a vCPU that exists or not, at an entry that is code, data, zeros, misaligned,
    a device or nowhere."""
    target = w.rng.choice([0, 1, 1, 2, 3, 0x100, w.rng.randrange(1 << 64)])
    entry = w.rng.choice(["_start", f"={KERNEL:#x}", f"={ZEROS:#x}", f"={RAM_BASE + 4 * w.rng.randrange(RAM_SIZE // 4):#x}",
                          f"={RAM_BASE + 2:#x}", f"={UART_BASE:#x}", f"={w.rng.randrange(1 << 64):#x}",
                          f"={RAM_BASE + RAM_SIZE - 4:#x}"])
    w.emit("cpu_on", "ldr x0, =0xc4000003", f"ldr x1, ={target:#x}",
           "adr x2, _start" if entry == "_start" else f"ldr x2, {entry}", f"ldr x3, ={w.rng.randrange(1 << 64):#x}",
           w.rng.choice(["hvc #0", "smc #0"]), f"mov {w.reg()}, x0")


def _el2_el3(w: _Writer) -> None:
    """A write (or read) of a register of the hypervisor or the firmware: UNDEFINED at EL1."""
    register, r = w.rng.choice(EL2_EL3_REGISTERS), w.reg()
    if w.rng.random() < 0.7:
        w.emit("el2_el3", f"ldr {r}, ={w.rng.randrange(1 << 64):#x}", f"msr {register}, {r}")
    else:
        w.emit("el2_el3", f"mrs {r}, {register}")


def _exception_loop(w: _Writer) -> None:
    """A vector table that returns to the faulting instruction (eret) or faults itself (udf #0),
    written into its data page at run time, then an exception: the VM loops until it is stopped."""
    word = w.rng.choice([ERET, UDF0])
    w.emit("exception_loop", f"ldr x9, ={DATA:#x}", f"ldr w10, ={word:#x}", "str w10, [x9, #0x200]",
           "str w10, [x9, #0x400]", "dsb sy", "ic iallu", "msr vbar_el1, x9", "isb",
           w.rng.choice(["udf #7", "brk #1", "svc #0", "ldr x1, =0x20000000\n    ldr x2, [x1]"]))


VIRTIO_CONSOLE = 0x0A00_0000 + 31 * 0x200  # QEMU virt puts its first virtio device on the last transport
VIRTQ = RAM_BASE + 0xD_0000  # where a hostile driver keeps its descriptors, available and used rings
DESC_NEXT, DESC_WRITE, DESC_INDIRECT = 1, 2, 4


def virtio_round(queue: int, size: int, rings: tuple[int, int, int], descriptor: tuple[int, int, int, int]) -> str:
    """A driver that resets the virtio console, negotiates VIRTIO_F_VERSION_1, sets up `queue` with
    `size` entries and its descriptor table, available and used rings at `rings`, puts
    `descriptor` (address, length, flags, next) in slot 0 of the table at VIRTQ, offers it as the
    only chain of fresh rings and notifies.
    Uses x9, x10, x11; a device it upsets sets DEVICE_NEEDS_RESET, which the next round's reset clears."""
    address, length, flags, following = descriptor
    registers = [(0x070, 0), (0x070, 1), (0x070, 3), (0x024, 1), (0x020, 1), (0x070, 11), (0x030, queue),
                 (0x038, size)]
    for offset, ring in zip((0x080, 0x090, 0x0A0), rings):
        registers += [(offset, ring & 0xFFFF_FFFF), (offset + 4, ring >> 32)]
    registers += [(0x044, 1), (0x070, 15)]
    lines = [f"    ldr     x9, ={VIRTIO_CONSOLE:#x}"]
    lines += [f"    ldr     w10, ={value:#x}\n    str     w10, [x9, #{offset:#x}]" for offset, value in registers]
    lines += [f"    ldr     x10, ={VIRTQ:#x}", f"    ldr     x11, ={address:#x}", "    str     x11, [x10]",
              f"    ldr     w11, ={length:#x}", "    str     w11, [x10, #8]",
              f"    ldr     w11, ={flags | following << 16:#x}", "    str     w11, [x10, #12]",
              f"    ldr     x10, ={rings[2]:#x}", "    strh    wzr, [x10, #2]",  # a fresh used ring
              f"    ldr     x10, ={rings[1]:#x}", "    strh    wzr, [x10, #4]",  # avail.ring[0] = 0
              "    mov     w11, #1", "    strh    w11, [x10, #2]",  # avail.idx = 1
              f"    ldr     w10, ={queue}", "    str     w10, [x9, #0x50]"]  # QueueNotify
    return "\n".join(lines) + "\n"


def _wild_virtio(w: _Writer) -> None:
    """The VM's virtio console driven by a hostile driver: rings and buffers anywhere, sizes that
    are no power of 2, chains that loop or run off the table, buffers the wrong way round."""
    rings = (VIRTQ, VIRTQ + 0x1000, VIRTQ + 0x2000)
    if w.rng.random() < 0.3:
        rings = tuple(w.rng.choice([VIRTQ, _wild_address(w), RAM_BASE + RAM_SIZE - 8, VIRTQ + 2]) for _ in range(3))
    descriptor = (w.rng.choice([_wild_address(w), VIRTQ + 0x3000, RAM_BASE + RAM_SIZE - 4]),
                  w.rng.choice([0, 8, 64, 4096, 0xFFFF_FFFF]), w.rng.choice([0, 0, DESC_NEXT, DESC_WRITE, DESC_INDIRECT, 7]),
                  w.rng.choice([0, 1, 7, 0xFFFF]))
    w.emit("wild_virtio", virtio_round(w.rng.choice([0, 1, 1, 2, 0xFFFF]), w.rng.choice([8, 8, 3, 0, 1024, 0xFFFF]),
                                       rings, descriptor).rstrip("\n").replace("    ", "", 1))


GICD, GICC = 0x0800_0000, 0x0801_0000  # QEMU virt's GICv2 (vlab.machine.gic)


def interrupt_storm(sgir: int, acks: int, complete: bool) -> str:
    """Its GIC on, every SGI and PPI enabled and made pending, SGIs by GICD_SGIR (`sgir`), its
    virtual timer firing at once -- with IRQs masked, so they stay pending in its list registers
    across world switches --, then `acks` interrupts taken from GICC_IAR, completed or left
    active. Uses x9, x10, x11."""
    lines = [f"    ldr     x9, ={GICD:#x}", "    mov     w10, #1", "    str     w10, [x9]",  # GICD_CTLR
             "    mov     w10, #-1", "    str     w10, [x9, #0x100]", "    str     w10, [x9, #0x200]",  # ISENABLER0, ISPENDR0
             f"    ldr     w10, ={sgir:#x}", "    str     w10, [x9, #0xf00]",  # GICD_SGIR
             f"    ldr     x9, ={GICC:#x}", "    mov     w10, #0xff", "    str     w10, [x9, #4]",  # GICC_PMR
             "    mov     w10, #1", "    str     w10, [x9]",  # GICC_CTLR
             "    msr     daifset, #2", "    mov     x10, #1", "    msr     cntv_tval_el0, x10", "    msr     cntv_ctl_el0, x10"]
    for _ in range(acks):
        lines += ["    ldr     w11, [x9, #0xc]"] + (["    str     w11, [x9, #0x10]"] if complete else [])  # IAR, EOIR
    return "\n".join(lines) + "\n"


def _interrupt_storm(w: _Writer) -> None:
    sgir = w.rng.choice([w.rng.randrange(1 << 32), 0x00FF_0000 | w.imm(15), 0x0100_0000 | w.imm(15), 0x0200_0000])
    w.emit("interrupt_storm", interrupt_storm(sgir, w.rng.randint(0, 3), w.rng.random() < 0.5).rstrip("\n")
           .replace("    ", "", 1))


HOSTILE = {  # kind -> (generator, weight), drawn beside SNIPPETS by program(seed, hostile=True)
    "ipa_store": (_ipa_store, 4), "ipa_sweep": (_ipa_sweep, 1), "alias_tables": (_alias_tables, 1.5),
    "tlbi_at": (_tlbi_at, 2), "wild_hypercall": (_wild_hypercall, 3), "cpu_on": (_cpu_on, 1),
    "el2_el3": (_el2_el3, 2), "exception_loop": (_exception_loop, 0.3), "wild_virtio": (_wild_virtio, 0.7),
    "interrupt_storm": (_interrupt_storm, 1),
}
# How a program ends: power off, spin for ever, wait for an interrupt that never comes
ENDINGS = ([["ldr     x0, =0x84000008", "hvc     #0"], ["wfi"], ["b       ."]], [90, 5, 5])
HOSTILE_ENDINGS = ([["ldr     x0, =0x84000008", "hvc     #0"], ["msr     daifset, #2", "wfi"], ["b       ."]],
                   [50, 15, 35])

_MMU_ON = f"""    ldr     x1, ={TABLES:#x}
    ldr     x2, =0x00000405              // VA 0 -> PA 0, 1 GiB of device memory (flash, UART)
    str     x2, [x1]
    ldr     x2, ={RAM_BASE | 0x701:#x}   // VA 0x4000_0000 -> RAM, normal memory
    str     x2, [x1, #8]
    str     x2, [x1, #16]                // VA 0x8000_0000 -> RAM too: an alias
""" + MMU_ON

KERNEL_SOURCE = """vectors:
    b       sync
    .balign 0x80
    b       irq
    .balign 0x200
    b       sync
    .balign 0x80
    b       irq
    .balign 0x200
    b       sync
    .balign 0x80
    b       irq
    .balign 0x400
sync:
    add     x26, x26, #1
    mrs     x23, esr_el1
    mrs     x24, far_el1
    mrs     x25, elr_el1
    lsr     x27, x23, #26
    cmp     x27, #0x15                   // SVC: ELR is after it; come back to EL1
    b.eq    to_el1
    cmp     x27, #0x0e                   // illegal execution state: retry with a legal SPSR
    b.eq    to_el1
    cmp     x27, #0x22                   // PC alignment fault: back to the caller
    b.eq    to_caller
    cmp     x27, #0x20                   // instruction aborts: back to the caller
    b.eq    to_caller
    cmp     x27, #0x21
    b.eq    to_caller
    cbnz    x27, skip
    and     x27, x25, #0xfffffffffffff000
    ldr     x28, =ZEROS_PAGE
    cmp     x27, x28
    b.eq    to_caller                    // udf #0 in the untouched page it was sent to: back
skip:
    add     x25, x25, #4                 // anything else: skip the instruction
    msr     elr_el1, x25
    b       back
to_caller:
    msr     elr_el1, x30
to_el1:
    mov     x27, #0x3c5
    msr     spsr_el1, x27
back:
    cmp     x26, #64
    b.hi    give_up
    eret
give_up:
    ldr     x0, =0x84000008
    hvc     #0
irq:
    msr     cntv_ctl_el0, xzr
    add     x29, x29, #1
    eret
"""


@functools.cache
def _kernel_segment() -> Segment:
    code = assemble(KERNEL_SOURCE.replace("=ZEROS_PAGE", f"={ZEROS:#x}"), KERNEL).code
    return Segment(KERNEL, code, len(code))


def program(seed: int, max_snippets: int = 24, hostile: bool = False) -> Program:
    """The program of `seed`: the same source and kinds on every call. `hostile`: a program of
    its own for the seed, with HOSTILE's snippets among the others (it ends by spinning more often)."""
    w = _Writer(random.Random(seed ^ 0x4057_11E if hostile else seed))
    table = SNIPPETS | HOSTILE if hostile else SNIPPETS
    kinds, weights = zip(*((kind, weight) for kind, (_, weight) in table.items()))
    head = ["_start:", f"    ldr     x0, ={KERNEL:#x}", "    msr     vbar_el1, x0", f"    ldr     x20, ={DATA:#x}",
            f"    ldr     x21, ={UART_BASE:#x}", f"    ldr     x0, ={STACK:#x}", "    mov     sp, x0"]
    if w.rng.random() < 0.1:  # no vector table: the first exception ends the run
        head[1:3] = []
        w.kinds.add("no_vectors")
    if w.rng.random() < 0.25:
        head.append(_MMU_ON.rstrip("\n"))
        w.kinds.add("mmu")
    for kind in w.rng.choices(kinds, weights, k=w.rng.randint(1, max_snippets)):
        table[kind][0](w)
    ending = w.rng.choices(*(HOSTILE_ENDINGS if hostile else ENDINGS))[0]
    source = "\n".join(head + w.lines + [f"    {line}" for line in ending]) + "\n"
    return Program(seed, source, frozenset(w.kinds))

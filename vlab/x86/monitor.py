"""A monitor for x86 kernels run at ring 3: trap, then emulate against the guest's virtual CPU.

The guest kernel believes it owns the machine at ring 0. The monitor runs it at
ring 3 and keeps, in Python, what the kernel may not hold for real -- its virtual
CPU: the interrupt flag it set (the real IF stays 1, the host keeps its
interrupts), and the GDTR, IDTR, TR and CR0 it loaded (the real ones stay the
host's). Three doors lead into the monitor, and all three end in the same
emulation of the same instructions:

    #GP (13)    the kernel ran a privileged instruction: cli, sti, hlt, lgdt, lidt,
                ltr, mov to or from cr0 -- classic trap-and-emulate
    INT 0x82    a paravirtualized kernel called the monitor instead (vlab.x86.paravirt)
    INT3 (3)    the binary translator put it where an instruction that would not have
                trapped stood (vlab.x86.translate); the monitor runs that instruction
                against the virtual CPU and resumes after it

What never reaches the monitor cannot be virtualized: that is Popek and
Goldberg's Theorem 1 failing on x86 (vlab.x86.sensitive).
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field

from vlab.x86 import paravirt
from vlab.x86.code import Instruction, Operand, decode
from vlab.x86.machine import BP, CR0_BOOT, GDT, GP, HOST_GDT, IDT, IDT_LIMIT, IF, RAM_SIZE, Trap, X86Machine

ARITHMETIC_FLAGS = 0xCD5  # CF PF AF ZF SF DF OF: flags the guest may own for real
EFLAGS_RESERVED = 0x2  # bit 1 always reads as 1
ENOSYS, EFAULT = -38, -14  # what an unknown or ill-pointed hypercall returns, as Xen answers


@dataclass
class VirtualCpu:
    """The state the guest believes it set, kept by the monitor. Starts as the bare machine boots."""

    interrupts: bool = False  # IF
    gdtr: tuple[int, int] = (len(HOST_GDT) - 1, GDT)  # (limit, base)
    idtr: tuple[int, int] = (IDT_LIMIT, IDT)
    tr: int = 0
    cr0: int = CR0_BOOT

    def flags(self, real: int) -> int:
        """EFLAGS as the guest should see them: its arithmetic flags, and its own IF."""
        return real & ARITHMETIC_FLAGS | EFLAGS_RESERVED | (IF if self.interrupts else 0)


@dataclass(frozen=True)
class Event:
    """One entry into the monitor: how (trap, hypercall, translated), where, what, and what it did."""

    door: str  # "#GP", "hypercall" or "translated"
    address: int
    instruction: str
    action: str

    def __str__(self) -> str:
        return f"{self.door:<10} {self.address:#07x}  {self.instruction:<22} -> {self.action}"


@dataclass
class Monitor:
    """Serve the traps of one guest on `machine`; `patches` are the translator's rewritten instructions."""

    machine: X86Machine
    patches: dict[int, Instruction] = field(default_factory=dict)
    vcpu: VirtualCpu = field(default_factory=VirtualCpu)
    events: list[Event] = field(default_factory=list)
    halted: bool = False
    failure: str | None = None  # why the guest could not go on, if it could not

    def counts(self) -> Counter:
        """How many times each door was used."""
        return Counter(e.door for e in self.events)

    def handle(self, trap: Trap) -> bool:
        """The machine's trap handler: True to resume the guest, False to stop it."""
        if trap.vector == GP:
            return self._privileged(trap.eip)
        if trap.vector == BP and trap.eip - 1 in self.patches:
            return self._translated(self.patches[trap.eip - 1])
        if trap.vector == paravirt.HYPERCALL_VECTOR:
            return self._hypercall(trap.eip - 2)
        return self._fail(trap.eip, f"exception {trap.vector} at {trap.eip:#x}: nothing in the monitor handles it")

    # --- the three doors ------------------------------------------------------------

    def _privileged(self, address: int) -> bool:
        insn = self._decode(address)
        if insn is None:
            return self._fail(address, f"#GP at {address:#x}, where no instruction decodes")
        try:
            action = self._emulate(insn)
        except ValueError as e:  # its memory operand is outside the guest's RAM
            return self._fail(address, f"#GP at {address:#x} `{insn.text}`: {e}")
        if action is None:
            return self._fail(address, f"#GP at {address:#x} `{insn.text}`: not an instruction this monitor emulates")
        self.events.append(Event("#GP", address, insn.text, action))
        return self._resume(insn)

    def _translated(self, insn: Instruction) -> bool:
        try:
            action = self._emulate(insn)
        except ValueError as e:
            return self._fail(insn.address, f"`{insn.text}` at {insn.address:#x}: {e}")
        if action is None:  # the translator rewrote something the monitor cannot run: a vlab bug
            raise RuntimeError(f"the translator rewrote `{insn.text}` at {insn.address:#x}, which no emulation covers")
        self.events.append(Event("translated", insn.address, insn.text, action))
        return self._resume(insn)

    def _hypercall(self, address: int) -> bool:
        number, argument = self.machine.reg("eax"), self.machine.reg("ebx")
        call = paravirt.HYPERCALLS.get(number)
        if call is None:
            result, action = ENOSYS, f"no hypercall {number}: eax = -ENOSYS"
        else:
            try:
                result, action = self._serve(call, argument)
            except ValueError as e:  # a pointer outside the guest's RAM
                result, action = EFAULT, f"{call}: {e}: eax = -EFAULT"
        if call != "halt":
            self.machine.set_reg("eax", result & 0xFFFF_FFFF)
        self.events.append(Event("hypercall", address, f"int 0x82 ({call or number})", action))
        return not self.halted

    def _resume(self, insn: Instruction) -> bool:
        if self.halted:
            return False
        self.machine.set_reg("eip", insn.address + insn.size)
        return True

    def _fail(self, address: int, why: str) -> bool:
        self.failure = why
        self.events.append(Event("failure", address, "", why))
        return False

    def _decode(self, address: int) -> Instruction | None:
        size = min(16, max(0, RAM_SIZE - address))
        return decode(self.machine.read(address, size), address) if size else None

    # --- the emulation all three share -----------------------------------------------

    def _emulate(self, insn: Instruction) -> str | None:
        """Perform `insn` against the virtual CPU; a line saying what it did, or None if it cannot."""
        m, ops, v = insn.mnemonic, insn.operands, self.vcpu
        if m in ("cli", "sti"):
            return self._set_interrupts(m == "sti")
        if m == "hlt":
            self.halted = True
            return "the guest halted"
        if m in ("lgdt", "lidt"):
            return self._load_table(m[1:] + "r", self._address(ops[0]))
        if m in ("sgdt", "sidt"):
            return self._store_table(m[1:] + "r", self._address(ops[0]))
        if m == "ltr":
            v.tr = self._read_operand(ops[0]) & 0xFFFF
            return f"virtual TR = {v.tr:#x}"
        if m in ("str", "smsw", "sldt"):
            value = {"str": v.tr, "smsw": v.cr0, "sldt": 0}[m]
            self._write_operand(ops[0], value)
            return f"{m}: the guest sees {value & (0xFFFF if ops[0].size == 2 else 0xFFFF_FFFF):#x}"
        if m == "mov" and ops[0].kind == "reg" and ops[0].reg == "cr0":
            return self._write_cr0(self._read_operand(ops[1]))
        if m == "mov" and len(ops) == 2 and ops[1].kind == "reg" and ops[1].reg == "cr0":
            self._write_operand(ops[0], v.cr0)
            return f"read the virtual CR0 = {v.cr0:#x} into {ops[0].reg}"
        if m in ("pushfd", "pushf"):
            width, flags = 4 if m == "pushfd" else 2, v.flags(self.machine.reg("eflags"))
            esp = self.machine.reg("esp") - width
            self.machine.write(esp, flags.to_bytes(4, "little")[:width])
            self.machine.set_reg("esp", esp)
            return f"pushed the virtual flags {flags:#x}"
        if m in ("popfd", "popf"):
            width = 4 if m == "popfd" else 2
            esp = self.machine.reg("esp")
            value = int.from_bytes(self.machine.read(esp, width), "little")
            self.machine.set_reg("esp", esp + width)
            return self._restore_flags(value)
        return None

    def _set_interrupts(self, on: bool) -> str:
        self.vcpu.interrupts = on
        return f"virtual IF = {int(on)}"

    def _restore_flags(self, value: int) -> str:
        real = self.machine.reg("eflags")
        self.machine.set_reg("eflags", real & ~ARITHMETIC_FLAGS | value & ARITHMETIC_FLAGS)
        self.vcpu.interrupts = bool(value & IF)
        return f"flags {value:#x}: virtual IF = {int(self.vcpu.interrupts)}"

    def _write_cr0(self, value: int) -> str:
        self.vcpu.cr0 = value & 0xFFFF_FFFF
        return f"virtual CR0 = {self.vcpu.cr0:#x}"

    def _load_table(self, name: str, address: int) -> str:
        limit, base = struct.unpack("<HI", self.machine.read(address, 6))
        setattr(self.vcpu, name, (limit, base))
        return f"virtual {name.upper()} = base {base:#x}, limit {limit:#x}"

    def _store_table(self, name: str, address: int) -> str:
        limit, base = getattr(self.vcpu, name)
        self.machine.write(address, struct.pack("<HI", limit, base))
        return f"stored the virtual {name.upper()} (base {base:#x}) at {address:#x}"

    def _serve(self, call: str, argument: int) -> tuple[int, str]:
        """One paravirtual operation (vlab.x86.paravirt lists them): its result and a line."""
        v = self.vcpu
        if call == "irq_disable":
            return 0, self._set_interrupts(False)
        if call == "irq_enable":
            return 0, self._set_interrupts(True)
        if call == "save_flags":
            flags = v.flags(self.machine.reg("eflags"))
            return flags, f"the virtual flags are {flags:#x}"
        if call == "restore_flags":
            return 0, self._restore_flags(argument)
        if call in ("load_gdt", "load_idt"):
            return 0, self._load_table(call[5:] + "r", argument)
        if call in ("store_gdt", "store_idt"):
            return 0, self._store_table(call[6:] + "r", argument)
        if call == "load_tr":
            v.tr = argument & 0xFFFF
            return 0, f"virtual TR = {v.tr:#x}"
        if call == "store_tr":
            return v.tr, f"the virtual TR is {v.tr:#x}"
        if call == "read_cr0":
            return v.cr0, f"the virtual CR0 is {v.cr0:#x}"
        if call == "write_cr0":
            return 0, self._write_cr0(argument)
        self.halted = True  # "halt"
        return 0, "the guest halted"

    # --- operands ------------------------------------------------------------------------

    def _address(self, op: Operand) -> int:
        if op.kind != "mem":
            raise ValueError(f"expected a memory operand, got {op}")
        base = self.machine.reg(op.base) if op.base else 0
        index = self.machine.reg(op.index) if op.index else 0
        return (base + index * op.scale + op.disp) & 0xFFFF_FFFF

    def _read_operand(self, op: Operand) -> int:
        if op.kind == "reg":
            return self.machine.reg(op.reg)
        if op.kind == "imm":
            return op.imm
        return int.from_bytes(self.machine.read(self._address(op), op.size), "little")

    def _write_operand(self, op: Operand, value: int) -> None:
        if op.kind == "reg":
            self.machine.set_reg(op.reg, value & ((1 << 8 * op.size) - 1))
        else:
            self.machine.write(self._address(op), (value & ((1 << 8 * op.size) - 1)).to_bytes(op.size, "little"))

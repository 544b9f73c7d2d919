"""Paravirtualization on x86: change the kernel's source to call the monitor where it touched the CPU.

The probe kernel does every sensitive thing through a macro, as Linux's
paravirt_ops route them through function pointers. Built natively, a macro is the
instruction itself; built paravirtual, it is a hypercall. A paravirtual kernel
never runs popfd, pushfd, sgdt, ... at all, so what those would reveal or drop at
ring 3 no longer matters: it asks the monitor, which answers from the virtual CPU.

Hypercalls: `int 0x82`, the number in eax, the argument in ebx, the result in eax --
the vector and registers of Xen's 32-bit x86 guests (xen/include/public/arch-x86/
xen-x86_32.h; Xen's HYPERCALL_VECTOR is 0x82). The operations and their numbers are
vlab's own, one per instruction of the probe kernel; an unknown number answers
-ENOSYS (-38) and a pointer outside the guest's RAM -EFAULT (-14), as Xen does.
(Xen's real x86 guests did the same jobs with set_gdt, set_trap_table, and an
interrupt mask in memory shared with Xen, which needs no hypercall at all.)

    macro             native              paravirtual (may clobber eax and ebx)
    IRQ_DISABLE       cli                 hypercall 1   irq_disable
    IRQ_ENABLE        sti                 hypercall 2   irq_enable
    SAVE_FLAGS        pushfd; pop eax     hypercall 3   save_flags       -> eax
    RESTORE_FLAGS     push eax; popfd     hypercall 4   restore_flags    ebx = eax
    LOAD_GDT m        lgdt [m]            hypercall 5   load_gdt         ebx = m
    STORE_GDT m       sgdt [m]            hypercall 6   store_gdt        ebx = m
    LOAD_IDT m        lidt [m]            hypercall 7   load_idt         ebx = m
    STORE_IDT m       sidt [m]            hypercall 8   store_idt        ebx = m
    LOAD_TR           ltr ax              hypercall 9   load_tr          ebx = ax
    STORE_TR          str ax              hypercall 10  store_tr         -> eax
    READ_CR0          mov eax, cr0        hypercall 11  read_cr0         -> eax
    WRITE_CR0         mov cr0, eax        hypercall 12  write_cr0        ebx = eax
    STORE_MSW         smsw ax             hypercall 11  read_cr0         -> eax
    HALT              hlt                 hypercall 13  halt
"""

from __future__ import annotations

HYPERCALL_VECTOR = 0x82

HYPERCALLS = {
    1: "irq_disable", 2: "irq_enable", 3: "save_flags", 4: "restore_flags", 5: "load_gdt", 6: "store_gdt",
    7: "load_idt", 8: "store_idt", 9: "load_tr", 10: "store_tr", 11: "read_cr0", 12: "write_cr0", 13: "halt",
}
NUMBER = {name: number for number, name in HYPERCALLS.items()}


def _call(name: str, argument: str = "") -> str:
    load = f"mov ebx, {argument}; " if argument else ""
    return f"{load}mov eax, {NUMBER[name]}; int {HYPERCALL_VECTOR:#x}"


# macro -> (native, paravirtual); {0} is the macro's argument
MACROS: dict[str, tuple[str, str]] = {
    "IRQ_DISABLE": ("cli", _call("irq_disable")),
    "IRQ_ENABLE": ("sti", _call("irq_enable")),
    "SAVE_FLAGS": ("pushfd; pop eax", _call("save_flags")),
    "RESTORE_FLAGS": ("push eax; popfd", _call("restore_flags", "eax")),
    "LOAD_GDT": ("lgdt [{0}]", _call("load_gdt", "{0}")),
    "STORE_GDT": ("sgdt [{0}]", _call("store_gdt", "{0}")),
    "LOAD_IDT": ("lidt [{0}]", _call("load_idt", "{0}")),
    "STORE_IDT": ("sidt [{0}]", _call("store_idt", "{0}")),
    "LOAD_TR": ("ltr ax", "movzx ebx, ax; " + _call("load_tr")),
    "STORE_TR": ("str ax", _call("store_tr")),
    "READ_CR0": ("mov eax, cr0", _call("read_cr0")),
    "WRITE_CR0": ("mov cr0, eax", _call("write_cr0", "eax")),
    "STORE_MSW": ("smsw ax", _call("read_cr0")),
    "HALT": ("hlt", _call("halt")),
}


def expand(source: str, paravirtual: bool) -> str:
    """The kernel's source with each macro line replaced by its native or its paravirtual form."""
    lines = []
    for line in source.splitlines():
        code, hash_, comment = line.partition("#")
        words = code.split(None, 1)
        if words and words[0] in MACROS:
            body = MACROS[words[0]][int(paravirtual)]
            argument = words[1].strip() if len(words) > 1 else ""
            indent = code[:len(code) - len(code.lstrip())]
            line = indent + body.format(argument) + (f"  {hash_}{comment}" if hash_ else "")
        lines.append(line)
    return "\n".join(lines)

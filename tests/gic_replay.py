"""QEMU as the GIC's oracle, register by register: replay QEMU's trace of a guest's GIC accesses on
vlab's model and compare every value read.

QEMU 7.2 traces each access to its GIC (`-trace gic_*`): distributor, CPU interface, virtual CPU
interface and GICH, with the value read or written, and each change of a device's line (the
timers' PPIs). Replaying the writes and line changes in order on vlab's GIC, and the reads too
(some have effects: GICC_IAR acknowledges), must give the value QEMU read, every time. Single-CPU
runs only: QEMU's distributor trace does not say which CPU accessed it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from vlab.machine.gic import GIC, MAINTENANCE_PPI
from vlab.machine.gic_virt import VirtualCpuInterface

_ACCESS = re.compile(
    r"^gic_(?:(?P<dist>dist)_(?P<dop>read|write) dist (?:read|write) at 0x(?P<doff>[0-9a-f]+) size (?P<size>\d+): "
    r"0x(?P<dval>[0-9a-f]+)"
    r"|cpu_(?P<cop>read|write) (?P<who>v?cpu) (?P<cpu>\d+) iface (?:read|write) at 0x(?P<coff>[0-9a-f]+):? "
    r"0x(?P<cval>[0-9a-f]+)"
    r"|hyp_(?P<hop>read|write) hyp (?:read|write) at 0x(?P<hoff>[0-9a-f]+): 0x(?P<hval>[0-9a-f]+)"
    r"|set_irq irq (?P<irq>\d+) level (?P<level>\d) cpumask 0x(?P<mask>[0-9a-f]+)"
    r"|update_set_irq cpu\[(?P<scpu>\d+)\]: (?P<signal>v?irq) = 1"
    r"|update_maintenance_irq cpu (?P<mcpu>\d+): maintenance = (?P<maintenance>\d)"
    r"|(?P<ack>acknowledge_irq) )",
    re.MULTILINE)


OUTPUTS = ("irq", "virq", "maintenance")


@dataclass(frozen=True)
class Access:
    """One line of QEMU's trace: a frame's register read or written, or a device line's new level."""

    frame: str  # "gicd", "gicc", "gicv", "gich"; "line" (a device's); "irq", "virq", "maintenance" (QEMU's outputs)
    is_write: bool
    offset: int  # the INTID, for a line
    value: int  # the level, for a line or an output
    size: int = 4
    cpu: int = 0

    def __str__(self) -> str:
        if self.frame == "line":
            return f"line {self.offset} of CPU{self.cpu} -> {self.value}"
        if self.frame in OUTPUTS:
            return f"QEMU's {self.frame} of CPU{self.cpu} = {self.value}"
        return f"{self.frame}+{self.offset:#x} {'<-' if self.is_write else '->'} {self.value:#x}"


def parse(trace: str) -> list[Access]:
    """The GIC accesses, line changes and QEMU's own output levels in a trace (stderr of
    `-trace gic_*`), in order. QEMU traces its IRQ and virtual IRQ lines only when it raises them,
    the maintenance interrupt at each update."""
    accesses: list[Access] = []
    after_ack = False  # QEMU traces a read after doing it: what an IAR's update raised comes first
    for m in _ACCESS.finditer(trace):
        if m["ack"]:
            after_ack = True
            continue
        if m["signal"] or m["maintenance"]:
            frame, cpu = (m["signal"], m["scpu"]) if m["signal"] else ("maintenance", m["mcpu"])
            output = Access(frame, False, 0, 1 if m["signal"] else int(m["maintenance"]), cpu=int(cpu))
            accesses.append(replace(output, size=0) if after_ack else output)  # size 0: check after the next read
            continue
        after_ack = False
        if m["dist"]:
            accesses.append(Access("gicd", m["dop"] == "write", int(m["doff"], 16), int(m["dval"], 16), int(m["size"])))
        elif m["cop"]:
            frame = "gicv" if m["who"] == "vcpu" else "gicc"
            accesses.append(Access(frame, m["cop"] == "write", int(m["coff"], 16), int(m["cval"], 16), 4, int(m["cpu"])))
        elif m["hop"]:
            accesses.append(Access("gich", m["hop"] == "write", int(m["hoff"], 16), int(m["hval"], 16)))
        else:
            cpu = (int(m["mask"], 16) & -int(m["mask"], 16)).bit_length() - 1
            accesses.append(Access("line", True, int(m["irq"]), int(m["level"]), cpu=cpu))
    return accesses


@dataclass(frozen=True)
class Mismatch:
    index: int
    access: Access
    got: int
    context: tuple[Access, ...]

    def __str__(self) -> str:
        before = "\n    ".join(map(str, self.context))
        what = "" if self.access.frame in OUTPUTS else "read "
        return f"event {self.index}: QEMU {what}{self.access}, vlab {self.got:#x}; before it:\n    {before}"


def replay(accesses: list[Access]) -> list[Mismatch]:
    """Run the accesses on a one-CPU GIC with its virtual interface; the reads that differ."""
    gic = GIC(cpus=1)
    virtual = VirtualCpuInterface(gic.distributor, 0)
    gicd, gicc = gic.devices(0)
    gich = virtual.hyp_frame()
    frames = {"gicd": gicd, "gicc": gicc, "gicv": virtual, "gich": gich}
    outputs = {"irq": lambda: int(gic.signal(0) == "IRQ"), "virq": lambda: int(virtual.signal() == "IRQ"),
               "maintenance": lambda: int(virtual.maintenance())}
    mismatches, deferred = [], []
    for i, access in enumerate(accesses):
        if access.frame in OUTPUTS:
            if access.size == 0:
                deferred.append((i, access))
            elif (got := outputs[access.frame]()) != access.value:
                mismatches.append(Mismatch(i, access, got, tuple(accesses[max(0, i - 6):i])))
            continue
        if access.frame == "line":
            if access.offset != MAINTENANCE_PPI:  # vlab's virtual interface drives its own
                gic.distributor.set_line(access.offset, bool(access.value), access.cpu)
            continue
        frame = frames[access.frame]
        if access.is_write:
            frame.write(access.offset, access.size, access.value)
        else:
            got = frame.read(access.offset, access.size)
            if got != access.value:
                mismatches.append(Mismatch(i, access, got, tuple(accesses[max(0, i - 6):i])))
            for j, output in deferred:
                if (got := outputs[output.frame]()) != output.value:
                    mismatches.append(Mismatch(j, output, got, tuple(accesses[max(0, j - 6):j])))
            deferred.clear()
    return mismatches

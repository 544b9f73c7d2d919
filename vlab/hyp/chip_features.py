"""What must a chip provide? Each mechanism vlab's hypervisor uses, the hardware feature that makes
it efficient, and what it costs without that feature -- measured now, both ways, on the same
guests: vlab runs each alternative.

    trap_controls()   EL2 and HCR_EL2's traps     vs binary translation, paravirtualization (chapter 7)
    stage2()          stage 2, VMID-tagged TLBs    vs shadow page tables (chapter 3, vlab.hyp.shadow)
    virtual_gic()     list registers, GICV         vs an exit per acknowledge and completion (chapter 4)
    virtual_timer()   the virtual timer, CNTVOFF   vs CNTHCTL_EL2 trapping every timer access
    smmu()            the SMMU                     vs untranslated DMA, or emulated devices (chapter 6)
    vhe()             VHE                          vs KVM's split mode (chapter 6)
    measure(name)     one of them by its name (FEATURES); gather() all six, in the course's order
    ChipTable(rows)   the rows as a table: HTML in a notebook, text anywhere

Every row holds `Measured` pairs: one quantity with the feature and without it. Each is a cost
-- exits, microseconds, wrong answers, bytes of a neighbour overwritten -- so the hardware
predicts the first is smaller (`Measured.as_predicted`), except where a feature has a price
(stage 2's longer walk). Host time is the best of `repeats` runs (a shared machine's noise only
adds), or for the hypervisor structures' exits vlab.hyp.type_costs' median of `repeats` pairs of
runs. Microseconds here are an emulator calling Python: compare them with each other, not with
the published cycle counts each row cites beside them.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from vlab.data import published
from vlab.guests import GUESTS
from vlab.guests.para_or_full import FULL
from vlab.hyp import cost, type_costs
from vlab.hyp.host import Host
from vlab.hyp.para_vs_full import run_in_vm, run_on_board
from vlab.hyp.scenarios import assignment
from vlab.hyp.shadow_compare import compare_paging
from vlab.hyp.smmu import Smmu
from vlab.hyp.type_costs import path_for
from vlab.hyp.vm import VM
from vlab.machine.timer import EL1PCEN, EL1PCTEN, TRAP_ALL_TIME
from vlab.x86 import answers, paravirt

IACK_EOI = "    ldr w5, [x10, #0xc]\n    str w5, [x10, #0x10]\n"  # GICC_IAR, then GICC_EOIR (x10 = GICC)


@dataclass(frozen=True)
class Measured:
    """One cost, measured in this run with the feature and without it. `price`: a cost the feature
    adds in return (the hardware predicts it higher with the feature)."""

    quantity: str
    with_feature: float
    without: float
    unit: str = ""
    price: bool = False

    @property
    def as_predicted(self) -> bool:
        """What the hardware predicts: the feature makes the cost smaller -- or, for its price, larger."""
        return self.without < self.with_feature if self.price else self.with_feature < self.without

    def text(self) -> str:
        return (f"{self.quantity}: {_with_unit(self.with_feature, self.unit)} with, "
                f"{_with_unit(self.without, self.unit)} without")


@dataclass(frozen=True)
class Row:
    """One mechanism: what vlab does, the hardware it relies on, what a hypervisor does without it."""

    name: str  # the feature, in a few words
    mechanism: str
    feature: str
    alternative: str
    measured: tuple[Measured, ...]
    notes: str  # how it was measured, and from which of the course's code
    published: tuple[str, ...] = ()  # published figures, labelled with their source and certainty
    chapter: str = ""

    def text(self) -> str:
        lines = [f"{self.name}: {self.mechanism} ({self.chapter})", f"  hardware: {self.feature}",
                 f"  without it: {self.alternative}"]
        lines += [f"  - {m.text()}" for m in self.measured]
        lines += [f"  {self.notes}"] + [f"  published: {p}" for p in self.published]
        return "\n".join(lines)


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:,.1f}"


def _with_unit(value: float, unit: str) -> str:
    return f"{_number(value)} {unit}" if unit else _number(value)


def _unbroken(text: str) -> str:
    """A number and its unit kept on one line in HTML."""
    return html.escape(text).replace(" ", "&nbsp;")


def _best(seconds, repeats: int) -> float:
    """The least of `repeats` timings of `seconds()`: noise on a shared machine only adds."""
    return min(seconds() for _ in range(repeats))


def _per_iteration(body: str, iterations: int, repeats: int, **vm_options) -> float:
    """Host microseconds of one `body` in a VM (options as VM's): a loop of it minus the same loop of
    NOPs, the two run in turn `repeats` times, the best of each -- so a burst of load falls on both."""
    def seconds(loop: str) -> float:
        return cost.run_seconds(cost.loop_program(loop, iterations), **vm_options)

    pairs = [(seconds(body), seconds("    nop\n")) for _ in range(repeats)]
    return max(0.0, min(op for op, _ in pairs) - min(nop for _, nop in pairs)) / iterations * 1e6


# --- EL2 and HCR_EL2 ---------------------------------------------------------------------------------

def trap_controls() -> Row:
    """The same question under trap-and-emulate with and without a CPU that traps every sensitive
    instruction: the unmodified AArch64 kernel (chapter 7's full build) in a VM against the bare
    board, and x86's probe kernel at ring 3 against bare x86; then what x86's answers change."""
    board, vm = run_on_board(FULL), run_in_vm(FULL)
    seen, bare = vm.identity.registers, board.identity.registers
    aarch64_wrong = sum(seen[name] != value for name, value in bare.items()) + (vm.printed != board.printed)
    x86 = answers.compare()
    x86_wrong = len(x86.differences("trap-and-emulate"))
    rewritten = x86.outcomes["binary translation"].translation
    source = answers.SOURCE.read_text()
    native, para = (paravirt.expand(source, pv).splitlines() for pv in (False, True))
    changed = sum(a != b for a, b in zip(native, para)) + abs(len(native) - len(para))
    return Row(
        "EL2 and HCR_EL2",
        "trap and emulate: the guest kernel runs directly, its sensitive acts trap to the hypervisor",
        "EL2 and HCR_EL2's trap controls (TWI, TSC, TACR, TID3, TVM...): every sensitive instruction is privileged",
        "binary translation (rewrite the kernel's code) or paravirtualization (rewrite its source)",
        (Measured(f"an unmodified kernel's wrong answers under trap and emulate (AArch64 of {len(bare) + 1}, "
                  f"x86 of {len(answers.PROBES)})", aarch64_wrong, x86_wrong),
         Measured(f"kernel instructions rewritten before it runs (binary translation, of {rewritten.decoded})", 0,
                  len(rewritten.patches)),
         Measured(f"kernel source lines changed (paravirtualization, of {len(native)})", 0, changed)),
        f"AArch64: chapter 7's full build in a VM with KVM's trap controls, {vm.total_exits:,} exits "
        f"({', '.join(f'{k} {n:,}' for k, n in sorted(vm.exits.items()))}). x86: binary translation "
        f"{rewritten.describe()}; the paravirtual build makes "
        f"{x86.outcomes['paravirtual'].events['hypercall']} hypercalls instead.",
        tuple(c.label() for c in published.X86_VIRTUALIZATION  # what binary translation, and early VT-x, cost
              if (c.operation, c.platform.split(" (")[0]) in {("call/ret", "bare hardware"),
                                                              ("call/ret", "software VMM"),
                                                              ("in (port I/O)", "bare hardware"),
                                                              ("in (port I/O)", "hardware VMM")}),
        "chapters 2 and 7")


# --- stage 2 -----------------------------------------------------------------------------------------

REMAPS = {"pages": 32, "rounds": 4}  # shadow_compare's guest that rewrites its page tables each round


def stage2() -> Row:
    """A guest that keeps changing its page tables (vlab.hyp.shadow_compare's "remaps": each round it
    remaps every page, then touches it) under the hardware's stage 2 and under shadow page tables:
    exits, the stores to its tables trapped, host time, and the walks' descriptors."""
    c = compare_paging("remaps", **REMAPS)
    if not c.same_result:
        raise RuntimeError(f"the guest ended differently under shadow paging: {'; '.join(c.differences)}")
    nested, shadow = c.nested, c.shadow
    return Row(
        "stage 2",
        "memory virtualization: the guest manages its own page tables, the hypervisor its IPA -> PA map",
        "the stage-2 MMU: a two-dimensional walk in hardware, TLB entries tagged with the VMID",
        "shadow page tables: write-protect the guest's tables, trap each change and TTBR/TCR/SCTLR (TVM), "
        "keep a VA -> PA table of the hypervisor's own",
        (Measured(f"exits of a guest remapping {REMAPS['pages']} pages {REMAPS['rounds']} times",
                  nested.total_exits, shadow.total_exits),
         Measured("stores to its page tables that exited", nested.shadow.get("table writes trapped", 0),
                  shadow.shadow["table writes trapped"]),
         Measured("host time of the run", nested.host_us / 1e3, shadow.host_us / 1e3, "ms"),
         Measured("descriptors read per TLB-miss walk (stage 2's price)", nested.references_per_walk,
                  shadow.references_per_walk, price=True)),
        f"The same guest, the same result both ways (vlab.hyp.shadow_compare). With stage 2 a TLB miss walks "
        f"both dimensions, (n+1)(m+1)-1 descriptors for n guest and m stage-2 levels; with shadows it walks "
        f"the guest's n alone, but every shadow entry the hypervisor fills ({shadow.shadow['shadow faults fixed']:,} "
        f"here) and every store to a guest table is an exit.",
        tuple(c.label() for c in published.X86_VIRTUALIZATION if c.operation == "page-table entry store")
        + ("nested paging's (n+1)(m+1)-1 references per TLB miss: usually credited to Bhargava et al., ASPLOS "
           "2008 (published; not yet checked against the paper)",),
        "chapter 3")


# --- the virtual GIC ---------------------------------------------------------------------------------

def ticks_run(**vm_options) -> tuple[VM, object]:
    """vlab/guests/ticks.S (three timer interrupts, each acknowledged and completed) in a VM made
    with `vm_options`; RuntimeError unless it prints what it must."""
    vm = VM.from_image(GUESTS["ticks"].image(), **vm_options)
    result = vm.run()
    if result.uart != GUESTS["ticks"].expected_uart:
        raise RuntimeError(f"ticks.S went wrong in a VM with {vm_options}: {result.message}")
    return vm, result


def exits_per_interrupt(vm: VM, result) -> float:
    """The exits one interrupt cost: the physical interrupt the hypervisor takes, and any exit for
    the guest's acknowledge (GICC_IAR) and completion (GICC_EOIR)."""
    taken = result.exits.get("IRQ", 0)
    gicc = sum(1 for a in vm.mmio_trace if a.device == "gicc" and a.register in ("GICC_IAR", "GICC_EOIR"))
    return (taken + gicc) / taken


def microseconds_per_iack_eoi(gic_cpu_interface: str, iterations: int = 300, repeats: int = 3) -> float:
    """Host microseconds of one GICC_IAR read and GICC_EOIR write in a VM (a loop of them, minus the
    same loop of NOPs), with the virtual CPU interface or an emulated one."""
    return _per_iteration(IACK_EOI, iterations, repeats, gic_cpu_interface=gic_cpu_interface)


def virtual_gic(iterations: int = 300, repeats: int = 3) -> Row:
    """ticks.S with the GIC's virtual CPU interface at its GICC, and with every GICC access an exit
    the hypervisor emulates (VM(gic_cpu_interface="emulated")): exits and host time."""
    runs = {mode: ticks_run(gic_cpu_interface=mode) for mode in ("virtual", "emulated")}
    per = {mode: exits_per_interrupt(*run) for mode, run in runs.items()}
    total = {mode: sum(result.exits.values()) for mode, (_, result) in runs.items()}
    us = {mode: microseconds_per_iack_eoi(mode, iterations, repeats) for mode in runs}
    whole = {mode: _best(lambda: cost.microseconds_per_virtual_interrupt(iterations, mode), repeats) for mode in runs}
    return Row(
        "the virtual GIC",
        "virtual interrupts: the hypervisor queues them, the guest acknowledges and completes them itself",
        "the GIC's virtualization extensions: list registers (GICH_LRn) and the virtual CPU interface (GICV)",
        "emulate the CPU interface: every GICC_IAR and GICC_EOIR an exit",
        (Measured("exits per timer interrupt (ticks.S)", per["virtual"], per["emulated"]),
         Measured("exits of the whole ticks.S run", total["virtual"], total["emulated"]),
         Measured("host time of an acknowledge and a completion (IAR + EOIR)", us["virtual"], us["emulated"], "us"),
         Measured("host time of a whole virtual interrupt", whole["virtual"], whole["emulated"], "us")),
        "Same guest, same output both ways; without list registers the hypervisor serves the same GICv2 "
        "registers in software (vlab.hyp.vgic.CpuInterfaceExits). The one exit that stays is the physical "
        "interrupt the hypervisor takes before it queues the virtual one. A whole interrupt is a long "
        "path on vlab (the WFI's exit to the loop, the timer, the vector), so the two exits weigh less there.",
        tuple(c.label() for c in published.INTERRUPT_CONTROLLER
              if c.operation == "virtual IRQ completion" and c.platform in ("KVM ARM", "KVM x86")),
        "chapter 4")


# --- the virtual timer -------------------------------------------------------------------------------

COUNTER_READ = "    mrs x5, cntvct_el0\n"
TIME_WAYS = {"virtual": EL1PCTEN | EL1PCEN, "trapped": TRAP_ALL_TIME}  # CNTHCTL_EL2: no trap, every access


def virtual_timer(iterations: int = 300, repeats: int = 3) -> Row:
    """ticks.S with its counter and timer the guest's own (the virtual timer, offset by CNTVOFF_EL2)
    and with CNTHCTL_EL2 trapping every access (the hypervisor emulating guest time): exits, and
    the host time of one counter read."""
    runs = {way: ticks_run(cnthctl=cnthctl) for way, cnthctl in TIME_WAYS.items()}
    exits = {way: result.exits.get("SYS64", 0) for way, (_, result) in runs.items()}
    per = {way: _per_iteration(COUNTER_READ, iterations, repeats, cnthctl=cnthctl)
           for way, cnthctl in TIME_WAYS.items()}
    return Row(
        "the virtual timer",
        "guest time: the guest reads its counter and programs its timer directly",
        "the virtual counter and timer (CNTVCT_EL0, CNTV_*), offset per VM by CNTVOFF_EL2",
        "trap every counter and timer access (CNTHCTL_EL2) and emulate the guest's time in software",
        (Measured("exits for ticks.S's counter and timer accesses", exits["virtual"], exits["trapped"]),
         Measured("host time of a counter read (CNTVCT_EL0)", per["virtual"], per["trapped"], "us")),
        f"ticks.S's {runs['virtual'][0].timer_accesses} counter and timer accesses, served by the timer itself, or "
        f"each a system-register exit (VM(cnthctl=TRAP_ALL_TIME): EL1PCTEN = EL1PCEN = 0, EL1TVT = EL1TVCT = 1); "
        "the same output either way. vlab sets CNTVOFF_EL2 when a VM starts, so its counter starts at 0 "
        "wherever the host's stands. Unicorn has no generic timer, so on vlab even the untrapped read is a "
        "Python hook: the time with the feature is vlab's floor, not the hardware's. The timer's interrupt is "
        "one exit with or without (the physical PPI 27 the hypervisor takes); the virtual GIC's list register "
        "then spares its completion.",
        (), "chapter 4")


# --- the SMMU ----------------------------------------------------------------------------------------

def dma_attack() -> dict[str, tuple[int, int]]:
    """A device passed through to one VM writes 11 bytes by DMA at its own buffer's IPA and at another
    VM's frame, through the SMMU and untranslated: (bytes that missed the VM's own buffer, bytes
    of the other VM overwritten), by way."""
    outcome = {}
    for way in ("SMMU", "no SMMU"):
        host = Host(memory=0x40_0000)
        mine = VM(host=host, stage2="scattered", ram_size=0x10_0000, seed=1)
        other = VM(host=host, stage2="scattered", ram_size=0x10_0000, seed=2)
        smmu = Smmu(host)
        if way == "SMMU":
            smmu.attach(1, mine)
        else:
            smmu.bypass(1)
        data, buffer = b"DMA PAYLOAD", mine.ram.base + 0x8000
        before = other.read_memory(other.ram.base, len(data))
        smmu.dma_write(1, buffer, data)  # the driver's address: an IPA of its own VM
        smmu.dma_write(1, other.memory.frame_of(other.ram.base), data)  # a wild one: the other VM's frame
        missed = sum(a != b for a, b in zip(mine.read_memory(buffer, len(data)), data))
        overwritten = sum(a != b for a, b in zip(other.read_memory(other.ram.base, len(data)), before))
        outcome[way] = (missed, overwritten)
    return outcome


def smmu(iterations: int = 300, repeats: int = 3) -> Row:
    """A device given to a VM: its DMA with and without the SMMU, and its register accesses passed
    through (what the SMMU makes safe) or emulated (the alternative without it)."""
    dma = dma_attack()
    exits = {how: assignment(64, how).results[0].exits.get("DABT_LOWER", 0) / 64 for how in ("passthrough", "shared")}
    # A passed-through read is a plain load: its cost is below the noise, and may come out negative.
    us = {kind: max(0.0, type_costs.microseconds_per_exit("none", kind, iterations, repeats=repeats))
          for kind in ("passthrough access", "emulated MMIO")}
    return Row(
        "the SMMU",
        "device assignment: a VM drives its own device, which does DMA at the addresses the guest gives it",
        "the SMMU: stage 2 for devices, each device's DMA translated by its VM's tables (and VMID)",
        "let DMA through untranslated (no isolation), or emulate the device: every access an exit",
        (Measured("DMA bytes that missed the guest's own buffer", dma["SMMU"][0], dma["no SMMU"][0]),
         Measured("bytes of another VM a wild DMA overwrote", dma["SMMU"][1], dma["no SMMU"][1]),
         Measured("exits per byte sent to the device (passthrough / emulated)", exits["passthrough"],
                  exits["shared"]),
         Measured("host time of a device-register read (passthrough / emulated)", us["passthrough access"],
                  us["emulated MMIO"], "us")),
        "vlab.hyp.smmu translates each stream through the stage 2 of the VM its device belongs to; a DMA "
        "outside it is an event, not a write. Passthrough (vlab.hyp.assign) maps the registers through stage 2: "
        "safe only with the SMMU, or the device's DMA goes wherever the guest points it.",
        (), "chapter 6")


# --- VHE ---------------------------------------------------------------------------------------------

def vhe(iterations: int = 300, repeats: int = 3) -> Row:
    """A hypercall's exit under KVM without VHE (split mode: the host kernel at EL1) and with it
    (the host kernel at EL2): the path each takes, and its host time."""
    paths = {hyp: path_for(hyp, "hypercall") for hyp in ("type2", "vhe")}
    us = {hyp: type_costs.microseconds_per_exit(hyp, "hypercall", iterations, repeats=repeats) for hyp in paths}
    return Row(
        "VHE",
        "a type 2 hypervisor: the host kernel (Linux with KVM) handles the guest's exits",
        "VHE (ARMv8.1, HCR_EL2.E2H): the host kernel runs at EL2, EL1's registers stay the guest's",
        "split mode: each exit switches the whole EL1 state to the host kernel and back",
        (Measured("world switches per hypercall", paths["vhe"].world_switches, paths["type2"].world_switches),
         Measured("registers saved and restored per hypercall", sum(paths["vhe"].moved().values()),
                  sum(paths["type2"].moved().values())),
         Measured("host time of one hypercall exit", us["vhe"], us["type2"], "us")),
        "The paths are vlab.hyp.type2's and vlab.hyp.vhe's, each performed on the physical CPU. On vlab a "
        "register moved costs little beside its Python exit path, so the time differs by less than the "
        "registers do.",
        tuple(c.label() for c in published.HYPERCALL if c.platform in ("KVM ARM", "Xen ARM"))
        + (f'redesigning KVM/ARM for VHE "can result in {published.VHE_CLAIM} performance improvement" '
           f"(published: {published.DALL_2017}; checked against its abstract)",),
        "chapter 6")


# --- the table ---------------------------------------------------------------------------------------

# Each row's name -> the function that measures it, in the order of the course.
FEATURES = {"EL2 and HCR_EL2": trap_controls, "stage 2": stage2, "the virtual GIC": virtual_gic,
            "the virtual timer": virtual_timer, "the SMMU": smmu, "VHE": vhe}
_TIMED = (virtual_gic, virtual_timer, smmu, vhe)  # the rows that time loops: of `iterations`, best of `repeats`


def measure(name: str, iterations: int = 300, repeats: int = 3) -> Row:
    """The row of feature `name` (one of FEATURES), measured now."""
    if name not in FEATURES:
        raise ValueError(f"no feature {name!r}: choose one of {', '.join(FEATURES)}")
    row = FEATURES[name]
    return row(iterations, repeats) if row in _TIMED else row()


def gather(iterations: int = 300, repeats: int = 3) -> list[Row]:
    """Every row, in the order of the course."""
    return [measure(name, iterations, repeats) for name in FEATURES]


class ChipTable:
    """The rows as one table: HTML in a notebook, text wherever there is no front end."""

    def __init__(self, rows: list[Row]):
        self.rows = rows

    @staticmethod
    def costs(row: Row) -> list[tuple[str, str, str]]:
        """A row's lines: (cost, with it, without)."""
        return [(m.quantity, _with_unit(m.with_feature, m.unit), _with_unit(m.without, m.unit))
                for m in row.measured]

    def __str__(self) -> str:
        """One line per measured cost: the feature, the cost, with it and without it."""
        lines = [("feature", "cost", "with it", "without")]
        for row in self.rows:
            lines += [(row.name if n == 0 else "", *cost_) for n, cost_ in enumerate(self.costs(row))]
        widths = [max(len(line[i]) for line in lines) for i in range(4)]
        return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}  {d:>{widths[3]}}".rstrip()
                         for a, b, c, d in lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        """The same lines as the text: the feature (and what stands in for it without) once per row."""
        left = "style='text-align:left; vertical-align:top'"  # JupyterLab right-aligns table cells
        right = "style='text-align:right; vertical-align:top'"
        head = (f"<tr><th {left}>the hardware feature</th><th {left}>cost</th><th {right}>with&nbsp;it</th>"
                f"<th {right}>without</th></tr>")
        body = []
        for row in self.rows:
            costs = self.costs(row)
            feature = (f"<td {left} rowspan='{len(costs)}'><b>{html.escape(row.name)}</b><br>"
                       f"<small>without it: {html.escape(row.alternative)}</small></td>")
            for n, (quantity, with_it, without) in enumerate(costs):
                body.append(f"<tr>{feature if n == 0 else ''}<td {left}>{html.escape(quantity)}</td>"
                            f"<td {right}>{_unbroken(with_it)}</td><td {right}>{_unbroken(without)}</td></tr>")
        return f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"

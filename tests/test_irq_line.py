"""The core's IRQ input (vlab.machine.irq_line): the core takes an IRQ by itself, where PSTATE.I
allows it, on the board and in a VM; a WFI does not wait while one is pending; each entry is
logged once, at the vector VBAR_EL1 names when it is taken."""

import pytest

from vlab.arch.hcr import HCR
from vlab.asm import assemble
from vlab.guests.mmu import MMU_ON
from vlab.hyp import VM, Host
from vlab.machine.board import Board, StopReason
from vlab.machine.irq_line import IrqLine
from vlab.machine.loader import image_from_program, load
from vlab.sched.registry import make_policy

# The GIC on, and SGI 3 sent to this CPU with IRQs masked: pending, signalled, not taken.
PEND_SGI_3_MASKED = """    msr daifset, #2
    ldr x9, =0x08000000
    ldr x10, =0x08010000
    mov w1, #1
    str w1, [x9]
    str w1, [x10]
    mov w1, #0xff
    str w1, [x10, #4]
    ldr w1, =0x02000003
    str w1, [x9, #0xf00]
"""
OFF = "    ldr x0, =0x84000008\n    hvc #0\n"
SPIN = "    b .\n"


def handler(mark: int) -> str:
    """An IRQ handler: acknowledge (into x8), complete, x5 = mark, return."""
    return f"    ldr w8, [x10, #0xc]\n    str w8, [x10, #0x10]\n    mov x5, #{mark}\n    eret\n"


def table(label: str, irq: str) -> str:
    return f"    .balign 0x800\n{label}:\n    b .\n    .balign 0x200\n    b .\n    .balign 0x80\n{irq}"


def machines(program, traps=HCR.TWI):
    image = image_from_program(program)
    board = Board()
    load(board, image)
    return {"board": board, "vm": VM.from_image(image, traps=traps)}


def run(machine, max_insns=100_000):
    return machine.run(max_insns=max_insns, timeout_s=30)


def x(machine, n):
    return machine.vcpus[0].x(n) if isinstance(machine, VM) else machine.cpu.x(n)


def irqs_taken(machine):
    taken = machine.vcpus[0].entry.taken if isinstance(machine, VM) else machine.exceptions_taken
    return [e for e in taken if e.vector.name == "IRQ"]


@pytest.mark.parametrize("where", ["board", "vm"])
def test_a_masked_interrupt_is_taken_right_after_the_instruction_that_unmasks_it(where):
    program = assemble(f"""    adr x0, vectors
    msr vbar_el1, x0
{PEND_SGI_3_MASKED}    mov x6, #1
    mov x7, #1
    msr daifclr, #2
after:
    mov x11, #1
{OFF}{table("vectors", handler(1))}""")
    machine = machines(program)[where]
    assert run(machine).reason is StopReason.POWERED_OFF
    assert (x(machine, 5), x(machine, 8), x(machine, 11)) == (1, 3, 1)  # SGI 3 from CPU 0, handled, returned
    [entry] = irqs_taken(machine)
    assert entry.return_address == program.address_of("after")
    assert entry.vector_address == program.address_of("vectors") + 0x280
    assert entry.from_el == 1


@pytest.mark.parametrize("where", ["board", "vm"])
def test_an_eret_that_unmasks_takes_the_interrupt_before_the_instruction_it_returns_to(where):
    program = assemble(f"""    adr x0, vectors
    msr vbar_el1, x0
{PEND_SGI_3_MASKED}    adr x1, back
    msr elr_el1, x1
    mov x1, #0x5                 // EL1h, DAIF clear
    msr spsr_el1, x1
    eret
back:
    mov x11, #1
{OFF}{table("vectors", handler(1))}""")
    machine = machines(program)[where]
    assert run(machine).reason is StopReason.POWERED_OFF
    [entry] = irqs_taken(machine)
    assert entry.return_address == program.address_of("back") and x(machine, 11) == 1


def test_a_wfi_with_an_interrupt_pending_does_not_trap_even_under_twi():
    # Arm ARM: HCR_EL2.TWI traps a WFI that would otherwise have entered a low-power state; with an
    # interrupt pending (masked or not) it would not, and completes at once.
    program = assemble(f"""    adr x0, vectors
    msr vbar_el1, x0
{PEND_SGI_3_MASKED}    wfi
    mov x6, #1
    wfi                          // nothing pending now? still SGI 3: it was never acknowledged
    mov x7, #1
{OFF}{table("vectors", handler(1))}""")
    for name, machine in machines(program).items():
        assert run(machine).reason is StopReason.POWERED_OFF, name
        assert (x(machine, 6), x(machine, 7)) == (1, 1), name
    vm = machines(program)["vm"]
    run(vm)
    assert vm.exits["WFX"] == 0


def test_a_wfi_with_nothing_pending_still_traps_under_twi():
    program = assemble(f"""    adr x0, vectors
    msr vbar_el1, x0
{PEND_SGI_3_MASKED}    ldr w8, [x10, #0xc]
    str w8, [x10, #0x10]         // SGI 3 acknowledged and completed: nothing pending
    mov w1, #1 << 27
    str w1, [x9, #0x100]         // GICD_ISENABLER0: the virtual timer's PPI 27
    ldr x1, =5000
    msr cntv_tval_el0, x1
    mov x1, #1
    msr cntv_ctl_el0, x1         // it fires 5,000 ticks from now
    wfi
    mov x6, #1
{OFF}{table("vectors", handler(1))}""")
    vm = machines(program)["vm"]
    assert run(vm).reason is StopReason.POWERED_OFF and vm.vcpus[0].x(6) == 1
    assert vm.exits["WFX"] == 1  # it trapped, and the vCPU slept until its timer fired


@pytest.mark.parametrize("where", ["board", "vm"])
def test_a_vector_that_branches_to_itself_is_entered_once_and_not_watched_while_the_core_spins_there(
        where, monkeypatch):
    visits = [0]
    original = IrqLine._on_vector

    def counted(self, *args):
        visits[0] += 1
        return original(self, *args)
    monkeypatch.setattr(IrqLine, "_on_vector", counted)
    program = assemble(f"""    adr x0, vectors
    msr vbar_el1, x0
{PEND_SGI_3_MASKED}    msr daifclr, #2
    b .
{table("vectors", SPIN)}""")
    machine = machines(program)[where]
    assert run(machine, max_insns=3_000_000).reason is StopReason.BUDGET
    assert len(irqs_taken(machine)) == 1
    assert visits[0] == 1  # not a Python call per spin: the budget is spent at the emulator's speed


@pytest.mark.parametrize("where", ["board", "vm"])
def test_the_interrupt_is_taken_at_the_vectors_vbar_names_when_it_is_taken(where):
    program = assemble(f"""    adr x0, first
    msr vbar_el1, x0
{PEND_SGI_3_MASKED}    adr x0, second
    msr vbar_el1, x0             // moved while the interrupt waits, masked
    msr daifclr, #2
    mov x11, #1
{OFF}{table("first", handler(1))}{table("second", handler(2))}""")
    machine = machines(program)[where]
    assert run(machine).reason is StopReason.POWERED_OFF
    assert x(machine, 5) == 2
    [entry] = irqs_taken(machine)
    assert entry.vector_address == program.address_of("second") + 0x280


# Watching the vectors is vlab's bookkeeping: it looks up the guest's code at VBAR_EL1 (to make
# Unicorn translate it again with the watch), a lookup no guest instruction made. Where that code
# is not mapped yet (a demand-paged page) or nowhere (no memory), the lookup must not become a
# translation fault the guest would see: an exit in its log, a page paged in, an abort injected.
UNTOUCHED_PAGE, NO_MEMORY, NOT_MAPPED_AT_STAGE_1 = 0x4008_0000, 0x7000_0000, 0x8000_0000
# With the MMU on: 1 GiB blocks, devices below RAM, RAM and what follows it; nothing from 2 GiB up.
MMU_TABLE = "    .balign 4096\ntable:\n    .quad 0x405\n    .quad 0x40000701\n    .quad 0\n    .quad 0\n"


@pytest.mark.parametrize("vbar, mmu", [(UNTOUCHED_PAGE, False), (NO_MEMORY, False), (UNTOUCHED_PAGE, True),
                                       (NO_MEMORY, True), (NOT_MAPPED_AT_STAGE_1, True)])
@pytest.mark.parametrize("where", ["board", "vm", "demand-paged vm"])
def test_watching_the_vectors_makes_no_fault_the_guest_would_see(where, vbar, mmu):
    program = assemble(f"""{"    adr x1, table" + chr(10) + MMU_ON if mmu else ""}    ldr x0, ={vbar:#x}
    msr vbar_el1, x0
{PEND_SGI_3_MASKED}    mov x6, #1
{OFF}{MMU_TABLE if mmu else ""}""")
    image = image_from_program(program)
    if where == "board":
        machine = Board()
        load(machine, image)
    else:
        machine = VM.from_image(image, traps=HCR.TWI, ram_size=0x10_0000,
                                stage2="demand" if where.startswith("demand") else "contiguous")
    result = run(machine)
    assert result.reason is StopReason.POWERED_OFF, result.message  # no abort injected on the way
    assert x(machine, 6) == 1 and irqs_taken(machine) == []
    if where != "board":
        touched = [r for r in machine.trap_log if r.exit is not None and r.exit.ipa is not None
                   and r.exit.ipa >> 12 == vbar >> 12]
        assert touched == [], touched[0].action
        if vbar == UNTOUCHED_PAGE and where.startswith("demand"):
            assert machine.memory.frame_of(vbar) is None  # not paged in


def test_a_vcpu_loaded_with_its_interrupt_pending_looks_up_its_vectors_in_its_own_tables():
    # B, its interrupt pending, moves between two physical CPUs that also run A1 and A2, whose
    # demand-paged tables have nothing where B's vectors are. The IRQ line of a core B comes to
    # is asserted as B is loaded, and its watch looks up B's vectors then: in A's tables, that was a
    # stage-2 fault retried for ever (found by the neighbour fuzzer).
    host = Host(pcpus=2, scheduler=make_policy("rr", 2, slice_ticks=1_000))
    spinners = [VM.from_source("    b .\n", host=host, stage2="demand", ram_size=0x10_0000) for _ in range(2)]
    b = VM.from_source(f"""    ldr x0, =0x40004000
    msr vbar_el1, x0
{PEND_SGI_3_MASKED}    mov x6, #1
spin:
    b spin
""", host=host, stage2="contiguous", ram_size=0x10_0000)
    host.run(max_insns=20_000, timeout_s=30)
    assert b.vcpus[0].x(6) == 1 and irqs_taken(b) == []
    assert all(a.memory.frame_of(0x4000_4000) is None for a in spinners)
    assert {s.pcpu for s in host.scheduler.trace.segments if s.entity == b.vcpus[0].entity} == {0, 1}  # B moved

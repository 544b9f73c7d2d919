"""CNTHCTL_EL2 trapping the guest's time (VM(cnthctl=TRAP_ALL_TIME)): every counter and timer access
the virtual timer would serve becomes one exit, the hypervisor emulates it, and the guest cannot tell."""

import pytest

from vlab.arch.esr import ExceptionClass, SysRegAccess
from vlab.arch.sysregs import name_of
from vlab.guests import GUESTS
from vlab.guests.para_or_full import FULL
from vlab.hyp.vm import VM
from vlab.machine.loader import image_from_program
from vlab.asm import assemble
from vlab.machine.timer import EL1PCEN, EL1PCTEN, TRAP_ALL_TIME

NO_TRAPS = EL1PCTEN | EL1PCEN


def run(image, cnthctl, **options):
    vm = VM.from_image(image, cnthctl=cnthctl, **options)
    return vm, vm.run()


@pytest.mark.parametrize("image, options", [
    (GUESTS["ticks"].image(), {}), (GUESTS["ticks"].image(), {"stage2": "scattered"}),
    (FULL.image(), {"ram_size": 0x40_0000}),
], ids=["ticks", "ticks-stage2", "para_or_full"])
def test_each_timer_access_becomes_one_exit_and_the_guest_runs_the_same(image, options):
    (native_vm, native), (trapped_vm, trapped) = run(image, NO_TRAPS, **options), run(image, TRAP_ALL_TIME, **options)
    same = ("uart", "registers", "instructions")
    assert [getattr(trapped, f) for f in same] == [getattr(native, f) for f in same]
    assert native_vm.timer_accesses > 0 and trapped_vm.timer_accesses == 0
    assert trapped.exits["SYS64"] - native.exits.get("SYS64", 0) == native_vm.timer_accesses
    names = [name_of(SysRegAccess.from_iss(t.exit.syndrome.iss).encoding) for t in trapped_vm.trap_log
             if t.kind == "SYS64"]
    assert all(name.startswith("CNT") for name in names)


def test_the_first_exit_of_ticks_is_its_counter_read_and_the_hypervisor_answers_it():
    vm, _ = run(GUESTS["ticks"].image(), TRAP_ALL_TIME)
    first = next(t for t in vm.trap_log if t.kind == "SYS64")
    access = SysRegAccess.from_iss(first.exit.syndrome.iss)
    assert first.exit.ec is ExceptionClass.SYS64 and access.is_read and access.rt == 1
    assert name_of(access.encoding) == "CNTVCT_EL0" and "read CNTVCT_EL0" in first.action


SPIN = """    adr x0, vectors
    msr vbar_el1, x0
{gic}    mov x20, #0
    mov x1, #500
    msr cntv_tval_el0, x1
    mov x1, #1
    msr cntv_ctl_el0, x1
    msr daifclr, #2
spin:
    add x20, x20, #1
    b spin
    .balign 0x800
vectors:
    .space 0x280                   // to the IRQ vector (current EL, SP_ELx): the tick ends the run
    ldr x0, =0x84000008
    hvc #0
"""


def test_a_timer_armed_through_a_trap_fires_at_the_same_instruction():
    from vlab.guests import GIC_TIMER_ON

    image = image_from_program(assemble(SPIN.format(gic=GIC_TIMER_ON)))
    (_, native), (_, trapped) = run(image, NO_TRAPS), run(image, TRAP_ALL_TIME)
    assert native.registers["x20"] > 50 and trapped.registers["x20"] == native.registers["x20"]
    assert trapped.instructions == native.instructions


EL0_READ = """    adr x0, vectors
    msr vbar_el1, x0
    mov x0, #{cntkctl}
    msr cntkctl_el1, x0
    adr x0, user
    msr elr_el1, x0
    msr spsr_el1, xzr
    eret
user:
    mrs x1, cntvct_el0
    svc #0
    b .
    .balign 0x800
vectors:
    b .
    .balign 0x400
    mrs x2, esr_el1
    ldr x0, =0x84000008
    hvc #0
"""


@pytest.mark.parametrize("allowed", [False, True], ids=["CNTKCTL refuses EL0", "CNTKCTL lets EL0 read"])
def test_an_el0_read_traps_to_el1_first_when_cntkctl_refuses_it_else_to_el2(allowed):
    image = image_from_program(assemble(EL0_READ.format(cntkctl=2 if allowed else 0)))  # EL0VCTEN
    (_, native), (vm, trapped) = run(image, NO_TRAPS), run(image, TRAP_ALL_TIME)
    expected_ec = ExceptionClass.SVC64 if allowed else ExceptionClass.SYS64  # what the guest kernel took
    assert native.registers["x2"] >> 26 == trapped.registers["x2"] >> 26 == expected_ec
    el2 = [t.exit for t in vm.trap_log if t.kind == "SYS64"]
    assert [(e.el, name_of(SysRegAccess.from_iss(e.syndrome.iss).encoding)) for e in el2] == \
        ([(0, "CNTVCT_EL0")] if allowed else [])


@pytest.mark.parametrize("cnthctl, message", [
    (1 << 2, "vlab honours EL1PCTEN, EL1PCEN, EL1TVT and EL1TVCT"),
    (EL1PCTEN, "all or not at all"),
])
def test_a_cnthctl_vlab_cannot_honour_is_refused(cnthctl, message):
    with pytest.raises(ValueError, match=message):
        VM(cnthctl=cnthctl)

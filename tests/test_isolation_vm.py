"""What a VM itself answers, as the hardware and the firmware interface define it (issue 19, items 5 and 8)."""

from __future__ import annotations

import pytest

from machines import RECORDING_VECTORS, run_on
from vlab.asm import assemble
from vlab.guests.mmu import MMU_ON
from vlab.hyp import VM
from vlab.machine.board import StopReason
from vlab.machine.loader import image_from_program

OFF = "    ldr x0, =0x84000008\n    hvc #0\n"
CPU_ON, CPU_OFF = 0xC400_0003, 0x8400_0002
INVALID_ADDRESS = 2**64 - 9  # PSCI (Arm DEN 0022) INVALID_ADDRESS, -9, in x0


def on_board(source: str):
    return run_on("board", image_from_program(assemble(source)))


@pytest.mark.parametrize("layout", ["contiguous", "scattered", "demand"])
def test_at_with_the_mmu_off_gives_par_el1_as_the_board_does(layout):
    # MMU off: the VA is the address; PAR_EL1 holds PA[47:12] = 0x40001, NS (bit 9) and bit 11 (RES1).
    source = "    ldr x1, =0x40001234\n    at s1e1r, x1\n    mrs x2, par_el1\n" + OFF
    assert on_board(source).registers["x2"] == 0x4000_1A00
    result = VM.from_source(source, stage2=layout).run(max_insns=10_000)
    assert result.registers["x2"] == 0x4000_1A00


def test_cpu_on_with_a_misaligned_entry_point_is_invalid_address():
    source = f"""    ldr x0, ={CPU_ON:#x}
    mov x1, #1
    adr x2, secondary
    add x2, x2, #2
    hvc #0
    mov x10, x0
{OFF}
secondary:
    mov x11, #1
    b .
"""
    vm = VM.from_source(source, vcpus=2)
    result = vm.run(max_insns=10_000)
    assert result.reason is StopReason.POWERED_OFF, result.message
    assert result.registers["x10"] == INVALID_ADDRESS
    assert vm.vcpus[1].x(11) == 0, "the secondary never ran"


def test_step_after_system_off_executes_nothing():
    vm = VM.from_source(OFF + "    mov x5, #5\n    b .\n")
    off = vm.run(max_insns=100)
    assert off.reason is StopReason.POWERED_OFF
    result = vm.step()
    assert result.reason is StopReason.POWERED_OFF
    assert vm.vcpus[0].x(5) == 0 and result.pc == off.pc and result.instructions == off.instructions


def test_run_result_registers_are_the_boot_vcpus():
    # vCPU1 is the last to run (it powers the VM off); the result must show vCPU0, as documented.
    source = f"""    mov x5, #0xb0
    ldr x0, ={CPU_ON:#x}
    mov x1, #1
    adr x2, secondary
    hvc #0
wait:
    b wait
secondary:
    mov x5, #0x5e
{OFF}"""
    vm = VM.from_source(source, vcpus=2)
    result = vm.run(max_insns=1_000_000)
    assert result.reason is StopReason.POWERED_OFF, result.message
    assert result.registers["x5"] == vm.vcpus[0].x(5) == 0xB0


# --- a VM without stage 2: an access to nothing stands for a stage-2 miss, found by its physical address --

# Level-1 table at 0x4001_0000: VA 0x4000_0000 -> itself (1 GiB), VA 0 -> PA 0 (1 GiB, device: the UART),
# and VA 0x8000_0000 -> PA 0 too. The kernel prints through the alias and faults at VA 0xC000_0000,
# which nothing maps. vlab now reports FAR as the virtual address; the VM must find the IPA elsewhere.
MMU_ALIAS = """    adr     x0, vectors
    msr     vbar_el1, x0
    ldr     x1, =0x40010000
    ldr     x2, =0x00000405
    str     x2, [x1]
    ldr     x2, =0x40000701
    str     x2, [x1, #8]
    ldr     x2, =0x00000405
    str     x2, [x1, #16]
""" + MMU_ON + """    ldr     x3, =0x89000000          // the UART's data register, through the alias
    mov     w4, #0x4f
    str     w4, [x3]
    mov     w4, #0x4b
    str     w4, [x3]
    ldr     x3, =0xc0000010
    ldr     x4, [x3]                 // a stage-1 translation fault: the guest kernel's, not the VM's
    b       .
""" + RECORDING_VECTORS


def test_a_vm_without_stage2_emulates_a_device_the_guest_maps_at_another_address_and_leaves_its_faults_to_it():
    bare = on_board(MMU_ALIAS)
    vm = VM.from_source(MMU_ALIAS)
    result = vm.run(max_insns=10_000)
    assert bare.uart == result.uart == "OK"
    assert result.registers["x20"] == bare.registers["x20"] == (0x25 << 26) | (1 << 25) | 0x05, "level 1"
    assert result.registers["x21"] == bare.registers["x21"] == 0xC000_0010
    exits = [r.exit for r in vm.trap_log if r.exit is not None and r.exit.ec.name == "DABT_LOWER"]
    assert [e.ipa for e in exits] == [0x0900_0000, 0x0900_0000] and [e.far for e in exits] == [0x8900_0000] * 2


def test_an_illegal_return_is_caught_after_a_world_switch_brought_its_vcpu_back():
    # Two vCPUs take turns on one physical CPU, 2,000 ticks each. vCPU1 writes an illegal SPSR_EL1 (vlab
    # starts watching its instructions), spins past its slice, then returns with it; meanwhile vCPU0 writes a
    # legal one (vlab stops watching). When vCPU1 comes back, its SPSR must be looked at again.
    from vlab.hyp.host import Host
    from vlab.sched.round_robin import RoundRobin

    source = f"""    adr     x0, vectors
    msr     vbar_el1, x0
    ldr     x0, ={CPU_ON:#x}
    mov     x1, #1
    adr     x2, secondary
    hvc     #0
again:
    mov     x1, #0x3c5
    msr     spsr_el1, x1           // legal
    b       again
secondary:
    adr     x0, vectors
    msr     vbar_el1, x0
    adr     x1, target
    msr     elr_el1, x1
    mov     x1, #0x3c9             // to EL2: illegal
    msr     spsr_el1, x1
    ldr     x2, =3000
spin:
    subs    x2, x2, #1
    b.ne    spin
    eret
target:
    b       .
    .balign 0x800
vectors:
    .space  0x200
    mrs     x20, esr_el1
{OFF}"""
    vm = VM.from_source(source, vcpus=2, host=Host(1, scheduler=RoundRobin(2_000)))
    result = vm.run(max_insns=100_000)
    assert result.reason is StopReason.POWERED_OFF, result.message
    assert vm.vcpus[1].x(20) == (0x0E << 26) | (1 << 25), f"ESR_EL1 = {vm.vcpus[1].x(20):#x}"

"""Xen's ARM hypercalls from real AArch64 guests in VMs: HVC #0xEA1 exits, served by vlab.hyp.xen.

Every VM routes HVC #0xEA1 to Xen's handlers (vlab.hyp.handlers.handle_hvc), HVC #0 stays PSCI and
vlab's own calls, and any other immediate is an undefined instruction for the guest, as on Xen.
"""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from vlab.arch.esr import ExceptionClass
from vlab.hyp import VM, Host
from vlab.machine.board import RAM_BASE, StopReason
from vlab.guests import GIC_TIMER_ON

U64 = (1 << 64) - 1
EFAULT, EINVAL, ENOSYS = -14 & U64, -22 & U64, -38 & U64
OFF = "    ldr x0, =0x84000008\n    hvc #0\n"
RAM = 0x10_0000

GUEST = """
_start:
    mov     x16, #18               // console_io(CONSOLEIO_write, count, buffer)
    mov     x0, #0
    mov     x1, #31
    adr     x2, message
    hvc     #0xea1
    mov     x20, x0
    mov     x16, #17               // xen_version(XENVER_version)
    mov     x0, #0
    hvc     #0xea1
    mov     x21, x0
    mov     x16, #48               // vlab_domain_info(VLAB_DOMAIN_self)
    mov     x0, #0
    hvc     #0xea1
    mov     x22, x0
    mov     x16, #99               // nothing Xen has
    hvc     #0xea1
    mov     x23, x0
    mov     x16, #18               // console_io from an address with no RAM
    mov     x0, #0
    mov     x1, #4
    mov     x2, #0x1000
    hvc     #0xea1
    mov     x24, x0
    mov     x19, #0x600d
    mov     x16, #29               // sched_op(SCHEDOP_shutdown, &reason)
    mov     x0, #2
    adr     x1, reason
    hvc     #0xea1
    b       .                      // not reached

message:
    .ascii  "Hello from a paravirtual guest\\n"
    .balign 4
reason:
    .word   0                      // SHUTDOWN_poweroff
"""


def test_a_paravirtual_guest_prints_asks_and_powers_off_through_xen_hypercalls():
    vm = VM.from_source(GUEST)
    result = vm.run(max_insns=10_000)
    assert result.reason is StopReason.POWERED_OFF, result.message
    assert "poweroff" in result.message
    assert result.uart == "Hello from a paravirtual guest\n"  # the VM's console: what a run reports as uart
    regs = result.registers
    assert regs["x19"] == 0x600D
    assert regs["x20"] == 0  # console_io succeeded
    assert regs["x21"] == 4 << 16 | 19  # Xen 4.19's interface
    assert regs["x22"] == 1  # alone on its host: domain 1
    assert regs["x23"] == ENOSYS
    assert regs["x24"] == EFAULT
    assert result.exits == {"HVC64": 6}  # one exit per hypercall, each served in place or by the loop
    assert all("xen" in r.action.lower() or "console_io" in r.action or "domain" in r.action
               or "hypercall" in r.action for r in vm.trap_log)


WHO_AM_I = f"""
    mov     x16, #48               // vlab_domain_info(VLAB_DOMAIN_self)
    mov     x0, #0
    hvc     #0xea1
    mov     x20, x0
    mov     x16, #48               // vlab_domain_info(VLAB_DOMAIN_list, ids, 8)
    mov     x0, #1
    adr     x1, ids
    mov     x2, #8
    hvc     #0xea1
    mov     x21, x0
    adr     x1, ids
    ldr     x22, [x1]              // four u16 domain ids
{OFF}
    .balign 8
ids:
    .space  16
"""


def test_a_paravirtual_guest_learns_its_domain_id_and_who_else_runs_on_the_host():
    host = Host(pcpus=1)
    vms = [VM.from_source(WHO_AM_I, host=host, stage2="contiguous", ram_size=RAM) for _ in range(3)]
    results = host.run(max_insns=10_000).vms
    for i, result in enumerate(results):
        assert result.reason is StopReason.POWERED_OFF, result.message
        assert result.registers["x20"] == i + 1
        assert result.registers["x21"] == 3
        assert result.registers["x22"] == 1 | 2 << 16 | 3 << 32  # [1, 2, 3] as domid_t (u16) each
    assert all(vm.exits["HVC64"] == 3 for vm in vms)


VECTORS = """
    .balign 2048
vectors:
    .space  0x200
    mrs     x20, esr_el1           // current EL, SPx, synchronous
    mrs     x21, elr_el1
""" + OFF


def test_an_hvc_with_any_other_immediate_is_an_undefined_instruction_for_the_guest():
    vm = VM.from_source(f"""
    adr     x1, vectors
    msr     vbar_el1, x1
    mov     x16, #18
    ldr     x0, =0x84000008        // PSCI SYSTEM_OFF, if the hypervisor wrongly served it
hvc7:
    hvc     #7
    b       .
{VECTORS}""")
    result = vm.run(max_insns=1_000)
    assert result.reason is StopReason.POWERED_OFF, result.message
    esr = result.registers["x20"]
    assert esr >> 26 == ExceptionClass.UNKNOWN and esr >> 25 & 1 == 1  # EC 0, IL 1, ISS 0
    assert esr & 0x1FF_FFFF == 0
    assert result.registers["x21"] == vm.trap_log[0].exit.address  # ELR_EL1: the HVC itself
    assert "undefined" in vm.trap_log[0].action


def test_sched_op_block_sleeps_until_the_timer_fires_and_yield_returns_at_once():
    vm = VM.from_source(f"""{GIC_TIMER_ON}
    mrs     x1, cntvct_el0
    add     x1, x1, #4000
    msr     cntv_cval_el0, x1
    mov     x2, #1                 // enabled; PSTATE.I (set at reset) keeps the interrupt from being taken
    msr     cntv_ctl_el0, x2
    mov     x16, #29
    mov     x0, #1                 // SCHEDOP_block
    hvc     #0xea1
    mov     x20, x0
    mrs     x21, cntvct_el0
    mov     x22, x1
    mov     x16, #29
    mov     x0, #0                 // SCHEDOP_yield
    hvc     #0xea1
    mov     x23, x0
{OFF}""")
    result = vm.run(max_insns=1_000)
    assert result.reason is StopReason.POWERED_OFF, result.message
    regs = result.registers
    assert regs["x20"] == 0 and regs["x23"] == 0
    assert regs["x21"] >= regs["x22"]  # woke no earlier than its timer's deadline
    assert result.instructions < 100  # it slept: the 4,000 ticks were not spent running
    actions = [r.action for r in vm.trap_log]
    assert any("block" in a for a in actions) and any("yield" in a for a in actions)


def test_a_yield_hands_the_physical_cpu_to_the_other_vm_at_once():
    host = Host(pcpus=1)
    polite = VM.from_source("""
    mov     x16, #29
    mov     x0, #0                 // SCHEDOP_yield
    hvc     #0xea1
    mov     x19, #1
    ldr     x0, =0x84000008
    hvc     #0
""", host=host, stage2="contiguous", ram_size=RAM)
    other = VM.from_source("    mov x19, #2\n" + OFF, host=host, stage2="contiguous", ram_size=RAM)
    host.run(max_insns=1_000)
    ran = [s.entity.vm for s in host.trace.segments]
    assert ran[:3] == [polite.index, other.index, polite.index]


def shutdown_guest(reason: int) -> str:
    return f"""
    mov     x16, #29
    mov     x0, #2                 // SCHEDOP_shutdown
    adr     x1, reason
    hvc     #0xea1
    b       .
    .balign 4
reason:
    .word   {reason}
"""


def test_shutdown_for_reboot_resets_the_domain_and_a_crash_powers_it_off_saying_so():
    reboot = VM.from_source(shutdown_guest(1)).run(max_insns=100)
    crash = VM.from_source(shutdown_guest(3)).run(max_insns=100)
    assert reboot.reason is StopReason.RESET and "reboot" in reboot.message
    assert crash.reason is StopReason.POWERED_OFF and "crash" in crash.message


# --- wild pointers: an answer, never a Python error, and nothing outside the VM touched --------

def ram_digest(vm: VM) -> str:
    return hashlib.sha256(vm.read_memory(RAM_BASE, vm.ram_size)).hexdigest()


POINTERS = st.one_of(
    st.integers(0, U64),
    st.integers(RAM_BASE + RAM - 64, RAM_BASE + RAM + 64),  # straddling the end of RAM
    st.integers(0, 64).map(lambda n: RAM_BASE - n),  # just below it
)


def accessed(number: int, command: int, pointer: int, count: int) -> int:
    """How many bytes at `pointer` the call reads or writes (Xen's structures, written out)."""
    if number == 17:
        return 16 if command == 1 else 8  # char[16] extraversion, struct xen_feature_info
    if number == 18:
        return count & 0xFFFF_FFFF  # count is 32 bits
    if number == 29:
        return 4  # struct sched_shutdown
    return 2 * min(count & 0xFFFF_FFFF, 1)  # one domain on the host: one domid_t


@settings(max_examples=25)
@given(st.sampled_from([(17, 1), (17, 6), (18, 0), (29, 2), (48, 1)]), POINTERS, st.integers(0, 1 << 33))
def test_a_hypercall_with_a_wild_pointer_gets_efault_and_touches_only_its_own_vm(call, pointer, count):
    """xen_version extraversion/features, console_io, sched_op shutdown, the domain list: each reads
    or writes at `pointer`. The caller's neighbour on the host must be untouched."""
    number, command = call
    args = (command, count, pointer) if number == 18 else (command, pointer, count)
    host = Host(pcpus=1)
    caller = VM.from_source(f"""
    mov     x16, #{number}
    ldr     x0, ={args[0]:#x}
    ldr     x1, ={args[1]:#x}
    ldr     x2, ={args[2]:#x}
    hvc     #0xea1
    mov     x20, x0
    mov     x19, #0x600d
{OFF}""", host=host, stage2="scattered", ram_size=RAM, seed=1)
    neighbour = VM.from_source("    b .\n", host=host, stage2="scattered", ram_size=RAM, seed=2)
    before = ram_digest(neighbour)
    result = host.run(max_insns=1_000, vms=[caller]).vms[0]
    assert result.reason is not StopReason.ERROR, result.message
    assert ram_digest(neighbour) == before
    size = accessed(number, command, pointer, count)
    if number == 48 and count & 0xFFFF_FFFF > 0x7FF0:
        assert result.registers["x20"] == EINVAL  # more room than domains can exist: refused first
    elif size and not RAM_BASE <= pointer <= RAM_BASE + RAM - size:
        assert result.registers["x19"] == 0x600D and result.registers["x20"] == EFAULT
    else:  # inside RAM: served (a shutdown ends the domain with the reason it read)
        assert result.registers["x19"] != 0x600D or result.registers["x20"] != EFAULT

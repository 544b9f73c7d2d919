"""Xen's ARM hypercalls from a real AArch64 guest in a VM: HVC #0xEA1 exits, served by vlab.hyp.xen.

Until the VM routes HVC #0xEA1 itself, the test puts the Xen handler in front of the
VM's own HVC handler (HVC #0 stays PSCI and vlab's calls), through the VM's dispatch
table, and gives it the VM's console and power-off.
"""

from __future__ import annotations

from vlab.arch.esr import ExceptionClass
from vlab.hyp import xen
from vlab.hyp.handlers import handle_hvc
from vlab.hyp.vm import VM
from vlab.machine.board import StopReason

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


def xen_vm() -> VM:
    vm = VM.from_source(GUEST)
    services = xen.XenServices(
        console_write=lambda vcpu, data: vcpu.platform.console(data),
        yield_=lambda vcpu: vcpu.yield_cpu(),
        block=lambda vcpu: vcpu.wait_for_interrupt(),
        shutdown=lambda vcpu, reason: vcpu.halt(StopReason.POWERED_OFF, f"Xen shutdown, reason {reason}")
        or "the domain is powered off",
        domain_id=lambda vcpu: 7,
        domain_ids=lambda: [0, 7],
    )
    serve_xen = xen.xen_handler(services)
    vm.set_handler(ExceptionClass.HVC64,
                   lambda vcpu, exit: serve_xen(vcpu, exit) if xen.is_xen_hypercall(exit) else handle_hvc(vcpu, exit))
    return vm


def test_a_paravirtual_guest_prints_asks_and_powers_off_through_xen_hypercalls():
    vm = xen_vm()
    result = vm.run(max_insns=10_000)
    assert result.reason is StopReason.POWERED_OFF, result.message
    assert result.uart == "Hello from a paravirtual guest\n"
    regs = result.registers
    assert regs["x19"] == 0x600D
    assert regs["x20"] == 0  # console_io succeeded
    assert regs["x21"] == 4 << 16 | 19  # Xen 4.19's interface
    assert regs["x22"] == 7  # its domain id
    assert regs["x23"] == (-38) & (1 << 64) - 1  # -ENOSYS
    assert regs["x24"] == (-14) & (1 << 64) - 1  # -EFAULT
    assert result.exits["HVC64"] == 6  # one exit per hypercall

"""The hypervisor's exit handlers: one per exception class, each `handler(vcpu, exit) -> str`.

A handler emulates what the guest tried to do, moves the guest on (`vcpu.skip(exit)`
after a trapped instruction), and returns one line saying what it did, for the trap
log. `DEFAULT_HANDLERS` is the dispatch table a VM starts with; print it to see the
whole hypervisor at a glance.

vlab's own hypercalls (HVC #0 with the function id in x0), in the SMCCC range for
vendor-specific hypervisor services (owner 6, fast calls):

    0x8600_0001  VLAB_PUTC    x1 = a byte to print on the VM's console; x0 = 0
    0x8600_0002  VLAB_WRITE   x1 = guest address, x2 = length (<= 4096); x0 = bytes written or -2
"""

from __future__ import annotations

from typing import Callable

from vlab.arch.esr import DataAbort, ExceptionClass, FaultStatus, Syndrome, SysRegAccess
from vlab.arch.sysregs import BY_ENCODING, name_of
from vlab.hyp.exits import Exit
from vlab.hyp.vcpu import VCpu
from vlab.machine import psci

Handler = Callable[[VCpu, Exit], str]

VLAB_PUTC = 0x8600_0001
VLAB_WRITE = 0x8600_0002
VLAB_WRITE_MAX = 4096
_U64 = (1 << 64) - 1


def handle_sysreg(vcpu: VCpu, exit: Exit) -> str:
    """A trapped MRS/MSR: perform it on the vCPU's own copy of the register, then skip it."""
    access = SysRegAccess.from_iss(exit.syndrome.iss)
    reg = BY_ENCODING.get(access.encoding)
    if reg is None:
        return vcpu.inject(exit, Syndrome(ExceptionClass.UNKNOWN), f"no register {name_of(access.encoding)}")
    if access.is_read:
        value = vcpu.read_sysreg(reg.name)
        vcpu.set_x(access.rt, value)
        action = f"read {reg.name} = {value:#x} into x{access.rt}"
    else:
        value = vcpu.x(access.rt)
        vcpu.write_sysreg(reg.name, value)
        action = f"wrote x{access.rt} = {value:#x} to the vCPU's {reg.name}"
    vcpu.skip(exit)
    return action


def handle_wfx(vcpu: VCpu, exit: Exit) -> str:
    """A trapped WFI: the vCPU gives up the core until its virtual timer fires."""
    vcpu.skip(exit)
    return vcpu.wait_for_interrupt()


def handle_hvc(vcpu: VCpu, exit: Exit) -> str:
    """A hypercall: PSCI (power management) or one of vlab's own. HVC has completed: no skip."""
    return hypercall(vcpu, exit)


def handle_smc(vcpu: VCpu, exit: Exit) -> str:
    """An SMC trapped by HCR_EL2.TSC: the hypervisor plays the firmware, then skips the SMC."""
    vcpu.skip(exit)
    return hypercall(vcpu, exit)


def hypercall(vcpu: VCpu, exit: Exit) -> str:
    """Serve the call whose function id is in x0; the result goes back in x0."""
    fid = vcpu.x(0) & 0xFFFF_FFFF
    if psci.is_psci(fid):
        return vcpu.vm.psci(vcpu, fid)
    if fid == VLAB_PUTC:
        vcpu.vm.uart.write(0, 1, vcpu.x(1) & 0xFF)
        vcpu.set_x(0, 0)
        return f"VLAB_PUTC {chr(vcpu.x(1) & 0xFF)!r}"
    if fid == VLAB_WRITE:
        return _vlab_write(vcpu)
    vcpu.set_x(0, psci.PsciReturn.NOT_SUPPORTED & _U64)
    return f"unknown hypercall {fid:#x}: x0 = NOT_SUPPORTED (-1)"


def _vlab_write(vcpu: VCpu) -> str:
    address, length = vcpu.x(1), vcpu.x(2)
    ram = vcpu.ram
    if length > VLAB_WRITE_MAX or not ram.contains(address, max(length, 1)):
        vcpu.set_x(0, psci.PsciReturn.INVALID_PARAMETERS & _U64)
        return f"VLAB_WRITE of {length} bytes at {address:#x}: not inside the VM's RAM, x0 = -2"
    for byte in vcpu.read_memory(address, length):
        vcpu.vm.uart.write(0, 1, byte)
    vcpu.set_x(0, length)
    return f"VLAB_WRITE {length} bytes from {address:#x}"


def handle_data_abort(vcpu: VCpu, exit: Exit) -> str:
    """A stage-2 data abort: emulate the device at that IPA, or give the guest an external abort."""
    abort = DataAbort.from_iss(exit.syndrome.iss)
    fixed = resolve_in_ram(vcpu, exit, abort.wnr)
    if fixed:
        return fixed
    device = vcpu.vm.device_at(exit.ipa)
    if device is None:
        return inject_external_abort(vcpu, exit, f"no device at IPA {exit.ipa:#x}")
    if not abort.isv:
        return inject_external_abort(vcpu, exit, "ISV = 0: the access is not one a hypervisor can emulate "
                                                 "from the syndrome (a pair, writeback or SIMD)")
    offset = exit.ipa - device.base
    if abort.wnr:
        value = vcpu.x(abort.srt) & ((1 << (8 * abort.size)) - 1)
        vcpu.vm.mmio(vcpu, device, offset, abort.size, value, is_write=True)
        action = f"{device.name}.{device.register_name(offset)} <- {value:#x}"
    else:
        value = vcpu.vm.mmio(vcpu, device, offset, abort.size, 0, is_write=False)
        if abort.sse and value >> (8 * abort.size - 1) & 1:
            value -= 1 << (8 * abort.size)
        vcpu.set_x(abort.srt, value & (_U64 if abort.sf else 0xFFFF_FFFF))
        action = f"{device.name}.{device.register_name(offset)} -> {value & _U64:#x} into x{abort.srt}"
    vcpu.skip(exit)
    return action


def resolve_in_ram(vcpu: VCpu, exit: Exit, write: bool) -> str | None:
    """A stage-2 fault on the VM's own RAM (demand paging, dirty tracking): fix the mapping and retry."""
    memory = vcpu.vm.memory
    action = memory.resolve(exit.ipa, write) if memory is not None else None
    if action:
        vcpu.flush_tlb()  # the guest re-executes the instruction under the new stage-2 entry
    return action


def handle_instruction_abort(vcpu: VCpu, exit: Exit) -> str:
    """The guest fetched an instruction from an IPA without RAM: page it in, or nothing can run there."""
    return resolve_in_ram(vcpu, exit, write=False) or inject_external_abort(vcpu, exit, f"instruction fetch from IPA {exit.ipa:#x}, outside the VM's RAM")


def inject_external_abort(vcpu: VCpu, exit: Exit, why: str) -> str:
    """What the guest sees for an access to nothing: a synchronous external abort, at its own level."""
    fetch = exit.ec is ExceptionClass.IABT_LOWER
    lower = exit.el == 0
    if fetch:
        ec = ExceptionClass.IABT_LOWER if lower else ExceptionClass.IABT_CURRENT
        syndrome = Syndrome(ec, FaultStatus.SYNC_EXTERNAL)
    else:
        ec = ExceptionClass.DABT_LOWER if lower else ExceptionClass.DABT_CURRENT
        syndrome = Syndrome(ec, DataAbort(FaultStatus.SYNC_EXTERNAL, wnr=DataAbort.from_iss(exit.syndrome.iss).wnr).iss)
    return vcpu.inject(exit, syndrome, why)


DEFAULT_HANDLERS: dict[ExceptionClass, Handler] = {
    ExceptionClass.SYS64: handle_sysreg,
    ExceptionClass.WFX: handle_wfx,
    ExceptionClass.HVC64: handle_hvc,
    ExceptionClass.SMC64: handle_smc,
    ExceptionClass.DABT_LOWER: handle_data_abort,
    ExceptionClass.IABT_LOWER: handle_instruction_abort,
}


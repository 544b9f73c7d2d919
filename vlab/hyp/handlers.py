"""The hypervisor's exit handlers: one per exception class, each `handler(vcpu, exit) -> str`.

A handler emulates what the guest tried to do, moves the guest on (`vcpu.skip(exit)`
after a trapped instruction), and returns one line saying what it did, for the trap
log. It reaches the VM's devices, firmware and console through `vcpu.platform`.
`DEFAULT_HANDLERS` is the dispatch table a VM starts with; print it to see the
whole hypervisor at a glance.

vlab's own hypercalls (HVC #0 with the function id in x0), in the SMCCC range for
vendor-specific hypervisor services (owner 6, fast calls):

    0x8600_0001  VLAB_PUTC    x1 = a byte to print on the VM's console; x0 = 0
    0x8600_0002  VLAB_WRITE   x1 = guest address, x2 = length (<= 4096); x0 = bytes written or -2

and Xen's ARM hypercalls (HVC #0xEA1, the number in x16; vlab.hyp.xen). Any other HVC
immediate is undefined for the guest, as Xen makes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from vlab.arch.esr import DataAbort, ExceptionClass, FaultStatus, Syndrome, SysRegAccess
from vlab.arch import ldst
from vlab.arch.sysregs import BY_ENCODING, name_of
from vlab.hyp import xen
from vlab.hyp.exits import Exit
from vlab.machine import psci
from vlab.machine.board import Device
from vlab.machine.timer import TRAPPED_BY_CNTHCTL

if TYPE_CHECKING:
    from vlab.hyp.vcpu import VCpu
    from vlab.hyp.vm import VM

Handler = Callable[["VCpu", Exit], str]

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
    if reg.name in TRAPPED_BY_CNTHCTL:  # the guest's time, emulated: the vCPU's counter and timers
        written = vcpu.x(access.rt)
        _, value = vcpu.timer.handle(access, written)
        vcpu.skip(exit)
        if access.is_read:
            vcpu.set_x(access.rt, value)
            return f"read {reg.name} = {value:#x} into x{access.rt}, from the vCPU's emulated timer"
        return f"wrote x{access.rt} = {written:#x} to {reg.name} of the vCPU's emulated timer"
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
    """A trapped WFI: the vCPU gives up its physical CPU until its virtual timer fires."""
    vcpu.skip(exit)
    return vcpu.wait_for_interrupt()


def handle_hvc(vcpu: VCpu, exit: Exit) -> str:
    """A hypercall: HVC #0 is PSCI (power management) or one of vlab's own, HVC #0xEA1 is Xen's.
    HVC has completed: no skip."""
    if xen.is_xen_hypercall(exit):
        return xen.serve(vcpu, exit)
    immediate = exit.syndrome.iss & 0xFFFF
    if immediate != 0:
        return vcpu.inject(exit, Syndrome(ExceptionClass.UNKNOWN), f"HVC #{immediate:#x} is neither PSCI's #0 "
                           f"nor Xen's #{xen.XEN_HYPERCALL_TAG:#x}: undefined, as on Xen")
    return hypercall(vcpu, exit)


def handle_smc(vcpu: VCpu, exit: Exit) -> str:
    """An SMC trapped by HCR_EL2.TSC: the hypervisor plays the firmware, then skips the SMC."""
    vcpu.skip(exit)
    return hypercall(vcpu, exit)


def hypercall(vcpu: VCpu, exit: Exit) -> str:
    """Serve the call whose function id is in x0; the result goes back in x0."""
    fid = vcpu.x(0)
    if psci.is_psci(fid):  # all 64 bits of x0, as QEMU's firmware compares them
        return vcpu.platform.psci(fid)
    fid &= 0xFFFF_FFFF  # vlab's own read W0, as the SMC Calling Convention has it
    if fid == VLAB_PUTC:
        byte = vcpu.x(1) & 0xFF
        vcpu.platform.console(bytes([byte]))
        vcpu.set_x(0, 0)
        return f"VLAB_PUTC {chr(byte)!r}"
    if fid == VLAB_WRITE:
        return _vlab_write(vcpu)
    vcpu.set_x(0, psci.PsciReturn.NOT_SUPPORTED & _U64)
    return f"unknown hypercall {fid:#x}: x0 = NOT_SUPPORTED (-1)"


def _vlab_write(vcpu: VCpu) -> str:
    address, length = vcpu.x(1), vcpu.x(2)
    if length > VLAB_WRITE_MAX or not vcpu.ram.contains(address, max(length, 1)):
        vcpu.set_x(0, psci.PsciReturn.INVALID_PARAMETERS & _U64)
        return f"VLAB_WRITE of {length} bytes at {address:#x}: not inside the VM's RAM, x0 = -2"
    vcpu.platform.console(vcpu.read_memory(address, length))
    vcpu.set_x(0, length)
    return f"VLAB_WRITE {length} bytes from {address:#x}"


def handle_data_abort(vcpu: VCpu, exit: Exit) -> str:
    """A stage-2 data abort: fix the VM's own RAM, emulate the device at that IPA, or give the guest
    an external abort."""
    abort = DataAbort.from_iss(exit.syndrome.iss)
    fixed = vcpu.platform.resolve_stage2(exit.ipa, abort.wnr)
    if fixed:
        return fixed  # the guest re-executes the instruction under the new stage-2 entry
    device = vcpu.platform.device_at(exit.ipa)
    if device is None:
        return inject_external_abort(vcpu, exit, f"no device at IPA {exit.ipa:#x}")
    if not abort.isv:
        return inject_external_abort(vcpu, exit, "ISV = 0: the access is not one a hypervisor can emulate "
                                                 "from the syndrome (a pair, writeback or SIMD)")
    value, action = emulate_mmio(vcpu, device, exit, abort, vcpu.x(abort.srt))
    if not abort.wnr:
        write_loaded_value(vcpu, abort, value)
    vcpu.skip(exit)
    return action


def write_loaded_value(vcpu: VCpu, abort: DataAbort, value: int) -> None:
    """An emulated load completes: the device's `value` (`abort.size` bytes) goes into the load's
    register, sign- or zero-extended as the syndrome says (SSE, SF)."""
    if abort.sse and value >> (8 * abort.size - 1) & 1:
        value -= 1 << (8 * abort.size)
    vcpu.set_x(abort.srt, value & (_U64 if abort.sf else 0xFFFF_FFFF))


def emulate_mmio(vcpu: VCpu, device: Device, exit: Exit, abort: DataAbort, stored: int,
                 where: str | None = None) -> tuple[int, str]:
    """The device access an MMIO exit stands for: the value read (the access's `abort.size` bytes,
    not yet extended into a register) or written (`stored`, cut to size), and the log line.
    `where` names the register ("uart.UARTFR"), when the caller knows it already."""
    offset = exit.ipa - device.base
    where = where or f"{device.name}.{device.register_name(offset)}"
    mask = (1 << (8 * abort.size)) - 1  # only the access's own bytes: a byte load of a wider register reads its low byte
    if abort.wnr:
        value = stored & mask
        vcpu.platform.mmio(device, offset, abort.size, value, is_write=True)
        return value, f"{where} <- {value:#x}"
    value = vcpu.platform.mmio(device, offset, abort.size, 0, is_write=False) & mask
    return value, f"{where} -> {value:#x} into x{abort.srt}"


def serve_mmio(vcpu: VCpu, exit: Exit, abort: DataAbort, stored: int, device: Device | None = None,
               where: str | None = None) -> int:
    """`handle_data_abort`'s device emulation, served in place from inside a device access: the
    emulator then completes the load (extending the value into the register) or the store."""
    value, action = emulate_mmio(vcpu, device or vcpu.platform.device_at(exit.ipa), exit, abort, stored, where)
    vcpu.vm.record_in_place(vcpu, exit, action)
    return value


def mmio_syndrome(vm: VM, word: int, ipa: int, el: int, is_write: bool) -> Syndrome:
    """The ESR_EL2 of a guest access to an emulated device at `ipa` by the instruction `word`: a
    stage-2 translation fault at the level the VM's tables miss, with the instruction syndrome when
    the access has one."""
    fsc = FaultStatus.TRANSLATION_L0 + vm.stage2_miss_level(ipa)
    iss = ldst.abort_iss(fsc, word)
    return Syndrome(ExceptionClass.DABT_LOWER, DataAbort(fsc, wnr=is_write).iss if iss is None else iss)


def handle_instruction_abort(vcpu: VCpu, exit: Exit) -> str:
    """The guest fetched an instruction from an IPA without RAM: page it in, or nothing can run there."""
    return vcpu.platform.resolve_stage2(exit.ipa, False) or inject_external_abort(
        vcpu, exit, f"instruction fetch from IPA {exit.ipa:#x}, outside the VM's RAM")


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

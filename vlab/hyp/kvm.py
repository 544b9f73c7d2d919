"""What KVM's two structures share (vlab.hyp.type2 without VHE, vlab.hyp.vhe with it): the host
kernel serves every exit, and hands a device it does not emulate to the VMM in user space.

    exit -> (the structure's way into the host kernel) -> handle_exit()
                -> an in-kernel device, or KVM_EXIT_MMIO: back to the VMM (QEMU, kvmtool) with
                   kvm_run's MMIO record, which it emulates; ioctl(KVM_RUN) completes the access
         -> (the structure's way back into the guest)

KVM's own split (arch/arm64/kvm/handle_exit.c, `arm_exit_handlers[]` by ESR_EL2.EC) is vlab's
dispatch table, run by the host kernel; the VMM sees only `kvm_run`, never the vCPU's registers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from vlab.arch.esr import DataAbort
from vlab.hyp.exits import Exit
from vlab.hyp.structure import BATCHED, GPRS, Moved, Path, Step, Structure
from vlab.hyp.vcpu import VCpu
from vlab.machine.register_frame import RegisterFrame

VMM = "VMM (EL0)"
VMM_REGISTERS = [0x7F_F000_0000 + 8 * i for i in range(GPRS)]  # the VMM's, as its ioctl() left them


def to_vmm(kernel: str) -> tuple[Step, ...]:
    """The round trip from the host kernel (the layer called `kernel`) to the VMM and back."""
    vmm_registers = (Moved("general-purpose", GPRS, "VMM", BATCHED),)
    return (Step(kernel, "not a device the kernel emulates: KVM_EXIT_MMIO in kvm_run, back to user space"),
            Step(VMM, "return to the VMM", restored=vmm_registers),
            Step(VMM, "the VMM emulates the device from kvm_run (address, data, length, direction)"),
            Step(kernel, "ioctl(KVM_RUN): the kernel completes the access (kvm_handle_mmio_return)",
                 saved=vmm_registers))


@dataclass
class KvmRunMmio:
    """What KVM hands the VMM for KVM_EXIT_MMIO (struct kvm_run's `mmio`): nothing of the vCPU but this."""

    phys_addr: int
    data: int
    len: int
    is_write: bool


class Kvm(Structure):
    """KVM on `host`: devices named in `in_kernel` are emulated by the host kernel, every other one by
    the VMM. A subclass says how an exit gets into the host kernel and back (`_enter`, `_leave`)
    and gives its three paths."""

    KERNEL_PATH: Path
    IN_KERNEL_DEVICE: Path
    VMM_PATH: Path

    def __init__(self, host, in_kernel: tuple[str, ...] = ()):
        super().__init__(host)
        self.in_kernel = frozenset(in_kernel)
        self._vmms: dict[int, RegisterFrame] = {}  # VM index -> its VMM's registers

    def _enter(self, vcpu: VCpu):
        """From the guest into the host kernel; what `_leave` needs to go back."""
        raise NotImplementedError

    def _leave(self, vcpu: VCpu, token) -> None:
        raise NotImplementedError

    def dispatch(self, inner: Callable, vcpu: VCpu, exit: Exit, served: str) -> tuple:
        token = self._enter(vcpu)
        try:
            outcome = inner(vcpu, exit, served)
        finally:
            self._leave(vcpu, token)
        self.record(vcpu, exit, self.KERNEL_PATH)
        return outcome

    def serve_mmio(self, inner: Callable, vcpu: VCpu, exit: Exit, abort: DataAbort, stored: int, device=None,
                   where: str | None = None) -> int:
        token = self._enter(vcpu)
        try:
            device = device or vcpu.platform.device_at(exit.ipa)
            if device.name in self.in_kernel:
                value, path = inner(vcpu, exit, abort, stored, device, where), self.IN_KERNEL_DEVICE
            else:
                value, path = self._vmm_round_trip(vcpu, token[0], exit, abort, stored, device), self.VMM_PATH
        finally:
            self._leave(vcpu, token)
        self.record(vcpu, exit, path)
        return value

    def _vmm_round_trip(self, vcpu: VCpu, cpu, exit: Exit, abort: DataAbort, stored: int, device) -> int:
        """KVM_EXIT_MMIO: the VMM's registers onto the core (its return from the ioctl), the device
        emulated from kvm_run alone, the VMM's registers saved again as it calls KVM_RUN."""
        run = KvmRunMmio(exit.ipa, stored & ((1 << (8 * abort.size)) - 1) if abort.wnr else 0, abort.size, abort.wnr)
        frame = self._vmms.get(vcpu.vm.index)
        if frame is None:
            frame = self._vmms[vcpu.vm.index] = RegisterFrame()
            frame.load(VMM_REGISTERS)
        frame.restore(cpu)
        run.data = vmm_emulate(vcpu.platform, run)
        frame.save(cpu)
        where = f"{device.name}.{device.register_name(exit.ipa - device.base)}"
        action = f"{where} <- {run.data:#x}" if run.is_write else f"{where} -> {run.data:#x} into x{abort.srt}"
        vcpu.vm.record_in_place(vcpu, exit, f"{action} (KVM_EXIT_MMIO: the VMM in user space)")
        return run.data


def vmm_emulate(platform, run: KvmRunMmio) -> int:
    """The VMM's side of KVM_EXIT_MMIO: find its device at `run.phys_addr` and perform the access;
    the value read (or written)."""
    device = platform.device_at(run.phys_addr)
    return platform.mmio(device, run.phys_addr - device.base, run.len, run.data, run.is_write)

"""Type 2 with VHE (ARMv8.1's Virtualization Host Extensions): the host kernel itself runs at EL2.

With HCR_EL2.E2H = 1 the EL2 registers take the layout of EL1's, so an unmodified kernel runs at
EL2, and with TGE = 1 its user space (the VMM) runs at EL0 under it; Linux's KVM sets
HCR_HOST_VHE_FLAGS = RW | TGE | E2H for the host (../shared/REFERENCES.md, checked). An exit
then lands in the host kernel directly (KVM's vhe/switch.c, `__kvm_vcpu_run_vhe`):

    guest --trap--> host kernel + KVM (EL2): save the guest's general-purpose registers, restore
                    the kernel's own, HCR_EL2 <- the host's flags; handle the exit
          --eret--> guest: the kernel's registers saved, the guest's restored, HCR_EL2 <- the guest's

The guest's EL1 system registers, timer and GIC state stay loaded on the core: the host kernel
uses the EL2 ones. KVM moves them only when the vCPU leaves its physical CPU (vcpu_put).

vlab's core is a Cortex-A72 (ARMv8.0: ID_AA64MMFR1_EL1.VH = 0), on which HCR_EL2.E2H is RES0 --
a write to it does not stick -- so the HCR_EL2 switch is counted in the path, not performed; the
register frames (the guest's, the kernel's callee-saved x19..x30, the VMM's) are moved for real.
"""

from __future__ import annotations

from vlab.hyp.kvm import VMM, Kvm, to_vmm
from vlab.hyp.structure import BATCHED, CALLEE_SAVED, GPRS, NOT_ON_VLAB, Moved, Path, Step
from vlab.hyp.vcpu import VCpu
from vlab.machine.cpu import CPU
from vlab.machine.register_frame import RegisterFrame

KERNEL = "host kernel + KVM (EL2)"
GUEST = "guest (EL1)"
HCR_HOST_VHE_FLAGS = (1 << 31) | (1 << 27) | (1 << 34)  # RW | TGE | E2H (arch/arm64/include/asm/kvm_arm.h)

_GUEST_GPRS = Moved("general-purpose", GPRS, "guest", BATCHED)
_KERNEL_GPRS = Moved("general-purpose", CALLEE_SAVED, "host kernel", BATCHED)
_HCR = Moved("EL2 controls", 1, "HCR_EL2", NOT_ON_VLAB)

INTO_KERNEL = (
    Step(KERNEL, "the exit traps to EL2, where the host kernel runs: HCR_EL2 <- RW|TGE|E2H",
         saved=(_GUEST_GPRS,), restored=(_KERNEL_GPRS, _HCR)),
)
BACK_TO_GUEST = (
    Step(GUEST, "ERET into the guest: HCR_EL2 <- the guest's trap controls", saved=(_KERNEL_GPRS,),
         restored=(_GUEST_GPRS, _HCR)),
)
KERNEL_PATH = Path("vhe", "host kernel", KERNEL,
                   INTO_KERNEL + (Step(KERNEL, "handle_exit(): emulated, the guest's EL1 state untouched"),)
                   + BACK_TO_GUEST)
IN_KERNEL_DEVICE = Path("vhe", "in-kernel device", KERNEL,
                        INTO_KERNEL + (Step(KERNEL, "an in-kernel device emulates the access"),) + BACK_TO_GUEST)
VMM_PATH = Path("vhe", "user-space VMM", VMM, INTO_KERNEL + to_vmm(KERNEL) + BACK_TO_GUEST)
HOST_CALLEE_SAVED = [0xFFFF_8000_0A00_0000 + 0x10 * i for i in range(CALLEE_SAVED)]  # the kernel's, at its call into KVM


class Vhe(Kvm):
    """KVM with VHE on `host`. Devices named in `in_kernel` are emulated by the host kernel; every
    other device by the VMM in user space."""

    name = "vhe"
    title = "type 2 with VHE (ARMv8.1: the host kernel at EL2)"
    layers = ("hardware", "host kernel + KVM (EL2, E2H)", "VMM (EL0, TGE)", "guest (EL1/EL0)")
    KERNEL_PATH, IN_KERNEL_DEVICE, VMM_PATH = KERNEL_PATH, IN_KERNEL_DEVICE, VMM_PATH

    def __init__(self, host, in_kernel: tuple[str, ...] = ()):
        super().__init__(host, in_kernel)
        self._frames: dict[CPU, tuple[RegisterFrame, RegisterFrame]] = {}  # core -> (guest's, kernel's x19..x30)

    def _enter(self, vcpu: VCpu) -> tuple[CPU, RegisterFrame, RegisterFrame]:
        """__guest_exit: the guest's registers into its frame, the kernel's callee-saved ones back."""
        cpu = vcpu._cpu
        frames = self._frames.get(cpu)
        if frames is None:
            kernel = RegisterFrame(31 - CALLEE_SAVED)
            kernel.load(HOST_CALLEE_SAVED)
            frames = self._frames[cpu] = (RegisterFrame(), kernel)
        guest, kernel = frames
        guest.save(cpu)
        kernel.restore(cpu)
        vcpu._cpu = guest  # the handler reads and writes the guest's registers in the frame
        return cpu, guest, kernel

    def _leave(self, vcpu: VCpu, token: tuple[CPU, RegisterFrame, RegisterFrame]) -> None:
        """__guest_enter: the kernel's callee-saved registers saved, the guest's restored."""
        cpu, guest, kernel = token
        kernel.save(cpu)
        guest.restore(cpu)
        vcpu._cpu = cpu

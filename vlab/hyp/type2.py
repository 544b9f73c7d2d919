"""Type 2 without VHE: KVM/ARM's split mode on ARMv8.0, every exit a trip through the host kernel.

On ARMv8.0 the host kernel runs at EL1, where the guest kernel runs too; only a small part of KVM
runs at EL2. So every exit (Dall et al., ISCA 2016; KVM's nvhe/switch.c, `__kvm_vcpu_run`):

    guest --trap--> EL2 part: save the guest's state, load the host kernel's
          --eret--> host kernel (EL1): handle_exit(), reading the guest's registers from its saved context
                    (a device it does not emulate: KVM_EXIT_MMIO -> the VMM in user space -> KVM_RUN)
          --hvc---> EL2 part: save the host kernel's state, load the guest's
          --eret--> guest

vlab does those switches on the physical CPU: the guest's whole core state is saved with
Unicorn's context save into the vCPU's context, the host kernel's context (one per physical CPU,
with its own EL1 registers) restored, and back; while the host kernel's state is loaded the
handler reaches the guest's registers in its saved context (vlab.hyp.vcpu reads a vCPU that is
not loaded from its context), as KVM's `vcpu_get_reg` reads `vcpu->arch.ctxt`. A return to the
VMM restores the VMM's registers (its `pt_regs`) and hands it only `kvm_run`'s MMIO record.
"""

from __future__ import annotations

from vlab.hyp.kvm import VMM, Kvm, to_vmm
from vlab.hyp.structure import CONTEXT, EL1_STATE, EL2_CONTROLS, GIC_STATE, GPRS, NOT_ON_VLAB, TIMER, Moved, Path, Step
from vlab.hyp.vcpu import VCpu
from vlab.machine.cpu import CPU

EL2 = "EL2 (KVM's EL2 part)"
KERNEL = "host kernel (EL1)"
GUEST = "guest (EL1)"


def _world(owner: str) -> tuple[Moved, ...]:
    """What the split-mode world switch moves of one side: its registers, EL1 state, timer, GIC."""
    return (Moved("general-purpose", GPRS, owner, CONTEXT), Moved("EL1 system registers", EL1_STATE, owner, CONTEXT),
            Moved("virtual timer", TIMER, owner, CONTEXT), Moved("GIC virtual interface", GIC_STATE, owner, NOT_ON_VLAB))


def _traps(owner: str) -> tuple[Moved, ...]:
    """The EL2 controls KVM programs for `owner`: trap controls, stage 2 (on) or off, identity."""
    return (Moved("EL2 controls", EL2_CONTROLS, owner, NOT_ON_VLAB),)


INTO_HOST = (
    Step(EL2, "the exit traps to EL2 (the hardware fills ESR_EL2, ELR_EL2, SPSR_EL2)", saved=_world("guest")),
    Step(KERNEL, "ERET into the host kernel, its EL1 state loaded, stage 2 off",
         restored=_world("host kernel") + _traps("host kernel"), world_switch=True),
)
BACK_TO_GUEST = (
    Step(EL2, "HVC into EL2 (KVM_RUN goes on: __kvm_vcpu_run)", saved=_world("host kernel")),
    Step(GUEST, "ERET into the guest, its EL1 state loaded, stage 2 on", restored=_world("guest") + _traps("guest"),
         world_switch=True),
)
HANDLED = Step(KERNEL, "handle_exit(): emulated, the guest's registers read in its saved context")
KERNEL_PATH = Path("type2", "host kernel", KERNEL, INTO_HOST + (HANDLED,) + BACK_TO_GUEST)
IN_KERNEL_DEVICE = Path("type2", "in-kernel device", KERNEL,
                        INTO_HOST + (Step(KERNEL, "an in-kernel device emulates the access"),) + BACK_TO_GUEST)
VMM_PATH = Path("type2", "user-space VMM", VMM, INTO_HOST + to_vmm(KERNEL) + BACK_TO_GUEST)

# The host kernel's own EL1 state (made-up values, but its own: vectors, kernel page tables, per-CPU
# offset, a thread's stack), so that loading it really replaces the guest's.
HOST_KERNEL_EL1 = {"VBAR_EL1": 0xFFFF_8000_0801_0800, "TTBR1_EL1": 0x4_1230_0000, "TCR_EL1": 0x34_B559_3519,
                   "MAIR_EL1": 0x0400_FF44_0C04_00, "TPIDR_EL1": 0xFFFF_7C9F_2E5B_0000,
                   "CONTEXTIDR_EL1": 0x1, "SP_EL0": 0xFFFF_0000_8123_4000}


class SplitMode(Kvm):
    """KVM/ARM without VHE on `host`. Devices named in `in_kernel` are emulated by the host kernel;
    every other device by the VMM in user space (QEMU, kvmtool), one more round trip."""

    name = "type2"
    title = "type 2 without VHE (KVM/ARM split mode, ARMv8.0)"
    layers = ("hardware", "KVM's EL2 part (EL2)", "host kernel + KVM (EL1)", "VMM (EL0)", "guest (EL1/EL0)")
    KERNEL_PATH, IN_KERNEL_DEVICE, VMM_PATH = KERNEL_PATH, IN_KERNEL_DEVICE, VMM_PATH

    def __init__(self, host, in_kernel: tuple[str, ...] = ()):
        super().__init__(host, in_kernel)
        self._kernels: dict[CPU, object] = {}  # physical CPU -> the host kernel's saved context on it

    def _kernel(self, cpu: CPU):
        context = self._kernels.get(cpu)
        if context is None:
            scratch = self.host.scratch
            scratch.uc.context_restore(self.host.new_context())
            for name, value in HOST_KERNEL_EL1.items():
                scratch.write_sysreg(name, value)
            context = self._kernels[cpu] = scratch.uc.context_save()
        return context

    def _enter(self, vcpu: VCpu) -> tuple[CPU, object]:
        """The EL2 part: the guest's whole state into its context, the host kernel's onto the core."""
        cpu = vcpu._cpu
        kernel = self._kernel(cpu)
        cpu.uc.context_update(vcpu.context)
        vcpu._cpu = None  # its registers are now the saved context's
        cpu.uc.context_restore(kernel)
        cpu.irq.hold()  # the guest's IRQ line is not the host kernel's
        return cpu, kernel

    def _leave(self, vcpu: VCpu, token: tuple[CPU, object]) -> None:
        cpu, kernel = token
        cpu.uc.context_update(kernel)
        cpu.uc.context_restore(vcpu.context)
        cpu.irq.release()
        vcpu._cpu = cpu

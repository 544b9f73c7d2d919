"""The virtual platform: what a VM gives its guest besides CPUs and RAM, as an exit handler reaches it.

A handler gets `vcpu.platform`, one narrow interface to the VM's services, instead of the VM
itself:

    platform.device_at(ipa)                        the emulated device at an IPA, or None
    platform.mmio(device, offset, size, value, is_write)   perform a device access (traced)
    platform.psci(fid)                             the firmware (PSCI), played by the hypervisor
    platform.console(data)                         bytes to the VM's console (its UART)
    platform.resolve_stage2(ipa, write)            fix a stage-2 fault on the VM's own RAM, if it is one
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vlab.machine.board import Device, MmioAccess

if TYPE_CHECKING:
    from vlab.hyp.vcpu import VCpu
    from vlab.hyp.vm import VM


class Platform:
    """The VM's devices, firmware and console, for the handlers of one of its vCPUs."""

    def __init__(self, vm: VM, index: int):
        self._vm, self._index = vm, index

    @property
    def _vcpu(self) -> VCpu:
        return self._vm.vcpus[self._index]

    def device_at(self, ipa: int | None) -> Device | None:
        """The emulated device whose registers cover `ipa`, or None. A device with registers banked
        per CPU (the GIC distributor's SGIs and PPIs) answers with this vCPU's own view."""
        device = self._vm.device_at(ipa)
        banked = getattr(device, "for_vcpu", None)
        return banked(self._index) if banked is not None else device

    def mmio(self, device: Device, offset: int, size: int, value: int, is_write: bool) -> int:
        """Perform a `size`-byte access at `offset` in `device` and trace it; returns the value read
        (for a write, the value written)."""
        if is_write:
            device.write(offset, size, value)
        else:
            value = device.read(offset, size)
        self._vm.mmio_trace.append(MmioAccess(self._vcpu.ticks(), device.name, offset,
                                              device.register_name(offset), size, value, is_write))
        return value

    def psci(self, fid: int) -> str:
        """Serve PSCI function `fid` for the calling vCPU (arguments in its x1..x3, result in x0)."""
        return self._vm.psci(self._vcpu, fid)

    def console(self, data: bytes) -> None:
        """Print `data` on the VM's console, as its UART would."""
        for byte in data:
            self._vm.uart.write(0, 1, byte)

    def resolve_stage2(self, ipa: int | None, write: bool) -> str | None:
        """A stage-2 fault on the VM's own RAM (demand paging, dirty tracking, copy-on-write): fix the
        mapping, so the instruction can be retried; what was done, or None if it is not such a fault."""
        return self._vm.resolve_stage2(ipa, write)

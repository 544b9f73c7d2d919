"""Device assignment: a device given to one VM (passthrough), or shared by several through the hypervisor.

    passthrough(device, vm)      stage 2 maps the device's registers into `vm` alone: no exits
    share(device, [a, b])        each VM gets it as an emulated device: every access is an exit

Passthrough. The device sits on the host's bus at a physical address of its own (vlab puts the
host's assignable devices from PHYSICAL_DEVICES on, one 4 KB page apart), and the VM's stage-2
tables map its IPA there as device memory, never executable. The guest's loads and stores reach
the device's registers with no hypervisor code on the way: the core calls the device model
directly, as the bus would. Another VM has no such mapping, so its access is a stage-2 fault, for
which its hypervisor has no device to emulate: the guest gets an external abort.

Emulated and shared. The same device model is in several VMs' device lists: each access of each
VM is an exit, and the hypervisor (or dom0, or the VMM, depending on the structure) performs it
on the one device, so the VMs share it, one access at a time.

A device has one owner: passing it through twice, or passing through a shared device (or sharing
one that is passed through), is refused with AssignmentError -- at once, before anything runs.

DMA is where passthrough needs more hardware: see vlab.hyp.smmu.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vlab.machine.board import Device
from vlab.machine.uart import PL011
from vlab.mmu.tables import PAGE

if TYPE_CHECKING:
    from vlab.hyp.vm import VM

PHYSICAL_DEVICES = 0x40_0000_0000  # where the host's assignable devices start, in its physical address space
SECOND_UART = 0x0904_0000  # a free device slot of QEMU virt's map (its secure UART's), for a second PL011


class AssignmentError(ValueError):
    """A device assignment that cannot be: a second owner, a clash of addresses, a VM without stage 2."""


@dataclass(frozen=True)
class Passthrough:
    """`device`, at host physical address `pa`, given to `vm` at IPA `ipa`."""

    device: Device
    pa: int
    vm: VM
    ipa: int


def second_uart(name: str, base: int = SECOND_UART) -> PL011:
    """Another PL011, called `name`, whose registers sit at `base` (a device to assign or to share)."""
    uart = PL011()
    uart.name, uart.base = name, base
    return uart


def passthrough(device: Device, vm: VM, ipa: int | None = None) -> Passthrough:
    """Give `device` to `vm` alone, its registers at `ipa` (default: the device's own base): mapped
    through the VM's stage 2, so that its accesses make no exits."""
    ipa = device.base if ipa is None else ipa
    host = vm.host
    owner = _owner(host, device)
    if owner is not None:
        raise AssignmentError(f"{device.name} is already {owner}: a device passed through belongs to one VM "
                              f"(share it through the hypervisor instead: share(device, vms))")
    if vm.memory is None:
        raise AssignmentError(f"passthrough maps {device.name} through stage 2, and VM {vm.index} has no stage-2 "
                              "tables: make it with stage2='contiguous' (or 'scattered', 'demand')")
    if ipa % PAGE or device.size % PAGE:
        raise AssignmentError(f"{device.name} at IPA {ipa:#x} ({device.size:#x} bytes): stage 2 maps whole 4 KB pages")
    clash = vm.region_at(ipa) or vm.region_at(ipa + device.size - 1)
    if clash is not None or any(p.vm is vm and p.ipa < ipa + device.size and ipa < p.ipa + p.device.size
                                for p in host.bus):
        what = clash.name if clash is not None else "a device passed through"
        raise AssignmentError(f"IPA {ipa:#x} of VM {vm.index} already holds {what}: give {device.name} another address")
    pa = PHYSICAL_DEVICES + sum(p.device.size for p in host.bus)
    vm.memory.map_device(ipa, pa, device.size)
    vm.stage2_changed()  # a miss cached for that IPA (an emulated device's level) is stale
    entry = Passthrough(device, pa, vm, ipa)
    host.bus.append(entry)
    return entry


def share(device: Device, vms: list[VM]) -> None:
    """Give `device` to each of `vms` as an emulated device at its own base: every access an exit,
    the hypervisor performing it on the one device they all share."""
    if not vms:
        raise AssignmentError("share a device with at least one VM")
    owner = _owner(vms[0].host, device, shared_ok=True)
    if owner is not None:
        raise AssignmentError(f"{device.name} is {owner}: it cannot be shared as well")
    for vm in vms:
        clash = vm.region_at(device.base) or vm.region_at(device.base + device.size - 1)
        if clash is not None:
            raise AssignmentError(f"IPA {device.base:#x} of VM {vm.index} already holds {clash.name}")
    for vm in vms:
        vm.devices.append(device)
        vm.stage2_changed()


def assigned_to(host, device: Device):
    """The VM `device` is passed through to on `host`, or None."""
    return next((p.vm for p in host.bus if p.device is device), None)


def _owner(host, device: Device, shared_ok: bool = False) -> str | None:
    """Who has `device` already, in words (None: nobody, or only sharers when `shared_ok`)."""
    vm = assigned_to(host, device)
    if vm is not None:
        return f"passed through to VM {vm.index}"
    sharers = [v.index for v in host.vms if device in v.devices]
    if sharers and not shared_ok:
        return f"emulated for VM{'s' if len(sharers) > 1 else ''} {', '.join(map(str, sharers))}"
    return None

"""What travels with a migrating VM besides its memory: its shape, each vCPU's saved core and
state, each device's registers -- captured from a stopped VM as records of the migration stream
(vlab.hyp.stream), and restored into an empty VM of the same shape on another host.

    data = capture(vm)              # VM_CONFIG, then VCPU_CONTEXT + VCPU_STATE per vCPU, DEVICE per device
    shell = empty_vm(data, host)    # a VM of that shape on `host`, with no RAM yet (PAGE_DATA brings it)
    counters = restore(shell, data) # the vCPUs and devices as they were
    host.take_over(shell, counters) # and it goes on where it stopped

A vCPU is its saved core (Unicorn's whole context: the registers, PSTATE, the EL1 system
registers -- a superset of the architectural list in vlab.hyp.world_switch), its scheduling
state (off, runnable, blocked in WFI), how many instructions it has retired, the identity it
reads (VPIDR, VMPIDR), and its timers: each comparator's CTL and CVAL, and the virtual counter's
value when it stopped, from which it goes on. A device is whatever its `state()` gives, as
JSON -- the UART's registers and receive FIFO, the vGIC, each virtio transport's registers and
queues with its device (vlab.machine.virtio_mmio) -- and comes back through `restore(state)`;
a VM with a device that has neither cannot be migrated.

What does not travel is what the hypervisor keeps *about* the VM -- its trap log, its exit
counts, what the guest already printed on the UART or the virtio console -- which stays in the
source host's records: a migrated run's output is the source's, then the destination's.
"""

from __future__ import annotations

import json

from vlab.arch.hcr import HCR
from vlab.errors import MigrationError
from vlab.hyp.stream import Record, record, records
from vlab.hyp.vcpu import VCpuState


def capture(vm) -> bytes:
    """The records of everything but RAM of `vm`, which must not be running."""
    if vm.running:
        raise MigrationError("a VM's state can only be captured while it is stopped (between runs)")
    if vm.memory is None:
        raise MigrationError("a VM without stage-2 tables cannot be migrated: give it a stage-2 layout "
                             "(VM(stage2='demand')), so that its RAM can be tracked page by page")
    for device in vm.devices:
        if not callable(getattr(device, "state", None)) or not callable(getattr(device, "restore", None)):
            raise MigrationError(f"the VM's device {device.name!r} has no state()/restore(): vlab cannot carry "
                                 "its registers to another host")
    entity = vm.vcpus[0].entity
    config = {"ram_size": vm.ram_size, "vcpus": len(vm.vcpus), "traps": int(vm.traps),
              "weight": entity.weight, "cap": entity.cap, "virtio_polls": vm.virtio.device_polls,
              "devices": [d.name for d in vm.devices]}
    out = [_json(Record.VM_CONFIG, config)]
    for vcpu in vm.vcpus:
        timer = vcpu.timer
        out.append(record(Record.VCPU_CONTEXT, vcpu.export_context()))
        out.append(_json(Record.VCPU_STATE, {
            "index": vcpu.index, "state": vcpu.state.value, "in_wfi": vcpu.in_wfi,
            "instructions": vcpu.instructions, "vpidr": vcpu.vpidr, "vmpidr": vcpu.vmpidr,
            "counter": timer.ticks() - timer.offset,  # CNTVCT_EL0 as the guest would read it now
            "virtual": [timer.virtual.ctl, timer.virtual.cval], "physical": [timer.physical.ctl, timer.physical.cval]}))
    for device in vm.devices:
        out.append(_json(Record.DEVICE, {"name": device.name, "state": device.state()}))
    return b"".join(out)


def config_of(data: bytes) -> dict:
    """The VM_CONFIG record of captured state: the shape a VM must have to take it."""
    for kind, body in records(data):
        if kind is Record.VM_CONFIG:
            return json.loads(body)
    raise MigrationError("the captured state has no VM_CONFIG record")


def empty_vm(data: bytes, host, handlers: dict | None = None):
    """A VM on `host` shaped as the captured one (RAM size, vCPUs, trap controls, weight and cap, a
    virtio console that polls or not), with demand-paged RAM and nothing in it yet; `handlers`: the
    exit handlers it runs with."""
    from vlab.hyp.vm import VM  # the VM module imports the vCPU module, as this one does

    config = config_of(data)
    vm = VM(traps=HCR(config["traps"]), ram_size=config["ram_size"], vcpus=config["vcpus"], stage2="demand",
            host=host, weight=config["weight"], cap=config["cap"], virtio_polls=config["virtio_polls"])
    if handlers is not None:
        vm.handlers = dict(handlers)
    return vm


def restore(vm, data: bytes) -> list[int]:
    """Give `vm` (an empty VM of the captured shape, not started) the captured vCPUs and devices.
    Returns each vCPU's virtual counter, for its host's `take_over`."""
    config = config_of(data)
    if (config["ram_size"], config["vcpus"]) != (vm.ram_size, len(vm.vcpus)) or vm.started:
        raise MigrationError(f"the state is of a VM of {config['ram_size']:#x} bytes and {config['vcpus']} vCPU(s); "
                             f"this one has {vm.ram_size:#x} and {len(vm.vcpus)}" + (" and has run" if vm.started else ""))
    devices = {d.name: d for d in vm.devices}
    counters: dict[int, int] = {}
    context = None
    for kind, body in records(data):
        if kind is Record.VCPU_CONTEXT:
            context = body
        elif kind is Record.VCPU_STATE:
            state = json.loads(body)
            vcpu = vm.vcpus[state["index"]]
            vcpu.import_context(context)
            vcpu.state, vcpu.in_wfi = VCpuState(state["state"]), state["in_wfi"]
            vcpu.instructions, vcpu.vpidr, vcpu.vmpidr = state["instructions"], state["vpidr"], state["vmpidr"]
            (vcpu.timer.virtual.ctl, vcpu.timer.virtual.cval) = state["virtual"]
            (vcpu.timer.physical.ctl, vcpu.timer.physical.cval) = state["physical"]
            counters[vcpu.index] = state["counter"]
        elif kind is Record.DEVICE:
            _restore_device(devices, json.loads(body))
    if sorted(counters) != list(range(len(vm.vcpus))):
        raise MigrationError(f"the state carries vCPUs {sorted(counters)}, not all {len(vm.vcpus)}")
    return [counters[i] for i in range(len(vm.vcpus))]


def _restore_device(devices: dict, record: object) -> None:
    """One DEVICE record into the device of its name. A device that checks its state field by field
    (the virtio bus) says what is wrong itself; for one that does not, a record its restore() cannot
    read is refused here, naming the device, instead of failing deep inside it."""
    if not isinstance(record, dict) or not isinstance(record.get("name"), str) or "state" not in record:
        raise MigrationError(f"a DEVICE record is {record!r:.80}, not a device's name and state")
    name = record["name"]
    if name not in devices:
        raise MigrationError(f"the VM arrived with a device {name!r} this host's VM does not have")
    try:
        devices[name].restore(record["state"])
    except MigrationError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise MigrationError(f"the migrated state of the VM's {name!r} is malformed ({type(e).__name__}: {e}): "
                             "it is not what that device's state() gives") from None


def _json(kind: Record, value: dict) -> bytes:
    return record(kind, json.dumps(value, separators=(",", ":")).encode())

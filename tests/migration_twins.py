"""Helpers for the migration tests: a guest's whole state, to compare a migrated run with one left alone."""

from __future__ import annotations

from vlab.hyp import VM, Host
from vlab.hyp.world_switch import STATE
from vlab.machine.loader import Image

# The EL1 system registers and the virtual timer's, as the world switch lists them (CNTVOFF_EL2 is
# the host's to choose: each host has its own offset, so it is compared as the counter it gives).
SYSREGS = [r for group in STATE if group.kind == "EL1 system registers" for r in group.registers]


def state_of(vm: VM) -> dict:
    """Everything a guest could tell about itself: registers, system registers, timers, counter, RAM, output."""
    pages = {ipa: vm.read_memory(ipa, 0x1000) for ipa, _ in vm.memory.mapping()}
    vcpus = []
    for vcpu in vm.vcpus:
        timer = vcpu.timer
        vcpus.append({"registers": vcpu.registers(), "sysregs": {r: vcpu.read_sysreg(r) for r in SYSREGS},
                      "counter": timer.ticks() - timer.offset, "state": vcpu.state, "instructions": vcpu.instructions,
                      "virtual": (timer.virtual.ctl, timer.virtual.cval)})
    return {"vcpus": vcpus, "pages": pages}


def alone(image: Image, instructions: int, **options) -> tuple[VM, object]:
    """The guest run `instructions` on a host of its own, never migrated: (its VM, its result)."""
    vm = VM.from_image(image, host=Host(options.pop("pcpus", 1)), stage2="demand", **options)
    return vm, vm.run(max_insns=instructions)

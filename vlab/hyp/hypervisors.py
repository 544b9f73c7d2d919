"""The three hypervisor structures by name, and a guest booted under one of them.

    vm, structure = boot(image, "type2")       # a host with one physical CPU, the guest under KVM
    result = run(vm)                           # the guest's VmRunResult (dom0 runs beside it: type1)
    structure.summary(vm)                      # per exit class: count, paths, world switches

Every structure runs the guest with the same stage-2 layout (contiguous RAM) on a host with one
physical CPU, so that the guest's output, registers and memory can be compared from one
structure to another, and the costs too (benchmarks/types.py).
"""

from __future__ import annotations

import importlib

from vlab.arch.hcr import HCR
from vlab.hyp.structure import Structure
from vlab.machine.board import DEFAULT_MAX_INSNS, DEFAULT_RAM_SIZE, DEFAULT_TIMEOUT_S
from vlab.machine.loader import Image

# name -> (module, class, what it is)
STRUCTURES = {
    "type1": ("vlab.hyp.type1", "Xen", "type 1, Xen-like: the hypervisor at EL2, the console served by dom0"),
    "type2": ("vlab.hyp.type2", "SplitMode", "type 2 without VHE: KVM/ARM split mode (ARMv8.0)"),
    "vhe": ("vlab.hyp.vhe", "Vhe", "type 2 with VHE: KVM with the host kernel at EL2 (ARMv8.1)"),
}


def structure_class(name: str) -> type[Structure]:
    """The class of structure `name`; ValueError listing the three."""
    if name not in STRUCTURES:
        choices = "; ".join(f"{key} ({what})" for key, (_, _, what) in STRUCTURES.items())
        raise ValueError(f"no hypervisor structure is called {name!r}: choose one of {choices}")
    module, cls, _ = STRUCTURES[name]
    return getattr(importlib.import_module(module), cls)


def make_structure(name: str, host, **options) -> Structure:
    """Structure `name` on `host` (a type 1 makes its dom0 there at once: make it before the guests)."""
    return structure_class(name)(host, **options)


def boot(image: Image, hyp: str, traps: HCR = HCR(0), ram_size: int = DEFAULT_RAM_SIZE, **options):
    """`image` as the guest of a new one-core host under structure `hyp`: (the VM, the structure).
    `options` go to the structure (e.g. in_kernel=("uart",) for type2 and vhe)."""
    from vlab.hyp.host import Host
    from vlab.hyp.vm import VM

    cls = structure_class(hyp)
    host = Host(memory=ram_size + 0x80_0000)  # the guest's RAM, dom0's, and stage-2 tables
    structure = cls(host, **options)
    vm = VM.from_image(image, host=host, traps=traps, stage2="contiguous", ram_size=ram_size)
    structure.attach(vm)
    return vm, structure


def run(vm, max_insns: int = DEFAULT_MAX_INSNS, timeout_s: float = DEFAULT_TIMEOUT_S):
    """Run `vm`'s host (its dom0 too, under type 1) until every VM has stopped; `vm`'s result."""
    return vm.host.run(max_insns, timeout_s).vms[vm.host.vms.index(vm)]

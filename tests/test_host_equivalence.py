"""Every demo guest and every C guest behaves on a shared host as it does alone and on the bare
board: the same output, and the same final state (registers, EL1 system registers, RAM), under
every scheduling policy and on 1 to 4 physical CPUs (Popek and Goldberg's equivalence, with the
hypervisor's scheduler in the picture)."""

from __future__ import annotations

import functools

import pytest

from host_setups import PCPUS, POLICIES, c_guest, scheduler
from vlab.guests import GUESTS
from vlab.guests import build as builder
from vlab.hyp.equivalence import differences
from vlab.hyp.host import Host
from vlab.hyp.vm import VM
from vlab.machine.board import Board
from vlab.machine.loader import Image, image_from_file, load

RAM = 0x40_0000
MAX_INSNS = 10_000_000
GUEST_NAMES = [f"demo:{name}" for name in sorted(GUESTS)] + [f"c:{name}" for name in builder.programs()]
# One stage-2 layout per number of physical CPUs, so that every layout meets several core counts
# Guests whose control flow follows their timer's interrupts. Virtual time runs on while a vCPU
# waits for its core, as CNTVCT does under KVM and Xen: on a crowded core a tick can come late and
# the next one at once, so the guest takes its interrupts at other instructions than alone. What
# it prints, and how it stops, must not change; its registers and RAM may.
TIMER_DRIVEN = {"demo:ticks", "c:gic_timer"}
LAYOUT = {1: None, 2: "contiguous", 3: "scattered", 4: "demand"}


@functools.cache
def image(guest: str) -> Image:
    kind, name = guest.split(":")
    return GUESTS[name].image() if kind == "demo" else image_from_file(c_guest(name))


@functools.cache
def on_the_bare_board(guest: str) -> Board:
    board = Board(ram_size=RAM)
    load(board, image(guest))
    board.result = board.run(max_insns=MAX_INSNS)
    return board


@functools.cache
def alone(guest: str) -> VM:
    vm = VM.from_image(image(guest), ram_size=RAM)
    vm.result = vm.run(max_insns=MAX_INSNS)
    return vm


@pytest.mark.parametrize("guest", GUEST_NAMES)
def test_guest_alone_in_a_vm_is_what_it_is_on_the_bare_board(guest):
    board, vm = on_the_bare_board(guest), alone(guest)
    assert (vm.result.reason, vm.result.uart) == (board.result.reason, board.result.uart)
    assert board.result.uart  # every guest says something
    assert differences(board, vm.vcpus[0]) == []


@pytest.mark.parametrize("pcpus", PCPUS)
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("guest", GUEST_NAMES)
def test_guest_on_a_host_is_what_it_is_alone_and_on_the_bare_board(guest, policy, pcpus):
    host = Host(pcpus=pcpus, scheduler=scheduler(policy, pcpus))
    vm = VM.from_image(image(guest), host=host, stage2=LAYOUT[pcpus], ram_size=RAM)
    result = host.run(max_insns=MAX_INSNS).vms[0]
    reference = alone(guest)
    assert (result.reason, result.uart) == (reference.result.reason, reference.result.uart)
    assert result.instructions == reference.result.instructions
    assert differences(reference.vcpus[0], vm.vcpus[0]) == []
    assert differences(on_the_bare_board(guest), vm.vcpus[0]) == []


@pytest.mark.parametrize("pcpus", PCPUS)
@pytest.mark.parametrize("policy", POLICIES)
def test_all_guests_sharing_one_host_each_end_as_alone(policy, pcpus):
    host = Host(pcpus=pcpus, scheduler=scheduler(policy, pcpus, vcpus=(1,) * len(GUEST_NAMES)))
    layouts = ("contiguous", "scattered", "demand")
    vms = [VM.from_image(image(guest), host=host, stage2=layouts[i % 3], ram_size=RAM, seed=i)
           for i, guest in enumerate(GUEST_NAMES)]
    results = host.run(max_insns=MAX_INSNS).vms
    for guest, vm, result in zip(GUEST_NAMES, vms, results):
        reference = alone(guest)
        assert (result.reason, result.uart) == (reference.result.reason, reference.result.uart), guest
        if guest not in TIMER_DRIVEN:
            assert differences(reference.vcpus[0], vm.vcpus[0]) == [], guest
    ran = {s.entity.vm for s in host.trace.segments}
    assert ran == set(range(len(vms)))

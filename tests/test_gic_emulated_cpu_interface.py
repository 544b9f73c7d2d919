"""A VM whose GIC CPU interface is emulated (a chip without the GIC's virtualization extensions):
every GICC access is an exit, and the guest sees exactly what it sees through GICV."""

import pytest

from vlab.guests import GUESTS
from vlab.guests.para_or_full import FULL
from vlab.hyp.vm import VM


def run(name_or_image, mode, **options):
    image = GUESTS[name_or_image].image() if isinstance(name_or_image, str) else name_or_image
    vm = VM.from_image(image, gic_cpu_interface=mode, **options)
    return vm, vm.run()


@pytest.mark.parametrize("guest, options", [
    ("ticks", {}), ("ticks", {"stage2": "scattered"}), ("ipi", {"vcpus": 2}), (FULL.image(), {"ram_size": 0x40_0000}),
], ids=["ticks", "ticks-stage2", "ipi-2-vcpus", "para_or_full"])
def test_each_gicc_access_the_gicv_served_becomes_one_exit_and_nothing_else_changes(guest, options):
    (_, virtual), (emulated_vm, emulated) = run(guest, "virtual", **options), run(guest, "emulated", **options)
    assert (emulated.uart, emulated.registers, emulated.reason) == (virtual.uart, virtual.registers, virtual.reason)
    served_by_gicv = sum(virtual.without_exits.values())
    assert served_by_gicv > 0 and emulated.without_exits == {}
    assert emulated.exits["DABT_LOWER"] - virtual.exits["DABT_LOWER"] == served_by_gicv
    assert {k: n for k, n in emulated.exits.items() if k != "DABT_LOWER"} == \
        {k: n for k, n in virtual.exits.items() if k != "DABT_LOWER"}
    gicc = sum(1 for a in emulated_vm.mmio_trace if a.device == "gicc")
    assert gicc == served_by_gicv


def test_ticks_acknowledges_and_completes_each_interrupt_through_an_exit():
    vm, result = run("ticks", "emulated")
    assert result.uart == GUESTS["ticks"].expected_uart
    gicc = [(a.register, a.is_write) for a in vm.mmio_trace if a.device == "gicc"]
    assert gicc == [("GICC_PMR", True), ("GICC_CTLR", True)] + [("GICC_IAR", False), ("GICC_EOIR", True)] * 3
    assert all(a.value == 27 for a in vm.mmio_trace if a.register in ("GICC_IAR", "GICC_EOIR"))


def test_an_unknown_cpu_interface_mode_is_refused():
    with pytest.raises(ValueError, match="gic_cpu_interface is one of virtual, emulated"):
        VM(gic_cpu_interface="none")

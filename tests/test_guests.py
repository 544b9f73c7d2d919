"""The demo guests' sources do what their comments say (students read them in the chapters)."""

from __future__ import annotations

import re

import pytest

from vlab.asm import assemble
from vlab.guests import GUESTS

LOWER_EL_AARCH64_SYNC = 0x400  # Arm ARM D1.10.2: VBAR_EL1 + 0x400, synchronous exception from a lower EL in AArch64


def entries(name: str) -> list[int]:
    """The first word of each 0x80-byte entry of the guest's vector table (0 where nothing is written)."""
    program = assemble(GUESTS[name].source())
    start = program.address_of("vectors") - program.base
    return [int.from_bytes(program.code[start + 0x80 * i:start + 0x80 * i + 4], "little") for i in range(16)]


def test_syscall_writes_all_sixteen_vector_entries_as_its_comment_says():
    source = GUESTS["syscall"].source()
    assert "16 entries" in source
    assert all(entries("syscall")), [f"+{0x80 * i:#x}" for i, word in enumerate(entries("syscall")) if not word]


def test_syscalls_svc_handler_sits_in_the_lower_el_aarch64_synchronous_entry():
    program = assemble(GUESTS["syscall"].source())
    assert program.address_of("el0_sync") - program.address_of("vectors") == LOWER_EL_AARCH64_SYNC
    # and nothing it runs spills into the next entry: the first label after it is past +0x480
    after = sorted(a for a in program.symbols.values() if a > program.address_of("el0_sync"))
    assert after[0] - program.address_of("vectors") >= LOWER_EL_AARCH64_SYNC + 0x80


@pytest.mark.parametrize("offset", range(0, 0x800, 0x80))
def test_each_vector_entry_comment_names_its_offset(offset):
    comment = re.search(rf"// \+{offset:#05x}\b", GUESTS["syscall"].source())
    assert comment is not None, f"no entry commented +{offset:#05x}"

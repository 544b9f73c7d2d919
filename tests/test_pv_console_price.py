"""What a KB of text costs the hypervisor through each console, as the batch size grows.

The kernel runs with 16*kb more lines of 64 bytes than a run with none; the difference is the
price of the text alone. Its log holds 3 more lines (two at boot, one at the end) in both runs.
"""

from __future__ import annotations

import math

import pytest

from vlab.hyp.para_vs_full import batch_table, exits_per_kb

KB = 2
EXTRA_LINES = 16 * KB


def flushes(lines: int, batch: int) -> int:
    return math.ceil(lines / batch)


@pytest.mark.parametrize("batch", [1, 8])
def test_through_the_emulated_pl011_a_kb_costs_two_exits_a_byte_whatever_the_batch(batch):
    price = exits_per_kb("pl011", batch, kb=KB)
    assert price.exits_per_kb == 2 * 1024  # read UARTFR, write UARTDR


@pytest.mark.parametrize("console", ["console_io", "virtio"])
@pytest.mark.parametrize("batch", [1, 3, 8, 64])
def test_a_hypercall_or_a_notify_costs_one_exit_a_batch(console, batch):
    price = exits_per_kb(console, batch, kb=KB)
    assert price.exits == flushes(EXTRA_LINES + 3, batch) - flushes(3, batch)


def test_a_polling_virtio_device_takes_every_batch_without_an_exit():
    assert exits_per_kb("virtio", 4, kb=KB, polls=True).exits == 0


def test_the_table_falls_with_the_batch_size_and_stays_flat_for_the_uart():
    rows = batch_table((1, 4, 16), kb=KB)
    assert [r["batch"] for r in rows] == [1, 4, 16]
    assert {r["pl011"] for r in rows} == {2048.0}
    for column in ("console_io", "virtio"):
        values = [r[column] for r in rows]
        assert values == sorted(values, reverse=True) and values[0] > values[-1]
    assert all(r["virtio, device polls"] == 0 for r in rows)


def test_an_unknown_console_is_refused_with_the_list():
    with pytest.raises(ValueError, match="pl011, console_io, virtio"):
        exits_per_kb("serial")

"""dom0 and its ring (issue #13): the layout Xen's headers give, dom0 serving several domains, and a
dom0 that crashes, stops serving or breaks the ring -- the domains left waiting with a clear
report, the host never hung."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vlab.guests import GUESTS
from vlab.hyp import VM, Host
from vlab.hyp.dom0 import INFO, RINGS
from vlab.hyp.ioring import (HEADER, RING_SIZE, RSP_PROD, SLOT, STATE_IORESP_READY, IoRequest, Ring,
                             RingError)
from vlab.hyp.type1 import DOM0_POLL, Xen
from vlab.machine.board import StopReason

RAM = 0x40_0000
UART = 0x0900_0000


def domain(host: Host, xen: Xen, name: str = "hello") -> VM:
    vm = VM.from_image(GUESTS[name].image(), host=host, stage2="contiguous", ram_size=RAM)
    xen.attach(vm)
    return vm


def xen_host(**options) -> tuple[Host, Xen]:
    host = Host(memory=4 * RAM + 0x80_0000)
    return host, Xen(host, **options)


# --- the ring's layout, as xen/include/public/io/ring.h and hvm/ioreq.h give it --------------------

@given(addr=st.integers(0, 2**64 - 1), size=st.sampled_from([1, 2, 4, 8]), is_read=st.booleans(),
       data=st.integers(0, 2**64 - 1), port=st.integers(0, 2**32 - 1))
def test_an_ioreq_is_32_bytes_laid_out_as_xens_and_reads_back(addr, size, is_read, data, port):
    raw = IoRequest(addr, size, is_read, data, port).pack()
    assert len(raw) == SLOT == 32
    assert struct.unpack_from("<QQIII", raw) == (addr, data, 1, size, port)
    assert raw[30] & 0xF == 1 and raw[30] >> 5 & 1 == is_read and raw[31] == 1  # READY, dir, IOREQ_TYPE_COPY
    assert IoRequest.unpack(raw) == IoRequest(addr, size, is_read, data, port)


def test_the_ring_holds_64_slots_after_a_64_byte_header():
    assert (HEADER, RING_SIZE) == (64, 64) and HEADER + RING_SIZE * SLOT <= 4096 < HEADER + 2 * RING_SIZE * SLOT


def test_xen_puts_requests_at_index_modulo_64_and_publishes_req_prod_after_them():
    host, xen = xen_host()
    dom0 = xen.dom0
    ring = Ring(dom0, RINGS)
    ring.reset()
    assert struct.unpack("<IIII", dom0.read_memory(RINGS, 16)) == (0, 1, 0, 1)  # SHARED_RING_INIT
    for i in range(RING_SIZE):
        assert ring.push(IoRequest(UART + i, 4, False, i)) == i
    assert struct.unpack("<I", dom0.read_memory(RINGS, 4))[0] == RING_SIZE
    assert IoRequest.unpack(dom0.read_memory(RINGS + HEADER + SLOT * 5, SLOT)).addr == UART + 5
    with pytest.raises(RingError, match="full"):
        ring.push(IoRequest(UART, 4, False))


def test_xen_refuses_answers_nobody_asked_for_and_answers_not_marked_as_answers():
    host, xen = xen_host()
    ring = Ring(xen.dom0, RINGS)
    ring.reset()
    ring.push(IoRequest(UART, 4, True))
    xen.dom0.write_memory(RINGS + RSP_PROD, struct.pack("<I", 1))
    with pytest.raises(RingError, match="its state is 1, not STATE_IORESP_READY"):
        ring.take_answers()
    xen.dom0.write_memory(RINGS + HEADER + 30, bytes([STATE_IORESP_READY | 1 << 5]))
    assert [index for index, _ in ring.take_answers()] == [0]
    xen.dom0.write_memory(RINGS + RSP_PROD, struct.pack("<I", 3))
    with pytest.raises(RingError, match="answered requests nobody made"):
        ring.take_answers()


# --- dom0 at work ----------------------------------------------------------------------------------

def test_one_dom0_serves_several_domains_each_on_its_own_ring_and_uart():
    host, xen = xen_host()
    hello, paging = domain(host, xen, "hello"), domain(host, xen, "paging")
    results = host.run()
    assert results.vms[hello.index].uart == GUESTS["hello"].expected_uart
    assert results.vms[paging.index].uart == GUESTS["paging"].expected_uart
    assert struct.unpack("<I", xen.dom0.read_memory(INFO, 4))[0] == 2
    assert [ring.answered for ring in xen._rings] == [hello.exits["DABT_LOWER"], paging.exits["DABT_LOWER"]]


def test_dom0_stops_once_no_domain_it_serves_runs_and_never_makes_an_exit_for_the_real_uart():
    host, xen = xen_host()
    vm = domain(host, xen)
    results = host.run()
    dom0 = results.vms[xen.dom0.index]
    assert dom0.reason is StopReason.IDLE and "no domain it serves is running" in dom0.message
    assert set(dom0.exits) == {"HVC64"}  # its ring page and the passed-through PL011: no data aborts
    assert results.pcpus[0]["idle_ticks"] <= DOM0_POLL + 2_000  # it noticed within one poll
    assert results.vms[vm.index].reason is StopReason.POWERED_OFF


# --- dom0 misbehaving ------------------------------------------------------------------------------

def waiting_domain(dom0_source: str, max_insns: int = 2_000_000):
    host, xen = xen_host(dom0_source=dom0_source)
    vm = domain(host, xen)
    results = host.run(max_insns=max_insns, timeout_s=60)
    return vm, xen, results.vms[vm.index], results.vms[xen.dom0.index]


def assert_left_waiting_at_its_first_uart_access(vm: VM, result) -> None:
    assert result.reason is StopReason.STOPPED
    assert "waits for I/O that dom0 will not answer" in result.message
    assert "a read of uart.UARTFR by `ldr w4, [x1, #0x18]`" in result.message
    assert result.uart == "" and vm.vcpus[0].pc == 0x4000_0014  # at the load, never completed
    assert vm.exits["DABT_LOWER"] >= 1


def test_a_dom0_that_crashes_leaves_the_domain_waiting_with_a_report():
    vm, _, result, dom0 = waiting_domain("    udf #0\n")
    assert dom0.reason is StopReason.EXCEPTION
    assert_left_waiting_at_its_first_uart_access(vm, result)
    assert "dom0 has stopped (exception" in result.message


def test_a_dom0_that_stops_serving_leaves_the_domain_waiting_with_a_report_never_a_hang():
    vm, xen, result, dom0 = waiting_domain("spin:\n    b spin\n", max_insns=10_000_000)
    assert_left_waiting_at_its_first_uart_access(vm, result)
    assert f"has not answered in {xen.io_timeout:,} host ticks" in result.message
    assert dom0.reason is StopReason.BUDGET  # it spun on, bounded by its budget


def test_a_dom0_that_breaks_the_ring_is_crashed_by_xen_and_the_domain_told_so():
    lying = f"""    ldr x1, ={RINGS:#x}
    mov w2, #9
    str w2, [x1, #{RSP_PROD}]      // nine answers, to requests never made
    ldr x1, ={INFO + 8:#x}
    str wzr, [x1]
    mov x0, #4
    mov x16, #32
    hvc #0xea1
spin:
    b spin
"""
    vm, _, result, dom0 = waiting_domain(lying)
    assert dom0.reason is StopReason.EXCEPTION and "answered requests nobody made" in dom0.message
    assert_left_waiting_at_its_first_uart_access(vm, result)


def test_a_domain_run_alone_is_told_to_run_the_host_so_that_dom0_runs():
    host, xen = xen_host()
    vm = domain(host, xen)
    result = vm.run()
    assert result.reason is StopReason.STOPPED and "run the whole host (host.run())" in result.message


def test_a_domain_left_waiting_keeps_its_request_in_the_ring_unanswered():
    vm, xen, result, _ = waiting_domain("spin:\n    b spin\n", max_insns=10_000_000)
    assert vm.vcpus[0] in xen._waiting
    assert struct.unpack("<III", xen.dom0.read_memory(RINGS, 12)) == (1, 1, 0)  # one request, no answer

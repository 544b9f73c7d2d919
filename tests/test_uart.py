"""The PL011 UART at 0x0900_0000, as a guest sees it, and the MMIO trace of its accesses.

Offsets, flag bits and reset values from the PL011 TRM (DDI 0183): UARTDR +0x000,
UARTFR +0x018 (BUSY 3, RXFE 4, TXFF 5, RXFF 6, TXFE 7), UARTRIS +0x03C,
UARTMIS +0x040, UARTICR +0x044, UARTIMSC +0x038 (RX bit 4, TX bit 5); the
identification registers at +0xFE0..+0xFFC read 0x11 0x10 0x14 0x00 and
0x0D 0xF0 0x05 0xB1, as on QEMU's PL011.
"""

from __future__ import annotations

from vlab.asm import assemble
from vlab.guests import GUESTS
from vlab.machine.board import Board, StopReason
from vlab.machine.loader import image_from_file, image_from_program, load
from vlab.machine.uart import PL011

UART = 0x0900_0000
TXFE, RXFF, TXFF, RXFE = 1 << 7, 1 << 6, 1 << 5, 1 << 4
INT_RX, INT_TX = 1 << 4, 1 << 5
OFF = "    ldr x0, =0x84000008\n    hvc #0\n"


def boot(source: str, **options) -> Board:
    board = Board(**options)
    load(board, image_from_program(assemble(f"    ldr x1, ={UART:#x}\n" + source + OFF)))
    return board


def test_flags_at_reset_say_transmit_fifo_empty_and_receive_fifo_empty():
    regs = boot("    ldr w20, [x1, #0x18]\n").run(max_insns=100).registers
    assert regs["x20"] == TXFE | RXFE


def test_bytes_written_to_the_data_register_are_the_output():
    board = boot("""
    mov w2, #'O'
    strb w2, [x1]
    mov w2, #0x14b                 // only the low 8 bits are data: 'K'
    str w2, [x1]
""")
    result = board.run(max_insns=100)
    assert result.uart == "OK"
    assert board.uart.output == b"OK"


def test_fed_bytes_are_read_from_the_data_register_until_the_fifo_is_empty():
    board = boot("""
    ldr w20, [x1, #0x18]           // RXFE clear: data waiting
    ldr w21, [x1]
    ldr w22, [x1]
    ldr w23, [x1, #0x18]           // RXFE set again
""")
    board.uart.feed("hi")
    regs = board.run(max_insns=100).registers
    assert regs["x20"] & RXFE == 0
    assert (chr(regs["x21"]), chr(regs["x22"])) == ("h", "i")
    assert regs["x23"] & RXFE


def test_an_echo_guest_copies_input_to_output():
    board = boot("""
again:
    ldr w2, [x1, #0x18]
    tbnz w2, #4, done              // RXFE: nothing left to read
    ldr w3, [x1]
    str w3, [x1]
    b again
done:
""")
    board.uart.feed(b"echo\n")
    assert board.run(max_insns=1000).uart == "echo\n"


def test_identification_registers_identify_a_pl011():
    uart = PL011()
    assert [uart.read(offset, 4) for offset in range(0xFE0, 0x1000, 4)] == \
        [0x11, 0x10, 0x14, 0x00, 0x0D, 0xF0, 0x05, 0xB1]


def test_transmit_raises_tx_in_the_raw_status_and_the_mask_selects_what_mis_shows():
    uart = PL011()
    assert uart.read(0x03C, 4) == 0
    uart.write(0x000, 4, ord("x"))
    assert uart.read(0x03C, 4) == INT_TX
    assert uart.read(0x040, 4) == 0, "masked: UARTIMSC is 0 at reset"
    uart.write(0x038, 4, INT_TX)
    assert uart.read(0x040, 4) == INT_TX
    uart.write(0x044, 4, INT_TX)
    assert uart.read(0x03C, 4) == 0, "UARTICR clears what it is written with"


def test_received_data_raises_rx_until_the_fifo_is_drained():
    uart = PL011()
    uart.feed("ab")
    assert uart.read(0x03C, 4) == INT_RX
    uart.read(0x000, 4)
    assert uart.read(0x03C, 4) == INT_RX
    uart.read(0x000, 4)
    assert uart.read(0x03C, 4) == 0


def test_transmit_fifo_is_never_full():
    uart = PL011()
    for byte in range(200):
        uart.write(0x000, 1, byte)
    assert not uart.read(0x018, 4) & TXFF


def test_mmio_trace_records_tick_register_size_value_and_direction():
    board = boot("""
    mov w3, #'A'
    ldr w4, [x1, #0x18]            // 2 instructions retired before it
    strb w3, [x1]                  // 3 before it
""")
    board.run(max_insns=100)
    fr, dr = board.mmio_trace
    assert (fr.tick, fr.device, fr.register, fr.offset, fr.size, fr.value, fr.is_write) == \
        (2, "uart", "UARTFR", 0x18, 4, TXFE | RXFE, False)
    assert (dr.tick, dr.register, dr.size, dr.value, dr.is_write) == (3, "UARTDR", 1, ord("A"), True)
    assert "UARTDR <- 0x41" in str(dr)


def test_mmio_trace_of_hello_has_one_data_write_per_character():
    board = Board()
    load(board, image_from_file(GUESTS["hello"].path))
    result = board.run(max_insns=100_000)
    assert result.reason is StopReason.POWERED_OFF
    writes = [a for a in board.mmio_trace if a.is_write and a.register == "UARTDR"]
    assert "".join(chr(a.value) for a in writes) == "Hello from EL1!\n"
    ticks = [a.tick for a in board.mmio_trace]
    assert ticks == sorted(ticks) and len(set(ticks)) == len(ticks)


def test_mmio_trace_keeps_only_the_most_recent_accesses():
    board = boot("    ldr w2, [x1, #0x18]\n" * 5 + "    ldr w2, [x1, #0x30]\n", trace_limit=3)
    board.run(max_insns=100)
    assert [a.register for a in board.mmio_trace] == ["UARTFR", "UARTFR", "UARTCR"]


def test_identification_register_names_in_the_trace_are_numbered():
    uart = PL011()
    assert uart.register_name(0xFE0) == "UARTPeriphID0"
    assert uart.register_name(0xFFC) == "UARTPCellID3"

"""The PL011 UART at 0x0900_0000: the console of QEMU's `virt` board.

A guest prints by writing a byte to UARTDR after checking in UARTFR that the
transmit FIFO is not full. vlab's UART transmits instantly, so TXFF is never
set; bytes the user types (`feed`) wait in the receive FIFO.
Register offsets and reset values from the PL011 Technical Reference Manual (DDI 0183).
"""

from __future__ import annotations

from collections import deque

UART_BASE = 0x0900_0000
UART_SIZE = 0x1000

REGISTERS = {
    0x000: "UARTDR", 0x004: "UARTRSR", 0x018: "UARTFR", 0x020: "UARTILPR", 0x024: "UARTIBRD",
    0x028: "UARTFBRD", 0x02C: "UARTLCR_H", 0x030: "UARTCR", 0x034: "UARTIFLS", 0x038: "UARTIMSC",
    0x03C: "UARTRIS", 0x040: "UARTMIS", 0x044: "UARTICR", 0x048: "UARTDMACR",
}
# UARTPeriphID0-3 and UARTPCellID0-3 at 0xFE0..0xFFC: how a driver recognises a PL011
_ID_REGISTERS = {0xFE0 + 4 * i: v for i, v in enumerate((0x11, 0x10, 0x14, 0x00, 0x0D, 0xF0, 0x05, 0xB1))}


class FR:
    """UARTFR bits."""

    BUSY = 1 << 3
    RXFE = 1 << 4  # receive FIFO empty
    TXFF = 1 << 5  # transmit FIFO full
    RXFF = 1 << 6
    TXFE = 1 << 7  # transmit FIFO empty


class INT:
    """Interrupt bits of UARTRIS/UARTMIS/UARTIMSC/UARTICR (the ones vlab raises)."""

    RX = 1 << 4  # received data waiting
    TX = 1 << 5  # room in the transmit FIFO


class PL011:
    """The UART's registers as a device: read(offset, size) and write(offset, size, value)."""

    name = "uart"
    base = UART_BASE
    size = UART_SIZE

    def __init__(self) -> None:
        self.output = bytearray()  # everything the guest transmitted
        self._rx: deque[int] = deque()
        self._raw_interrupts = 0  # UARTRIS; the board has no interrupt controller, so it only reads back
        self._regs = {0x024: 0, 0x028: 0, 0x02C: 0, 0x030: 0x300, 0x034: 0x12, 0x038: 0, 0x048: 0}

    @property
    def text(self) -> str:
        """What the guest printed, decoded leniently (a guest may print any bytes)."""
        return self.output.decode("utf-8", errors="replace")

    def feed(self, data: str | bytes) -> None:
        """Queue bytes for the guest to read from UARTDR, as if typed on the console."""
        data = data.encode() if isinstance(data, str) else bytes(data)
        self._rx.extend(data)
        if data:
            self._raw_interrupts |= INT.RX

    def flags(self) -> int:
        return FR.TXFE | (FR.RXFE if not self._rx else 0)

    def state(self) -> dict:
        """The registers and the receive FIFO, as plain data: what must travel with a migrating VM.
        What was transmitted has left the device already (`output`), so it is not part of it."""
        return {"rx": list(self._rx), "ris": self._raw_interrupts, "regs": {str(k): v for k, v in self._regs.items()}}

    def restore(self, state: dict) -> None:
        """Take the registers and receive FIFO `state()` gave (from this UART or another)."""
        self._rx = deque(int(b) & 0xFF for b in state["rx"])
        self._raw_interrupts = int(state["ris"])
        self._regs = {int(k): int(v) & 0xFFFF for k, v in state["regs"].items()}

    def register_name(self, offset: int) -> str:
        if offset in _ID_REGISTERS:
            return f"UARTPeriphID{(offset - 0xFE0) // 4}" if offset < 0xFF0 else f"UARTPCellID{(offset - 0xFF0) // 4}"
        return REGISTERS.get(offset & ~3, f"+{offset:#x}")

    def read(self, offset: int, size: int) -> int:
        if offset == 0x000:
            byte = self._rx.popleft() if self._rx else 0
            if not self._rx:
                self._raw_interrupts &= ~INT.RX
            return byte
        if offset == 0x018:
            return self.flags()
        if offset in _ID_REGISTERS:
            return _ID_REGISTERS[offset]
        if offset == 0x03C:
            return self._raw_interrupts
        if offset == 0x040:
            return self._raw_interrupts & self._regs[0x038]
        return self._regs.get(offset, 0)

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 0x000:
            self.output.append(value & 0xFF)
            self._raw_interrupts |= INT.TX  # sent at once: the FIFO has room again (as QEMU reports)
        elif offset == 0x044:
            self._raw_interrupts &= ~value  # UARTICR: write 1 to clear
        elif offset in self._regs:
            self._regs[offset] = value & 0xFFFF
        # writes elsewhere (UARTICR, read-only registers) have no effect, as on the real part

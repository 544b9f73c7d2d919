"""The virtio console (virtio 1.2, 5.3 "Console Device"; device ID 3), one port, behind a transport.

Port 0's two queues always exist:

    queue 0  receiveq    the driver offers device-writable buffers; the device fills
                         them with what the user typed (`feed`)
    queue 1  transmitq   the driver offers device-readable buffers; the device prints them

Feature offered: VIRTIO_CONSOLE_F_EMERG_WRITE (2), a 32-bit config register at
+8 whose low byte is printed at once, even before the device is set up -- one exit
per byte, against the PL011's two (read the flags, write the byte). Not offered:
F_SIZE (0) and F_MULTIPORT (1), so the config space reads cols = rows = 0 and one port.

    config +0 cols le16   +2 rows le16   +4 max_nr_ports le32   +8 emerg_wr le32

The output is kept up to `output_limit` bytes; past it, bytes are counted in
`dropped` and not read from the guest, so a guest offering huge buffers costs
neither the host's memory nor its time.

What migrates with its VM (`state`) is what the guest has not received yet -- the bytes fed
for its receiveq -- and how much of the limit the text kept so far has used. The text itself
stays in the source host's records, as the UART's does: a migrated run's output is the
source's, then the destination's. The device holds no chain between serves (it returns each
one it takes before `serve` returns), so nothing else is in flight.
"""

from __future__ import annotations

import struct
from collections import deque

from vlab.machine.device_state import Fields
from vlab.machine.virtqueue import RingError, SplitQueue

CONSOLE_DEVICE_ID = 3
F_EMERG_WRITE = 1 << 2
RECEIVEQ, TRANSMITQ = 0, 1
EMERG_WR = 8
CONFIG_SIZE = 12
OUTPUT_LIMIT = 1 << 20


class VirtioConsole:
    """A virtio console with one port: `output` is what the guest sent, `feed()` what it will receive."""

    name = "virtio-console"
    device_id = CONSOLE_DEVICE_ID
    features = F_EMERG_WRITE
    queue_count = 2

    def __init__(self, output_limit: int = OUTPUT_LIMIT):
        self.output = bytearray()
        self.dropped = 0
        self.output_limit = output_limit
        self.kept_before = 0  # bytes kept on the hosts the VM ran on before this one: they count against the limit
        self._input: deque[int] = deque()

    @property
    def text(self) -> str:
        """What the guest printed, decoded leniently (a guest may send any bytes)."""
        return self.output.decode("utf-8", errors="replace")

    def feed(self, data: str | bytes) -> None:
        """Queue bytes for the guest's receiveq; they are delivered when the queue is next served."""
        self._input.extend(data.encode() if isinstance(data, str) else bytes(data))

    # --- migration ------------------------------------------------------------------------

    def state(self) -> dict:
        """The bytes not yet delivered to the guest, and the bytes of output kept so far, as plain data."""
        return {"input": list(self._input), "kept": self.kept_before + len(self.output)}

    def restore(self, state: object, where: str = "virtio-console") -> None:
        """Take what `state()` gave (on another host); MigrationError naming `where` if it is not a console's."""
        fields = Fields(state, where, {"input", "kept"})
        data = fields.items("input")
        if not all(type(b) is int and 0 <= b < 256 for b in data):
            raise fields.bad("input", data, "a list of bytes (0 to 255)")
        self.kept_before, self._input = fields.integer("kept", 64), deque(data)

    # --- configuration space --------------------------------------------------------

    def config_read(self, offset: int, size: int) -> int:
        config = struct.pack("<HHII", 0, 0, 1, 0)  # no size, one port, emerg_wr reads as 0
        if size not in (1, 2, 4) or offset % size or offset + size > CONFIG_SIZE:
            return 0
        return int.from_bytes(config[offset:offset + size], "little")

    def config_write(self, offset: int, size: int, value: int) -> None:
        if offset == EMERG_WR and size == 4:
            self._emit(bytes([value & 0xFF]))

    # --- the queues -------------------------------------------------------------------

    def serve(self, index: int, queue: SplitQueue) -> None:
        """Take every chain the driver offered on `queue`, print or fill it, and return it."""
        if index == TRANSMITQ:
            while (chain := queue.pop()) is not None:
                if chain.writable:
                    raise RingError(f"chain {chain.head} on the transmitq has a device-writable buffer")
                for buffer in chain.buffers:
                    take = min(self._room(), buffer.length)  # past the limit, not even read
                    if take:
                        self.output += queue.memory.read(buffer.address, take, "transmit buffer")
                    self.dropped += buffer.length - take
                queue.push(chain.head, 0)
        elif index == RECEIVEQ:
            while self._input and (chain := queue.pop()) is not None:
                if chain.readable:
                    raise RingError(f"chain {chain.head} on the receiveq has a device-readable buffer")
                written = 0
                for buffer in chain.writable:
                    data = bytes(self._input.popleft() for _ in range(min(buffer.length, len(self._input))))
                    queue.memory.write(buffer.address, data, "receive buffer")
                    written += len(data)
                queue.push(chain.head, written)

    def _room(self) -> int:
        return max(0, self.output_limit - self.kept_before - len(self.output))

    def _emit(self, data: bytes) -> None:
        take = min(self._room(), len(data))
        self.output += data[:take]
        self.dropped += len(data) - take

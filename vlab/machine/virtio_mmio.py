"""virtio-mmio version 2 (virtio 1.2, 4.2 "Virtio Over MMIO"), and QEMU virt's 32 transports.

A transport is 0x200 bytes of registers through which a driver finds a virtio
device, agrees on features, shows it where its virtqueues are and kicks it:

    0x000 MagicValue        R  0x74726976 "virt"   0x044 QueueReady        RW
    0x004 Version           R  2 (1 was legacy)    0x050 QueueNotify       W  "queue n has new buffers"
    0x008 DeviceID          R  3 console, 0 none   0x060 InterruptStatus   R  1 used buffer, 2 config
    0x00c VendorID          R                      0x064 InterruptACK      W
    0x010 DeviceFeatures    R  32 bits at a time   0x070 Status            RW 0 resets the device
    0x014 DeviceFeaturesSel W  which 32            0x080/0x084 QueueDesc   W  descriptor table (low, high)
    0x020 DriverFeatures    W                      0x090/0x094 QueueDriver W  available ring
    0x024 DriverFeaturesSel W                      0x0a0/0x0a4 QueueDevice W  used ring
    0x030 QueueSel          W  which queue         0x0ac SHMSel, 0x0b0.. SHMLen/SHMBase (no regions)
    0x034 QueueSizeMax      R                      0x0fc ConfigGeneration  R
    0x038 QueueSize         W                      0x100+ the device's configuration space

QEMU's virt board has 32 transports at 0x0a00_0000 + 0x200 n, interrupt SPI 16 + n
(INTID 48 + n), legacy unless `-global virtio-mmio.force-legacy=false`; its first
virtio device sits on the *last* transport (31), the next on 30 (measured on
QEMU 7.2). `VirtioMmioBus` places devices the same way, so a driver that scans
the transports finds them where it finds them on QEMU.

A driver's mistake -- a queue that is not a power of 2, rings outside RAM, a
notify before DRIVER_OK or to a queue that is not ready, a bad descriptor chain --
never raises: the device sets DEVICE_NEEDS_RESET in Status, remembers why
(`error`), sends a configuration-change interrupt if the driver was running, and
ignores its queues until the driver resets it by writing 0 to Status.

What migrates with a VM (`state`, `restore`) is each transport's whole guest-visible state --
Status, the feature selectors and words, QueueSel, each queue's size, ring addresses and
ready bit, InterruptStatus, the error that halted it -- with each ready queue's device-side
indices and the device's own state. ConfigGeneration stays 0 (the configuration never
changes) and the rings are guest RAM, which travels as pages. QEMU's virtio-mmio carries the
same (its vmstate: the selectors, guest features, each queue's num, enabled, desc, avail, used;
virtio's: status, ISR, queue_sel, last_avail_idx).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from vlab.errors import MigrationError
from vlab.machine.device_state import Fields
from vlab.machine.guest_memory import GuestMemory, GuestMemoryError
from vlab.machine.virtqueue import RingError, SplitQueue

MMIO_BASE, TRANSPORT_SIZE, TRANSPORTS = 0x0A00_0000, 0x200, 32
SPI_BASE = 16  # transport n interrupts on SPI 16 + n
MAGIC, VERSION = 0x7472_6976, 2
VENDOR_QEMU = 0x554D_4551  # "QEMU": vlab's board copies QEMU's virt, vendor ID included
QUEUE_SIZE_MAX = 1024  # what QEMU 7.2's virtio-serial offers

F_EVENT_IDX = 1 << 29  # VIRTIO_F_EVENT_IDX (VIRTIO_RING_F_EVENT_IDX)
F_VERSION_1 = 1 << 32
TRANSPORT_FEATURES = F_VERSION_1 | F_EVENT_IDX

# Status bits (virtio 1.2, 2.1)
ACKNOWLEDGE, DRIVER, DRIVER_OK, FEATURES_OK, DEVICE_NEEDS_RESET, FAILED = 1, 2, 4, 8, 64, 128
# InterruptStatus bits
USED_BUFFER, CONFIG_CHANGE = 1, 2

REGISTERS = {
    0x000: "MagicValue", 0x004: "Version", 0x008: "DeviceID", 0x00C: "VendorID", 0x010: "DeviceFeatures",
    0x014: "DeviceFeaturesSel", 0x020: "DriverFeatures", 0x024: "DriverFeaturesSel", 0x030: "QueueSel",
    0x034: "QueueSizeMax", 0x038: "QueueSize", 0x044: "QueueReady", 0x050: "QueueNotify",
    0x060: "InterruptStatus", 0x064: "InterruptACK", 0x070: "Status", 0x080: "QueueDescLow",
    0x084: "QueueDescHigh", 0x090: "QueueDriverLow", 0x094: "QueueDriverHigh", 0x0A0: "QueueDeviceLow",
    0x0A4: "QueueDeviceHigh", 0x0AC: "SHMSel", 0x0B0: "SHMLenLow", 0x0B4: "SHMLenHigh", 0x0B8: "SHMBaseLow",
    0x0BC: "SHMBaseHigh", 0x0C0: "QueueReset", 0x0FC: "ConfigGeneration",
}
CONFIG = 0x100
_ADDRESS_REGISTERS = {0x080: "desc", 0x090: "driver", 0x0A0: "device"}


class VirtioDevice(Protocol):
    """What a transport needs from the device behind it (the console, say)."""

    name: str
    device_id: int
    features: int  # the device type's own feature bits (0-23); the transport adds its own
    queue_count: int

    def config_read(self, offset: int, size: int) -> int: ...
    def config_write(self, offset: int, size: int, value: int) -> None: ...
    def serve(self, index: int, queue: SplitQueue) -> None: ...  # take and return queue `index`'s buffers
    def state(self) -> dict: ...  # what migrates with the VM, as plain data
    def restore(self, state: object, where: str) -> None: ...  # MigrationError naming `where` if not its state


@dataclass
class QueueConfig:
    """What the driver told the transport about one queue."""

    size: int = 0
    desc: int = 0
    driver: int = 0
    device: int = 0
    ready: bool = False
    ring: SplitQueue | None = None


class Transport:
    """One virtio-mmio transport (registers 0x000-0x1ff) with `device` behind it.

    `memory` is the guest RAM the device may reach; `interrupt(level)` drives the
    transport's interrupt line (high while InterruptStatus is non-zero). With
    `device_polls`, the device asks the driver not to notify it and serves its queues
    when `poll()` is called (as a polling back end would) instead of on each notify.
    """

    def __init__(self, device: VirtioDevice, memory: GuestMemory,
                 interrupt: Callable[[bool], None] | None = None, device_polls: bool = False):
        self.device, self.memory, self.device_polls = device, memory, device_polls
        self._interrupt = interrupt
        self._level = False
        self.offered = TRANSPORT_FEATURES | device.features
        self.notifications = [0] * device.queue_count  # QueueNotify writes, per queue: the exits a batch costs
        self.interrupts = 0  # used-buffer and config-change interrupts raised
        self.errors: list[str] = []  # every driver error, oldest first
        self.reset()

    def reset(self) -> None:
        """What writing 0 to Status does: forget the features, the queues and any error."""
        self.status = 0
        self.features = 0  # negotiated
        self.device_features_sel = self.driver_features_sel = self.queue_sel = self.shm_sel = 0
        self.driver_features = 0
        self.queues = [QueueConfig() for _ in range(self.device.queue_count)]
        self.interrupt_status = 0
        self.error: str | None = None
        self._line(False)

    # --- registers --------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if offset >= CONFIG:
            return self.device.config_read(offset - CONFIG, size)
        if size != 4 or offset % 4:
            return 0  # the driver MUST use aligned 32-bit accesses; QEMU answers others with 0 too
        queue = self._selected()
        values = {
            0x000: MAGIC, 0x004: VERSION, 0x008: self.device.device_id, 0x00C: VENDOR_QEMU,
            0x010: self.offered >> 32 * self.device_features_sel & 0xFFFF_FFFF if self.device_features_sel < 2 else 0,
            0x034: QUEUE_SIZE_MAX if queue else 0,
            0x044: int(queue.ready) if queue else 0,
            0x060: self.interrupt_status, 0x070: self.status,
            0x0B0: 0xFFFF_FFFF, 0x0B4: 0xFFFF_FFFF, 0x0B8: 0xFFFF_FFFF, 0x0BC: 0xFFFF_FFFF,  # no shared memory
            0x0FC: 0,  # ConfigGeneration: the configuration never changes
        }
        return values.get(offset, 0)  # write-only and unknown registers read as 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset >= CONFIG:
            return self.device.config_write(offset - CONFIG, size, value)
        if size != 4 or offset % 4:
            return
        value &= 0xFFFF_FFFF
        if offset == 0x014:
            self.device_features_sel = value
        elif offset == 0x020:
            if self.driver_features_sel < 2:
                shift = 32 * self.driver_features_sel
                self.driver_features = self.driver_features & ~(0xFFFF_FFFF << shift) | value << shift
        elif offset == 0x024:
            self.driver_features_sel = value
        elif offset == 0x030:
            self.queue_sel = value
        elif offset == 0x044:
            self._set_ready(value)
        elif offset == 0x050:
            self._notify(value & 0xFFFF)
        elif offset == 0x064:
            self.interrupt_status &= ~value
            self._line(bool(self.interrupt_status))
        elif offset == 0x070:
            self.reset() if value == 0 else self._set_status(value)
        elif offset == 0x0AC:
            self.shm_sel = value
        elif offset == 0x038 or offset & ~4 in _ADDRESS_REGISTERS:
            self._configure_queue(offset, value)
        # writes to read-only registers are ignored, as the driver must not make them

    def register_name(self, offset: int) -> str:
        if offset >= CONFIG:
            return f"config+{offset - CONFIG:#x}"
        return REGISTERS.get(offset, f"+{offset:#x}")

    # --- initialization -----------------------------------------------------------------

    def _set_status(self, value: int) -> None:
        value &= 0xFF & ~DEVICE_NEEDS_RESET  # the device's own bit: the driver cannot set or clear it
        if value & FEATURES_OK and not self.status & FEATURES_OK:
            if self.driver_features & ~self.offered or not self.driver_features & F_VERSION_1:
                value &= ~FEATURES_OK  # refused: the driver reads Status back and sees it gone (3.1.1)
            else:
                self.features = self.driver_features
        self.status = value | self.status & DEVICE_NEEDS_RESET
        if value & DRIVER_OK and not value & FEATURES_OK:
            self._fail("DRIVER_OK without FEATURES_OK: the features were never agreed")

    def _ring(self, queue: QueueConfig, features: int) -> SplitQueue:
        """The device's side of `queue`'s rings (RingError if the driver placed them badly)."""
        return SplitQueue(self.memory, queue.size, queue.desc, queue.driver, queue.device,
                          event_idx=bool(features & F_EVENT_IDX), max_size=QUEUE_SIZE_MAX)

    def _selected(self) -> QueueConfig | None:
        return self.queues[self.queue_sel] if self.queue_sel < len(self.queues) else None

    def _configure_queue(self, offset: int, value: int) -> None:
        queue = self._selected()
        if queue is None:
            return
        if queue.ready:
            return self._fail(f"{self.register_name(offset)} written while queue {self.queue_sel} is ready")
        if offset == 0x038:
            queue.size = value
        else:
            name, high = _ADDRESS_REGISTERS[offset & ~4], offset & 4
            old = getattr(queue, name)
            setattr(queue, name, (old & 0xFFFF_FFFF) | value << 32 if high else (old & ~0xFFFF_FFFF) | value)

    def _set_ready(self, value: int) -> None:
        queue = self._selected()
        if queue is None:
            return
        if not value:
            queue.ready, queue.ring = False, None
            return
        queue.ready = True
        if not self.status & FEATURES_OK:
            return self._fail(f"queue {self.queue_sel} made ready before FEATURES_OK: the ring's layout "
                              "depends on the features (EVENT_IDX)")
        try:
            queue.ring = self._ring(queue, self.features)
            queue.ring.ask_for_notifications(not self.device_polls)
        except (RingError, GuestMemoryError) as e:
            queue.ring = None
            self._fail(f"queue {self.queue_sel}: {e}")

    # --- operation ----------------------------------------------------------------------

    def _notify(self, index: int) -> None:
        if index < len(self.notifications):
            self.notifications[index] += 1
        if self.status & DEVICE_NEEDS_RESET:
            return  # halted until the driver resets the device
        if not self.status & DRIVER_OK:
            return self._fail(f"notify of queue {index} before DRIVER_OK")
        if index >= len(self.queues) or self.queues[index].ring is None:
            return self._fail(f"notify of queue {index}, which is not a ready queue of this {self.device.name}")
        if not self.device_polls:
            self._serve(index)

    def poll(self) -> None:
        """Serve every ready queue now (a polling device's turn; harmless otherwise)."""
        if self.status & DRIVER_OK and not self.status & DEVICE_NEEDS_RESET:
            for index, queue in enumerate(self.queues):
                if queue.ring is not None and not self.status & DEVICE_NEEDS_RESET:
                    self._serve(index)

    def _serve(self, index: int) -> None:
        ring = self.queues[index].ring
        old_used = ring.used_idx
        try:
            self.device.serve(index, ring)
            ring.ask_for_notifications(not self.device_polls)
            wanted = ring.interrupt_needed(old_used)
        except (RingError, GuestMemoryError) as e:
            return self._fail(f"queue {index}: {e}")
        if wanted:
            self._raise(USED_BUFFER)

    def _fail(self, why: str) -> None:
        """A driver error: stop, and ask for a reset (virtio 1.2, 2.1.2)."""
        self.errors.append(why)
        if self.status & DEVICE_NEEDS_RESET:
            return
        self.error = why
        self.status |= DEVICE_NEEDS_RESET
        if self.status & DRIVER_OK:
            self._raise(CONFIG_CHANGE)

    def _raise(self, cause: int) -> None:
        self.interrupt_status |= cause
        self.interrupts += 1
        self._line(True)

    # --- migration ----------------------------------------------------------------------

    def state(self) -> dict:
        """The transport's registers, its queues and its device, as plain data (see the module's docstring).
        The counts of notifications, interrupts and errors are the hypervisor's records: they stay."""
        return {"device": self.device.name, "status": self.status, "features": self.features,
                "driver_features": self.driver_features, "device_features_sel": self.device_features_sel,
                "driver_features_sel": self.driver_features_sel, "queue_sel": self.queue_sel,
                "shm_sel": self.shm_sel, "interrupt_status": self.interrupt_status, "error": self.error,
                "queues": [{"size": q.size, "desc": q.desc, "driver": q.driver, "device": q.device, "ready": q.ready,
                            "ring": None if q.ring is None else q.ring.state()} for q in self.queues],
                "device_state": self.device.state()}

    def restore(self, state: object, where: str) -> None:
        """Take the state `state()` gave, on another host. Guest memory is not touched (post-copy
        restores before the rings arrive). MigrationError naming `where` and the field if the state
        is malformed or of another device; then nothing has changed."""
        fields = Fields(state, where, {"device", "status", "features", "driver_features", "device_features_sel",
                                       "driver_features_sel", "queue_sel", "shm_sel", "interrupt_status", "error",
                                       "queues", "device_state"})
        if fields.text("device") != self.device.name:
            raise fields.bad("device", state["device"], f"{self.device.name!r}, the device on this transport")
        values = {key: fields.integer(key, 32) for key in ("device_features_sel", "driver_features_sel", "queue_sel",
                                                           "shm_sel", "interrupt_status")}
        values |= {"status": fields.integer("status", 8), "features": fields.integer("features", 64),
                   "driver_features": fields.integer("driver_features", 64), "error": fields.text("error")}
        if values["features"] & ~self.offered:
            raise fields.bad("features", values["features"], f"features this {self.device.name} offers "
                             f"({self.offered:#x})")
        if values["interrupt_status"] & ~(USED_BUFFER | CONFIG_CHANGE):
            raise fields.bad("interrupt_status", values["interrupt_status"], "bits 0 (used buffer) and 1 (config)")
        values["queues"] = [self._restored_queue(q, f"{where} queue {i}", values["features"])
                            for i, q in enumerate(fields.items("queues", count=self.device.queue_count))]
        self.device.restore(state["device_state"], f"{where} {self.device.name}")
        for name, value in values.items():  # all checked: now the transport takes them
            setattr(self, name, value)
        # The line's level without telling the interrupt controller: its own state, which travels
        # too, holds the level the line had.
        self._level = bool(self.interrupt_status)

    def _restored_queue(self, state: object, where: str, features: int) -> QueueConfig:
        fields = Fields(state, where, {"size", "desc", "driver", "device", "ready", "ring"})
        queue = QueueConfig(fields.integer("size", 32), fields.integer("desc", 64), fields.integer("driver", 64),
                            fields.integer("device", 64), fields.flag("ready"))
        if state["ring"] is None:
            return queue
        if not queue.ready:
            raise fields.bad("ring", state["ring"], "null: the queue is not ready")
        try:
            queue.ring = self._ring(queue, features)
        except RingError as e:  # a driver's mistake is caught when made: a ring that got this far was good
            raise MigrationError(f"{where}: the migrated queue has a ring no driver could have set up: {e}") from None
        queue.ring.restore(state["ring"], f"{where} ring")
        return queue

    def _line(self, level: bool) -> None:
        """Drive the interrupt line; the interrupt controller hears only changes of level."""
        if self._interrupt is not None and level != self._level:
            self._interrupt(level)
        self._level = level


class VirtioMmioBus:
    """QEMU virt's 32 virtio-mmio transports as one device at 0x0a00_0000 (0x4000 bytes).

    `devices` are placed as QEMU places `-device virtio-*-device` options: the first on
    transport 31, the next on 30, ...; the other transports are placeholders
    (DeviceID 0), which a driver skips. `interrupt(intid, level)`, if given, drives
    the GIC line of each transport (INTID 48 + n).
    """

    name = "virtio"
    base = MMIO_BASE
    size = TRANSPORTS * TRANSPORT_SIZE

    def __init__(self, memory: GuestMemory, devices: Sequence[VirtioDevice] = (),
                 interrupt: Callable[[int, bool], None] | None = None, device_polls: bool = False):
        if len(devices) > TRANSPORTS:
            raise ValueError(f"{len(devices)} virtio devices: QEMU's virt board has {TRANSPORTS} transports")
        self.device_polls = device_polls  # the machine must then call poll() now and then
        self.transports: list[Transport | None] = [None] * TRANSPORTS
        for i, device in enumerate(devices):
            n = TRANSPORTS - 1 - i
            line = None if interrupt is None else (lambda level, intid=32 + SPI_BASE + n: interrupt(intid, level))
            self.transports[n] = Transport(device, memory, line, device_polls)

    def transport_of(self, device: VirtioDevice) -> int:
        """The transport number `device` sits on."""
        return next(n for n, t in enumerate(self.transports) if t is not None and t.device is device)

    def read(self, offset: int, size: int) -> int:
        transport = self.transports[offset // TRANSPORT_SIZE]
        register = offset % TRANSPORT_SIZE
        if transport is None:  # a placeholder: a valid transport with no device behind it
            return {0x000: MAGIC, 0x004: VERSION, 0x00C: VENDOR_QEMU}.get(register, 0) if size == 4 else 0
        return transport.read(register, size)

    def write(self, offset: int, size: int, value: int) -> None:
        transport = self.transports[offset // TRANSPORT_SIZE]
        if transport is not None:
            transport.write(offset % TRANSPORT_SIZE, size, value)

    def register_name(self, offset: int) -> str:
        n, register = divmod(offset, TRANSPORT_SIZE)
        transport = self.transports[n]
        name = transport.register_name(register) if transport else REGISTERS.get(register, f"+{register:#x}")
        return f"virtio{n}.{name}"

    def state(self) -> dict:
        """What migrates with its VM: every transport that has a device behind it (the placeholders
        have no state), and whether the devices poll -- which the driver was told through its rings."""
        return {"polls": self.device_polls,
                "transports": {str(n): t.state() for n, t in enumerate(self.transports) if t is not None}}

    def restore(self, state: object) -> None:
        """Take the state `state()` gave (on another host), into a bus with the same devices on the same
        transports. MigrationError naming the transport and the field if the state is malformed or foreign."""
        fields = Fields(state, "virtio", {"polls", "transports"})
        if fields.flag("polls") != self.device_polls:
            raise fields.bad("polls", state["polls"], f"{self.device_polls}: a driver told to "
                             f"{'not ' if state['polls'] else ''}notify its device would wait for ever here")
        ours = {str(n): t for n, t in enumerate(self.transports) if t is not None}
        transports = state["transports"]
        if not isinstance(transports, dict) or transports.keys() != ours.keys():
            raise fields.bad("transports", transports, f"the states of transport(s) {', '.join(ours)}, where this "
                             "board's virtio devices sit")
        for n, transport in ours.items():
            transport.restore(transports[n], f"virtio{n}")

    def poll(self) -> None:
        """Let every polling device serve its queues."""
        for transport in self.transports:
            if transport is not None:
                transport.poll()

"""The external oracle: run a guest ELF on `qemu-system-aarch64 -M virt` and capture its UART.

vlab's board copies QEMU's `virt` machine, so the same ELF must print the same
thing on both. QEMU boots `-kernel FILE` at EL1 (no `virtualization=on`), where
its PSCI firmware answers HVC -- the conduit vlab's guests use -- and SYSTEM_OFF
ends the QEMU process. A guest that never powers off is stopped by a timeout.

Like vlab's board, QEMU's gets a modern (version 2) virtio-mmio console on its last
transport, whose output QEMU writes to a file (`virtio_console=False` leaves QEMU's
default: 32 legacy transports with nothing behind them):

    -global virtio-mmio.force-legacy=false -device virtio-serial-device
    -chardev file,id=c0,path=OUT -device virtconsole,chardev=c0

(checked with QEMU 7.2, also as issue 14 writes it: `-M virt -cpu cortex-a57 -nographic
-net none` and these options). The console lands on the last transport, 0x0a00_3e00.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vlab.errors import ToolError
from vlab.guests.build import require_tool

QEMU = "qemu-system-aarch64"
QEMU_PACKAGE = "qemu-system-arm"  # the Debian package that provides QEMU (and its aarch64 system emulator)
MACHINE = ("-M", "virt", "-cpu", "cortex-a72", "-m", "128M")  # RAM matches vlab's default board
CONSOLE = ("-nographic", "-nodefaults", "-serial", "stdio")  # the PL011 on stdout, no other devices
VIRTIO_CONSOLE = ("-global", "virtio-mmio.force-legacy=false", "-device", "virtio-serial-device")


@dataclass(frozen=True)
class QemuRun:
    """What the guest printed on QEMU's PL011, and whether it powered off in time."""

    uart: str
    powered_off: bool  # QEMU exited by itself (PSCI SYSTEM_OFF), not killed by the timeout
    stderr: str
    virtio_console: str = ""  # what the guest sent to the virtio console (none without one)


def qemu() -> str:
    """QEMU's path; ToolError saying what to install when it is missing."""
    return require_tool(QEMU, QEMU_PACKAGE, "to compare guests with QEMU")


def run_on_qemu(elf: str | Path, timeout_s: float = 20.0, virtio_console: bool = True, cpus: int = 1,
                virtualization: bool = False, trace: str | None = None) -> QemuRun:
    """Boot ELF on QEMU's virt board like `-kernel ELF` and return its UART and virtio console output.

    `cpus` is `-smp` (the boot CPU starts alone; PSCI CPU_ON, through HVC, starts the others);
    `virtualization` boots at EL2 (`-M virt,virtualization=on`, where PSCI is reached by SMC); `trace`
    enables QEMU trace events (e.g. "gic_*"), which land in stderr. The virtio console is on by
    default, as vlab's board has it.
    """
    machine = list(MACHINE)
    if virtualization:
        machine[machine.index("virt")] = "virt,virtualization=on"
    with tempfile.TemporaryDirectory(prefix="vlab-qemu-") as scratch:
        out = Path(scratch) / "virtio-console"
        devices = [*VIRTIO_CONSOLE, "-chardev", f"file,id=c0,path={out}", "-device", "virtconsole,chardev=c0"]
        command = [qemu(), *machine, "-smp", str(cpus), *CONSOLE, *(devices if virtio_console else ()),
                   *(("-trace", trace) if trace is not None else ()), "-kernel", str(elf)]
        try:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as e:  # the guest did not power off: keep what it printed
            return QemuRun(_text(e.stdout), False, _text(e.stderr), _file_text(out))
        if done.returncode != 0:
            raise ToolError(f"QEMU failed (exit status {done.returncode}) on {elf}: {_text(done.stderr).strip()}")
        return QemuRun(_text(done.stdout), True, _text(done.stderr), _file_text(out))


def _file_text(path: Path) -> str:
    return _text(path.read_bytes()) if path.is_file() else ""


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")  # decoded like vlab's PL011.text

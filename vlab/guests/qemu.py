"""The external oracle: run a guest ELF on `qemu-system-aarch64 -M virt` and capture its UART.

vlab's board copies QEMU's `virt` machine, so the same ELF must print the same
thing on both. QEMU boots `-kernel FILE` at EL1 (no `virtualization=on`), where
its PSCI firmware answers HVC -- the conduit vlab's guests use -- and SYSTEM_OFF
ends the QEMU process. A guest that never powers off is stopped by a timeout.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from vlab.errors import ToolError
from vlab.guests.build import require_tool

QEMU = "qemu-system-aarch64"
QEMU_PACKAGE = "qemu-system-arm"  # the Debian package that provides QEMU (and its aarch64 system emulator)
MACHINE = ("-M", "virt", "-cpu", "cortex-a72", "-m", "128M")  # RAM matches vlab's default board
CONSOLE = ("-nographic", "-nodefaults", "-serial", "stdio")  # the PL011 on stdout, no other devices


@dataclass(frozen=True)
class QemuRun:
    """What the guest printed on QEMU's PL011, and whether it powered off in time."""

    uart: str
    powered_off: bool  # QEMU exited by itself (PSCI SYSTEM_OFF), not killed by the timeout
    stderr: str


def qemu() -> str:
    """QEMU's path; ToolError saying what to install when it is missing."""
    return require_tool(QEMU, QEMU_PACKAGE, "to compare guests with QEMU")


def run_on_qemu(elf: str | Path, timeout_s: float = 20.0, cpus: int = 1, virtualization: bool = False,
                trace: str | None = None) -> QemuRun:
    """Boot ELF on QEMU's virt board like `-kernel ELF` and return its UART output.

    `cpus` is `-smp`; `virtualization` boots at EL2 (`-M virt,virtualization=on`, where PSCI is
    reached by SMC); `trace` enables QEMU trace events (e.g. "gic_*"), which land in stderr.
    """
    machine = list(MACHINE)
    if virtualization:
        machine[machine.index("virt")] = "virt,virtualization=on"
    command = [qemu(), *machine, "-smp", str(cpus), *CONSOLE, "-kernel", str(elf)]
    if trace is not None:
        command += ["-trace", trace]
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:  # the guest did not power off: keep what it printed
        return QemuRun(_text(e.stdout), False, _text(e.stderr))
    if done.returncode != 0:
        raise ToolError(f"QEMU failed (exit status {done.returncode}) on {elf}: {_text(done.stderr).strip()}")
    return QemuRun(_text(done.stdout), True, _text(done.stderr))


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")  # decoded like vlab's PL011.text

"""A register frame: general-purpose registers saved from a core, and restored to it, in one call each.

Software entered from a guest saves the guest's general-purpose registers before it runs code of
its own, and restores them before it returns: Xen's entry code pushes x0..x30 onto its stack
(`struct cpu_user_regs`), KVM's `__guest_exit` stores them in the vCPU's context. A frame is that
save area. `save()` is one batched read of the core (Unicorn's uc_reg_read_batch), `restore()`
one batched write; in between, whoever holds the frame reads and writes the saved values, and the
core's registers are free for someone else's.

    frame = RegisterFrame()           # x0..x30 (RegisterFrame(19): x19..x30)
    frame.save(cpu);  frame.x(0);  frame.set_x(0, 42);  frame.restore(cpu)

A frame also stands in for the core it was saved from, as a vCPU sees its core (`x`, `set_x`,
and the rest passed through): registers the frame holds come from the frame, the others (system
registers, PC, PSTATE) from that core.
"""

from __future__ import annotations

import ctypes

from unicorn import arm64_const as A
from unicorn.unicorn_py3.unicorn import uclib

from vlab.machine.cpu import CPU

_X = [getattr(A, f"UC_ARM64_REG_X{i}") for i in range(29)] + [A.UC_ARM64_REG_X29, A.UC_ARM64_REG_X30]


class RegisterFrame:
    """Registers x`first`..x30, saved from a core and restored to one as a block."""

    def __init__(self, first: int = 0):
        self.first = first
        self.cpu: CPU | None = None  # the core saved last
        count = 31 - first
        self.count = count
        self._ids = (ctypes.c_int * count)(*_X[first:])
        self._values = (ctypes.c_uint64 * count)()
        base = ctypes.addressof(self._values)
        self._pointers = (ctypes.c_void_p * count)(*(base + 8 * i for i in range(count)))

    def save(self, cpu: CPU) -> None:
        """Copy `cpu`'s registers into the frame."""
        self.cpu = cpu
        if uclib.uc_reg_read_batch(cpu.uc._uch, self._ids, self._pointers, self.count) != 0:
            raise RuntimeError("Unicorn refused to read the general-purpose registers")

    def restore(self, cpu: CPU) -> None:
        """Copy the frame's registers into `cpu`."""
        if uclib.uc_reg_write_batch(cpu.uc._uch, self._ids, self._pointers, self.count) != 0:
            raise RuntimeError("Unicorn refused to write the general-purpose registers")

    def values(self) -> list[int]:
        return list(self._values)

    def load(self, values: list[int]) -> None:
        """Put `values` (one per register of the frame) in the frame, to restore them later."""
        self._values[:] = values

    # --- the frame as the vCPU's core, while it holds the vCPU's registers -----------------------

    def x(self, n: int) -> int:
        if n == 31:
            return 0
        if n >= self.first:
            return self._values[n - self.first]
        return self.cpu.x(n)

    def set_x(self, n: int, value: int) -> None:
        if n == 31:
            return
        if n >= self.first:
            self._values[n - self.first] = value & (2**64 - 1)
        else:
            self.cpu.set_x(n, value)

    def registers(self) -> dict[str, int]:
        regs = self.cpu.registers()
        regs.update({f"x{i}": self.x(i) for i in range(31)})
        return regs

    @property
    def pc(self) -> int:
        return self.cpu.pc

    @pc.setter
    def pc(self, value: int) -> None:
        self.cpu.pc = value

    @property
    def el(self) -> int:
        return self.cpu.el

    def read_sysreg(self, name: str) -> int:
        return self.cpu.read_sysreg(name)

    def write_sysreg(self, name: str, value: int) -> None:
        self.cpu.write_sysreg(name, value)

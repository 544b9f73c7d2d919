"""What an abort really was: the syndrome and address QEMU computed, which Unicorn reports only as a number.

When the guest's own MMU (walked by Unicorn, that is QEMU) refuses an access, QEMU works out
exactly what the hardware reports -- the ESR value (exception class, DFSC/IFSC with the fault's
kind and level, WnR) and the faulting virtual address -- and keeps them in its CPU state
(`env->exception.syndrome`, `.vaddress`) for the exception entry it would make next. Unicorn
makes no entry: it calls vlab's interrupt hook with the exception's number. The values are
still there, and a saved context (`uc_context_save`, a copy of that CPU state) holds them.

Their place inside the context is found once, by calibration, as vlab.machine.icount finds the
instruction counter: two loads of known, unlikely addresses beyond the physical address range
(an address size fault even with the MMU off), and the one offset holding each address, with
the syndrome of each (a load, then a store) right before it.
"""

from __future__ import annotations

import ctypes
import functools
import struct

from unicorn import UC_ARCH_ARM64, UC_HOOK_INTR, UC_MODE_ARM, Uc, UcError
from unicorn.arm64_const import UC_ARM64_REG_CP_REG, UC_ARM64_REG_X0
from unicorn.unicorn_py3.unicorn import uclib

_PROBES = ((0x5EED_1234_5678_9AB0, 0xF940_0001, 0x9600_0000),  # ldr x1, [x0]: EC 0x25, address size L0
           (0x6EED_4321_8765_0A10, 0xF900_0002, 0x9600_0040))  # str x2, [x0]: the same, WnR = 1
_CODE = 0x1000
# SCR_EL3 (RW, HCE, NS) and HCR_EL2 (RW) as vlab's CPU sets them, as (CRn, CRm, op0, op1, op2, value):
# without them, Unicorn reports the access as unmapped memory instead of raising the abort.
_FIRMWARE_SETUP = ((1, 1, 3, 6, 0, 1 << 10 | 1 << 8 | 1), (1, 1, 3, 4, 0, 1 << 31))


def _context_after_abort(address: int, word: int) -> bytes:
    uc, saved = Uc(UC_ARCH_ARM64, UC_MODE_ARM), {}
    for register in _FIRMWARE_SETUP:
        uc.reg_write(UC_ARM64_REG_CP_REG, register)
    uc.mem_map(_CODE, 0x1000)
    uc.mem_write(_CODE, word.to_bytes(4, "little"))
    uc.reg_write(UC_ARM64_REG_X0, address)

    def on_abort(u, _intno, _user):
        saved["context"] = bytes(u.context_save())
        u.emu_stop()

    uc.hook_add(UC_HOOK_INTR, on_abort)
    try:
        uc.emu_start(_CODE, 0, count=1)
    except UcError:
        pass  # the abort, reported once more as an error: the context is what we need
    return saved.get("context", b"")


@functools.cache
def vaddress_offset() -> int:
    """Byte offset of QEMU's `exception.vaddress` in a saved context (`syndrome` is 8 bytes before it)."""
    candidates: set[int] | None = None
    for address, word, esr in _PROBES:
        data = _context_after_abort(address, word)
        found = {o for o in range(8, len(data) - 8, 4)
                 if struct.unpack_from("<Q", data, o)[0] == address and struct.unpack_from("<I", data, o - 8)[0] == esr}
        candidates = found if candidates is None else candidates & found
    if not candidates or len(candidates) != 1:
        raise RuntimeError("vlab could not locate the abort syndrome in Unicorn's CPU state; it needs "
                           "unicorn==2.1.4 (run `vlab doctor`, then `pip install unicorn==2.1.4`)")
    return candidates.pop()


class AbortInfo:
    """Reads, from inside the interrupt hook, the ESR and FAR QEMU computed for the abort being raised."""

    def __init__(self, uc):
        self._uch = uc._uch
        self._context = ctypes.c_void_p()
        if uclib.uc_context_alloc(self._uch, ctypes.byref(self._context)) != 0:
            raise RuntimeError("Unicorn could not allocate a CPU context")
        self._offset = vaddress_offset()

    def read(self) -> tuple[int, int]:
        """(ESR, FAR) of the abort Unicorn is reporting now."""
        uclib.uc_context_save(self._uch, self._context)
        base = self._context.value + self._offset
        return ctypes.c_uint32.from_address(base - 8).value, ctypes.c_uint64.from_address(base).value

    def __del__(self) -> None:
        if self._context:
            uclib.uc_context_free(self._context)

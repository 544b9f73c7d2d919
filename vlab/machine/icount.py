"""How many instructions did the guest retire? Unicorn counts, but does not say.

`emu_start(..., count=N)` makes Unicorn count the instructions it starts, in C
(`uc->emu_counter`), to stop after N. That counter is exactly what vlab needs
for its instruction budget and for a deterministic guest clock, but Unicorn
2.1 has no API to read it. We find the counter's place inside Unicorn's engine
structure once, by calibration: run known programs that stop after a known
number of instructions and look for the one 64-bit word that always holds that
number, followed by the `count` we asked for (`uc->emu_count`). Reading it is
then one memory load, with no hook on the guest's path.
"""

from __future__ import annotations

import ctypes
import functools

from unicorn import UC_ARCH_ARM64, UC_HOOK_INTR, UC_MODE_ARM, Uc

_SCAN_WORDS = 8192  # the counter lives in the first few KB of struct uc_struct
_CALIBRATION_COUNT = 0x5EED_C0DE  # an unlikely value, easy to spot next to the counter
_NOP, _SVC0 = 0xD503201F, 0xD4000001


def _words(uc: Uc) -> ctypes.Array:
    return (ctypes.c_uint64 * _SCAN_WORDS).from_address(ctypes.cast(uc._uch, ctypes.c_void_p).value)


@functools.cache
def counter_offset() -> int:
    """Byte offset of `emu_counter` in Unicorn's engine structure (found once per process)."""
    candidates: set[int] | None = None
    for nops in (5, 13, 29):
        uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
        uc.mem_map(0x1000, 0x1000)
        uc.mem_write(0x1000, b"".join(w.to_bytes(4, "little") for w in [_NOP] * nops + [_SVC0]))
        uc.hook_add(UC_HOOK_INTR, lambda u, intno, _: u.emu_stop())
        uc.emu_start(0x1000, 0x2000, count=_CALIBRATION_COUNT)
        words = _words(uc)
        # the SVC is the (nops+1)-th instruction started; emu_count sits right after
        found = {i for i in range(_SCAN_WORDS - 1) if words[i] == nops + 1 and words[i + 1] == _CALIBRATION_COUNT}
        candidates = found if candidates is None else candidates & found
    if not candidates or len(candidates) != 1:
        raise RuntimeError(
            "vlab could not locate Unicorn's instruction counter; it needs unicorn==2.1.4 "
            "(run `vlab doctor`, then `pip install unicorn==2.1.4`)"
        )
    return candidates.pop() * 8


class InstructionCounter:
    """Reads the number of instructions Unicorn has started since the last emu_start(count=...)."""

    def __init__(self, uc: Uc):
        address = ctypes.cast(uc._uch, ctypes.c_void_p).value + counter_offset()
        self._word = ctypes.c_uint64.from_address(address)
        self._limit = ctypes.c_uint64.from_address(address + 8)
        self._uc = uc  # keep the engine (and so the address) alive as long as we are

    def started(self) -> int:
        """Instructions started by the current (or last) emu_start, including one that faulted."""
        return self._word.value

    def limit(self) -> int:
        """The `count` the current (or last) emu_start stops after, as lowered by `limit_to`."""
        return self._limit.value

    def limit_to(self, count: int) -> None:
        """Lower the current emu_start's `count` to `count` (no higher than it was): Unicorn stops
        once the counter passes it. The count (`uc->emu_count`) is the word after the counter."""
        self._limit.value = min(self._limit.value, count)

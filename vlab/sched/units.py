"""Host ticks and the durations people write: "30ms", "500us", "625000ticks".

One host tick is one guest instruction, and the board's counter runs at 62.5 MHz
(vlab.machine.timer.FREQUENCY_HZ), so a millisecond of guest time is 62,500 ticks and a
microsecond 62.5: published scheduler constants (Xen's 30 ms slice, Linux's 6 ms latency) are
scaled with these.
"""

from __future__ import annotations

import re
from fractions import Fraction

from vlab.sched import SchedError

TICKS_PER_SECOND = 62_500_000  # = vlab.machine.timer.FREQUENCY_HZ (a test checks that they agree)
TICKS_PER_MS = TICKS_PER_SECOND // 1000
UNITS = {"ms": Fraction(TICKS_PER_MS), "us": Fraction(TICKS_PER_SECOND, 1_000_000), "ticks": Fraction(1)}

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zµ]*)\s*$")


def ms(milliseconds: float) -> int:
    """Milliseconds of guest time in host ticks (rounded to a whole tick)."""
    return round(milliseconds * TICKS_PER_MS)


def parse_duration(text: str, what: str = "a duration") -> int:
    """Host ticks in `text`, a number and a unit: "10ms", "2.5ms", "500us", "625000ticks".

    A SchedError names `what` and says what was expected.
    """
    match = _DURATION.match(text)
    unit = match and match.group(2).replace("µs", "us")
    if not match or unit not in UNITS:
        raise SchedError(f"{what}: {text.strip()!r} is not a duration: write a number and a unit, "
                         f"e.g. 10ms, 500us or 625000ticks")
    ticks = Fraction(match.group(1)) * UNITS[unit]
    if ticks.denominator != 1:
        raise SchedError(f"{what}: {text.strip()} is not a whole number of ticks "
                         f"({TICKS_PER_MS:,} ticks per ms, 62.5 per us)")
    if ticks <= 0:
        raise SchedError(f"{what}: {text.strip()} is not a positive duration")
    return int(ticks)


def format_duration(ticks: int) -> str:
    """`ticks` the way parse_duration reads them back: in ms when whole microseconds, else ticks."""
    microseconds, rest = divmod(ticks * 1000, TICKS_PER_MS)
    if rest:
        return f"{ticks}ticks"
    whole, fraction = divmod(microseconds, 1000)
    return f"{whole}.{fraction:03d}".rstrip("0").rstrip(".") + "ms"

"""The network link a live migration crosses between two hosts: a bandwidth and a latency.

    link = Link(bandwidth_mbps=1000, latency_ms=0.05)
    link.ticks(4096 * 100)       # how long 100 pages take to arrive, in host ticks
    link.ms(4096 * 100)          # the same, in milliseconds

A message of n bytes sent at once arrives `latency + 8n / bandwidth` after it leaves: a
pre-copy round streams its pages back to back, so it pays the latency once. A request and its
answer (post-copy asking for a page) pay it twice. The time is modelled, not measured: it is
counted in the hosts' own ticks (62.5 MHz, one guest instruction each, as vlab's counter), so
that while a round is on the wire the guest runs exactly that many instructions.
"""

from __future__ import annotations

from dataclasses import dataclass

from vlab.machine.timer import FREQUENCY_HZ

DEFAULT_BANDWIDTH_MBPS = 1000.0  # gigabit Ethernet
DEFAULT_LATENCY_MS = 0.05  # one way, across a machine room's switch


@dataclass(frozen=True)
class Link:
    """A link of `bandwidth_mbps` megabits per second and `latency_ms` one way."""

    bandwidth_mbps: float = DEFAULT_BANDWIDTH_MBPS
    latency_ms: float = DEFAULT_LATENCY_MS

    def __post_init__(self):
        if not self.bandwidth_mbps > 0:
            raise ValueError(f"a link's bandwidth must be a positive number of Mbit/s, not {self.bandwidth_mbps}")
        if not self.latency_ms >= 0:
            raise ValueError(f"a link's latency must be 0 ms or more, not {self.latency_ms}")

    def ms(self, size: int, trips: int = 1) -> float:
        """Milliseconds for `size` bytes to arrive, sent in one go (`trips` = 2: a request and its answer;
        0: the time they add to a transfer already under way)."""
        return trips * self.latency_ms + size * 8 / (self.bandwidth_mbps * 1000)

    def ticks(self, size: int, trips: int = 1) -> int:
        """The same in host ticks (at least one: nothing arrives in no time)."""
        return max(1, round(self.ms(size, trips) * FREQUENCY_HZ / 1000))

    def __str__(self) -> str:
        return f"{self.bandwidth_mbps:g} Mbit/s, {self.latency_ms:g} ms latency"

"""A simple balancing policy: relieve hosts above a high mark, empty hosts below a low one.

    plan(hosts) -> [(vm, host), ...]      (the policy protocol of vlab.hyp.balance)

1. A *hot* host (its VMs use more than HIGH of its capacity) sends away its VMs, smallest first,
   until it is under HIGH: each to the host that is on with the most room left under HIGH, or --
   if none has room -- to a host that is off, which is switched on.
2. Then one *cold* host (the least loaded that is on, under LOW): if all its VMs fit on the other
   hosts that are on under HIGH (largest first, each to the fullest host it fits in), they all go,
   and the host, now empty, is switched off -- "use each piece of hardware as fully as possible".

The two marks are vlab's own choice: lower HIGH leaves more headroom for loads that rise (and
switches more hosts on); higher LOW empties hosts more eagerly (and migrates more).
"""

from __future__ import annotations

HIGH = 0.80  # of a host's capacity: above it, the host is hot
LOW = 0.30  # below it, the host is worth emptying


def plan(hosts: list[dict], high: float = HIGH, low: float = LOW) -> list[tuple[str, str]]:
    """Migrations for the cluster as it is now (see the module docstring); `high` and `low` are the
    marks, as shares of each host's capacity."""
    load = {h["name"]: sum(h["vms"].values()) for h in hosts}
    vms = {h["name"]: dict(h["vms"]) for h in hosts}
    capacity = {h["name"]: h["capacity"] for h in hosts}
    on = {h["name"]: h["on"] for h in hosts}
    moves: list[tuple[str, str]] = []

    def room(name: str) -> float:
        return high * capacity[name] - load[name]

    def move(vm: str, source: str, destination: str) -> None:
        share = vms[source].pop(vm)
        vms[destination][vm] = share
        load[source] -= share
        load[destination] += share
        on[destination] = True
        moves.append((vm, destination))

    for hot in [n for n in load if on[n] and load[n] > high * capacity[n]]:
        for vm, share in sorted(vms[hot].items(), key=lambda item: item[1]):
            if load[hot] <= high * capacity[hot]:
                break
            targets = [n for n in load if n != hot and on[n] and room(n) >= share]
            spare = [n for n in load if not on[n]]
            if targets:
                move(vm, hot, max(targets, key=room))
            elif spare:
                move(vm, hot, spare[0])
    cold = [n for n in load if on[n] and vms[n] and load[n] < low * capacity[n]]
    if cold:
        coldest = min(cold, key=lambda n: load[n])
        others = [n for n in load if n != coldest and on[n] and vms[n]]
        fits: list[tuple[str, str]] = []
        free = {n: room(n) for n in others}
        for vm, share in sorted(vms[coldest].items(), key=lambda item: -item[1]):
            target = min((n for n in others if free[n] >= share), key=lambda n: free[n], default=None)
            if target is None:
                return moves  # not everything fits: the host stays on
            free[target] -= share
            fits.append((vm, target))
        for vm, target in fits:
            move(vm, coldest, target)
    return moves

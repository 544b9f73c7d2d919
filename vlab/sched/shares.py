"""Weighted shares with ceilings: what each claimant gets of a divisible resource.

Both the credit scheduler's accounting (credits among VMs, each VM capped) and the
entitlements the metrics compare against split a total in proportion to weights, where no
claimant may get more than its limit and what a limited claimant cannot use goes to the others
("water-filling", max-min fairness with weights).
"""

from __future__ import annotations

from typing import Sequence

from vlab.sched import Entity

UNLIMITED = float("inf")


def water_fill(total: float, claims: Sequence[tuple[float, float]]) -> list[float]:
    """Split `total` among `claims` of (weight, limit): in proportion to weight, none above its limit.

    A claimant whose proportional part would exceed its limit gets its limit, and the rest is
    split again among the others, until every part fits.
    """
    shares = [0.0] * len(claims)
    open_ = [i for i, (weight, limit) in enumerate(claims) if weight > 0 and limit > 0]
    left = float(total)
    while open_ and left > 0:
        weight = sum(claims[i][0] for i in open_)
        full = [i for i in open_ if left * claims[i][0] / weight >= claims[i][1]]
        if not full:
            for i in open_:
                shares[i] = left * claims[i][0] / weight
            break
        for i in full:
            shares[i] = claims[i][1]
            left -= claims[i][1]
        open_ = [i for i in open_ if i not in full]
    return shares


def weighted_entitlement(entities: Sequence[Entity], pcpus: int, *, weights: bool = True,
                         caps: bool = True) -> dict[Entity, float]:
    """Each vCPU's share of one pCPU when all are runnable: by weight, at most one pCPU each, VM caps kept.

    The split is per VM, every vCPU counting its VM's weight (as Xen's credit scheduler counts a
    domain's weight once per active vCPU); a VM's cap bounds the sum over its vCPUs. With
    `weights=False` every vCPU weighs the same; with `caps=False` caps are ignored.
    """
    vms: dict[int, list[Entity]] = {}
    for entity in entities:
        vms.setdefault(entity.vm, []).append(entity)
    claims = []
    for members in vms.values():
        weight = (members[0].weight if weights else 1) * len(members)
        limit = float(len(members))
        if caps and members[0].cap:
            limit = min(limit, members[0].cap / 100)
        claims.append((weight, limit))
    parts = water_fill(pcpus, claims)
    return {entity: part / len(members) for members, part in zip(vms.values(), parts) for entity in members}

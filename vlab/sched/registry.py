"""The policies by name, and the one place that builds one from options (the command line, a widget).

    policy = make_policy("credit", pcpus=2, slice_ticks=ms(10))
    policy = make_policy("arinc653", pcpus=1, windows="safety=10ms,info=20ms/frame=40ms",
                         vm_names=["safety", "info"])
"""

from __future__ import annotations

from typing import Sequence

from vlab.sched import Scheduler, SchedError
from vlab.sched.arinc653 import Arinc653, Frame, parse_frame
from vlab.sched.cosched import CoSchedule
from vlab.sched.credit import Credit
from vlab.sched.fair import Fair
from vlab.sched.round_robin import RoundRobin

POLICIES = {
    "rr": "round-robin: a fixed slice in turn",
    "credit": "Xen's credit scheduler: weights, caps, BOOST/UNDER/OVER",
    "arinc653": "ARINC 653: fixed windows in a major frame",
    "fair": "proportional share by virtual runtime (Linux CFS, for KVM)",
    "cosched": "co-scheduling: all of a VM's vCPUs at once",
}


def make_policy(name: str, pcpus: int = 1, *, slice_ticks: int | None = None, tick_ticks: int | None = None,
                windows: str | Frame | None = None, vm_names: Sequence[str] = ()) -> Scheduler:
    """The policy called `name` for `pcpus` physical CPUs; an option it has no use for is an error.

    `slice_ticks` is the slice (rr, credit, cosched) or target latency (fair), `tick_ticks` the
    credit scheduler's tick, `windows` the ARINC 653 frame (a Frame or its text, VMs named by
    index or by `vm_names`).
    """
    if name not in POLICIES:
        raise SchedError(f"no scheduling policy is called {name!r}: choose one of {', '.join(POLICIES)}")
    unused = [option for option, value, users in (("a slice", slice_ticks, ("rr", "credit", "fair", "cosched")),
                                                  ("a tick", tick_ticks, ("credit",)),
                                                  ("windows", windows, ("arinc653",)))
              if value is not None and name not in users]
    if unused:
        raise SchedError(f"the {name} policy takes no {unused[0]}"
                         + (": its windows are its schedule" if name == "arinc653" else ""))
    options = {} if slice_ticks is None else {"slice_ticks": slice_ticks}
    if name == "rr":
        return RoundRobin(pcpus=pcpus, **options)
    if name == "credit":
        return Credit(pcpus=pcpus, tick_ticks=tick_ticks, **options)
    if name == "fair":
        return Fair(pcpus=pcpus, **options)
    if name == "cosched":
        return CoSchedule(pcpus=pcpus, **options)
    if windows is None:
        raise SchedError("the arinc653 policy needs its windows, e.g. 0=10ms,1=20ms/frame=40ms")
    frame = windows if isinstance(windows, Frame) else parse_frame(windows, vm_names)
    return Arinc653(frame, pcpus=pcpus)

"""Chapter 5 exercises: sharing the CPU. You write a scheduler's decision, and a partition schedule.

Both are plain functions of plain data; the tests run real guests on a host that schedules with
what your functions return. Check them in a notebook:

    from vlab.grading import check, load
    ch05 = load("ch05_sharing")   # this file, as saved now
    check("ch05.pick_next", ch05.pick_next)
"""


def pick_next(weights, vruntimes, ran, ready):
    """One decision of a virtual-runtime scheduler: charge the vCPUs that ran, then pick the next one.

    The four lists hold one item per vCPU: its weight (1 to 65535; the default is 256), its
    virtual runtime so far (an int), the guest ticks it ran since the last decision, and whether
    it is ready (runnable, and not running on another pCPU).
    - Charge: each vCPU's virtual runtime grows by ran * 2**24 // weight, in whole numbers, so a
      vCPU of weight 256 ages 65,536 per tick it ran, one of twice the weight half as fast.
    - Pick the ready vCPU with the least virtual runtime after the charge; among equals, the
      lowest index. None when no vCPU is ready.
    - Decide from the arguments alone: the same arguments always give the same decision.
    Return a pair: (the new virtual runtimes as a list, the index picked or None).
    Example: pick_next([512, 256], [0, 0], [62500, 0], [True, True]) == ([2048000000, 0], 1).
    """
    raise NotImplementedError("write your answer here (see the docstring above)")


def arinc653_frame(partitions):
    """An ARINC 653 major frame giving each partition its budget in every one of its periods.

    `partitions` is a list of (name, budget_ms, period_ms): the partition needs at least
    budget_ms of CPU time in each of its periods, [0, period), [period, 2 * period), ... The
    frame repeats from time 0, its windows back to back from the start of each frame (what they
    leave at the end of the frame is idle). Return it as text, in vlab's syntax:
        "safety=2ms,info=4ms,safety=2ms/frame=8ms"
    - Windows are NAME=DURATION, the partition's name and a duration with a unit (2ms, 0.5ms),
      separated by commas, then /frame=DURATION for the major frame.
    - Within Xen's limits: at most 64 windows, adding up to no more than the major frame.
    - Each partition runs at least its budget in every one of its periods.
    The least common multiple of the periods makes a good major frame: every frame then holds
    the same whole periods.
    """
    raise NotImplementedError("write your answer here (see the docstring above)")

"""Chapter 4 exercises: interrupts. You write the list registers the hypervisor hands the hardware.

Check your answer in a notebook:

    from vlab.grading import check, load
    ch04 = load("ch04_interrupts")   # this file, as saved now
    check("ch04.list_register", ch04.list_register)
"""

STATES = {"invalid": 0b00, "pending": 0b01, "active": 0b10, "pending+active": 0b11}


def list_register(vintid, state, priority, group=0, physical=None, source=0, eoi=False):
    """The 32-bit GICH_LR value that gives virtual interrupt `vintid` to the vCPU (GICv2).

    vintid: bits [9:0]. state: a key of STATES, in bits [29:28]. priority: an 8-bit priority,
    of which the register keeps the top five bits, in [27:23]. group: 0 or 1, bit 30.
    physical: the INTID of the physical interrupt behind it -- then it is a hardware interrupt:
    HW (bit 31) set and the physical INTID in bits [19:10] -- or None for one made in software,
    which uses bits [19:10] differently: `source`, the CPU that sent an SGI, in [12:10], and
    `eoi`, a request for a maintenance interrupt when the guest completes it, in bit 19.
    """
    raise NotImplementedError("write your answer here (see the docstring above)")

"""Chapter 3 exercises: stage-2 translation. You decode the hypervisor's descriptors and walk its tables.

Check your answers in a notebook:

    from vlab.grading import check, load
    ch03 = load("ch03_stage2")   # this file, as saved now
    check("ch03.decode_stage2_descriptor", ch03.decode_stage2_descriptor)
"""


def decode_stage2_descriptor(value, level):
    """Decode a 64-bit stage-2 descriptor read at `level` (0-3) of a 4 KB-granule table.

    Return a dict with "kind": "invalid" (bit 0 clear), "table" (levels 0-2, bits[1:0] = 0b11),
    "block" (levels 1-2, bits[1:0] = 0b01), "page" (level 3, 0b11) or "reserved" (0b01 at
    level 3, or a block at level 0). For "table", also "address": the next table (bits [47:12]).
    For "block" and "page", also "address" (the output address: bits [47:12] for a page, [47:30]
    for a level-1 block, [47:21] for a level-2 block), "memattr" (bits [5:2]), "readable"
    (S2AP bit 6), "writable" (S2AP bit 7), "af" (bit 10) and "xn" (bit 54) as booleans.
    """
    raise NotImplementedError("write your answer here (see the docstring above)")


def stage2_translate(read64, root, ipa):
    """Walk vlab's stage-2 tables for `ipa`; return the physical address, or None on a fault.

    vlab's VMs use VTCR_EL2.T0SZ = 24 (40-bit IPAs) and SL0 = 1: the walk starts at level 1
    with two concatenated tables, so the level-1 index is IPA bits [39:30] (10 bits), then
    levels 2 and 3 use bits [29:21] and [20:12]. `read64(address)` reads a descriptor from
    host memory; `root` is the first level-1 table. Blocks may appear at levels 1 and 2.
    Fault (None): an IPA of 40 bits or more, an invalid or reserved descriptor, or AF clear.
    """
    raise NotImplementedError("write your answer here (see the docstring above)")

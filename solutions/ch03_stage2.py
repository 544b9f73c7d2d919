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
    ### BEGIN SOLUTION
    if not value & 1:
        return {"kind": "invalid"}
    kind_bit = value >> 1 & 1
    if level == 3 and not kind_bit or level == 0 and not kind_bit:
        return {"kind": "reserved"}
    if level < 3 and kind_bit:
        return {"kind": "table", "address": value & 0x0000_FFFF_FFFF_F000}
    shift = {1: 30, 2: 21, 3: 12}[level]
    return {
        "kind": "page" if level == 3 else "block",
        "address": value & 0x0000_FFFF_FFFF_F000 & ~((1 << shift) - 1),
        "memattr": value >> 2 & 0xF,
        "readable": bool(value >> 6 & 1),
        "writable": bool(value >> 7 & 1),
        "af": bool(value >> 10 & 1),
        "xn": bool(value >> 54 & 1),
    }
    ### END SOLUTION


def stage2_translate(read64, root, ipa):
    """Walk vlab's stage-2 tables for `ipa`; return the physical address, or None on a fault.

    vlab's VMs use VTCR_EL2.T0SZ = 24 (40-bit IPAs) and SL0 = 1: the walk starts at level 1
    with two concatenated tables, so the level-1 index is IPA bits [39:30] (10 bits), then
    levels 2 and 3 use bits [29:21] and [20:12]. `read64(address)` reads a descriptor from
    host memory; `root` is the first level-1 table. Blocks may appear at levels 1 and 2.
    Fault (None): an IPA of 40 bits or more, an invalid or reserved descriptor, or AF clear.
    """
    ### BEGIN SOLUTION
    if ipa >> 40:
        return None
    table = root
    for level, shift, bits in ((1, 30, 10), (2, 21, 9), (3, 12, 9)):
        value = read64(table + 8 * (ipa >> shift & ((1 << bits) - 1)))
        if not value & 1:
            return None
        is_table_or_page = value >> 1 & 1
        if level < 3 and is_table_or_page:
            table = value & 0x0000_FFFF_FFFF_F000
            continue
        if level == 3 and not is_table_or_page or not value >> 10 & 1:
            return None
        offset_mask = (1 << shift) - 1
        return (value & 0x0000_FFFF_FFFF_F000 & ~offset_mask) | (ipa & offset_mask)
    return None
    ### END SOLUTION

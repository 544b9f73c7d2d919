"""Assembly with which a guest kernel turns its MMU on: one copy, for vlab's tests and its fuzzer.

    MMU_ON   with x1 = the level-1 table: MAIR_EL1 attr0 normal write-back, attr1 device-nGnRnE;
             TCR_EL1 T0SZ 25 (39-bit VAs: the walk starts at level 1), 4 KB granule, write-back
             walks, inner shareable, EPD1 (no TTBR1 walks), 40-bit IPS; TTBR0_EL1 = x1; then
             SCTLR_EL1.M. Clobbers x2.
"""

MMU_ON = """    ldr     x2, =0xff
    msr     mair_el1, x2
    ldr     x2, =0x200803519
    msr     tcr_el1, x2
    msr     ttbr0_el1, x1
    isb
    mrs     x2, sctlr_el1
    orr     x2, x2, #1
    msr     sctlr_el1, x2
    isb
"""

"""Address translation as AArch64 does it: descriptors, tables in memory, walks, faults, a TLB.

    VA --stage 1 (the guest's tables, TTBR0_EL1/TCR_EL1)--> IPA --stage 2 (the hypervisor's, VTTBR_EL2/VTCR_EL2)--> PA
"""

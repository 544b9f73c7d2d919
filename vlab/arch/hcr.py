"""HCR_EL2, the Hypervisor Configuration Register: which guest actions trap to EL2.

Bit positions from the Arm ARM (D17.2.48); vlab's hypervisor reads these
flags to decide which guest instructions exit to it.
"""

from enum import IntFlag


class HCR(IntFlag):
    VM = 1 << 0  # stage-2 translation on
    FMO = 1 << 3  # physical FIQs go to EL2
    IMO = 1 << 4  # physical IRQs go to EL2 (and virtual IRQs can be injected)
    TWI = 1 << 13  # trap WFI
    TWE = 1 << 14  # trap WFE
    TID3 = 1 << 18  # trap reads of the ID group 3 registers (ID_AA64*_EL1)
    TSC = 1 << 19  # trap SMC
    TACR = 1 << 21  # trap ACTLR_EL1 accesses
    TVM = 1 << 26  # trap writes of the virtual-memory controls (SCTLR_EL1, TTBRx_EL1, TCR_EL1, ...)
    TGE = 1 << 27  # trap general exceptions (host EL0 under a VHE host)
    TRVM = 1 << 30  # trap reads of the virtual-memory controls
    RW = 1 << 31  # EL1 is AArch64
    E2H = 1 << 34  # the host kernel runs at EL2 (VHE)

    @classmethod
    def parse(cls, names: str) -> "HCR":
        """'TVM,TWI' -> HCR.TVM | HCR.TWI; raises ValueError naming the valid bits."""
        value = cls(0)
        for name in filter(None, (n.strip().upper() for n in names.split(","))):
            if name not in cls.__members__:
                raise ValueError(f"unknown HCR_EL2 bit {name!r}; known: {', '.join(cls.__members__)}")
            value |= cls[name]
        return value

"""Translation faults, typed as the architecture types them (Arm ARM D8, "MMU faults").

A walk that fails says *what* failed (the kind), *where* (the level of the lookup and the
stage), and whether a stage-2 fault happened while reading a stage-1 table (S1PTW). From
that the hardware builds everything the handler gets:

    DFSC/IFSC[5:0] = kind + level          e.g. 0b000111: translation fault, level 3
    ESR ISS        = ... S1PTW[7] WnR[6] DFSC[5:0]      (WnR only for data aborts)
    HPFAR_EL2      = FIPA, the faulting IPA[47:12], in bits [43:4]   (stage-2 faults only)
    FAR            = the faulting virtual address (the caller's: only it knows the access)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Access(enum.Enum):
    """What the translated access is for: the permission that is checked."""
    READ = "read"
    WRITE = "write"
    FETCH = "fetch"


class FaultKind(enum.IntEnum):
    """The fault status code at level 0; a level-n fault's code is this plus n (DFSC/IFSC)."""
    ADDRESS_SIZE = 0x00  # an address wider than the configured output (or input) size
    TRANSLATION = 0x04  # no valid descriptor, a reserved one, or an address outside the tables
    ACCESS_FLAG = 0x08  # the descriptor's AF is clear
    PERMISSION = 0x0C  # the descriptor forbids this access
    EXTERNAL_ON_WALK = 0x14  # a descriptor read reached no memory (synchronous external abort)


@dataclass(frozen=True)
class Fault:
    """A translation that failed: kind, stage, level, the input address, and why in plain words."""
    kind: FaultKind
    stage: int
    level: int
    address: int  # the input address of the stage that faulted (VA for stage 1, IPA for stage 2)
    why: str
    s1ptw: bool = False  # a stage-2 fault while reading a stage-1 table
    ipa: int | None = None  # for stage-2 faults: the IPA the hypervisor gets in HPFAR_EL2

    @property
    def fsc(self) -> int:
        """The fault status code, DFSC/IFSC[5:0]."""
        return int(self.kind) + self.level

    @property
    def hpfar(self) -> int | None:
        """HPFAR_EL2 as the hypervisor reads it: FIPA = IPA[47:12] in bits [43:4]; None for stage 1.

        The architecture guarantees it for stage-2 translation, access-flag and address-size
        faults and for any fault with S1PTW; for other stage-2 permission faults it is UNKNOWN
        (KVM recomputes it with AT). vlab always fills it.
        """
        return None if self.stage != 2 or self.ipa is None else (self.ipa >> 12) << 4

    def iss(self, access: Access) -> int:
        """The abort's ISS without the instruction syndrome: S1PTW, WnR (data aborts) and the FSC.

        WnR is the faulting instruction's direction, also when S1PTW says the fault was on a
        descriptor read of its stage-1 walk (QEMU fills it the same way): a hypervisor must not
        read it there as "the walk wrote".
        """
        return self.fsc | int(self.s1ptw) << 7 | int(access is Access.WRITE) << 6

    def __str__(self) -> str:
        walk = " during the stage-1 table walk" if self.s1ptw else ""
        return (f"stage-{self.stage} {_NAMES[self.kind]} at level {self.level}{walk} (FSC {self.fsc:#04x}) "
                f"for {self.address:#x}: {self.why}")


_NAMES = {
    FaultKind.ADDRESS_SIZE: "address size fault",
    FaultKind.TRANSLATION: "translation fault",
    FaultKind.ACCESS_FLAG: "access flag fault",
    FaultKind.PERMISSION: "permission fault",
    FaultKind.EXTERNAL_ON_WALK: "external abort on the table walk",
}

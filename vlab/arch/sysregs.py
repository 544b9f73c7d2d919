"""The system registers vlab knows, by name and by encoding (op0, op1, CRn, CRm, op2).

An MRS/MSR instruction names a register only by those five numbers, and that
is all a trapped access reports (ESR ISS, EC 0x18). This table turns them back
into names, says from which exception level the register is reachable, and
which HCR_EL2 bits trap reads and writes of it at EL1.

    op1 tells the lowest EL that may access a register:
    0 -> EL1, 3 -> EL0, 4 or 5 -> EL2, 6 -> EL3        (Arm ARM C5.1.2)
"""

from __future__ import annotations

from dataclasses import dataclass

from vlab.arch.hcr import HCR

Encoding = tuple[int, int, int, int, int]  # (op0, op1, CRn, CRm, op2)

_MIN_EL_BY_OP1 = {0: 1, 1: 1, 2: 1, 3: 0, 4: 2, 5: 2, 6: 3, 7: 1}


@dataclass(frozen=True)
class SysReg:
    name: str
    encoding: Encoding
    read_trap: HCR = HCR(0)  # HCR_EL2 bits that trap an EL1 read
    write_trap: HCR = HCR(0)  # HCR_EL2 bits that trap an EL1 write
    read_only: bool = False

    @property
    def min_el(self) -> int:
        """The lowest exception level allowed to access it (before finer controls)."""
        return _MIN_EL_BY_OP1[self.encoding[1]]


def _vm_control(name: str, enc: Encoding) -> SysReg:
    """A virtual-memory control register: TVM traps writes, TRVM traps reads (Arm ARM D17.2.48)."""
    return SysReg(name, enc, read_trap=HCR.TRVM, write_trap=HCR.TVM)


def _id_reg(name: str, enc: Encoding, trap: HCR = HCR(0)) -> SysReg:
    return SysReg(name, enc, read_trap=trap, read_only=True)


SYSREGS: tuple[SysReg, ...] = (
    # identification (read-only); TID3 traps the ID_AA64* group at EL1
    _id_reg("MIDR_EL1", (3, 0, 0, 0, 0)),
    _id_reg("MPIDR_EL1", (3, 0, 0, 0, 5)),
    _id_reg("REVIDR_EL1", (3, 0, 0, 0, 6)),
    _id_reg("ID_PFR1_EL1", (3, 0, 0, 1, 1), HCR.TID3),
    _id_reg("ID_DFR0_EL1", (3, 0, 0, 1, 2), HCR.TID3),
    _id_reg("ID_AA64PFR0_EL1", (3, 0, 0, 4, 0), HCR.TID3),
    _id_reg("ID_AA64PFR1_EL1", (3, 0, 0, 4, 1), HCR.TID3),
    _id_reg("ID_AA64DFR0_EL1", (3, 0, 0, 5, 0), HCR.TID3),
    _id_reg("ID_AA64ISAR0_EL1", (3, 0, 0, 6, 0), HCR.TID3),
    _id_reg("ID_AA64ISAR1_EL1", (3, 0, 0, 6, 1), HCR.TID3),
    _id_reg("ID_AA64MMFR0_EL1", (3, 0, 0, 7, 0), HCR.TID3),
    _id_reg("ID_AA64MMFR1_EL1", (3, 0, 0, 7, 1), HCR.TID3),
    _id_reg("ID_AA64MMFR2_EL1", (3, 0, 0, 7, 2), HCR.TID3),
    _id_reg("CTR_EL0", (3, 3, 0, 0, 1)),
    _id_reg("DCZID_EL0", (3, 3, 0, 0, 7)),
    _id_reg("CurrentEL", (3, 0, 4, 2, 2)),
    # EL1 system control and translation: the guest kernel's own registers
    _vm_control("SCTLR_EL1", (3, 0, 1, 0, 0)),
    SysReg("ACTLR_EL1", (3, 0, 1, 0, 1), read_trap=HCR.TACR, write_trap=HCR.TACR),
    SysReg("CPACR_EL1", (3, 0, 1, 0, 2)),
    _vm_control("TTBR0_EL1", (3, 0, 2, 0, 0)),
    _vm_control("TTBR1_EL1", (3, 0, 2, 0, 1)),
    _vm_control("TCR_EL1", (3, 0, 2, 0, 2)),
    _vm_control("AFSR0_EL1", (3, 0, 5, 1, 0)),
    _vm_control("AFSR1_EL1", (3, 0, 5, 1, 1)),
    _vm_control("ESR_EL1", (3, 0, 5, 2, 0)),
    _vm_control("FAR_EL1", (3, 0, 6, 0, 0)),
    SysReg("PAR_EL1", (3, 0, 7, 4, 0)),
    _vm_control("MAIR_EL1", (3, 0, 10, 2, 0)),
    _vm_control("AMAIR_EL1", (3, 0, 10, 3, 0)),
    SysReg("VBAR_EL1", (3, 0, 12, 0, 0)),
    _vm_control("CONTEXTIDR_EL1", (3, 0, 13, 0, 1)),
    SysReg("TPIDR_EL1", (3, 0, 13, 0, 4)),
    SysReg("CNTKCTL_EL1", (3, 0, 14, 1, 0)),
    # exception state
    SysReg("SPSR_EL1", (3, 0, 4, 0, 0)),
    SysReg("ELR_EL1", (3, 0, 4, 0, 1)),
    SysReg("SP_EL0", (3, 0, 4, 1, 0)),
    SysReg("SPSel", (3, 0, 4, 2, 0)),
    SysReg("DAIF", (3, 3, 4, 2, 1)),
    SysReg("NZCV", (3, 3, 4, 2, 0)),
    SysReg("TPIDR_EL0", (3, 3, 13, 0, 2)),
    SysReg("TPIDRRO_EL0", (3, 3, 13, 0, 3)),
    # generic timer
    SysReg("CNTFRQ_EL0", (3, 3, 14, 0, 0)),
    SysReg("CNTPCT_EL0", (3, 3, 14, 0, 1), read_only=True),
    SysReg("CNTVCT_EL0", (3, 3, 14, 0, 2), read_only=True),
    SysReg("CNTP_TVAL_EL0", (3, 3, 14, 2, 0)),
    SysReg("CNTP_CTL_EL0", (3, 3, 14, 2, 1)),
    SysReg("CNTP_CVAL_EL0", (3, 3, 14, 2, 2)),
    SysReg("CNTV_TVAL_EL0", (3, 3, 14, 3, 0)),
    SysReg("CNTV_CTL_EL0", (3, 3, 14, 3, 1)),
    SysReg("CNTV_CVAL_EL0", (3, 3, 14, 3, 2)),
    # EL2: the hypervisor's own (UNDEFINED when the guest kernel at EL1 touches them)
    SysReg("VPIDR_EL2", (3, 4, 0, 0, 0)),
    SysReg("VMPIDR_EL2", (3, 4, 0, 0, 5)),
    SysReg("SCTLR_EL2", (3, 4, 1, 0, 0)),
    SysReg("HCR_EL2", (3, 4, 1, 1, 0)),
    SysReg("VTTBR_EL2", (3, 4, 2, 1, 0)),
    SysReg("VTCR_EL2", (3, 4, 2, 1, 2)),
    SysReg("SPSR_EL2", (3, 4, 4, 0, 0)),
    SysReg("ELR_EL2", (3, 4, 4, 0, 1)),
    SysReg("ESR_EL2", (3, 4, 5, 2, 0)),
    SysReg("FAR_EL2", (3, 4, 6, 0, 0)),
    SysReg("HPFAR_EL2", (3, 4, 6, 0, 4)),
    SysReg("VBAR_EL2", (3, 4, 12, 0, 0)),
    SysReg("CNTVOFF_EL2", (3, 4, 14, 0, 3)),
    SysReg("CNTHCTL_EL2", (3, 4, 14, 1, 0)),
    # EL3
    SysReg("SCR_EL3", (3, 6, 1, 1, 0)),
)

BY_NAME: dict[str, SysReg] = {r.name.upper(): r for r in SYSREGS}
BY_ENCODING: dict[Encoding, SysReg] = {r.encoding: r for r in SYSREGS}


def lookup(name: str) -> SysReg:
    """The register called `name` (any case); VlabError-free KeyError naming close matches."""
    try:
        return BY_NAME[name.upper()]
    except KeyError:
        close = [n for n in BY_NAME if n.split("_")[0] == name.upper().split("_")[0]]
        raise KeyError(f"unknown system register {name!r}" + (f"; did you mean {', '.join(close)}?" if close else "")) from None


def name_of(encoding: Encoding) -> str:
    """The register's name, or the generic S<op0>_<op1>_C<n>_C<m>_<op2> form the assembler accepts."""
    reg = BY_ENCODING.get(encoding)
    if reg:
        return reg.name
    op0, op1, crn, crm, op2 = encoding
    return f"S{op0}_{op1}_C{crn}_C{crm}_{op2}"


def trapped_by(control: HCR) -> list[tuple[str, str]]:
    """(register, "read" or "write") for every EL1 access the HCR_EL2 control traps, in table order."""
    out = []
    for reg in SYSREGS:
        if reg.read_trap & control:
            out.append((reg.name, "read"))
        if reg.write_trap & control:
            out.append((reg.name, "write"))
    return out

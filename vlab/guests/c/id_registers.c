/* id_registers.c - what the core says it is: its identification registers, read at EL1.
 *
 * A kernel learns what the CPU implements from these read-only registers before using any of it:
 * which exception levels exist (ID_AA64PFR0_EL1: EL0..EL3, 4 bits each; 0 = not implemented,
 * 1 = AArch64 only, 2 = AArch64 and AArch32), its memory system (ID_AA64MMFR0_EL1.PARange), its
 * instruction-set extensions (ID_AA64ISAR0_EL1), and the AArch32 views (ID_PFR1_EL1). QEMU's
 * virt board without virtualization=on has no EL2 and no EL3, and says so; so does vlab's board,
 * and a VM shows its guest the same machine. Same output on QEMU and vlab, bare or in a VM.
 */
#include "virt.h"

#define ID(crm, op2) ({ u64 _v; __asm__ volatile("mrs %0, S3_0_C0_C" #crm "_" #op2 : "=r"(_v)); _v; })

int main(void)
{
    u64 pfr0 = read_sysreg(id_aa64pfr0_el1);
    printf("MIDR_EL1 %lx  MPIDR_EL1 %lx\n", read_sysreg(midr_el1), read_sysreg(mpidr_el1));
    printf("ID_AA64PFR0_EL1 %lx: EL0 %lu, EL1 %lu, EL2 %lu, EL3 %lu\n", pfr0, pfr0 & 0xf, pfr0 >> 4 & 0xf,
           pfr0 >> 8 & 0xf, pfr0 >> 12 & 0xf);
    printf("ID_AA64MMFR0_EL1 %lx: PARange %lu\n", read_sysreg(id_aa64mmfr0_el1), read_sysreg(id_aa64mmfr0_el1) & 0xf);
    printf("ID_AA64ISAR0_EL1 %lx  ID_AA64DFR0_EL1 %lx\n", read_sysreg(id_aa64isar0_el1), read_sysreg(id_aa64dfr0_el1));
    printf("AArch32 views: ID_PFR0 %lx  ID_PFR1 %lx  ID_DFR0 %lx  ID_MMFR0 %lx  ID_ISAR0 %lx\n",
           ID(1, 0), ID(1, 1), ID(1, 2), ID(1, 4), ID(2, 0));
    printf("CTR_EL0 %lx  DCZID_EL0 %lx  CLIDR_EL1 %lx\n", read_sysreg(ctr_el0), read_sysreg(dczid_el0),
           read_sysreg(clidr_el1));
    return (pfr0 >> 8 & 0xff) == 0 ? SELF_CHECK_OK : 0xbad;  /* no EL2, no EL3 */
}

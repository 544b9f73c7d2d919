/* mmu.c - a bare-metal C kernel that builds its own stage-1 page tables and turns its MMU on.
 *
 * 4 KB granule, 39-bit VAs (T0SZ = 25), so a walk starts at level 1:
 *   VA 0x0000_0000 ->  PA 0x0000_0000   1 GiB block, device memory (the UART)
 *   VA 0x4000_0000 ->  PA 0x4000_0000   1 GiB block, normal memory (this kernel)
 *   VA 0x8000_0000 ->  a level-2 table -> a level-3 table of 4 KB pages, each mapping
 *                      one page of a buffer in this kernel's RAM, in *reverse* order
 * and, through TTBR1_EL1 (the upper half of the VAs, T1SZ = 25 too):
 *   VA 0xffff_ffff_c000_0000 -> a level-2 and a level-3 table -> one page of the buffer
 * It writes through the reversed window, reads the buffer directly and checks that
 * every word landed where the tables say; then it writes through the upper-half page,
 * asks AT S1E1R where that page is, points it at another buffer page and invalidates
 * the TLB entry for that VA alone (TLBI VAE1). Last, it maps a 2 MiB block (level 2) at
 * VA 0x8020_0000, reads two of its pages, points the block elsewhere and invalidates one VA
 * of it: the block's entry is gone, so the other page reads the new block too.
 * Same output on QEMU and vlab, bare or in a VM.
 */
#include "virt.h"

#define PAGES 8
#define VALID_TABLE 0x3UL
#define BLOCK 0x1UL
#define PAGE_DESC 0x3UL
#define AF (1UL << 10)
#define INNER_SHAREABLE (3UL << 8)
#define ATTR_DEVICE (1UL << 2)         /* AttrIndx 1: MAIR attr1 = device-nGnRnE */
#define WINDOW 0x80000000UL
#define UPPER 0xffffffffc0000000UL     /* the top GiB of the 39-bit upper half: level-1 index 511 */
#define BLOCK_VA (WINDOW + 0x200000UL)  /* level2[1]: a 2 MiB block */
#define OLD_BLOCK 0x40000000UL          /* the first two 2 MiB of RAM (this kernel is in the first) */
#define NEW_BLOCK 0x40200000UL
#define IN_BLOCK 0x100000UL             /* the two pages read, 1 MiB into a block: past this kernel */

static u64 level1[512] __attribute__((aligned(4096)));
static u64 level2[512] __attribute__((aligned(4096)));
static u64 level3[512] __attribute__((aligned(4096)));
static u64 upper1[512] __attribute__((aligned(4096)));
static u64 upper2[512] __attribute__((aligned(4096)));
static u64 upper3[512] __attribute__((aligned(4096)));
static u32 buffer[PAGES][1024] __attribute__((aligned(4096)));

static void enable_mmu(void)
{
    /* T0SZ and T1SZ 25, write-back inner shareable walks for both halves, TG1 = 0b10 (4 KB), 40-bit IPS */
    u64 tcr = 25 | (1UL << 8) | (1UL << 10) | (3UL << 12) | (25UL << 16) | (1UL << 24) | (1UL << 26) | (3UL << 28)
            | (2UL << 30) | (2UL << 32);
    __asm__ volatile("msr mair_el1, %0" :: "r"(0xffUL));
    __asm__ volatile("msr tcr_el1, %0" :: "r"(tcr));
    __asm__ volatile("msr ttbr0_el1, %0" :: "r"(level1));
    __asm__ volatile("msr ttbr1_el1, %0\n isb" :: "r"(upper1));
    u64 sctlr = read_sysreg(sctlr_el1);
    __asm__ volatile("dsb ish\n msr sctlr_el1, %0\n isb" :: "r"(sctlr | 1) : "memory");
}

int main(void)
{
    level1[0] = 0x00000000UL | BLOCK | AF | ATTR_DEVICE;
    level1[1] = 0x40000000UL | BLOCK | AF | INNER_SHAREABLE;
    level1[WINDOW >> 30] = (u64)level2 | VALID_TABLE;
    level2[0] = (u64)level3 | VALID_TABLE;
    for (int i = 0; i < PAGES; i++)
        level3[i] = (u64)buffer[PAGES - 1 - i] | PAGE_DESC | AF | INNER_SHAREABLE;
    upper1[511] = (u64)upper2 | VALID_TABLE;
    upper2[0] = (u64)upper3 | VALID_TABLE;
    upper3[0] = (u64)buffer[0] | PAGE_DESC | AF | INNER_SHAREABLE;
    enable_mmu();
    printf("mmu: the MMU is on (SCTLR_EL1.M = %d)\n", (int)(read_sysreg(sctlr_el1) & 1));

    volatile u32 *window = (volatile u32 *)WINDOW;
    for (int page = 0; page < PAGES; page++)
        window[page * 1024 + page] = 0x1000 + page;       /* through the reversed mapping */
    int good = 0;
    for (int page = 0; page < PAGES; page++)
        good += buffer[PAGES - 1 - page][page] == 0x1000u + page;
    printf("mmu: %d of %d words landed where the page tables put them\n", good, PAGES);

    volatile u32 *upper = (volatile u32 *)UPPER;
    upper[5] = 0x5151;                                     /* lands in buffer page 0 */
    u64 par;
    __asm__ volatile("at s1e1r, %1\n isb\n mrs %0, par_el1" : "=r"(par) : "r"(UPPER));
    printf("mmu: through TTBR1_EL1, %lx holds %x (buffer page 0: %x); AT S1E1R: PAR_EL1 = %lx\n",
           UPPER + 20, upper[5], buffer[0][5], par);
    buffer[1][5] = 0x6262;
    upper3[0] = (u64)buffer[1] | PAGE_DESC | AF | INNER_SHAREABLE;
    __asm__ volatile("dsb ishst\n tlbi vae1, %0\n dsb ish\n isb" :: "r"((UPPER >> 12) & ((1UL << 44) - 1)) : "memory");
    u32 moved = upper[5];
    printf("mmu: after TLBI VAE1, %lx holds %x (buffer page 1)\n", UPPER + 20, moved);
    good += (moved == 0x6262) + (buffer[0][5] == 0x5151) + !(par & 1);

    volatile u32 *old_block = (volatile u32 *)(OLD_BLOCK + IN_BLOCK);
    volatile u32 *new_block = (volatile u32 *)(NEW_BLOCK + IN_BLOCK);
    for (int page = 0; page < 2; page++) {                 /* through the 1 GiB identity block */
        old_block[page * 1024] = 0xa0 + page;
        new_block[page * 1024] = 0xb0 + page;
    }
    level2[1] = OLD_BLOCK | BLOCK | AF | INNER_SHAREABLE;
    __asm__ volatile("dsb ishst\n isb" ::: "memory");
    volatile u32 *block = (volatile u32 *)(BLOCK_VA + IN_BLOCK);
    u32 before0 = block[0], before1 = block[1024];
    level2[1] = NEW_BLOCK | BLOCK | AF | INNER_SHAREABLE;
    __asm__ volatile("dsb ishst\n tlbi vae1, %0\n dsb ish\n isb" :: "r"((BLOCK_VA + IN_BLOCK) >> 12) : "memory");
    u32 after1 = block[1024];                              /* not the VA invalidated: its block's */
    printf("mmu: a 2 MiB block read %x %x; after TLBI VAE1 of its first page, its second reads %x\n",
           before0, before1, after1);
    good += (before0 == 0xa0) + (before1 == 0xa1) + (after1 == 0xb1);
    return good == PAGES + 6 ? SELF_CHECK_OK : 0xbad;
}

/* mmu.c - a bare-metal C kernel that builds its own stage-1 page tables and turns its MMU on.
 *
 * 4 KB granule, 39-bit VAs (T0SZ = 25), so a walk starts at level 1:
 *   VA 0x0000_0000 ->  PA 0x0000_0000   1 GiB block, device memory (the UART)
 *   VA 0x4000_0000 ->  PA 0x4000_0000   1 GiB block, normal memory (this kernel)
 *   VA 0x8000_0000 ->  a level-2 table -> a level-3 table of 4 KB pages, each mapping
 *                      one page of a buffer in this kernel's RAM, in *reverse* order
 * It writes through the reversed window, reads the buffer directly and checks that
 * every word landed where the tables say. Same output on QEMU and vlab, bare or in a VM.
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

static u64 level1[512] __attribute__((aligned(4096)));
static u64 level2[512] __attribute__((aligned(4096)));
static u64 level3[512] __attribute__((aligned(4096)));
static u32 buffer[PAGES][1024] __attribute__((aligned(4096)));

static void enable_mmu(void)
{
    u64 tcr = 25 | (1UL << 8) | (1UL << 10) | (3UL << 12) | (1UL << 23) | (2UL << 32);
    __asm__ volatile("msr mair_el1, %0" :: "r"(0xffUL));
    __asm__ volatile("msr tcr_el1, %0" :: "r"(tcr));
    __asm__ volatile("msr ttbr0_el1, %0\n isb" :: "r"(level1));
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
    enable_mmu();
    printf("mmu: the MMU is on (SCTLR_EL1.M = %d)\n", (int)(read_sysreg(sctlr_el1) & 1));

    volatile u32 *window = (volatile u32 *)WINDOW;
    for (int page = 0; page < PAGES; page++)
        window[page * 1024 + page] = 0x1000 + page;       /* through the reversed mapping */
    int good = 0;
    for (int page = 0; page < PAGES; page++)
        good += buffer[PAGES - 1 - page][page] == 0x1000u + page;
    printf("mmu: %d of %d words landed where the page tables put them\n", good, PAGES);
    return good == PAGES ? SELF_CHECK_OK : 0xbad;
}

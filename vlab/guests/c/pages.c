/* pages.c - a guest with a writable working set: it rewrites 64 pages, round after round.
 *
 * Each round mixes every eighth word of every page with the round number and prints a checksum
 * of them all; at the end it recomputes a sample of the words from scratch and checks that
 * memory holds exactly what the rounds wrote. A live migration that lost a page, or carried an
 * old copy of one, shows here as a wrong checksum and a failed check.
 */
#include "virt.h"

#define PAGES 64
#define WORDS (4096 / 8)
#define STRIDE 8                        /* words apart: 64 written per page per round */
#define ROUNDS 12

static u64 buffer[PAGES][WORDS] __attribute__((aligned(4096)));   /* in .bss: zero at start */

static u64 mix(u64 x)                   /* a 64-bit finaliser (MurmurHash3's) */
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdUL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53UL;
    x ^= x >> 33;
    return x;
}

static u64 step(u64 value, unsigned round, unsigned page, unsigned word)
{
    return mix(value + round * 4096UL + page * 64UL + word);
}

int main(void)
{
    puts("pages: 64 pages rewritten round after round\n");
    for (unsigned round = 1; round <= ROUNDS; round++) {
        u64 sum = 0;
        for (unsigned p = 0; p < PAGES; p++)
            for (unsigned w = 0; w < WORDS; w += STRIDE) {
                buffer[p][w] = step(buffer[p][w], round, p, w);
                sum += buffer[p][w];
            }
        printf("round %u: checksum 0x%lx\n", round, sum);
    }
    int failures = 0;
    for (unsigned p = 0; p < PAGES; p += 7)
        for (unsigned w = 0; w < WORDS; w += 5 * STRIDE) {
            u64 value = 0;
            for (unsigned round = 1; round <= ROUNDS; round++)
                value = step(value, round, p, w);
            if (buffer[p][w] != value) {
                printf("FAIL page %u word %u: 0x%lx, expected 0x%lx\n", p, w, buffer[p][w], value);
                failures++;
            }
        }
    printf("pages: %s\n", failures ? "memory is NOT what the rounds wrote" : "memory holds what every round wrote");
    return failures ? 1 : SELF_CHECK_OK;
}

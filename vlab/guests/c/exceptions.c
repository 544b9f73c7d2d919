/* exceptions.c - a kernel that takes each kind of synchronous exception and prints what
 * the hardware reported: the vector entry, ESR_EL1 (EC, IL, ISS), ELR_EL1 relative to the
 * instruction that raised it, SPSR_EL1 and, for aborts, FAR_EL1.
 *
 * On QEMU and on vlab the printout must be the same, bit for bit: it is a test of
 * vlab's exception entry against the real (emulated) architecture.
 */
#include "virt.h"

struct frame {                          /* laid out by save_and_handle in exceptions.S */
    u64 x[31];
    u64 vector;                         /* offset of the vector entry taken */
    u64 elr, spsr, sp_el0, pad;
};

extern char vectors[], back_from_el0[];
void user_program(void);
u64 run_at_el0(void (*user)(void), u64 user_stack);
/* in exceptions.S: each raises one exception (x0 = an address or a function id) */
u64 raise_svc(u64), raise_brk(u64), raise_undefined(u64), raise_load(u64), raise_store(u64), raise_hvc(u64);

#define EC_SVC64 0x15
#define EC_HVC64 0x16
#define EC_DABT_CURRENT 0x25
#define EC_DABT_LOWER 0x24
#define NOT_RAM 0x50000000UL            /* past the 128 MiB of RAM: nothing there */

static const char *expected_at;         /* the instruction the next exception should come from */
static int taken, failures;
static u64 user_stack[512] __attribute__((aligned(16)));

void handle_exception(struct frame *f)
{
    u64 esr = read_sysreg(esr_el1);
    u64 ec = esr >> 26;
    taken++;
    printf("  vector +0x%03lx  EC 0x%02lx  IL %lu  ISS 0x%07lx  ELR = insn%s%ld  SPSR 0x%08lx",
           f->vector, ec, (esr >> 25) & 1, esr & 0x1FFFFFF, f->elr >= (u64)expected_at ? "+" : "-",
           (i64)(f->elr >= (u64)expected_at ? f->elr - (u64)expected_at : (u64)expected_at - f->elr), f->spsr);
    if (ec == EC_DABT_CURRENT || ec == EC_DABT_LOWER || ec == 0x20 || ec == 0x21)
        printf("  FAR 0x%lx", read_sysreg(far_el1));
    printf("\n");
    if (ec == EC_SVC64 && f->vector == 0x400 && f->x[8] == 93) {   /* exit() from EL0 */
        printf("  user exit(%lu), SP_EL0 = user stack top - 0x%lx\n", f->x[0],
               (u64)(user_stack + 512) - f->sp_el0);
        f->elr = (u64)back_from_el0;
        f->spsr = 0x3c5;                /* EL1h, DAIF masked */
    } else if (ec != EC_SVC64 && ec != EC_HVC64) {
        f->elr += 4;                    /* ELR is the instruction that faulted: skip it */
    }
}

static const struct trial {
    const char *what;
    u64 (*raise)(u64);
    u64 x0;
    int exceptions;                     /* how many it takes: 0 for a firmware call that returns */
} trials[] = {
    {"svc #0x42", raise_svc, 0, 1},
    {"brk #7", raise_brk, 0, 1},
    {"udf #0", raise_undefined, 0, 1},
    {"load from nothing", raise_load, NOT_RAM + 0x10, 1},
    {"store to nothing", raise_store, NOT_RAM + 0x24, 1},
    {"hvc with a function id that is not PSCI", raise_hvc, 0x12345678, 0},
    {"PSCI_VERSION through hvc", raise_hvc, 0x84000000, 0},
};

int main(void)
{
    __asm__ volatile("msr vbar_el1, %0\n isb" :: "r"(vectors));
    puts("exceptions at EL1, SP_EL1 (vector +0x200):\n");
    for (unsigned i = 0; i < sizeof trials / sizeof trials[0]; i++) {
        const struct trial *t = &trials[i];
        printf(" %s\n", t->what);
        expected_at = (const char *)t->raise;
        int before = taken;
        u64 x0 = t->raise(t->x0);
        if (!t->exceptions)
            printf("  returned 0x%lx\n", x0);
        if (taken - before != t->exceptions) {
            printf("FAIL %s: %d exceptions taken, expected %d\n", t->what, taken - before, t->exceptions);
            failures++;
        }
    }

    printf("a user program at EL0 (vector +0x400), CNTKCTL_EL1 = 0x%lx:\n", read_sysreg(cntkctl_el1));
    expected_at = (const char *)user_program;
    u64 status = run_at_el0(user_program, (u64)(user_stack + 512));
    printf(" back at EL1: exit status %lu\n", status);
    if (status != 3) {
        puts("FAIL exit status\n");
        failures++;
    }
    printf("%d exceptions taken, %d failures\n", taken, failures);
    return failures ? 0xbad : SELF_CHECK_OK;
}

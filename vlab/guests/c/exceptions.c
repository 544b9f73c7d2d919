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
extern char raise_svc[], raise_brk[], raise_undefined[], raise_load[], raise_store[], raise_hvc[];
u64 run_at_el0(void (*user)(void), u64 user_stack);
u64 raise_load_at(u64 address) __asm__("raise_load");
void raise_store_at(u64 address, u32 value) __asm__("raise_store");
u64 raise_hvc_with(u64 function) __asm__("raise_hvc");

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

static void expect(const char *what, int count)
{
    if (taken != count) {
        printf("FAIL %s: %d exceptions taken, expected %d\n", what, taken, count);
        failures++;
    }
}

int main(void)
{
    __asm__ volatile("msr vbar_el1, %0\n isb" :: "r"(vectors));
    puts("exceptions at EL1, SP_EL1 (vector +0x200):\n");
    puts(" svc #0x42\n");
    expected_at = raise_svc;
    __asm__ volatile("bl raise_svc" ::: "x30", "memory");
    expect("svc", 1);
    puts(" brk #7\n");
    expected_at = raise_brk;
    __asm__ volatile("bl raise_brk" ::: "x30", "memory");
    expect("brk", 2);
    puts(" udf #0\n");
    expected_at = raise_undefined;
    __asm__ volatile("bl raise_undefined" ::: "x30", "memory");
    expect("udf", 3);
    puts(" load from nothing\n");
    expected_at = raise_load;
    raise_load_at(NOT_RAM + 0x10);
    expect("load", 4);
    puts(" store to nothing\n");
    expected_at = raise_store;
    raise_store_at(NOT_RAM + 0x24, 1);
    expect("store", 5);
    puts(" hvc with a function id that is not PSCI\n");
    expected_at = raise_hvc;
    u64 result = raise_hvc_with(0x12345678);
    printf("  hvc returned 0x%lx\n", result);
    puts(" PSCI_VERSION through hvc\n");
    int before = taken;
    printf("  PSCI version 0x%lx\n", raise_hvc_with(0x84000000));
    if (taken != before) {
        puts("FAIL PSCI_VERSION raised an exception\n");
        failures++;
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

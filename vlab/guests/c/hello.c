/* hello.c - a bare-metal C program: greet, compute, print numbers, check itself.
 *
 * Every value it prints is also checked against the known answer; main returns
 * SELF_CHECK_OK only when all of them match (start.S leaves it in x19).
 */
#include "virt.h"

static u64 fibonacci(unsigned n)
{
    u64 a = 0, b = 1;
    while (n--) {
        u64 next = a + b;
        a = b;
        b = next;
    }
    return a;
}

static u64 factorial(unsigned n)
{
    return n <= 1 ? 1 : n * factorial(n - 1);
}

/* Sieve of Eratosthenes below `limit` (at most 1000): how many primes, and their sum. */
static void primes_below(unsigned limit, unsigned *count, unsigned *sum)
{
    static u8 composite[1000];          /* in .bss: start.S must have zeroed it */
    *count = *sum = 0;
    for (unsigned i = 2; i < limit; i++) {
        if (composite[i])
            continue;
        ++*count;
        *sum += i;
        for (unsigned j = i * i; j < limit; j += i)
            composite[j] = 1;
    }
}

/* CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), bit by bit. */
static u32 crc32(const char *s)
{
    u32 crc = 0xFFFFFFFFu;
    while (*s) {
        crc ^= (u8)*s++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & -(crc & 1));
    }
    return ~crc;
}

static u64 gcd(u64 a, u64 b)
{
    while (b) {
        u64 t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static int failures;

static void check(const char *what, u64 got, u64 expected)
{
    if (got != expected) {
        printf("FAIL %s: got %lu, expected %lu\n", what, got, expected);
        failures++;
    }
}

int main(void)
{
    puts("Hello from C on the virt board!\n");

    u64 fib = fibonacci(90);
    printf("fibonacci(90) = %lu\n", fib);
    check("fibonacci", fib, 2880067194370816120UL);

    u64 fact = factorial(20);
    printf("20! = %lu = 0x%lx\n", fact, fact);
    check("factorial", fact, 2432902008176640000UL);

    unsigned count, sum;
    primes_below(1000, &count, &sum);
    printf("primes below 1000: %u of them, sum %u\n", count, sum);
    check("prime count", count, 168);
    check("prime sum", sum, 76127);

    const char *fox = "The quick brown fox jumps over the lazy dog";
    u32 crc = crc32(fox);
    printf("crc32(\"%s\") = 0x%08x\n", fox, crc);
    check("crc32", crc, 0x414FA339);

    printf("gcd(1071, 462) = %lu\n", gcd(1071, 462));
    check("gcd", gcd(1071, 462), 21);

    volatile int dividend = -7, divisor = 2;   /* volatile: make the CPU divide, not the compiler */
    printf("-7 / 2 = %d, -7 %% 2 = %d\n", dividend / divisor, dividend % divisor);
    check("signed division", (u64)(i64)(dividend / divisor), (u64)-3L);
    check("signed remainder", (u64)(i64)(dividend % divisor), (u64)-1L);

    printf("%s: %d failure%s\n", failures ? "FAILED" : "all checks passed", failures, failures == 1 ? "" : "s");
    return failures ? 0xbad : SELF_CHECK_OK;
}

/* lib.c - a console on the PL011 and the little of libc the compiler may call. */
#include "virt.h"

void putc(char c)
{
    while (mmio_read32(UART_BASE + UARTFR) & UARTFR_TXFF)
        ;                               /* wait while the transmit FIFO is full */
    mmio_write32(UART_BASE + UARTDR, (u8)c);
}

void puts(const char *s)
{
    while (*s)
        putc(*s++);
}

/* Digits of `value` in `base`, most significant first, at least `width` of them. */
static void print_unsigned(u64 value, unsigned base, int width)
{
    char digits[24];
    int n = 0;
    do {
        digits[n++] = "0123456789abcdef"[value % base];
        value /= base;
    } while (value);
    while (n < width)
        digits[n++] = '0';
    while (n)
        putc(digits[--n]);
}

/* A small printf: %d %u %x %s %c %%, with an optional 'l' and a zero-padded width (%08x). */
void printf(const char *fmt, ...)
{
    __builtin_va_list ap;
    __builtin_va_start(ap, fmt);
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            putc(*fmt);
            continue;
        }
        int width = 0, is_long = 0;
        if (fmt[1] == '0')
            fmt++;
        while (fmt[1] >= '0' && fmt[1] <= '9')
            width = width * 10 + (*++fmt - '0');
        if (fmt[1] == 'l') {
            is_long = 1;
            fmt++;
        }
        switch (*++fmt) {
        case 'd': {
            i64 v = is_long ? __builtin_va_arg(ap, i64) : __builtin_va_arg(ap, int);
            if (v < 0) {
                putc('-');
                v = -v;
            }
            print_unsigned((u64)v, 10, width);
            break;
        }
        case 'u':
            print_unsigned(is_long ? __builtin_va_arg(ap, u64) : __builtin_va_arg(ap, u32), 10, width);
            break;
        case 'x':
            print_unsigned(is_long ? __builtin_va_arg(ap, u64) : __builtin_va_arg(ap, u32), 16, width);
            break;
        case 's':
            puts(__builtin_va_arg(ap, const char *));
            break;
        case 'c':
            putc((char)__builtin_va_arg(ap, int));
            break;
        case '%':
            putc('%');
            break;
        default:                        /* unknown conversion: show it as written */
            putc('%');
            putc(*fmt);
        }
    }
    __builtin_va_end(ap);
}

void *memset(void *dst, int c, size_t n)
{
    u8 *d = dst;
    while (n--)
        *d++ = (u8)c;
    return dst;
}

void *memcpy(void *dst, const void *src, size_t n)
{
    u8 *d = dst;
    const u8 *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

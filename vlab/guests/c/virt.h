/* virt.h - the few facts and helpers a bare-metal C guest on QEMU virt needs. */
#ifndef VIRT_H
#define VIRT_H

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long i64;
typedef unsigned long size_t;

#define UART_BASE 0x09000000UL          /* PL011 */
#define UARTDR 0x000
#define UARTFR 0x018
#define UARTFR_TXFF (1u << 5)           /* transmit FIFO full */
#define SELF_CHECK_OK 0x600d            /* main's return value when its checks pass */

/* Device accesses in inline assembly, as Linux's __raw_readl/__raw_writel do: a plain volatile
 * pointer lets the compiler pick a post-index form (ldr w1, [x19], #4), and a load with writeback
 * reports no syndrome (ISV = 0) when it traps, so a hypervisor cannot emulate it. */
static inline u32 mmio_read32(u64 address)
{
    u32 value;
    __asm__ volatile("ldr %w0, [%1]" : "=r"(value) : "r"(address) : "memory");
    return value;
}
static inline void mmio_write32(u64 address, u32 value)
{
    __asm__ volatile("str %w0, [%1]" :: "rZ"(value), "r"(address) : "memory");
}

#define read_sysreg(name) ({ u64 _v; __asm__ volatile("mrs %0, " #name : "=r"(_v)); _v; })

void putc(char c);
void puts(const char *s);
void printf(const char *fmt, ...);
void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
size_t strlen(const char *s);

#endif

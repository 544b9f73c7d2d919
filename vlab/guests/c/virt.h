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

static inline u32 mmio_read32(u64 address) { return *(volatile u32 *)address; }
static inline void mmio_write32(u64 address, u32 value) { *(volatile u32 *)address = value; }

#define read_sysreg(name) ({ u64 _v; __asm__ volatile("mrs %0, " #name : "=r"(_v)); _v; })

void putc(char c);
void puts(const char *s);
void printf(const char *fmt, ...);
void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
size_t strlen(const char *s);

#endif

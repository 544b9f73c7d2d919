/* uart.c - read the PL011's registers back, as a driver probing the device would.
 *
 * Prints the identification registers, the reset values of the control
 * registers and the interrupt status after transmitting, then writes a few
 * registers and reads them again. QEMU's PL011 is the reference: vlab's must
 * print the same.
 */
#include "virt.h"

#define UARTRSR 0x004
#define UARTIBRD 0x024
#define UARTFBRD 0x028
#define UARTLCR_H 0x02C
#define UARTCR 0x030
#define UARTIFLS 0x034
#define UARTIMSC 0x038
#define UARTRIS 0x03C
#define UARTMIS 0x040
#define UARTICR 0x044
#define UARTDMACR 0x048

static u32 reg(u32 offset)
{
    return mmio_read32(UART_BASE + offset);
}

static void show(const char *name, u32 offset)
{
    printf("%s = 0x%x\n", name, reg(offset));
}

int main(void)
{
    puts("PL011 identification:");
    for (u32 offset = 0xFE0; offset < 0x1000; offset += 4)
        printf(" %02x", reg(offset));
    puts("\n");
    show("UARTFR", UARTFR);
    show("UARTRSR", UARTRSR);
    show("UARTCR", UARTCR);
    show("UARTLCR_H", UARTLCR_H);
    show("UARTIBRD", UARTIBRD);
    show("UARTFBRD", UARTFBRD);
    show("UARTIFLS", UARTIFLS);
    show("UARTIMSC", UARTIMSC);
    show("UARTDMACR", UARTDMACR);
    show("UARTRIS after transmitting", UARTRIS);
    show("UARTMIS", UARTMIS);

    mmio_write32(UART_BASE + UARTIBRD, 13);
    mmio_write32(UART_BASE + UARTFBRD, 1);
    mmio_write32(UART_BASE + UARTLCR_H, 0x70);  /* 8 bits, FIFOs on */
    mmio_write32(UART_BASE + UARTIMSC, 0x30);   /* RX and TX interrupts */
    puts("after programming 115200 8N1 with FIFOs and RX/TX interrupts:\n");
    show("UARTIBRD", UARTIBRD);
    show("UARTFBRD", UARTFBRD);
    show("UARTLCR_H", UARTLCR_H);
    show("UARTIMSC", UARTIMSC);
    show("UARTMIS", UARTMIS);
    mmio_write32(UART_BASE + UARTICR, 0x7FF);
    u32 ris = reg(UARTRIS), mis = reg(UARTMIS);
    printf("after clearing every interrupt: UARTRIS = 0x%x, UARTMIS = 0x%x\n", ris, mis);
    mmio_write32(UART_BASE + UARTIMSC, 0);
    return reg(0xFE0) == 0x11 && reg(0xFFC) == 0xB1 ? SELF_CHECK_OK : 0xbad;
}

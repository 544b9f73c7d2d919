"""Chapter 1 exercises: the physical machine.

Fill in each function where it says so, then check it in a notebook:

    from vlab.grading import check, load
    ch01 = load("ch01_machine")   # this file, as saved now
    check("ch01.decode_uart_flags", ch01.decode_uart_flags)
"""


def decode_uart_flags(value):
    """The names of the PL011 flags set in a UARTFR value, as a set of strings.

    Consider BUSY (bit 3), RXFE (bit 4), TXFF (bit 5), RXFF (bit 6) and TXFE (bit 7);
    ignore the other bits. Example: decode_uart_flags(0x90) == {"RXFE", "TXFE"}.
    """
    ### BEGIN SOLUTION
    names = {3: "BUSY", 4: "RXFE", 5: "TXFF", 6: "RXFF", 7: "TXFE"}
    return {name for bit, name in names.items() if value >> bit & 1}
    ### END SOLUTION


def svc_esr(imm16):
    """The ESR_EL1 value after `svc #imm16` is executed in AArch64 state.

    ESR_ELx: EC in bits [31:26], IL in bit 25 (1: a 32-bit instruction), ISS in [24:0];
    for an SVC the ISS holds the immediate in [15:0].
    """
    ### BEGIN SOLUTION
    ec_svc64 = 0x15
    return (ec_svc64 << 26) | (1 << 25) | (imm16 & 0xFFFF)
    ### END SOLUTION


def print_number_source():
    """AArch64 assembly source defining `print_number`, which prints x0 in decimal and returns.

    The number is unsigned; print its digits only (no newline). Print through the PL011 at 0x0900_0000: wait while UARTFR
    (offset 0x18) has TXFF (bit 5) set, then store the byte to UARTDR (offset 0). The
    caller set up sp and called you with `bl print_number`: finish with `ret`.
    The assembler takes GNU as syntax, with a few limits (no `1:` local labels, no
    #define): docs/assembly.md says what it accepts.
    """
    ### BEGIN SOLUTION
    return """
print_number:
    sub     sp, sp, #32          // room for the 20 digits of the largest 64-bit number
    mov     x2, sp               // digits are stored from here, last digit first
    mov     x3, #10
next_digit:
    udiv    x4, x0, x3           // x4 = x0 / 10
    msub    x5, x4, x3, x0       // x5 = x0 - x4 * 10: the last digit
    add     x5, x5, #0x30        // as an ASCII character
    strb    w5, [x2], #1
    mov     x0, x4
    cbnz    x0, next_digit
    ldr     x1, =0x09000000
print_digit:
    ldrb    w5, [x2, #-1]!       // back to front: most significant digit first
wait:
    ldr     w6, [x1, #0x18]
    tbnz    w6, #5, wait         // TXFF: the transmit FIFO is full
    strb    w5, [x1]
    mov     x7, sp
    cmp     x2, x7               // back at the first digit stored?
    b.ne    print_digit
    add     sp, sp, #32
    ret
"""
    ### END SOLUTION

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
    raise NotImplementedError("write your answer here (see the docstring above)")


def svc_esr(imm16):
    """The ESR_EL1 value after `svc #imm16` is executed in AArch64 state.

    ESR_ELx: EC in bits [31:26], IL in bit 25 (1: a 32-bit instruction), ISS in [24:0];
    for an SVC the ISS holds the immediate in [15:0].
    """
    raise NotImplementedError("write your answer here (see the docstring above)")


def print_number_source():
    """AArch64 assembly source defining `print_number`, which prints x0 in decimal and returns.

    The number is unsigned; print its digits only (no newline). Print through the PL011 at 0x0900_0000: wait while UARTFR
    (offset 0x18) has TXFF (bit 5) set, then store the byte to UARTDR (offset 0). The
    caller set up sp and called you with `bl print_number`: finish with `ret`.
    The assembler takes GNU as syntax, with a few limits (no `1:` local labels, no
    #define): docs/assembly.md says what it accepts.
    """
    raise NotImplementedError("write your answer here (see the docstring above)")

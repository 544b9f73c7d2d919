"""Pure AArch64 facts: exception classes and syndromes, system registers, HCR_EL2 bits.

Nothing here runs code or imports Unicorn; everything is bit-exact with the
Arm Architecture Reference Manual (DDI 0487) so a student can check it there.
"""

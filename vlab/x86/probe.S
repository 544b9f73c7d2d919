# probe.S - a tiny x86 kernel that checks the machine it believes it owns.
#
# It loads its own descriptor tables and task register, sets a bit of CR0, then runs
# eight probes and writes what each one saw into its results table, SEEN:
#
#   +0   cli, then the flags                    +16  sgdt: its GDTR (limit, base)
#   +4   popfd with IF = 1, then the flags      +24  sidt: its IDTR (limit, base)
#   +8   popfd with IF = 0, then the flags      +32  smsw: the machine status word
#   +12  sti, then the flags                    +36  str: its task register
#
# Every sensitive act is a macro (vlab.x86.paravirt lists them): the instruction itself
# in the native build, a hypercall to the monitor in the paravirtual one.
# The names in braces are addresses from vlab.x86.answers.LAYOUT.

start:
    mov esp, {STACK_TOP}
    LOAD_GDT {GDTR}                 # its own tables: privileged, they trap at ring 3
    LOAD_IDT {IDTR}
    mov ax, {TSS_SELECTOR}
    LOAD_TR
    READ_CR0
    or eax, 2                       # CR0.MP: the kernel means to use the FPU
    WRITE_CR0

    IRQ_DISABLE                     # 1: interrupts off, as the start of a critical section
    SAVE_FLAGS
    mov [{SEEN}], eax
    mov eax, 0x202                  # 2: restore flags that had IF set, as local_irq_restore does
    RESTORE_FLAGS
    SAVE_FLAGS
    mov [{SEEN_2}], eax
    mov eax, 0x002                  # 3: restore flags with IF clear
    RESTORE_FLAGS
    SAVE_FLAGS
    mov [{SEEN_3}], eax
    IRQ_ENABLE                      # 4: interrupts on again
    SAVE_FLAGS
    mov [{SEEN_4}], eax

    STORE_GDT {SEEN_GDTR}           # 5-8: where are my tables, what is my machine state?
    STORE_IDT {SEEN_IDTR}
    STORE_MSW
    mov [{SEEN_MSW}], ax
    STORE_TR
    mov [{SEEN_TR}], ax
    HALT

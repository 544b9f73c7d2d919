"""x86, where Popek and Goldberg's Theorem 1 fails, and the three answers to it.

    machine.py     a 32-bit x86 core on Unicorn, able to run a kernel at ring 0 or ring 3
    code.py        x86 assembly (Keystone) and decoding (Capstone)
    sensitive.py   which instructions are sensitive, which privileged: measured, and the literature
    monitor.py     trap-and-emulate against the guest's virtual CPU
    paravirt.py    answer 1: the kernel's source calls the monitor (hypercalls)
    translate.py   answer 2: binary translation makes the silent instructions trap
    answers.py     one probe kernel (probe.S) run bare and under each answer, side by side;
                   answer 3, hardware assistance, is AArch64 and the rest of the course
"""

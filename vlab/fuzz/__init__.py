"""A fuzzer for the machine and the hypervisor: generated guest programs, run bare and in VMs, checked.

    vlab.fuzz.programs   a seed in, a guest program out (the same every time)
    vlab.fuzz.check      the rules every run must keep, and the divergences by design (DIVERGENCES)
    python -m vlab.fuzz  N programs, and the counts (make fuzz N=100000)

Any finding names its seed and machine: `check(seed)` reproduces it, `program(seed).source` shows it.
"""

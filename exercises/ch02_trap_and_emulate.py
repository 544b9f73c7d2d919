"""Chapter 2 exercises: trap and emulate. You write two of the hypervisor's exit handlers.

A handler is called as handler(vcpu, exit) when the guest exits, and returns one line
saying what it did (for the trap log). Check yours in a notebook:

    from vlab.grading import check, load
    ch02 = load("ch02_trap_and_emulate")   # this file, as saved now
    check("ch02.handle_sysreg", ch02.handle_sysreg)

What a handler can use:
    exit.syndrome.iss            the ISS field of ESR_EL2
    exit.ipa                     the faulting IPA (data aborts)
    vcpu.x(n), vcpu.set_x(n, v)  the guest's registers (n = 31 is the zero register)
    vcpu.read_sysreg(name), vcpu.write_sysreg(name, value)   the vCPU's system registers
    vcpu.skip(exit)              the trapped instruction is done: continue after it
    vcpu.platform.device_at(ipa) the emulated device at an IPA (it has .base), or None
    vcpu.platform.mmio(device, offset, size, value, is_write)  perform a device access;
                                 returns the value read
"""

from vlab.arch.esr import DataAbort, SysRegAccess
from vlab.arch.sysregs import name_of


def handle_sysreg(vcpu, exit):
    """Emulate a trapped MRS or MSR (exception class 0x18), then skip it.

    Decode the ISS (SysRegAccess.from_iss gives op0, op1, CRn, CRm, op2, Rt and the
    direction); name_of(access.encoding) names the register. For a read (MRS), put the
    vCPU's value of the register into Rt; for a write (MSR), write Rt's value to the
    vCPU's register. Then move the guest past the instruction. Return a short description.
    """
    raise NotImplementedError("write your answer here (see the docstring above)")


def handle_uart_access(vcpu, exit):
    """Emulate the guest's load or store to the UART from a data-abort exit (class 0x24), then skip it.

    The guest's access faulted because no memory is mapped at that IPA. Decode the ISS
    (DataAbort.from_iss: isv, sas -> .size in bytes, sse, srt, sf, wnr). Find the device at
    exit.ipa and the register offset inside it. A store (wnr) writes the low .size bytes of
    register SRT to the device; a load reads .size bytes from the device (keep only those of
    the value it returns) and puts them in SRT, sign-extended when sse is set, and truncated
    to 32 bits unless sf is set. Return a short description.
    """
    raise NotImplementedError("write your answer here (see the docstring above)")

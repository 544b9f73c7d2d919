"""The hypervisor: VMs whose vCPUs run guest code natively and exit to vlab on traps.

    from vlab.hyp import VM, HCR
    vm = VM.from_file("vlab/guests/hello.S", traps=HCR.TVM | HCR.TWI)
    result = vm.run()
    print(result.uart, result.exits)
    for line in vm.trap_log: print(line)
"""

from vlab.arch.hcr import HCR
from vlab.hyp.exits import Exit, TrapRecord
from vlab.hyp.host import Host, HostRunResult
from vlab.hyp.vcpu import VCpu, VCpuState
from vlab.hyp.vm import SUPPORTED_TRAPS, VM, VmRunResult

__all__ = ["HCR", "SUPPORTED_TRAPS", "VM", "Host", "HostRunResult", "VCpu", "VCpuState", "Exit", "TrapRecord",
           "VmRunResult"]

"""The chapter's two machines: the car, and the server -- devices given to one VM or shared by several.

    device_writer(64)          a guest sending 64 bytes to the device at 0x0904_0000, then off
    assignment(64, "passthrough" | "shared")   the same guest, the device its own or emulated
    car("spinner" | "crasher" | "prober")      a safety VM and an infotainment VM on one chip
    server()                   a VM with a disk of its own, two VMs sharing a network card

The car: a closed safety OS and an open infotainment OS on one core. The safety-critical device
(the link to the brake controller: a second PL011) is passed through to the safety VM alone;
ARINC 653 windows (vlab.sched) give each VM its time. Whatever the infotainment VM does --
compute forever, crash, or probe the brake link (each probe an external abort in that VM) -- the
safety VM sends the same messages in its windows.
"""

from __future__ import annotations

from dataclasses import dataclass

from vlab.arch.hcr import HCR
from vlab.asm import Program, assemble
from vlab.guests import workloads
from vlab.hyp.assign import SECOND_UART, passthrough, second_uart, share
from vlab.hyp.host import Host
from vlab.hyp.vm import VM
from vlab.machine.loader import image_from_program
from vlab.sched.registry import make_policy
from vlab.sched.units import ms

GUEST_RAM = 0x10_0000
PROBES = workloads.PROGRESS + 0x100  # the prober's count of external aborts, and the last ESR_EL1 and FAR_EL1
CAR_FRAME = "safety=2ms,info=4ms/frame=8ms"
SAFETY_ROUND = 2_000  # instructions of the safety loop between two messages


def device_writer(count: int, base: int = SECOND_UART, byte: str = "B") -> Program:
    """Send `count` bytes to the PL011 at `base` (waiting on UARTFR.TXFF before each), then power off."""
    return assemble(f"""    ldr x1, ={base:#x}
    ldr x2, ={count}
    mov w3, #'{byte}'
next:
    ldr w4, [x1, #0x18]            // UARTFR
    tbnz w4, #5, next              // TXFF
    str w3, [x1]                   // UARTDR
    subs x2, x2, #1
    b.ne next
    ldr x0, =0x84000008
    hvc #0
""")


def safety_loop(base: int = SECOND_UART) -> Program:
    """The safety OS: forever, one message ('B') to the brake link, counted, then SAFETY_ROUND
    instructions of work (its control loop)."""
    return assemble(f"""    ldr x1, ={base:#x}
    ldr x19, ={workloads.PROGRESS:#x}
    mov w3, #'B'
forever:
    str w3, [x1]
    ldr x4, [x19]
    add x4, x4, #1
    str x4, [x19]
    ldr x5, ={SAFETY_ROUND // 3}
work:
    add x6, x6, #1
    subs x5, x5, #1
    b.ne work
    b forever
""")


def prober(base: int = SECOND_UART) -> Program:
    """An infotainment OS gone bad: forever, a store to one of the brake link's registers (the next one
    each time), then some work. Its vector table counts each synchronous exception it takes (the
    external abort), keeps the last ESR_EL1 and FAR_EL1, and goes on after the store."""
    return assemble(f"""    adr x0, vectors
    msr vbar_el1, x0
    ldr x1, ={base:#x}
    ldr x19, ={PROBES:#x}
    mov w3, #'X'
    mov x2, #0
forever:
    str w3, [x1, x2]               // to the brake link: not this VM's
    add x2, x2, #4
    and x2, x2, #0x3c              // its first 16 registers, in turn
    ldr x5, =1000
work:
    subs x5, x5, #1
    b.ne work
    b forever

    .balign 0x800
vectors:
    b .
    .balign 0x200
    ldr x7, [x19]                  // current EL, SP_ELx, synchronous: count it, note it, skip it
    add x7, x7, #1
    str x7, [x19]
    mrs x7, esr_el1
    str x7, [x19, #8]
    mrs x7, far_el1
    str x7, [x19, #16]
    mrs x7, elr_el1
    add x7, x7, #4
    msr elr_el1, x7
    eret
""")


def probes(vm: VM) -> tuple[int, int, int]:
    """What a prober recorded: (external aborts taken, the last ESR_EL1, the last FAR_EL1)."""
    data = vm.read_memory(PROBES, 24)
    return tuple(int.from_bytes(data[i:i + 8], "little") for i in (0, 8, 16))


def guest(host: Host, program: Program, **options) -> VM:
    return VM.from_image(image_from_program(program), host=host, stage2="contiguous", ram_size=GUEST_RAM, **options)


@dataclass
class Assignment:
    """The device workload run once: the host, the VM(s), the device, how the run ended."""

    host: Host
    vms: list[VM]
    device: object
    results: list


def assignment(count: int, how: str, vms: int = 1) -> Assignment:
    """`vms` VMs each running device_writer(count), the device passed through (one VM) or emulated
    and shared by all of them."""
    if how not in ("passthrough", "shared"):
        raise ValueError(f"a device is given by 'passthrough' or 'shared', not {how!r}")
    if how == "passthrough" and vms != 1:
        raise ValueError("a device passed through belongs to one VM: share it to give it to several")
    host = Host(memory=vms * (GUEST_RAM + 0x10_0000) + 0x10_0000)
    machines = [guest(host, device_writer(count, byte="ABCDEFGH"[i])) for i in range(vms)]
    device = second_uart("link")
    if how == "passthrough":
        passthrough(device, machines[0])
    else:
        share(device, machines)
    return Assignment(host, machines, device, host.run().vms)


@dataclass
class Car:
    """The car after a run: the safety VM's messages on the brake link, and what the infotainment VM did."""

    infotainment: str
    host: Host
    safety: VM
    info: VM
    brake: object

    @property
    def messages(self) -> int:
        return len(self.brake.output)

    def summary(self) -> str:
        ended = self.info.result()
        line = (f"info {self.infotainment:<8} ({ended.reason.value}): safety sent {self.messages} messages "
                f"(its count: {workloads.progress(self.safety)}); the brake link got {self.brake.output.count(b'X')} "
                f"bytes from info")
        if self.infotainment == "prober":
            aborts, esr, far = probes(self.info)
            line += f"; info took {aborts} external aborts (last ESR_EL1 {esr:#x}, FAR_EL1 {far:#x})"
        return line


CAR_INFOTAINMENT = {"spinner": lambda: workloads.spinner(), "crasher": lambda: workloads.crasher(20_000),
                    "prober": prober}


def car(infotainment: str = "spinner", duration_ms: float = 40, frame: str = CAR_FRAME) -> Car:
    """The car for `duration_ms` of host time: the safety VM and the infotainment VM (`infotainment`:
    spinner, crasher or prober) on one core under the ARINC 653 `frame`, the brake link passed
    through to the safety VM."""
    if infotainment not in CAR_INFOTAINMENT:
        raise ValueError(f"the infotainment VM is a {', '.join(CAR_INFOTAINMENT)}, not {infotainment!r}")
    host = Host(memory=2 * GUEST_RAM + 0x20_0000,
                scheduler=make_policy("arinc653", pcpus=1, windows=frame, vm_names=["safety", "info"]))
    safety = guest(host, safety_loop())
    info = guest(host, CAR_INFOTAINMENT[infotainment](), traps=HCR.TWI)
    brake = second_uart("brake")
    passthrough(brake, safety)
    host.run(duration=ms(duration_ms))
    return Car(infotainment, host, safety, info, brake)


@dataclass
class Server:
    """The server after a run: each VM's exits, and what each device received."""

    host: Host
    vms: dict[str, VM]
    devices: dict[str, object]

    def table(self) -> str:
        lines = [f"{'VM':<6} {'its device':<24} {'exits to it':>11}  ended"]
        for name, vm in self.vms.items():
            device = next(d for d, users in SERVER_DEVICES.items() if name in users[1])
            how = "passed through" if len(SERVER_DEVICES[device][1]) == 1 else "emulated, shared"
            lines.append(f"{name:<6} {device + ' (' + how + ')':<24} {vm.exits.get('DABT_LOWER', 0):>11}  "
                         f"{vm.result().reason.value}")
        lines += [f"{name} received {len(device.output)} bytes: {device.text[:40]!r}" for name, device in
                  self.devices.items()]
        return "\n".join(lines)


# device -> (its IPA, the VMs that use it): the database's disk is its own, the web servers share the NIC
SERVER_DEVICES = {"disk": (SECOND_UART, ("db",)), "nic": (SECOND_UART + 0x1000, ("web1", "web2"))}


def server(count: int = 32) -> Server:
    """A server of two cores and three VMs: `db` has a disk passed through to it alone; `web1` and
    `web2` share a network card, emulated by the hypervisor. Each VM sends `count` bytes to its
    device."""
    host = Host(pcpus=2, memory=3 * (GUEST_RAM + 0x10_0000) + 0x10_0000, scheduler=make_policy("rr", pcpus=2))
    vms, devices = {}, {}
    for device, (base, users) in SERVER_DEVICES.items():
        devices[device] = second_uart(device, base)
        for name in users:
            vms[name] = guest(host, device_writer(count, base, "DWX"[len(vms)]))
        if len(users) == 1:
            passthrough(devices[device], vms[users[0]])
        else:
            share(devices[device], [vms[name] for name in users])
    host.run()
    return Server(host, vms, devices)

"""Type 1: a Xen-like hypervisor at EL2, on the hardware, with dom0 (vlab.hyp.dom0) beside the guests.

    guest --trap--> Xen (EL2): the guest's general-purpose registers saved in Xen's frame (its
                    `struct cpu_user_regs`), the exit handled there, the frame restored --eret--> guest

No host kernel, no EL1 state switched: Xen's handlers read and write the guest's registers in the
frame. What Xen does not emulate itself -- here, the domain's console -- goes to dom0:

    Xen: an ioreq_t in the domain's ring, an event for dom0, the vCPU blocks
    dom0 is scheduled (a world switch, when it shares the core), serves the ring on the real
    PL011 (passed through to it: no exits), EVTCHNOP_send; Xen completes the load or store in the
    vCPU's saved registers and wakes it; dom0 sleeps (SCHEDOP_block); the domain runs again

A domain waiting for dom0 waits at most `io_timeout` host ticks; if dom0 has stopped, or has not
answered by then, the domain's run ends with a report saying so (`StopReason.STOPPED`), its
access never performed -- the host never hangs on it. dom0 wakes at least every DOM0_POLL ticks
and stops once no domain it serves is running.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Callable

from vlab.arch.esr import DataAbort, ExceptionClass
from vlab.hyp.dom0 import EVTCHNOP_send, HYPERVISOR_event_channel_op, SOURCE, Dom0Device, make_dom0, serve
from vlab.hyp.exits import Exit
from vlab.hyp.handlers import handle_data_abort, handle_hvc, inject_external_abort, write_loaded_value
from vlab.hyp.ioring import IoRequest, Ring, RingError
from vlab.hyp.structure import (BATCHED, EL1_STATE, EL2_CONTROLS, GIC_STATE, GPRS, NOT_ON_VLAB, TIMER, Moved, Path,
                                Step, Structure)
from vlab.hyp.vcpu import VCpu, VCpuState
from vlab.hyp.xen import ENOSYS, XenServices, is_xen_hypercall, xen_handler
from vlab.machine.board import MmioAccess, StopReason
from vlab.machine.cpu import CPU
from vlab.machine.register_frame import RegisterFrame
from vlab.sched.units import ms

IO_TIMEOUT = ms(10)  # how long a domain waits for dom0's answer before its run ends with a report
DOM0_POLL = ms(1)  # dom0 wakes at least this often, to stop once no domain it serves runs
XEN = "Xen (EL2)"
GUEST = "guest (EL1)"
DOM0 = "dom0 (EL1)"
WORLD_SWITCH = "vlab's world switch of vCPUs (PhysicalCpu.load: Unicorn's context save/restore)"
_U64 = (1 << 64) - 1


def _registers(owner: str) -> tuple[Moved, ...]:
    return (Moved("general-purpose", GPRS, owner, BATCHED),)


def _vcpu(owner: str) -> tuple[Moved, ...]:
    """What a switch between two vCPUs on a core moves of one of them."""
    return (Moved("general-purpose", GPRS, owner, WORLD_SWITCH), Moved("EL1 system registers", EL1_STATE, owner, WORLD_SWITCH),
            Moved("virtual timer", TIMER, owner, WORLD_SWITCH), Moved("GIC virtual interface", GIC_STATE, owner, NOT_ON_VLAB),
            Moved("EL2 controls", EL2_CONTROLS, owner, WORLD_SWITCH))


TRAP = Step(XEN, "the exit traps to EL2; Xen saves the guest's registers in its frame (cpu_user_regs)",
            saved=_registers("guest"))
RETURN = Step(GUEST, "Xen restores the frame, ERET", restored=_registers("guest"))
HYPERVISOR_PATH = Path("type1", "hypervisor", XEN, (TRAP, Step(XEN, "Xen handles the exit itself"), RETURN))
DOM0_PATH = Path("type1", "dom0", "dom0's device model", (
    TRAP,
    Step(XEN, "an ioreq_t in the domain's ring, an event for dom0; the vCPU blocks"),
    Step(DOM0, "dom0 is scheduled on the core", saved=_vcpu("guest"), restored=_vcpu("dom0"), world_switch=True),
    Step(DOM0, "dom0 takes the request and performs it on the real PL011 (passthrough: no exit), answers in the slot"),
    Step(XEN, "EVTCHNOP_send: dom0 traps to Xen", saved=_registers("dom0")),
    Step(XEN, "Xen completes the load or store in the vCPU's saved registers, and wakes it"),
    Step(DOM0, "ERET to dom0, which sleeps again (SCHEDOP_block)", restored=_registers("dom0")),
    Step(GUEST, "the domain is scheduled back on the core, after its load or store", saved=_vcpu("dom0"),
         restored=_vcpu("guest"), world_switch=True),
))


@dataclass(frozen=True)
class Waiting:
    """A vCPU's access that dom0 serves: the exit, its syndrome, the ring (port), the request's index
    in it (None: never put there) and when the vCPU gives up waiting."""

    vcpu: VCpu
    exit: Exit
    abort: DataAbort
    port: int
    index: int | None
    deadline: int

    def describe(self) -> str:
        device = self.vcpu.platform.device_at(self.exit.ipa)
        register = device.register_name(self.exit.ipa - device.base)
        where = f", request {self.index} of ring {self.port}" if self.index is not None else ""
        return (f"{'a write to' if self.abort.wnr else 'a read of'} {device.name}.{register} by "
                f"`{self.exit.instruction}` at {self.exit.address:#x}{where}")


class Xen(Structure):
    """A type 1 hypervisor on `host`, which gets its dom0 (the host's first VM) at once. `attach` a
    domain to run it under Xen, its console served by dom0."""

    name = "type1"
    title = "type 1 (Xen-like: the hypervisor at EL2, I/O through dom0)"
    layers = ("hardware", "Xen (EL2)", "dom0 (EL1): device models", "guests (EL1/EL0)")

    def __init__(self, host, io_timeout: int = IO_TIMEOUT, dom0_source: str = SOURCE):
        super().__init__(host)
        self.io_timeout = io_timeout
        self.dom0 = make_dom0(host, dom0_source)
        services = XenServices(console_write=lambda vcpu, data: vcpu.platform.console(data),
                               yield_=lambda vcpu: vcpu.yield_cpu(), block=self._dom0_block,
                               shutdown=self._dom0_shutdown, domain_id=lambda vcpu: vcpu.vm.index,
                               domain_ids=lambda: [vm.index for vm in host.vms])
        self._xen = xen_handler(services)
        self.dom0.set_handler(ExceptionClass.HVC64, self._dom0_hypercall)
        self._rings: list[Ring] = []  # by port: domain k's ring is on event channel k
        self._ports: dict[int, int] = {}  # VM index -> its port
        self._waiting: dict[VCpu, Waiting] = {}
        self._queues: list[deque[Waiting]] = []  # by port: requests in the ring, oldest first
        self._event = False  # an event is pending for dom0 (it does not block then)
        self._forwarded = False  # the exit being dispatched went to dom0
        self._frames: dict[CPU, RegisterFrame] = {}
        super().attach(self.dom0)  # dom0's own exits are Xen's too

    def attach(self, vm) -> None:
        """Run `vm` as a domain: its exits through Xen, its console's accesses to dom0."""
        super().attach(vm)
        vm.set_handler(ExceptionClass.DABT_LOWER, self._data_abort)
        port = len(self._rings)
        self._rings.append(serve(self.dom0, vm, port))
        self._queues.append(deque())
        self._ports[vm.index] = port

    # --- every exit: the guest's registers in Xen's frame -----------------------------------------

    def _enter(self, vcpu: VCpu) -> tuple[CPU, RegisterFrame]:
        cpu = vcpu._cpu
        frame = self._frames.get(cpu)
        if frame is None:
            frame = self._frames[cpu] = RegisterFrame()
        frame.save(cpu)
        vcpu._cpu = frame  # Xen's handlers read and write the guest's registers in the frame
        return cpu, frame

    @staticmethod
    def _leave(vcpu: VCpu, cpu: CPU, frame: RegisterFrame) -> None:
        vcpu._cpu = cpu
        frame.restore(cpu)

    def dispatch(self, inner: Callable, vcpu: VCpu, exit: Exit, served: str) -> tuple:
        cpu, frame = self._enter(vcpu)
        self._forwarded = False
        try:
            outcome = inner(vcpu, exit, served)
        finally:
            self._leave(vcpu, cpu, frame)
        self.record(vcpu, exit, DOM0_PATH if self._forwarded else HYPERVISOR_PATH)
        return outcome

    def serve_mmio(self, inner: Callable, vcpu: VCpu, exit: Exit, abort: DataAbort, stored: int, device=None,
                   where: str | None = None) -> int:
        cpu, frame = self._enter(vcpu)
        try:
            value = inner(vcpu, exit, abort, stored, device, where)
        finally:
            self._leave(vcpu, cpu, frame)
        self.record(vcpu, exit, HYPERVISOR_PATH)
        return value

    # --- a domain's access to a device dom0 serves ----------------------------------------------

    def _data_abort(self, vcpu: VCpu, exit: Exit) -> str:
        """A domain's data abort: to dom0 if its device is dom0's, else Xen's own emulation."""
        device = vcpu.platform.device_at(exit.ipa)
        if not isinstance(device, Dom0Device):
            return handle_data_abort(vcpu, exit)
        waiting = self._waiting.get(vcpu)
        if waiting is not None:
            return self._gives_up(vcpu, waiting)  # it ran again before dom0 answered: the deadline passed
        abort = DataAbort.from_iss(exit.syndrome.iss)
        if not abort.isv:
            return inject_external_abort(vcpu, exit, "ISV = 0: the access is not one a hypervisor can emulate "
                                                     "from the syndrome (a pair, writeback or SIMD)")
        port = self._ports[vcpu.vm.index]
        if not self.dom0.running:
            return self._gives_up(vcpu, Waiting(vcpu, exit, abort, port, None, vcpu.ticks()))
        data = vcpu.x(abort.srt) & ((1 << (8 * abort.size)) - 1) if abort.wnr else 0
        index = self._rings[port].push(IoRequest(exit.ipa, abort.size, not abort.wnr, data, port))
        waiting = Waiting(vcpu, exit, abort, port, index, vcpu.ticks() + self.io_timeout)
        self._waiting[vcpu] = waiting
        self._queues[port].append(waiting)
        self._send_dom0_event()
        self._forwarded = True
        return f"{waiting.describe()}: to dom0; {vcpu.wait_for_event(waiting.deadline)}"

    def _send_dom0_event(self) -> None:
        """A request is in a ring: dom0 wakes if it sleeps in SCHEDOP_block (waking takes the event),
        or, if it is running, its next SCHEDOP_block returns at once."""
        dom0 = self.dom0.vcpus[0]
        if dom0.state is VCpuState.BLOCKED:
            self.host.wake(dom0)
        else:
            self._event = True

    def _gives_up(self, vcpu: VCpu, waiting: Waiting) -> str:
        """dom0 will not answer: the domain's run ends here, its access not performed (called in the
        run loop, where a VM can stop at once; its vCPU stays at the load or store)."""
        dom0 = self.dom0
        if not dom0.started:
            why = "dom0 has not run: run the whole host (host.run()), so that dom0 runs beside the domain"
        elif not dom0.running:
            why = f"dom0 has stopped ({dom0.result().reason.value}: {dom0.result().message})"
        else:
            why = (f"dom0 runs but has not answered in {self.io_timeout:,} host ticks "
                   f"({self.io_timeout / ms(1):g} ms): it is not serving its ring")
        message = f"vCPU{vcpu.index} waits for I/O that dom0 will not answer -- {waiting.describe()}: {why}"
        vcpu.vm.stop(StopReason.STOPPED, message, vcpu)
        return message

    def _complete(self, waiting: Waiting, answer: IoRequest) -> None:
        """dom0's answer: the load or store completes in the vCPU's saved state, which runs again."""
        vcpu, exit, abort = waiting.vcpu, waiting.exit, waiting.abort
        del self._waiting[vcpu]
        if not abort.wnr:
            write_loaded_value(vcpu, abort, answer.data)
        vcpu.pc = exit.address + 4
        vcpu.instructions += 1  # the load or store retires, as it would have on the machine
        device = vcpu.platform.device_at(exit.ipa)
        offset = exit.ipa - device.base
        value = answer.data if not abort.wnr else vcpu.x(abort.srt) & ((1 << (8 * abort.size)) - 1)
        vcpu.vm.mmio_trace.append(MmioAccess(vcpu.ticks(), device.name, offset, device.register_name(offset),
                                             abort.size, value, abort.wnr))
        self.host.wake(vcpu)

    # --- dom0's hypercalls ----------------------------------------------------------------------

    def _dom0_hypercall(self, vcpu: VCpu, exit: Exit) -> str:
        if not is_xen_hypercall(exit):
            return handle_hvc(vcpu, exit)  # PSCI and vlab's own, as for any VM
        if vcpu.x(16) == HYPERVISOR_event_channel_op:
            return self._event_channel_op(vcpu)
        return self._xen(vcpu, exit)

    def _event_channel_op(self, vcpu: VCpu) -> str:
        """EVTCHNOP_send(&port): dom0 has answered requests in that domain's ring."""
        cmd = vcpu.x(0) & 0xFFFF_FFFF
        if cmd != EVTCHNOP_send:
            vcpu.set_x(0, -ENOSYS & _U64)
            return f"event_channel_op: command {cmd} is not served: x0 = -ENOSYS"
        try:
            (port,) = struct.unpack("<I", vcpu.read_memory(vcpu.x(1), 4))
        except ValueError:
            vcpu.set_x(0, -14 & _U64)
            return f"event_channel_op send: struct evtchn_send at {vcpu.x(1):#x} is outside dom0's memory: -EFAULT"
        vcpu.set_x(0, 0)
        if port >= len(self._rings):
            return f"event_channel_op send: port {port} is bound to no domain; nothing to do"
        try:
            answers = self._rings[port].take_answers()
        except RingError as e:
            vcpu.halt(StopReason.EXCEPTION, f"Xen crashed dom0, which broke ring {port}: {e}")
            return f"event_channel_op send: {e}"
        queue = self._queues[port]
        for index, answer in answers:
            self._complete(queue.popleft(), answer)
        return f"event_channel_op send (port {port}): {len(answers)} answer(s) taken, their vCPUs woken"

    def _dom0_block(self, vcpu: VCpu) -> str:
        """SCHEDOP_block: dom0 sleeps until the next request -- unless one came meanwhile, or no domain
        it serves runs any more, and dom0's work is done."""
        if self._event:
            self._event = False
            return "an event is pending: dom0 goes on at once"
        if not any(vm.running for vm in self.vms if vm is not self.dom0):
            vcpu.halt(StopReason.IDLE, "dom0: no domain it serves is running any more")
            return "no domain left to serve: dom0 stops"
        return vcpu.wait_for_event(vcpu.ticks() + DOM0_POLL)

    @staticmethod
    def _dom0_shutdown(vcpu: VCpu, reason: int) -> str:
        vcpu.halt(StopReason.RESET if reason == 1 else StopReason.POWERED_OFF, f"dom0 shut down (reason {reason})")
        return "dom0 shuts down"

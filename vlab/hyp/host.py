"""The host: the physical machine a hypervisor shares among its VMs.

    host = Host(pcpus=2, scheduler=make_policy("credit", pcpus=2))
    a = VM.from_file("vlab/guests/hello.S", host=host, stage2="contiguous")
    b = VM.from_file("vlab/guests/paging.S", host=host, stage2="scattered", vcpus=2)
    result = host.run()          # result.vms[i], result.pcpus; host.trace: what ran where, when

A `Host` owns host physical memory (one buffer; VMs get frames of it through stage 2), its
physical CPUs (each one Unicorn engine: vlab.hyp.pcpu), its VMs, the host clock and a scheduler
(vlab.sched). The run loop is the hypervisor's, on every core:

    the core furthest behind in host time goes next
      -> wake the blocked vCPUs whose timer has fired
      -> if the scheduler's decision for this core has run out (or its vCPU blocked, stopped,
         yielded, or a woken vCPU preempts it): ask the scheduler, and world-switch to its choice
      -> run that vCPU natively until the next event: the end of its slice, its timer, a wake-up
         elsewhere, a lockstep quantum (so that cores advance together), or its VM's polling device's turn
      -> what the run returned is finished by the core (vlab.hyp.pcpu): exits for the loop

Host time counts guest instructions (one tick each, 62.5 MHz as the board's counter), plus idle
time and the cost charged for each world switch, so a run is deterministic: the same VMs on the
same host always give the same schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from vlab.hyp.memory import HostMemory, frames_needed
from vlab.hyp.pcpu import PhysicalCpu
from vlab.hyp.vcpu import VCpu, VCpuState
from vlab.machine import psci
from vlab.machine.board import DEFAULT_MAX_INSNS, DEFAULT_TIMEOUT_S, RAM_BASE, VIRTIO_POLL, RunResult, StopReason
from vlab.machine.cpu import CPU, Watchdog
from vlab.machine.gic import EOI_MODE, GIC, MAINTENANCE_PPI, MAX_CPUS, VIRTUAL_TIMER_PPI
from vlab.machine.timer import FREQUENCY_HZ
from vlab.mmu.tables import PAGE
from vlab.sched import Entity, Scheduler
from vlab.sched.metrics import RunFigures, run_figures
from vlab.sched.recorder import Recorder
from vlab.sched.registry import make_policy
from vlab.sched.trace import Trace, ran_ticks

MAX_PCPUS = MAX_CPUS  # its interrupt controller, a GICv2, has 8 CPU interfaces at most
DEFAULT_HOST_MEMORY = 0x1000_0000  # 256 MiB
DEFAULT_LOCKSTEP = 50_000  # with several cores: how far one may run ahead of the others (0.8 ms)
_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class HostRunResult:
    """A run of the host: each VM's result (in the order of `vms`), each core's figures."""

    vms: list
    pcpus: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"vms": [vm.to_json() for vm in self.vms], "pcpus": self.pcpus}


class Host:
    """A physical machine with `pcpus` cores and `memory` bytes (or a HostMemory) of host RAM."""

    def __init__(self, pcpus: int = 1, memory: int | HostMemory | None = None, scheduler: Scheduler | None = None,
                 switch_cost: int = 0, lockstep: int = DEFAULT_LOCKSTEP):
        """`scheduler`: a policy of vlab.sched made for `pcpus` cores (default: round-robin);
        `switch_cost`: host ticks charged to a core for each world switch; `lockstep`: with several
        cores, the most host ticks one runs ahead of the others."""
        if not 1 <= pcpus <= MAX_PCPUS:
            raise ValueError(f"a host has 1 to {MAX_PCPUS} physical CPUs (its GICv2 serves {MAX_PCPUS}), not {pcpus}")
        policy = scheduler or make_policy("rr", pcpus)
        if policy.pcpus != pcpus:
            raise ValueError(f"the {policy.name} policy was made for {policy.pcpus} physical CPUs; this host has "
                             f"{pcpus}: make it with pcpus={pcpus}")
        if switch_cost < 0 or lockstep <= 0:
            raise ValueError("the world-switch cost must be >= 0 ticks and the lockstep quantum > 0 ticks")
        self._memory = memory if isinstance(memory, HostMemory) else None
        self._memory_size = DEFAULT_HOST_MEMORY if memory is None or self._memory else memory
        if self._memory is not None:
            self._memory._host = self
        self.policy = policy
        self.scheduler = Recorder(policy, switch_cost)  # the policy, recording the schedule it makes
        self.switch_cost, self.lockstep = switch_cost, lockstep
        self.vms: list = []
        self._vmids: dict[int, int] = {}  # VM index -> VMID
        self._cores = pcpus
        self.pcpus: list[PhysicalCpu] = []  # made at the first run, when the memory map is known
        self.gic: GIC | None = None  # the host's own interrupt controller, made with the cores
        # Devices on the host's own bus, at physical addresses every core maps: a VM given one by
        # passthrough reaches it through stage 2 with no exit (vlab.hyp.assign).
        self.bus: list = []
        self.scratch = CPU()  # where a saved vCPU's registers are read and written
        self._reset = self.scratch.uc.context_save()  # a core's state at reset: every vCPU starts so
        self.midr = self.scratch.read_sysreg("MIDR_EL1")
        self._decision: list[tuple[Entity | None, int] | None] = []
        self._resched: list[bool] = []
        self._slept: list[bool] = []  # per core: its vCPU slept since the policy picked it
        self._blocked: list[VCpu] = []
        self._watchdog: Watchdog | None = None
        self._in_run = False  # a core is running a vCPU: tell the scheduler what it did after its charge
        self.turn: PhysicalCpu | None = None  # the core whose turn of the loop it is, during a run
        self._end: int | None = None  # the host tick a run with a duration ends at
        self._after_charge: list[Callable[[], None]] = []

    @classmethod
    def of(cls, memory: HostMemory) -> Host:
        """The host that owns `memory` (one is made for it the first time)."""
        return getattr(memory, "_host", None) or cls(memory=memory)

    @property
    def trace(self) -> Trace:
        """What ran where and when, who woke and slept, every world switch (vlab.sched.trace)."""
        return self.scheduler.trace

    @property
    def memory(self) -> HostMemory:
        """Host physical memory, from which stage-2 VMs get their frames (made when first needed)."""
        if self._memory is None:
            self._memory = HostMemory(self._memory_size)
            self._memory._host = self
        return self._memory

    # --- VMs and their vCPUs ------------------------------------------------------------------

    def admit(self, vm, stage2: str | None, vmid: int | None) -> int:
        """Take `vm` onto this host; its index. A VM without stage-2 tables uses its RAM at the
        guest's own addresses, which only one VM of a host can do."""
        if stage2 is None and self.vms or any(v.memory is None for v in self.vms):
            raise ValueError("only a VM alone on its host can run without stage-2 tables: give every VM on a "
                             "shared host a stage-2 layout, e.g. VM(stage2='contiguous', host=host)")
        if stage2 is not None:
            self._check_room(vm.ram_size, frames_needed(RAM_BASE, vm.ram_size, stage2))
        vmid = len(self.vms) + 1 if vmid is None else vmid
        if not 1 <= vmid < 1 << 16 or vmid in self._vmids.values():
            raise ValueError(f"VMID {vmid} is taken or out of range (1..65535): each VM on a host needs its own")
        index = len(self.vms)
        self.vms.append(vm)
        self._vmids[index] = vmid
        return index

    def _check_room(self, ram_size: int, needed: int) -> None:
        """Refuse a VM whose memory would not fit in the host's free frames that no other VM has been
        promised (vlab.hyp.memory.VmMemory), before any is taken."""
        frames, free = self.memory.frames, self.memory.unpromised
        if needed > free:
            promised = f" ({self.memory.reserved:,} more are promised to other VMs)" if self.memory.reserved else ""
            raise ValueError(f"a VM with {_size(ram_size)} of RAM needs {needed:,} host frames of 4 KiB (its RAM "
                             f"and stage-2 tables), but only {free:,} of the host's {frames.size // PAGE:,} "
                             f"frames ({_size(frames.size)}) are free{promised}: give the host more memory "
                             "(Host(memory=...)), the VM less RAM (ram_size=...), or demand paging (stage2='demand')")

    def vmid_of(self, vm) -> int:
        return self._vmids[vm.index]

    def new_context(self):
        """A saved core in its reset state: what a new vCPU starts as."""
        self.scratch.uc.context_restore(self._reset)
        return self.scratch.uc.context_save()

    def inspect(self, vcpu: VCpu) -> CPU:
        """The scratch core with `vcpu`'s saved state on it, to read (and write back) its registers."""
        self.scratch.uc.context_restore(vcpu.context)
        return self.scratch

    def pcpu_of(self, vcpu: VCpu) -> PhysicalCpu | None:
        return next((p for p in self.pcpus if p.current is vcpu), None)

    def take_over(self, vm, counters: list[int]) -> None:
        """Go on running `vm`, whose vCPUs ran on another host until `counters` (each one's CNTVCT_EL0
        when it stopped): a live migration's arrival. Each virtual counter continues from there, so
        the guest does not see the time it was paused (as QEMU keeps it by default); the vCPUs keep
        the states they arrived in, one in WFI waits here for its timer -- or wakes at once, when an
        interrupt it would take arrived with it (an SGI sent just before the pause) -- and the next
        run wakes the runnable ones."""
        if vm.started or vm.host is not self:
            raise ValueError("only a VM of this host that has not run here yet can be taken over")
        now = self._now()
        for vcpu, counter in zip(vm.vcpus, counters, strict=True):
            vcpu.timer.offset = now - counter  # CNTVOFF_EL2
            vcpu._saved_at = now
            self.scheduler.add(vcpu.entity)
            if vcpu.state is not VCpuState.BLOCKED and not vcpu.in_wfi:
                continue
            woken = vm.vgic.wants_to_run(vcpu.index)
            vcpu.wake_at = now if woken and vcpu.in_wfi else vcpu.wake_deadline()
            if vcpu.state is VCpuState.BLOCKED and woken:
                vcpu.state, vcpu.wake_at = VCpuState.RUNNABLE, None
            elif vcpu.state is VCpuState.BLOCKED:
                self._blocked.append(vcpu)
        vm.started = True

    def stall(self, vcpu: VCpu, ticks: int) -> None:
        """The vCPU's core waits `ticks` host ticks with it, doing nothing else (post-copy: the page it
        touched is still on its way): idle time on that core."""
        pcpu = self.pcpu_of(vcpu)
        if pcpu is not None:
            pcpu.idle_ticks += ticks

    def clock(self) -> int:
        """The host clock, in host ticks: how far every core has got."""
        return self._now()

    # --- what the cores tell the loop -----------------------------------------------------------

    def power_on(self, vcpu: VCpu) -> None:
        """PSCI CPU_ON: the vCPU becomes runnable, now."""
        vcpu.state = VCpuState.RUNNABLE
        self._wake(vcpu, self._now())

    def power_down(self, vcpu: VCpu) -> None:
        """PSCI CPU_OFF: the vCPU stops being runnable until CPU_ON starts it again."""
        vcpu.state = VCpuState.OFF
        self._sleeps(vcpu)

    def block(self, vcpu: VCpu, until: int | None = None) -> None:
        """A trapped WFI: the vCPU sleeps until an interrupt it would take -- its timer firing, an
        SGI from another vCPU (`interrupt_arrived`). With `until`, it waits for an event from another
        VM instead (`wake`), whatever its timer does, and at host tick `until` at the latest: a vCPU
        waiting for another VM's answer."""
        if until is None:
            pcpu = self.pcpu_of(vcpu)
            if pcpu is not None:
                pcpu.serve_physical_interrupts(vcpu)  # the timer may have fired just now
                vcpu.vm.vgic.resample(vcpu.index)  # or been reprogrammed before its interrupt was taken
            if vcpu.vm.vgic.wants_to_run(vcpu.index):
                return  # an interrupt is already there: WFI does not wait
        vcpu.state = VCpuState.BLOCKED
        vcpu.wake_at = vcpu.wake_deadline() if until is None else until
        self._blocked.append(vcpu)
        self._sleeps(vcpu)
        self._check_idle(vcpu.vm)

    def interrupt_arrived(self, vcpu: VCpu) -> None:
        """`vcpu` can now take an interrupt (an SGI another vCPU sent): if it sleeps in WFI, it wakes
        -- through the scheduler when it had given up its core, at once when it holds one."""
        if vcpu in self._blocked:
            self._unblock(vcpu)
        elif vcpu.in_wfi:
            vcpu.wake_at = vcpu.ticks()

    def wake(self, vcpu: VCpu) -> None:
        """An event for `vcpu` from another VM (a request to serve, an answer to its request): if it
        sleeps, it becomes runnable -- told to the scheduler after the current stretch is charged."""
        if vcpu in self._blocked:
            self._unblock(vcpu)

    def yield_(self, vcpu: VCpu) -> None:
        """A paravirtual yield: the scheduler picks again on the vCPU's core."""
        self._leaves_core(vcpu)
        self._tell(lambda now: self.scheduler.yield_(vcpu.entity, now))

    def vm_stopped(self, vm) -> None:
        """The VM's run ended: its vCPUs leave the scheduler's queues."""
        for vcpu in vm.vcpus:
            if vcpu.state is not VCpuState.OFF:
                self._sleeps(vcpu)

    def _leaves_core(self, vcpu: VCpu) -> None:
        """The vCPU stops running where it runs: that core asks the scheduler again."""
        pcpu = self.pcpu_of(vcpu)
        if pcpu is not None:
            self._resched[pcpu.index] = True

    def _sleeps(self, vcpu: VCpu) -> None:
        """The vCPU sleeps: it leaves its core, and the policy hears of it. Woken before that core picks
        again (an SGI from another core), it is queued by the policy, no longer the core's current
        vCPU: passed as current, it would be queued twice, and given to two cores."""
        pcpu = self.pcpu_of(vcpu)
        self._leaves_core(vcpu)
        if pcpu is not None:
            self._slept[pcpu.index] = True
        self._tell(lambda now: self.scheduler.sleep(vcpu.entity, now))

    def _tell(self, notify: Callable[[int], None]) -> None:
        """Tell the scheduler something about a vCPU: at once, or -- when it happened while a core ran
        the vCPU -- after that stretch has been charged, as the policies' contract orders them."""
        if self._in_run:
            self._after_charge.append(notify)
        else:
            notify(self._now())

    def firmware_call(self, vcpu: VCpu):
        """An SMC the hypervisor does not trap reaches the machine's own firmware (EL3) -- PSCI for
        the physical machine, not for the VM. None when served; a function to run in the loop when
        it powered the machine off, which stops every VM on the host."""
        cpu = vcpu._cpu
        fid = cpu.x(0) & 0xFFFF_FFFF
        if not psci.is_psci(fid):
            cpu.set_x(0, psci.PsciReturn.NOT_SUPPORTED & _U64)
            return None
        outcome = psci.call(fid, (cpu.x(1), cpu.x(2), cpu.x(3)), tuple(range(len(self.pcpus))))
        cpu.set_x(0, outcome.x0)
        if not (outcome.power_off or outcome.reset):
            return None
        reason = StopReason.RESET if outcome.reset else StopReason.POWERED_OFF
        message = (f"PSCI {outcome.function} called at {cpu.pc - 4:#x} through an SMC the hypervisor does not "
                   f"trap (HCR_EL2.TSC): the machine's firmware powered the host off")
        return lambda: [vm.stop(reason, message, vcpu) for vm in self.vms if vm.running]

    def invalidate_stage2(self, vm, ipa: int | None) -> None:
        """A change to `vm`'s stage-2 tables reaches every core: each forgets what it cached through
        them (for `ipa`'s page, or all), as TLBI IPAS2E1IS / VMALLS12E1IS broadcast on hardware."""
        if vm.memory is not None:
            for pcpu in self.pcpus:
                pcpu.forget_stage2(vm.memory.vmid, ipa)

    def invalidate_stage1(self, vcpu: VCpu) -> None:
        pcpu = self.pcpu_of(vcpu)
        if pcpu is not None:
            pcpu.forget_stage1(vcpu.vm.memory.vmid)

    # --- running ----------------------------------------------------------------------------------

    def run(self, max_insns: int = DEFAULT_MAX_INSNS, timeout_s: float = DEFAULT_TIMEOUT_S,
            vms: list | None = None, duration: int | None = None) -> HostRunResult:
        """Run `vms` (default: all of this host's) until each has stopped: powered off, idle, or a limit.
        `max_insns` bounds each VM (all its vCPUs together), so one that never stops cannot keep the
        others from finishing; `duration` (host ticks) ends the run when the host clock has advanced
        that far, whatever the VMs do -- for comparing what each got in the same time; `timeout_s`
        is a wall-clock guard over the whole run."""
        if max_insns <= 0:
            raise ValueError(f"an instruction budget must be positive, not {max_insns}")
        if duration is not None and duration <= 0:
            raise ValueError(f"a run's duration must be a positive number of host ticks, not {duration}")
        chosen = list(self.vms if vms is None else vms)
        self._start(chosen, max_insns)
        self._end = None if duration is None else self._now() + duration
        self._watchdog = Watchdog(self._stop_cores, timeout_s)
        with self._watchdog as watchdog:
            while any(vm.running for vm in chosen):
                if watchdog.fired:
                    for vm in chosen:
                        vm.stop(StopReason.TIMEOUT, f"wall-clock guard of {timeout_s:g} s reached")
                    break
                if self._end is not None and self._now() >= self._end:
                    for vm in chosen:
                        vm.stop(StopReason.STOPPED, f"the run's duration of {duration:,} host ticks "
                                f"({duration * 1000 / FREQUENCY_HZ:g} ms) is over")
                    break
                self._step(chosen)
        self._finish(chosen)
        return HostRunResult([vm.result() for vm in chosen], self.pcpu_figures())

    def step(self, vm) -> RunResult:
        """One instruction (or one exit, or one exception) of `vm`'s boot vCPU, on core 0."""
        if vm.powered_off:
            return vm.result()
        self._start([vm], 1)
        pcpu, vcpu = self.pcpus[0], vm.vcpus[0]
        self.turn = pcpu
        pcpu.load(vcpu)
        before = vcpu.instructions
        pcpu.run(1)
        if vm.running:
            stepped = "stepped one instruction" if vcpu.instructions > before else "stepped into an exception"
            vm.stop(StopReason.STOPPED, stepped)
        self._finish([vm])
        return vm.result()

    def _start(self, vms: list, max_insns: int) -> None:
        """Get `vms` ready to run. The scheduler learns of new VMs' vCPUs first, so that what it refuses
        (a cap the host cannot give, a vCPU without an ARINC 653 window...) is refused before any runs."""
        for vm in vms:
            if not vm.started:
                for vcpu in vm.vcpus:
                    if vcpu.entity not in self.trace.entities:
                        self.scheduler.add(vcpu.entity)
        if not self.pcpus:
            self._make_cores()
        self._prepare_devices()
        for vm in vms:
            if vm.powered_off:
                continue
            vm.running, vm._stop = True, None
            vm.budget, vm.budget_end = max_insns, sum(v.instructions for v in vm.vcpus) + max_insns
            if not vm.started:
                vm.started = True
                for vcpu in vm.vcpus:
                    vcpu.timer.offset = self._now()  # CNTVOFF_EL2: the guest's counter starts at 0
                    vcpu._saved_at = self._now()
                self._wake(vm.vcpus[0], self._now())
            else:
                for vcpu in vm.vcpus:
                    if vcpu.state is VCpuState.RUNNABLE:
                        self.scheduler.wake(vcpu.entity, self._now())
        for i in range(len(self.pcpus)):
            self._decision[i] = None

    def _make_cores(self) -> None:
        identity = self.vms[0] if len(self.vms) == 1 and self.vms[0].memory is None else None
        self.gic = self._make_gic()
        self.pcpus = [PhysicalCpu(self, i) for i in range(self._cores)]
        for pcpu in self.pcpus:
            pcpu.map_memory(identity)
        self._decision = [None] * self._cores
        self._resched = [False] * self._cores
        self._slept = [False] * self._cores

    def _make_gic(self) -> GIC:
        """The host's GICv2, programmed as KVM's host programs its own: forwarding on; on each core
        the virtual timer's PPI and the maintenance interrupt enabled; each CPU interface with
        EOImode = 1, so that an interrupt handed to a guest stays active until the guest completes it."""
        # A physical IRQ rising stops the core's run: it is an exit to the hypervisor (HCR_EL2.IMO).
        gic = GIC(self._cores, on_signal=lambda cpu: self.pcpus[cpu].cpu.interrupt_pending() if gic.signal(cpu) else None)
        for cpu in range(self._cores):
            distributor, interface = gic.devices(cpu)
            distributor.write(0x000, 4, 1)  # GICD_CTLR
            distributor.write(0x100, 4, 1 << VIRTUAL_TIMER_PPI | 1 << MAINTENANCE_PPI)  # GICD_ISENABLER0
            interface.write(0x004, 4, 0xFF)  # GICC_PMR
            interface.write(0x000, 4, 1 | EOI_MODE)  # GICC_CTLR
        return gic

    def _prepare_devices(self) -> None:
        """Map the device windows whose accesses are served in place. A VM whose data-abort handler
        is not vlab's own sees every device access as an exit in the loop, so then none is mapped."""
        from vlab.hyp.handlers import DEFAULT_HANDLERS  # the dispatch table the in-place path stands for
        from vlab.arch.esr import ExceptionClass

        windows = sorted({(d.base, d.size) for vm in self.vms for d in vm.devices
                          if vm.handlers.get(ExceptionClass.DABT_LOWER)
                          is DEFAULT_HANDLERS[ExceptionClass.DABT_LOWER]})
        for pcpu in self.pcpus:
            pcpu.map_devices(windows)
            pcpu.map_bus(self.bus)

    def _finish(self, vms: list) -> None:
        """After a run (every VM of which has stopped, so its vCPUs have left the scheduler's queues:
        a later run wakes what is still runnable): the trace ends, for now, where the core that got
        furthest stopped. Each core stops what it ran, and asks the policy, as the contract wants after
        a sleep, so that the policy knows nothing runs there when a later run wakes its vCPUs again."""
        for i, decision in enumerate(self._decision):
            if decision is not None and decision[0] is not None:
                self._decision[i] = (self.scheduler.pick(i, self.pcpus[i].now(), None).entity, 0)
        self.trace.finish(max(p.now() for p in self.pcpus))
        self.turn = None

    def _now(self) -> int:
        """The host clock: how far every core has got."""
        return min((p.now() for p in self.pcpus), default=0)

    def _stop_cores(self) -> None:
        for pcpu in self.pcpus:
            pcpu.cpu.uc.emu_stop()

    def _wake(self, vcpu: VCpu, now: int) -> None:
        preempt = self.scheduler.wake(vcpu.entity, now)
        if preempt is not None:
            self._resched[preempt] = True
        for i, decision in enumerate(self._decision):
            if decision is not None and decision[0] is None:
                self._resched[i] = True  # an idle core looks again at once

    def _wake_due(self, now: int) -> None:
        due = [v for v in self._blocked if v.wake_at is not None and v.wake_at <= now]
        for vcpu in due:
            self._unblock(vcpu, vcpu.wake_at)

    def _unblock(self, vcpu: VCpu, at: int | None = None) -> None:
        """A blocked vCPU becomes runnable: at host tick `at` (its timer's deadline), or -- woken by
        an interrupt another core's vCPU sent during its run -- told to the scheduler after that
        stretch has been charged, as sleeps are."""
        self._blocked.remove(vcpu)
        vcpu.state, vcpu.wake_at = VCpuState.RUNNABLE, None
        if vcpu.vm.running:
            self._tell(lambda now: self._wake(vcpu, now if at is None else at))

    def _next_wake(self) -> int | None:
        return min((v.wake_at for v in self._blocked if v.wake_at is not None and v.vm.running), default=None)

    def _check_idle(self, vm) -> None:
        """A VM none of whose vCPUs can ever run again is idle: no runnable vCPU, no timer to wake one."""
        waiting = [v for v in vm.vcpus if v.state is not VCpuState.OFF]
        if all(v.state is VCpuState.BLOCKED and v.wake_at is None or v.in_wfi and v.wake_at is None
               for v in waiting):
            vcpu = next(iter(waiting), None)
            where = f" at {vcpu.pc - 4:#x}" if vcpu is not None and vcpu.in_wfi else ""
            vm.stop(StopReason.IDLE, f"WFI{where} with no timer or interrupt that could wake a vCPU"
                    if waiting else "no vCPU is running", vcpu)

    def _step(self, vms: list) -> None:
        """One turn of the loop: the core furthest behind runs (or idles) until its next event."""
        pcpus = self.pcpus
        pcpu = pcpus[0] if len(pcpus) == 1 else min(pcpus, key=_furthest_behind)
        self.turn = pcpu  # what the hypervisor does until the next turn, it does on this core
        now = pcpu.now()
        if self._blocked:
            self._wake_due(now)
        vcpu, limit = self._decide(pcpu, now)
        if self._end is not None:
            limit = min(limit, max(self._end, now + 1))
        start = pcpu.now()  # after the world switch, whose cost the core has been charged
        if len(pcpus) > 1:
            limit = min(limit, now + self.lockstep)
        wake = self._next_wake() if self._blocked else None
        if wake is not None and wake > now:
            limit = min(limit, wake)
        if vcpu is None:
            pcpu.idle_ticks += max(limit - start, 1)
            if wake is None and all(p.current is None or not self._runs(p.current) for p in pcpus):
                for vm in vms:
                    if vm.running:
                        self._check_idle(vm)
            return
        vm = vcpu.vm
        deadline = vcpu.timer.next_deadline(after=now)
        if deadline is not None:
            limit = min(limit, deadline)
        retired = sum(v.instructions for v in vm.vcpus)
        if retired >= vm.budget_end:
            vm.stop(StopReason.BUDGET, f"instruction budget of {vm.budget:,} spent", vcpu)
            return
        limit = min(limit, start + vm.budget_end - retired)
        if vm.virtio.device_polls:
            limit = min(limit, start + VIRTIO_POLL)
        pcpu.serve_interrupts(vcpu)
        self._in_run = True
        try:
            pcpu.run(max(limit - start, 1))
        finally:
            self._in_run = False
        if vm.virtio.device_polls:
            vm.virtio.poll()  # a polling device looks at its queues between the guest's runs
        end = pcpu.now()
        self.scheduler.charge(vcpu.entity, pcpu.index, end - start, end)
        told, self._after_charge = self._after_charge, []
        for notify in told:
            notify(end)
        if vm.running and sum(v.instructions for v in vm.vcpus) >= vm.budget_end:
            vm.stop(StopReason.BUDGET, f"instruction budget of {vm.budget:,} spent", vcpu)
        if vcpu.in_wfi and vm.running:
            self._check_idle(vm)

    def _decide(self, pcpu: PhysicalCpu, now: int) -> tuple[VCpu | None, int]:
        """What `pcpu` runs now and until when: the scheduler's last decision while it holds, else a
        new one -- and the world switch to its choice."""
        i = pcpu.index
        decision = self._decision[i]
        if decision is not None and now < decision[1] and not self._resched[i]:
            vcpu = self._vcpu_of(decision[0])
            if vcpu is None or vcpu is pcpu.current and self._runs(vcpu):
                return vcpu, decision[1]
        self._resched[i] = False
        running = self._vcpu_of(decision[0]) if decision is not None else None
        current = decision[0] if running is pcpu.current and running is not None and self._runs(running) else None
        if self._slept[i]:
            current, self._slept[i] = None, False  # it slept since it was picked: the policy knows it runs nowhere
        chosen = self.scheduler.pick(i, now, current)
        vcpu = self._vcpu_of(chosen.entity)
        if vcpu is not None and not self._runs(vcpu):
            raise RuntimeError(f"the {self.policy.name} policy picked {chosen.entity.name}, which cannot run now")
        self._decision[i] = (chosen.entity, max(chosen.until, now + 1))
        if vcpu is not None and vcpu is not pcpu.current:
            holder = self.pcpu_of(vcpu)
            if holder is not None:  # its context is still on another core: it moves here
                held = self._decision[holder.index]
                if held is not None and held[0] == vcpu.entity and not self._resched[holder.index]:
                    raise RuntimeError(f"the {self.policy.name} policy picked {chosen.entity.name} for pCPU{i} "
                                       f"while it runs on pCPU{holder.index}")
                holder.load(None)
            pcpu.load(vcpu)
        return vcpu, self._decision[i][1]

    def _runs(self, vcpu: VCpu) -> bool:
        return vcpu.state is VCpuState.RUNNABLE and vcpu.vm.running

    def _vcpu_of(self, entity: Entity | None) -> VCpu | None:
        return None if entity is None else self.vms[entity.vm].vcpus[entity.vcpu]

    # --- figures ----------------------------------------------------------------------------------

    def vcpu_figures(self, vm) -> tuple[dict, ...]:
        """Per vCPU of `vm`: its state, instructions, host ticks on a core, world switches into it."""
        ran = ran_ticks(self.trace.segments)
        return tuple({"vcpu": v.index, "state": v.state.value, "instructions": v.instructions,
                      "cpu_ticks": ran.get(v.entity, 0), "walks": v.walks} for v in vm.vcpus)

    def figures(self) -> RunFigures:
        """The scheduling figures of the runs so far (vlab.sched.metrics): each vCPU's share against its
        entitlement, wake-up latency, world switches, utilisation, Jain's index -- and under ARINC 653,
        the partition deadline misses."""
        return run_figures(self.trace, self.policy.entitlement(self.trace.entities), getattr(self.policy, "frame", None),
                           tolerance=self.lockstep if len(self.pcpus) > 1 else 0)

    def pcpu_figures(self) -> list[dict]:
        return [{"pcpu": p.index, "ticks": p.now(), "idle_ticks": p.idle_ticks, "switch_ticks": p.switch_ticks,
                 "world_switches": p.switches} for p in self.pcpus]


def _size(n: int) -> str:
    """Bytes as MiB, or KiB when that is not a whole number of MiB."""
    return f"{n >> 20:,} MiB" if n % (1 << 20) == 0 else f"{n >> 10:,} KiB"


def _furthest_behind(pcpu: PhysicalCpu) -> tuple[int, int]:
    return pcpu.now(), pcpu.index

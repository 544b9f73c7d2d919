"""Live migration: moving a running VM to another host, pre-copy (Clark et al., NSDI 2005) or post-copy.

    m = precopy(vm, destination, Link(bandwidth_mbps=1000))    # vm: stopped between runs, on its host
    m.rounds, m.pages_sent, m.downtime_ticks, m.destination_vm

Pre-copy sends the memory while the guest keeps running, then pauses it only for what is left:

    round 1:     write-protect every page (stage-2 dirty tracking), send them all; the guest runs
                 for as long as they take on the link, and every page it writes faults once and
                 is marked dirty
    round 2, 3:  send the pages dirtied during the round before (and any page it touched for the
                 first time), write-protected again
    ...          until the stopping rule says stop (few pages left, or too many rounds)
    stop-and-copy: pause the guest, send the last dirty pages and its vCPUs and devices
                 (vlab.hyp.snapshot); it resumes on the destination, its counter going on from
                 where it stopped. The pause is the *downtime*.

A stopping rule is `rule(stats: RoundStats) -> bool` (True: stop and copy now). Xen's, as its
source has them (../shared/REFERENCES.md, checked):

    xen          today's libxenguest (tools/libs/guest/xg_sr_save.c, simple_precopy_policy): fewer
                 than 50 dirty pages, or 5 rounds done. (Xen sends a set below 50 once more with the
                 guest running before it pauses it; here it is sent in the pause.)
    xen_2005     xc_domain_save.c until 2015: 30 rounds (DEF_MAX_ITERS 29, then the last), fewer
                 than 50 pages sent in the last round, or more than 3x the memory sent (DEF_MAX_FACTOR)

Post-copy turns it around: pause, send the vCPUs and devices, resume on the destination with no
memory at all. Each page the guest touches there is missing from its stage 2 -- a stage-2 fault
that the destination's hypervisor serves by pulling the page from the source (a request and an
answer on the link, while the vCPU waits), as vlab's demand paging serves a fresh page; between
the faults the source pushes the pages nobody asked for yet. A device's access to the guest's
RAM (the virtio console reading a ring or a buffer) pulls its pages the same way, the core
serving the device waiting for them. The downtime is tiny; the price is paid after, in faults.

Time is the hosts' own: one tick per guest instruction at 62.5 MHz, and the link's time in the
same ticks (vlab.hyp.link), so while a round is on the wire the guest runs exactly as many
instructions as the round takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from vlab.arch.esr import ExceptionClass
from vlab.errors import MigrationError
from vlab.hyp import snapshot, stream
from vlab.hyp.link import Link
from vlab.machine.board import StopReason
from vlab.machine.timer import FREQUENCY_HZ

PAGE = stream.PAGE
MAX_ROUNDS = 100  # a stopping rule that never stops is stopped here
POST_COPY_PUSH = 64  # pages the source pushes at a time while the guest runs on the destination
FOREVER = 1 << 62  # an instruction budget nothing reaches


@dataclass(frozen=True)
class RoundStats:
    """What a stopping rule sees after each round of pre-copy."""

    round: int  # rounds done so far (1 after the first, which sent everything)
    dirty_pages: int  # pages dirtied since: what stopping now would send during the pause
    sent_last: int  # pages the last round sent
    sent_total: int  # pages sent so far, in every round
    memory_pages: int  # pages of RAM the guest has (those mapped at stage 2)
    page_ms: float  # modelled milliseconds each page adds to a transfer (4 KB and its frame number)
    state_ms: float  # what the pause costs besides its pages: the latency, the vCPUs' and devices' state

    @property
    def pause_ms(self) -> float:
        """How long the guest would be paused if it stopped now: its state, then its dirty pages."""
        return self.state_ms + self.dirty_pages * self.page_ms

    def as_dict(self) -> dict:
        return {"round": self.round, "dirty_pages": self.dirty_pages, "sent_last": self.sent_last,
                "sent_total": self.sent_total, "memory_pages": self.memory_pages, "page_ms": self.page_ms,
                "state_ms": self.state_ms}


StoppingRule = Callable[[RoundStats], bool]


def xen(stats: RoundStats) -> bool:
    """Today's Xen (libxenguest's simple precopy policy): below 50 dirty pages, or after 5 rounds."""
    return stats.dirty_pages < 50 or stats.round >= 5


def xen_2005(stats: RoundStats) -> bool:
    """Xen's xc_domain_save until 2015: 30 rounds in all, under 50 pages sent last round, or 3x memory sent."""
    return stats.round >= 29 or stats.sent_last < 50 or stats.sent_total > 3 * stats.memory_pages


RULES: dict[str, StoppingRule] = {"xen": xen, "xen_2005": xen_2005}


@dataclass(frozen=True)
class Round:
    """One transfer: a round of pre-copy, the pause (stop-and-copy), or a batch of post-copy."""

    kind: str  # "live" (the guest ran meanwhile), "stop-and-copy", "pull" or "push" (post-copy)
    ipas: tuple[int, ...]  # the pages it carried, by IPA
    bytes: int  # bytes on the wire
    ticks: int  # how long it took on the link
    dirtied: int = 0  # pages the guest dirtied meanwhile (live rounds)

    @property
    def pages(self) -> int:
        return len(self.ipas)


@dataclass
class Migration:
    """A finished (or abandoned) migration: its transfers, what it cost, and the VM on each side."""

    mode: str  # "pre-copy" or "post-copy"
    link: Link
    source_vm: object
    destination_vm: object | None
    transfers: list[Round] = field(default_factory=list)
    downtime_ticks: int = 0  # the guest paused, from its last instruction on the source to its first on the destination
    completed: bool = False  # the guest runs on the destination, and the source has let it go
    why: str = ""  # why pre-copy stopped, or why there was nothing to migrate
    faults: int = 0  # post-copy: pages pulled because the guest, or a device for it, touched them
    stall_ticks: int = 0  # post-copy: ticks its vCPUs waited for pulled pages
    history: list[RoundStats] = field(default_factory=list)  # what the stopping rule saw, round by round

    @property
    def rounds(self) -> int:
        """Rounds of pre-copy with the guest running (the stop-and-copy not counted)."""
        return sum(t.kind == "live" for t in self.transfers)

    @property
    def pages_sent(self) -> int:
        return sum(t.pages for t in self.transfers)

    @property
    def bytes_sent(self) -> int:
        return sum(t.bytes for t in self.transfers)

    @property
    def total_ticks(self) -> int:
        """From the first page sent until the source had nothing left to send."""
        return sum(t.ticks for t in self.transfers)

    @property
    def downtime_ms(self) -> float:
        return ticks_to_ms(self.downtime_ticks)

    def to_json(self) -> dict:
        """What `vlab run --migrate-at N --json` reports under `migration`."""
        return {"mode": self.mode, "completed": self.completed, "why": self.why, "rounds": self.rounds,
                "pages_sent": self.pages_sent, "bytes_sent": self.bytes_sent,
                "downtime_insns": self.downtime_ticks, "downtime_ms_modelled": round(self.downtime_ms, 6),
                "total_ms_modelled": round(ticks_to_ms(self.total_ticks), 6), "faults": self.faults,
                "stall_insns": self.stall_ticks, "link": {"bandwidth_mbps": self.link.bandwidth_mbps,
                                                          "latency_ms": self.link.latency_ms},
                "transfers": [{"kind": t.kind, "pages": t.pages, "bytes": t.bytes, "ticks": t.ticks,
                               "dirtied": t.dirtied} for t in self.transfers]}

    def summary(self) -> str:
        if not self.completed:
            return f"{self.mode}: not completed: {self.why}"
        rounds = f"{self.rounds} round(s) live, then " if self.mode == "pre-copy" else ""
        after = f"; then {self.faults} page(s) pulled by faults" if self.mode == "post-copy" else ""
        return (f"{self.mode} over {self.link}: {rounds}a pause of {self.downtime_ticks:,} ticks "
                f"({self.downtime_ms:.3f} ms); {self.pages_sent:,} pages, {self.bytes_sent:,} bytes sent{after}"
                + (f" ({self.why})" if self.why else ""))


def ticks_to_ms(ticks: int) -> float:
    return ticks * 1000 / FREQUENCY_HZ


# --- pre-copy ------------------------------------------------------------------------------------

def precopy(vm, destination, link: Link = Link(), rule: StoppingRule = xen, budget: int = FOREVER,
            timeout_s: float = 60) -> Migration:
    """Migrate `vm` (stopped between runs, with stage 2) from its host to `destination` by pre-copy.

    The source host keeps running all its VMs while pages are on the wire; `budget` bounds the
    instructions `vm` may retire meanwhile. When the stopping rule says stop -- or after MAX_ROUNDS
    -- the guest pauses for the last pages and its state, and resumes on the destination (which
    first runs its own VMs for as long as the migration took). If the guest stops by itself
    before that (powers off, goes idle, spends its budget), it stays on the source and the
    migration is not completed."""
    source, memory = vm.host, _memory_of(vm)
    if destination is source:
        raise MigrationError("a VM migrates to another host, not to its own")
    shell = snapshot.empty_vm(snapshot.capture(vm), destination, vm.handlers)
    m = Migration("pre-copy", link, vm, None)
    to_send = [page for page, _ in memory.mapping()]
    sent: set[int] = set()
    elapsed = 0
    while True:
        memory.write_protect()  # from now on every page the guest writes faults once and is recorded
        data = stream.page_data([(page, memory.read(page, PAGE)) for page in to_send])
        _apply_pages(shell, data)
        sent.update(to_send)
        ticks = link.ticks(len(data))
        before = vm_instructions(vm)
        stopped = _run_for(source, vm, ticks, budget, timeout_s)
        budget -= vm_instructions(vm) - before
        elapsed += ticks
        mapped = [page for page, _ in memory.mapping()]
        dirty = memory.dirty | {page for page in mapped if page not in sent}  # and pages it touched for the first time
        m.transfers.append(Round("live", tuple(to_send), len(data), ticks, len(dirty)))
        if stopped:
            m.why = stopped
            return _abandon(m, shell)
        # One PAGE_DATA record's header rides with the state: then each page adds the same.
        state_ms = link.ms(len(snapshot.capture(vm)) + stream.page_data_size(1) - (PAGE + 8))
        stats = RoundStats(m.rounds, len(dirty), len(to_send), m.pages_sent, len(mapped),
                           link.ms(PAGE + 8, trips=0), state_ms)
        m.history.append(stats)
        if rule(stats):
            m.why = f"the stopping rule stopped after round {m.rounds} with {len(dirty)} page(s) dirty"
            break
        if m.rounds >= MAX_ROUNDS:
            m.why = f"vlab stopped it after {MAX_ROUNDS} rounds: the stopping rule never said stop"
            break
        to_send = sorted(dirty)
    # stop-and-copy: the guest is paused (the source's run ended); its last pages and its state travel
    last = sorted(dirty)
    pages, state = stream.page_data([(page, memory.read(page, PAGE)) for page in last]), snapshot.capture(vm)
    pause = link.ticks(len(pages) + len(state))
    m.transfers.append(Round("stop-and-copy", tuple(last), len(pages) + len(state), pause))
    m.downtime_ticks = pause
    _apply_pages(shell, pages)
    _arrive(m, shell, state, elapsed + pause, timeout_s)
    vm.depart("migrated to another host (pre-copy)")
    return m


def vm_instructions(vm) -> int:
    return sum(v.instructions for v in vm.vcpus)


def _memory_of(vm):
    if vm.memory is None:
        raise MigrationError("a VM without stage-2 tables cannot be migrated: its RAM cannot be tracked page by "
                             "page. Give it a stage-2 layout: VM(stage2='demand')")
    if vm.running:
        raise MigrationError("migrate a VM between runs (run it first, e.g. vm.run(max_insns=N))")
    if vm.powered_off:
        raise MigrationError("the VM has powered off (or left this host already): there is nothing to migrate")
    return vm.memory


def _run_for(host, vm, ticks: int, budget: int, timeout_s: float) -> str:
    """Run `host` (all its VMs) for `ticks` host ticks; why `vm` stopped by itself meanwhile, or ''."""
    if budget <= 0:
        return "the guest's instruction budget was spent before the migration completed"
    result = host.run(duration=ticks, max_insns=budget, timeout_s=timeout_s).vms[host.vms.index(vm)]
    if result.reason is StopReason.STOPPED:
        return ""  # the duration was over: the guest is still running, only paused between runs
    return f"the guest stopped on the source before the migration completed ({result.reason.value}: {result.message})"


def _apply_pages(shell, data: bytes) -> None:
    """The destination writes the pages that arrived into its VM's RAM (a frame each, on demand)."""
    for kind, body in stream.records(data):
        if kind is not stream.Record.PAGE_DATA:
            raise MigrationError(f"expected PAGE_DATA records, got {kind.name}")
        for page, content in stream.pages_of(body):
            shell.memory.write(page, content)


def _arrive(m: Migration, shell, state: bytes, elapsed: int, timeout_s: float) -> None:
    """The destination runs its own VMs for as long as the migration took (both hosts went on
    meanwhile), then takes the VM over."""
    destination = shell.host
    others = [v for v in destination.vms if v is not shell and v.started and not v.powered_off]
    if others:
        destination.run(duration=elapsed, max_insns=FOREVER, timeout_s=timeout_s, vms=others)
    destination.take_over(shell, snapshot.restore(shell, state))
    m.destination_vm, m.completed = shell, True


def _abandon(m: Migration, shell) -> Migration:
    """The guest stopped by itself during pre-copy: it stays where it is, and the destination's VM goes."""
    shell.depart("the migration was abandoned: the guest stopped on the source")
    return m


# --- post-copy -----------------------------------------------------------------------------------

def postcopy(vm, destination, link: Link = Link(), budget: int = FOREVER, push: int = POST_COPY_PUSH,
             timeout_s: float = 60) -> Migration:
    """Migrate `vm` by post-copy: pause it, send only its vCPUs and devices, resume it on
    `destination` with no RAM. The destination runs it, pulling each page it touches from the
    source (a stage-2 fault; its vCPU waits a request and an answer on the link) while the source
    pushes `push` pages at a time of the rest. Returns once every page has arrived; the VM then
    runs on the destination as any other. `budget` bounds the instructions it retires meanwhile."""
    memory = _memory_of(vm)
    if destination is vm.host:
        raise MigrationError("a VM migrates to another host, not to its own")
    state = snapshot.capture(vm)
    shell = snapshot.empty_vm(state, destination, vm.handlers)
    m = Migration("post-copy", link, vm, None)
    missing = {page for page, _ in memory.mapping()}  # the guest's pages, all still on the source

    def send(pages: list[int], kind: str, trips: int = 1) -> int:
        """Carry `pages` from the source to the destination's RAM now; the ticks that takes."""
        data = stream.page_data([(page, memory.read(page, PAGE)) for page in pages])
        _apply_pages(shell, data)
        missing.difference_update(pages)
        ticks = link.ticks(len(data), trips)
        m.transfers.append(Round(kind, tuple(pages), len(data), ticks))
        return ticks

    def pull(page: int) -> int:
        return send([page], "pull", trips=2)  # a request, then the page

    m.downtime_ticks = link.ticks(len(state))
    m.transfers.append(Round("stop-and-copy", (), len(state), m.downtime_ticks))
    _arrive(m, shell, state, m.downtime_ticks, timeout_s)
    defaults = {ec: shell.handlers[ec] for ec in (ExceptionClass.DABT_LOWER, ExceptionClass.IABT_LOWER)}
    for ec, handler in defaults.items():
        shell.set_handler(ec, _pulling(handler, missing, pull, m))
    shell.fetch_remote = _fetching(shell, missing, pull, m)
    while missing and budget > 0:
        ticks = link.ticks(stream.page_data_size(min(push, len(missing))))  # the next batch, while the guest runs
        before = vm_instructions(shell)
        result = destination.run(duration=ticks, max_insns=budget, timeout_s=timeout_s, vms=[shell]).vms[0]
        budget -= vm_instructions(shell) - before
        send(sorted(missing)[:push], "push")  # of what the guest has not pulled meanwhile
        if result.reason is not StopReason.STOPPED:
            break  # the guest stopped on the destination: the rest follows without it
    if missing:
        send(sorted(missing), "push")
    for ec, handler in defaults.items():
        shell.set_handler(ec, handler)
    shell.fetch_remote = None
    vm.depart("migrated to another host (post-copy)")  # the source had the last of its pages
    return m


def _pulling(handler, missing: set[int], pull: Callable[[int], int], m: Migration):
    """The destination's stage-2 abort handler during post-copy: a page still on the source is
    pulled (the vCPU waits for it) and the access retried; anything else goes to `handler`."""
    def post_copy_fault(vcpu, exit) -> str:
        page = None if exit.ipa is None else exit.ipa & ~(PAGE - 1)
        if page not in missing:
            return handler(vcpu, exit)
        ticks = pull(page)
        vcpu.vm.host.stall(vcpu, ticks)
        m.faults += 1
        m.stall_ticks += ticks
        return f"post-copy: IPA page {page:#x} pulled from the source host, the vCPU waited {ticks:,} ticks"
    return post_copy_fault


def _fetching(shell, missing: set[int], pull: Callable[[int], int], m: Migration) -> Callable[[int, int], None]:
    """What the destination's hypervisor does before it, or a device, touches `shell`'s RAM during
    post-copy: pull each page of the range still on the source. The vCPU on the core serving the
    access waits for them (a notify is served in its exit, a polling device between its runs)."""
    def fetch(ipa: int, size: int) -> None:
        for page in range(ipa & ~(PAGE - 1), ipa + max(size, 1), PAGE):
            if page not in missing:
                continue
            ticks = pull(page)
            m.faults += 1
            core = shell.host.turn
            if core is not None and core.current is not None and core.current.vm is shell:
                shell.host.stall(core.current, ticks)
                m.stall_ticks += ticks
    return fetch

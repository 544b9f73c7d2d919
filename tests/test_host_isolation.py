"""A hostile VM next to a well-behaved one does not change what the well-behaved one prints, its
registers or its memory: whether the hostile one writes everywhere in its IPA space, makes wild
hypercalls, spins forever, sits in an exception loop, or does random combinations of these."""

from __future__ import annotations

import functools

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from host_setups import POLICIES, c_guest, combinations, fits, scheduler
from vlab.arch.hcr import HCR
from vlab.asm import assemble
from vlab.guests import GUESTS
from vlab.hyp.equivalence import differences
from vlab.hyp.host import Host
from vlab.hyp.memory import HOST_BASE
from vlab.hyp.vm import VM
from vlab.machine.board import RAM_BASE, Board, StopReason
from vlab.machine.loader import Image, image_from_file, image_from_program, load

RAM = 0x40_0000
IPA_BITS = 40  # vlab's stage 2: VTCR_EL2.T0SZ = 24
U64 = st.integers(0, (1 << 64) - 1)

# The hostile guest's frame: a vector table whose synchronous handlers skip the instruction that
# faulted (so that a fault does not end its mischief), the mischief, then a spin.
PROLOGUE = """
_start:
    adr     x0, vectors
    msr     vbar_el1, x0
    isb
"""
EPILOGUE = """
forever:
    b       forever
    .balign 0x800
vectors:
    mrs     x9, elr_el1                 // current EL, SP_EL0, synchronous
    add     x9, x9, #4
    msr     elr_el1, x9
    eret
    .balign 0x200
    mrs     x9, elr_el1                 // current EL, SP_ELx, synchronous
    add     x9, x9, #4
    msr     elr_el1, x9
    eret
    .balign 0x80
    eret                                // an interrupt: back to where it was
    .balign 0x800
end_of_image:
"""


def hostile(body: str) -> str:
    return PROLOGUE + body + EPILOGUE


def writes_everywhere(victim: VM) -> str:
    """Fill its own RAM after its code, then store to a spread of IPAs outside it: every device
    window, every GiB of the IPA space, past its RAM's end, and where the victim's frames sit in
    host memory (as IPAs), and beyond the IPA space."""
    frames = [frame for _, frame in victim.memory.mapping()[::64]]
    targets = sorted({*range(0, 1 << IPA_BITS, 1 << 30), *range(0, 0x4000_0000, 0x100_0000),
                      0x0900_0000, 0x0800_0000, 0x0801_0000, 0x0A00_0000, RAM_BASE + RAM, RAM_BASE - 8,
                      *frames, *(HOST_BASE + f for f in frames), 1 << 44, 1 << 48, (1 << 64) - 8})
    table = "\n".join(f"    .quad   {address:#x}" for address in targets)
    return hostile(f"""
    ldr     x3, =0xdeadbeefdeadbeef
    adr     x1, end_of_image
    ldr     x2, ={RAM_BASE + RAM:#x}
fill:
    str     x3, [x1], #8
    cmp     x1, x2
    b.lo    fill
    adr     x4, targets
    mov     x5, #{len(targets)}
store:
    ldr     x1, [x4], #8
    str     x3, [x1]
    subs    x5, x5, #1
    b.ne    store
    b       forever
    .balign 8
targets:
{table}
""")


def hypercalls(calls: list[tuple[int, list[int]]]) -> str:
    """HVC #imm with x0..x5 and x16 as given, one after the other."""
    lines = []
    for imm, registers in calls:
        lines += [f"    ldr     x{n}, ={value:#x}" for n, value in zip((0, 1, 2, 3, 4, 5, 16), registers)]
        lines.append(f"    hvc     #{imm:#x}")
    return hostile("\n".join(lines) + "\n")


SPINS = hostile("")
START_ALL_AND_SPIN = hostile("""
    mov     x20, #1
start:
    ldr     x0, =0xc4000003             // PSCI CPU_ON vCPU x20, at forever
    mov     x1, x20
    adr     x2, forever
    hvc     #0
    add     x20, x20, #1
    cmp     x20, #4
    b.lo    start
""")
EXCEPTION_LOOP = """
_start:
    adr     x0, vectors
    msr     vbar_el1, x0
    isb
again:
    udf     #0
    .balign 0x800
vectors:
    eret                                // back to the same udf: the same exception, forever
    .balign 0x200
    eret
"""
NO_VECTORS = """
_start:
    ldr     x1, =0x50000000
    ldr     x2, [x1]                    // nothing there, and nowhere to take the abort
"""
# Two exceptions taken in turn, so that no one repeats: the handler sends the guest back to the
# other undefined instruction each time.
ALTERNATING_EXCEPTIONS = """
_start:
    adr     x0, vectors
    msr     vbar_el1, x0
    isb
    adr     x10, first
    adr     x11, second
first:
    udf     #1
second:
    udf     #2
    .balign 0x800
vectors:
    b       swap
    .balign 0x200
swap:
    mrs     x9, elr_el1
    cmp     x9, x10
    csel    x9, x11, x10, eq
    msr     elr_el1, x9
    eret
"""
EXCEPTION_BUDGET = 10_000  # instructions: about 1,400 exceptions of ALTERNATING_EXCEPTIONS
KINDS = {"writes everywhere": writes_everywhere, "spins forever": lambda _: SPINS,
         "spins forever on four vCPUs": lambda _: START_ALL_AND_SPIN,
         "sits in an exception loop": lambda _: EXCEPTION_LOOP, "has no vector table": lambda _: NO_VECTORS,
         "makes PSCI calls with wild arguments": lambda _: hypercalls(
             [(0, [fid, 1, 0x4000_0000 + 0x123, (1 << 64) - 1, 7, 7, 29]) for fid in
              (0xC400_0003, 0xC400_0004, 0x8400_000A, 0x8600_0002, 0x8400_0002, 0x8400_0009)])}


@functools.cache
def victim_image(name: str) -> Image:
    return GUESTS[name].image() if name in GUESTS else image_from_file(c_guest(name))


@functools.cache
def alone(name: str, vcpus: int, max_insns: int) -> VM:
    vm = VM.from_image(victim_image(name), vcpus=vcpus, ram_size=RAM)
    vm.result = vm.run(max_insns=max_insns)
    return vm


def check_victim_unchanged(name: str, vcpus: int, source, policy: str, pcpus: int, hostile_first: bool,
                           max_insns: int, hostile_vcpus: int = 4, traps: HCR = HCR(0)) -> VM:
    """Run victim `name` beside the hostile guest `source(victim)`; assert the victim ends as alone."""
    sizes = (hostile_vcpus, vcpus) if hostile_first else (vcpus, hostile_vcpus)
    host = Host(pcpus=pcpus, scheduler=scheduler(policy, pcpus, vcpus=sizes))

    def make_hostile() -> VM:
        return VM(host=host, stage2="scattered", ram_size=RAM, vcpus=hostile_vcpus, traps=traps, seed=1)

    bad = make_hostile() if hostile_first else None
    victim = VM.from_image(victim_image(name), host=host, stage2="scattered", ram_size=RAM, vcpus=vcpus)
    bad = bad or make_hostile()
    load(bad, image_from_program(assemble(source(victim), RAM_BASE)))
    result = host.run(max_insns=max_insns).vms[host.vms.index(victim)]
    reference = alone(name, vcpus, max_insns)
    assert (result.reason, result.uart) == (reference.result.reason, reference.result.uart)
    assert differences(reference.vcpus[0], victim.vcpus[0]) == []
    assert bad.result().instructions > 0  # the hostile VM did run
    return bad


# one and two cores; four for co-scheduling, which needs a core per vCPU of the four-vCPU VMs
SHARED_CORES = [(policy, pcpus) for policy, pcpus in combinations((1, 2, 4), (4, 4))
                if pcpus < 4 or policy == "cosched"]


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("policy, pcpus", SHARED_CORES)
def test_a_hostile_vm_does_not_change_a_four_vcpu_c_guest_beside_it(kind, policy, pcpus):
    check_victim_unchanged("smp", 4, KINDS[kind], policy, pcpus, hostile_first=pcpus == 1, max_insns=5_000_000)


# Every exception the guest kernel takes goes through the run loop: a sustained loop of them is
# slow, so its neighbour here is a guest that needs few instructions.
@pytest.mark.parametrize("pcpus", [1, 2])
@pytest.mark.parametrize("policy", POLICIES)
def test_a_vm_taking_exceptions_without_end_does_not_change_its_neighbour(policy, pcpus):
    check_victim_unchanged("hello", 1, lambda _: ALTERNATING_EXCEPTIONS, policy, pcpus, hostile_first=True,
                           max_insns=EXCEPTION_BUDGET, hostile_vcpus=1)


def test_the_hostile_guests_do_what_they_are_named_for():
    # (a test of the tests: each hostile guest really misbehaves as its name says)
    vm = check_victim_unchanged("hello", 1, writes_everywhere, "rr", 1, False, 3_000_000)
    stores = [r for r in vm.trap_log if r.kind == "DABT_LOWER"]
    assert len(stores) > 1_000 and vm.uart.text  # it wrote outside its RAM, and into its UART
    assert vm.read_memory(RAM_BASE + RAM - 8, 8) == bytes.fromhex("efbeaddeefbeadde")
    loop = check_victim_unchanged("hello", 1, lambda _: EXCEPTION_LOOP, "rr", 1, False, 300_000)
    assert "exception loop" in loop.result().message
    turns = check_victim_unchanged("hello", 1, lambda _: ALTERNATING_EXCEPTIONS, "rr", 1, False,
                                   EXCEPTION_BUDGET)
    assert len(turns.vcpus[0].entry.taken) > EXCEPTION_BUDGET // 10 and turns.result().reason.value == "budget"
    spinner = check_victim_unchanged("hello", 1, lambda _: START_ALL_AND_SPIN, "rr", 2, False, 1_000_000)
    assert [v["state"] for v in spinner.result().vcpus] == ["runnable"] * 4  # all four started, none stopped


# --- random hostile programs --------------------------------------------------------------------

ADDRESS = st.one_of(st.integers(0, (1 << IPA_BITS) - 8), U64, st.sampled_from(
    [0, 0x0900_0000, 0x0900_0018, 0x0800_0000, RAM_BASE - 8, RAM_BASE + RAM, HOST_BASE, HOST_BASE + RAM_BASE]))
IMMEDIATE = st.one_of(st.sampled_from([0, 0xEA1, 1, 0xFFFF]), st.integers(0, 0xFFFF))
FUNCTION = st.one_of(U64, st.sampled_from([0x8400_0000, 0x8400_0002, 0x8400_0008, 0x8400_0009, 0xC400_0003,
                                            0xC400_0004, 0x8600_0001, 0x8600_0002, 0]))
SYSREGS = ("sctlr_el1", "ttbr0_el1", "ttbr1_el1", "tcr_el1", "mair_el1", "contextidr_el1", "tpidr_el1",
           "cntv_ctl_el0", "cntv_cval_el0", "cntkctl_el1", "elr_el1", "spsr_el1")
ACTION = st.one_of(
    st.tuples(st.just("store"), ADDRESS.map(lambda a: a & ~7), U64),
    st.tuples(st.just("load"), ADDRESS.map(lambda a: a & ~7)),
    st.tuples(st.just("hvc"), IMMEDIATE,
              st.tuples(FUNCTION, U64, U64, U64, U64, U64, st.sampled_from([29, 17, 18, 0]))),
    st.tuples(st.just("msr"), st.sampled_from(SYSREGS), U64),
    st.tuples(st.just("op"), st.sampled_from(["tlbi vmalle1", "tlbi vmalle1is", "wfi", "svc #0", "brk #1", "udf #9",
                                              "isb", "dsb sy", "ic iallu", "msr daifclr, #2", "eret"])),
)


def render(action: tuple) -> str:
    kind = action[0]
    if kind == "store":
        return f"    ldr     x1, ={action[1]:#x}\n    ldr     x2, ={action[2]:#x}\n    str     x2, [x1]\n"
    if kind == "load":
        return f"    ldr     x1, ={action[1]:#x}\n    ldr     x2, [x1]\n"
    if kind == "hvc":
        registers = "".join(f"    ldr     x{n}, ={value:#x}\n" for n, value in zip((0, 1, 2, 3, 4, 5, 16), action[2]))
        return registers + f"    hvc     #{action[1]:#x}\n"
    if kind == "msr":
        return f"    ldr     x1, ={action[2]:#x}\n    msr     {action[1]}, x1\n    isb\n"
    return f"    {action[1]}\n"


RANDOM_BUDGET = 20_000  # instructions per VM; the neighbour (paging.S) needs about 400


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(actions=st.lists(ACTION, min_size=1, max_size=12), policy=st.sampled_from(POLICIES),
       pcpus=st.integers(1, 3), hostile_first=st.booleans(), tsc=st.booleans())
def test_a_random_hostile_program_does_not_change_its_neighbour(actions, policy, pcpus, hostile_first, tsc):
    # With its SMCs trapped or not: HVC is the door here, and an SMC is not among the actions.
    # A small budget: a program that faults on every fetch (an eret to nowhere) takes an
    # exception every few instructions, and each costs the run loop a few hundred microseconds.
    assume(fits(policy, pcpus, (2, 1)))
    body = "".join(render(action) for action in actions)
    check_victim_unchanged("paging", 1, lambda _: hostile(body), policy, pcpus, hostile_first, RANDOM_BUDGET,
                           hostile_vcpus=2, traps=HCR.TSC if tsc else HCR(0))


@pytest.mark.parametrize("instruction", ["str x2, [x1]", "ldr x2, [x1]"])
def test_an_access_to_the_last_page_of_the_address_space_is_an_abort_in_a_vm_as_on_the_board(instruction):
    # Unicorn probes the page of its stop address (the top of the address space) with a fetch;
    # a guest's load or store there is the guest's, and must fault, not be retried for ever.
    source = f"""
    ldr     x1, =0xfffffffffffffff8
    {instruction}
    ldr     x0, =0x84000008
    hvc     #0
"""
    board = Board()
    load(board, image_from_program(assemble(source, RAM_BASE)))
    bare = board.run(max_insns=1_000)
    for stage2 in (None, "contiguous", "scattered"):
        result = VM.from_source(source, stage2=stage2, ram_size=RAM).run(max_insns=1_000)
        assert result.reason is StopReason.EXCEPTION is bare.reason, result.message
        assert result.exception.syndrome.ec is bare.exception.syndrome.ec  # a data abort to the guest kernel
        assert result.instructions == bare.instructions == 1

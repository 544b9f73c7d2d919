"""Chapter 6 exercises: type 1 and type 2. The paths priced are the ones vlab's structures really take
(recorded from runs of sensitive.S); a device plan that is wrong is applied to a real host, and the
hint says what its guests then did (their exits, their faults)."""

from __future__ import annotations

from vlab.arch.hcr import HCR
from vlab.grading.exercise import Case, Exercise, Test
from vlab.grading.kinds import FunctionAnswer

MODULE = "ch06_hypervisor_types"
COSTS = {"transition": 157, "gpr": 1, "sysreg": 42}  # the cycle model's fitted costs, rounded to cycles
WRITES = 16  # bytes each VM sends to each device it uses, when a plan is tried on a host
KINDS = ["general-purpose", "EL1 system registers", "virtual timer", "GIC virtual interface", "EL2 controls"]


# --- ch06.predicted_cycles --------------------------------------------------------------------------

def as_data(path) -> list[dict]:
    """A vlab Path as the exercise hands it over: plain dicts and lists."""
    return [{"layer": s.layer, "saved": [[m.kind, m.count] for m in s.saved],
             "restored": [[m.kind, m.count] for m in s.restored]} for s in path.steps]


def priced(steps: list[dict], costs: dict, per_step: bool = False, saved_only: bool = False,
           one_price: bool = False) -> int:
    """The model's rules written out (with one slip, for the hints): transitions, then registers."""
    if not steps:
        return 0
    transitions = len(steps) if per_step else 1 + sum(a["layer"] != b["layer"] for a, b in zip(steps, steps[1:]))
    moved = [(kind, n) for s in steps for kind, n in s["saved"] + ([] if saved_only else s["restored"])]
    gprs = sum(n for kind, n in moved if kind == "general-purpose")
    return (transitions * costs["transition"] + gprs * (costs["sysreg"] if one_price else costs["gpr"])
            + sum(n for kind, n in moved if kind != "general-purpose") * costs["sysreg"])


def _recorded_paths(rng) -> list[Case]:
    """Every path sensitive.S's exits take under each structure, priced by vlab's cycle model."""
    from vlab.guests import GUESTS
    from vlab.hyp.cycle_model import Costs, cycles
    from vlab.hyp.hypervisors import STRUCTURES, boot, run

    cases = []
    for hyp in STRUCTURES:
        vm, structure = boot(GUESTS["sensitive"].image(), hyp, traps=HCR.TRVM | HCR.TWI, ram_size=0x40_0000)
        run(vm)
        for kind, paths in structure.paths(vm).items():
            for path in paths:
                cases.append(Case(f"{hyp}, {kind}, the {path.route} path", (as_data(path), COSTS),
                                  cycles(path, Costs(**COSTS))))
    return cases


def step(layer: str, saved=(), restored=()) -> dict:
    return {"layer": layer, "saved": [list(m) for m in saved], "restored": [list(m) for m in restored]}


def _layer_changes(rng) -> list[Case]:
    steps = [step("EL2"), step("EL2"), step("host kernel"), step("EL2"), step("guest")]  # 5 steps, 3 changes
    alone = [step("guest")]
    return [Case("five steps, three changes of layer", (steps, {"transition": 100, "gpr": 1, "sysreg": 1}), 400),
            Case("one step", (alone, {"transition": 100, "gpr": 1, "sysreg": 1}), 100)]


def _saved_and_restored(rng) -> list[Case]:
    steps = [step("EL2", saved=[("general-purpose", 31)], restored=[("general-purpose", 12)])]
    return [Case("31 general-purpose registers saved and 12 restored, 2 cycles each",
                 (steps, {"transition": 0, "gpr": 2, "sysreg": 2}), 86)]


def _other_kinds(rng) -> list[Case]:
    steps = [step("EL2", saved=[("EL2 controls", 4), ("virtual timer", 3)]),
             step("guest", restored=[("EL1 system registers", 23), ("general-purpose", 31)])]
    return [Case("30 system registers at 10 cycles, 31 general-purpose at 1, 2 transitions at 5",
                 (steps, {"transition": 5, "gpr": 1, "sysreg": 10}), 2 * 5 + 30 * 10 + 31)]


def _no_exit(rng) -> list[Case]:
    return [Case("no steps (a passthrough access: no exit)", ([], dict(COSTS)), 0)]


def _random_paths(rng) -> list[Case]:
    cases = []
    for i in range(40):
        steps = [step(rng.choice(["guest", "EL2", "host kernel", "VMM", "dom0"]),
                      [(rng.choice(KINDS), rng.randrange(1, 40)) for _ in range(rng.randrange(3))],
                      [(rng.choice(KINDS), rng.randrange(1, 40)) for _ in range(rng.randrange(3))])
                 for _ in range(rng.randrange(1, 9))]
        costs = {"transition": rng.randrange(50, 300), "gpr": rng.randrange(1, 4), "sysreg": rng.randrange(5, 60)}
        cases.append(Case(f"random path {i} ({len(steps)} steps)", (steps, costs), priced(steps, costs)))
    return cases


def _slip(**slip):
    def mistake(case: Case, got) -> bool:
        steps, costs = case.args
        return steps != [] and got == priced(steps, costs, **slip) != case.expected
    return mistake


def _per_step(case, got):
    if _slip(per_step=True)(case, got):
        return "a transition is a change of layer (plus 1 for the trap in), not a step: some steps stay in a layer"


def _saved_only(case, got):
    if _slip(saved_only=True)(case, got):
        return "count the registers restored as well as those saved"


def _one_price(case, got):
    if _slip(one_price=True)(case, got):
        return 'general-purpose registers cost costs["gpr"]; every other kind costs costs["sysreg"]'


def _not_a_number(case, got):
    if not isinstance(got, int):
        return "return the cycles as a number (an int, with these whole-cycle costs)"


PREDICTED_CYCLES = Exercise(
    id="ch06.predicted_cycles",
    title="Price an exit's path with the cycle model",
    statement="Given a path's steps (layers, registers saved and restored by kind) and the model's costs, "
              "return the exit's cycles: transitions, general-purpose and other registers, each at its cost.",
    points=3,
    module=MODULE,
    kind=FunctionAnswer((_not_a_number, _per_step, _saved_only, _one_price)),
    tests=(
        Test("every path sensitive.S takes under type 1, type 2 and VHE", _recorded_paths,
             hint="a path's steps may stay in one layer: only a change of layer is a transition"),
        Test("transitions: the trap in, then one per change of layer", _layer_changes,
             hint="count the changes between neighbouring steps, plus 1 for the trap into the first layer"),
        Test("saved and restored registers both count", _saved_and_restored),
        Test("every kind but general-purpose is priced as a system register", _other_kinds),
        Test("no steps, no exit: 0 cycles", _no_exit, hint="a passthrough access makes no exit"),
        Test("random paths", _random_paths, hidden=True),
    ),
)


# --- ch06.plan_devices -------------------------------------------------------------------------------

def reference_plan(design: dict) -> dict:
    """The rules of the exercise's docstring, written out: what each device of `design` should be."""
    plan = {}
    for device, users in design["devices"].items():
        kinds = {design["vms"][name] for name in users}
        plan[device] = ("unused" if not users else f"passthrough:{users[0]}" if len(users) == 1
                        else "refuse" if kinds == {"safety", "open"} else "shared")
    return plan


def tried_on_a_host(design: dict, plan: dict, devices: list[str]) -> str:
    """What the design's guests do with `devices` when `plan` is applied to a real host, where it goes
    wrong: each VM sends WRITES bytes to each of them it uses (given as the plan says)."""
    from vlab.hyp.assign import SECOND_UART, passthrough, second_uart, share
    from vlab.hyp.host import Host
    from vlab.hyp.scenarios import GUEST_RAM
    from vlab.hyp.vm import VM

    bases = {device: SECOND_UART + 0x1000 * i for i, device in enumerate(design["devices"])}
    host = Host(memory=len(design["vms"]) * (GUEST_RAM + 0x10_0000) + 0x10_0000)
    vms = {}
    for name in design["vms"]:
        body = "".join(f"    ldr x1, ={bases[d]:#x}\n    ldr x2, ={WRITES}\nsend{i}:\n    str w2, [x1]\n"
                       f"    subs x2, x2, #1\n    b.ne send{i}\n"
                       for i, (d, users) in enumerate(design["devices"].items()) if name in users and d in devices)
        vms[name] = VM.from_source(body + "    ldr x0, =0x84000008\n    hvc #0\n", host=host, stage2="contiguous",
                                   ram_size=GUEST_RAM)
    for device, decision in plan.items():
        users = [vms[n] for n in design["devices"].get(device, ())]
        if isinstance(decision, str) and decision.startswith("passthrough:") and decision[12:] in vms:
            passthrough(second_uart(device, bases[device]), vms[decision[12:]])
        elif decision == "shared" and users:
            share(second_uart(device, bases[device]), users)
    host.run(max_insns=200_000)
    for device in devices:
        users = design["devices"][device]
        for name in users:
            result = vms[name].result()
            if result.reason.value != "powered_off":
                return (f"tried on a host, {name} could not use {device} as your plan gives it: its first store to it "
                        f"ended its run ({result.reason.value}: {result.message.split(' (')[0]})")
            exits = vms[name].exits.get("DABT_LOWER", 0)
            if len(users) == 1 and exits:
                return (f"tried on a host, {name}, {device}'s only user, made {exits} exits reaching it: a device one "
                        "VM uses can be that VM's alone, with no exits (passthrough)")
    return ""


def _on_a_host(case: Case, got) -> str | None:
    (design,) = case.args
    if isinstance(got, dict) and set(got) == set(design["devices"]):
        return tried_on_a_host(design, got, [d for d in got if got[d] != case.expected[d]]) or None


def _looks_at_first_user(case: Case, got) -> str | None:
    (design,) = case.args
    if isinstance(got, dict) and any(case.expected[d] == "refuse" and got.get(d) != "refuse" for d in case.expected):
        return "look at the kinds of all of a device's users: a safety VM and an open VM must not share it"


def _refuses_safety_pairs(case: Case, got) -> str | None:
    if isinstance(got, dict) and any(case.expected[d] == "shared" and got.get(d) == "refuse" for d in case.expected):
        return "only a safety VM and an open VM together are refused: VMs of one kind may share a device"


def _design_cases(*designs) -> list[Case]:
    return [Case(label, (design,), reference_plan(design)) for label, design in designs]


def _one_user(rng) -> list[Case]:
    return _design_cases(("brake (safety's) and radio (info's)", {
        "vms": {"safety": "safety", "info": "open"}, "devices": {"brake": ["safety"], "radio": ["info"]}}))


def _open_share(rng) -> list[Case]:
    return _design_cases(("a display nav and media both use", {
        "vms": {"nav": "open", "media": "open"}, "devices": {"display": ["nav", "media"]}}))


def _safety_with_open(rng) -> list[Case]:
    return _design_cases(("a CAN bus safety and info would both use", {
        "vms": {"safety": "safety", "info": "open"}, "devices": {"can": ["safety", "info"], "gps": ["info"]}}),
        ("the same, with info named first", {
            "vms": {"info": "open", "safety": "safety"}, "devices": {"can": ["info", "safety"]}}))


def _safety_share(rng) -> list[Case]:
    return _design_cases(("a clock two safety VMs use", {
        "vms": {"brakes": "safety", "steering": "safety"}, "devices": {"clock": ["brakes", "steering"]}}))


def _unused(rng) -> list[Case]:
    return _design_cases(("a spare device nobody uses", {
        "vms": {"info": "open"}, "devices": {"spare": [], "radio": ["info"]}}))


def _random_designs(rng) -> list[Case]:
    designs = []
    for i in range(30):
        vms = {f"vm{v}": rng.choice(["safety", "open"]) for v in range(rng.randrange(1, 5))}
        devices = {f"dev{d}": rng.sample(sorted(vms), rng.randrange(0, len(vms) + 1)) for d in range(rng.randrange(1, 6))}
        designs.append((f"random design {i}", {"vms": vms, "devices": devices}))
    return _design_cases(*designs)


PLAN_DEVICES = Exercise(
    id="ch06.plan_devices",
    title="Plan a car's devices: passed through, shared, or refused",
    statement="Given which VMs (safety or open) use which devices, give each device to its one user, share it "
              "among several, or refuse to let a safety VM share it with an open one.",
    points=3,
    module=MODULE,
    kind=FunctionAnswer((_looks_at_first_user, _refuses_safety_pairs, _on_a_host)),
    tests=(
        Test("a device one VM uses is that VM's alone", _one_user,
             hint="exactly one user: 'passthrough:' followed by its name"),
        Test("a device several open VMs use is shared", _open_share,
             hint="several users, none of them safety VMs sharing with open ones: 'shared'"),
        Test("a safety VM never shares a device with an open VM", _safety_with_open),
        Test("safety VMs may share a device with each other", _safety_share,
             hint="only a safety VM and an open VM together are refused"),
        Test("a device nobody uses is 'unused'", _unused),
        Test("random designs", _random_designs, hidden=True),
    ),
)

EXERCISES = (PREDICTED_CYCLES, PLAN_DEVICES)

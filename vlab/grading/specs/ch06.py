"""Chapter 6 exercises: type 1 and type 2. The paths priced are the ones vlab's structures really
take (recorded from runs); device plans are applied to a real host, whose guests then show
whether each device went where it should (exits counted, faults taken)."""

from __future__ import annotations

import math
import random
from dataclasses import asdict

from vlab.arch.hcr import HCR
from vlab.grading.exercise import Exercise, Test, expect
from vlab.guests import GUESTS
from vlab.hyp.assign import SECOND_UART, passthrough, second_uart, share
from vlab.hyp.cycle_model import cycles, fit
from vlab.hyp.host import Host
from vlab.hyp.hypervisors import STRUCTURES, boot, run
from vlab.hyp.scenarios import GUEST_RAM, device_writer, prober, probes
from vlab.hyp.vm import VM
from vlab.machine.loader import image_from_program

MODULE = "ch06_hypervisor_types"
WRITES = 16  # bytes each VM sends to each device it uses


# --- ch06.predicted_cycles --------------------------------------------------------------------------

def as_data(path) -> list[dict]:
    """A Path as the exercise hands it over: plain dicts and lists."""
    return [{"layer": s.layer, "saved": [[m.kind, m.count] for m in s.saved],
             "restored": [[m.kind, m.count] for m in s.restored]} for s in path.steps]


def expect_close(got, expected: float, what: str) -> None:
    if not isinstance(got, (int, float)) or not math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9):
        raise AssertionError(f"{what}: expected {expected:,.3f} cycles, got {got!r}")


def _recorded_paths(predicted_cycles):
    """Every path sensitive.S's exits took under each structure, priced as vlab's model prices it."""
    costs = fit()
    for hyp in STRUCTURES:
        vm, structure = boot(GUESTS["sensitive"].image(), hyp, traps=HCR.TRVM | HCR.TWI, ram_size=0x40_0000)
        run(vm)
        for kind, paths in structure.paths(vm).items():
            for path in paths:
                expect_close(predicted_cycles(as_data(path), asdict(costs)), cycles(path, costs),
                             f"{hyp}, {kind}, {path.route} path")


def step(layer: str, saved=(), restored=()) -> dict:
    return {"layer": layer, "saved": [list(m) for m in saved], "restored": [list(m) for m in restored]}


def _layer_changes(predicted_cycles):
    steps = [step("EL2"), step("EL2"), step("host kernel"), step("EL2"), step("guest")]
    # 1 (the trap into EL2) + 3 changes of layer; 5 steps
    expect_close(predicted_cycles(steps, {"transition": 100, "gpr": 1, "sysreg": 1}), 400, "five steps, three "
                 "changes of layer")


def _saved_and_restored(predicted_cycles):
    steps = [step("EL2", saved=[("general-purpose", 31)], restored=[("general-purpose", 12)])]
    expect_close(predicted_cycles(steps, {"transition": 0, "gpr": 2, "sysreg": 2}), 86,
                 "31 general-purpose registers saved and 12 restored, 2 cycles each")


def _other_kinds(predicted_cycles):
    steps = [step("EL2", saved=[("EL2 controls", 4), ("virtual timer", 3)]),
             step("guest", restored=[("EL1 system registers", 23), ("general-purpose", 31)])]
    expect_close(predicted_cycles(steps, {"transition": 5, "gpr": 1, "sysreg": 10}), 2 * 5 + 30 * 10 + 31,
                 "4 EL2 controls, 3 timer and 23 EL1 registers at 10 cycles, 31 general-purpose at 1")


def _no_exit(predicted_cycles):
    expect_close(predicted_cycles([], {"transition": 157, "gpr": 1, "sysreg": 42}), 0, "no steps (no exit)")


def _random_paths(predicted_cycles):
    rng = random.Random(6)
    kinds = ["general-purpose", "EL1 system registers", "virtual timer", "GIC virtual interface", "EL2 controls"]
    for _ in range(50):
        steps = [step(rng.choice(["guest", "EL2", "host kernel", "VMM", "dom0"]),
                      [(rng.choice(kinds), rng.randrange(1, 40)) for _ in range(rng.randrange(3))],
                      [(rng.choice(kinds), rng.randrange(1, 40)) for _ in range(rng.randrange(3))])
                 for _ in range(rng.randrange(1, 9))]
        costs = {"transition": rng.randrange(50, 300), "gpr": rng.choice([0.5, 1, 2]), "sysreg": rng.randrange(5, 60)}
        transitions = 1 + sum(a["layer"] != b["layer"] for a, b in zip(steps, steps[1:]))
        moved = [(kind, n) for s in steps for kind, n in s["saved"] + s["restored"]]
        expected = (transitions * costs["transition"] + sum(n for k, n in moved if k == "general-purpose") * costs["gpr"]
                    + sum(n for k, n in moved if k != "general-purpose") * costs["sysreg"])
        expect_close(predicted_cycles(steps, costs), expected, f"a random path of {len(steps)} steps")


PREDICTED_CYCLES = Exercise(
    id="ch06.predicted_cycles",
    title="Price an exit's path with the cycle model",
    statement="Given a path's steps (layers, registers saved and restored by kind) and the model's costs, "
              "return the exit's cycles: transitions, general-purpose and other registers, each at its cost.",
    points=3,
    module=MODULE,
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

def apply(design: dict, plan) -> tuple[Host, dict[str, VM], dict[str, object], dict[str, int]]:
    """A host with the design's VMs and devices, each device given as `plan` says: each VM sends
    WRITES bytes to every device it uses, in turn, then powers off."""
    if not isinstance(plan, dict) or set(plan) != set(design["devices"]):
        raise AssertionError(f"the plan must name every device of the design exactly once, {sorted(design['devices'])}; "
                             f"got {plan!r}")
    bases = {device: SECOND_UART + 0x1000 * i for i, device in enumerate(design["devices"])}
    names = list(design["vms"])
    host = Host(memory=len(names) * (GUEST_RAM + 0x10_0000) + 0x10_0000)
    vms = {}
    for name in names:
        used = [bases[d] for d, users in design["devices"].items() if name in users]
        body = "\n".join(f"    ldr x1, ={b:#x}\n    ldr x2, ={WRITES}\nsend{i}:\n    str w2, [x1]\n"
                         f"    subs x2, x2, #1\n    b.ne send{i}" for i, b in enumerate(used))
        vms[name] = VM.from_source(f"{body}\n    ldr x0, =0x84000008\n    hvc #0\n", host=host, stage2="contiguous",
                                   ram_size=GUEST_RAM)
    devices = {}
    for device, decision in plan.items():
        devices[device] = second_uart(device, bases[device])
        users = [vms[n] for n in design["devices"][device]]
        if isinstance(decision, str) and decision.startswith("passthrough:") and decision[12:] in vms:
            passthrough(devices[device], vms[decision[12:]])
        elif decision == "shared" and users:
            share(devices[device], users)
    host.run(max_insns=200_000)
    return host, vms, devices, bases


def _one_user_design(plan_devices):
    design = {"vms": {"safety": "safety", "info": "open"}, "devices": {"brake": ["safety"], "radio": ["info"]}}
    plan = plan_devices(design)
    _, vms, devices, _ = apply(design, plan)
    for device, owner in (("brake", "safety"), ("radio", "info")):
        exits = vms[owner].exits.get("DABT_LOWER", 0)
        if exits or len(devices[device].output) != WRITES:
            raise AssertionError(f"{device}, used by {owner} alone, planned {plan[device]!r}: {owner} made {exits} "
                                 f"exits and the device got {len(devices[device].output)} of its {WRITES} bytes -- "
                                 "a device one VM uses should be that VM's, with no exits")
    # The other VM's access to it faults: the infotainment VM probes the brake link.
    host = Host(memory=2 * GUEST_RAM + 0x20_0000)
    safety, info = (VM.from_image(image_from_program(p), host=host, stage2="contiguous", ram_size=GUEST_RAM)
                    for p in (device_writer(WRITES), prober()))
    brake = second_uart("brake")
    if plan["brake"] == "passthrough:safety":
        passthrough(brake, safety)
    host.run(max_insns=100_000)
    if probes(info)[0] == 0 or b"X" in brake.output:
        raise AssertionError("the infotainment VM reached the brake link")


def _open_vms_share(plan_devices):
    design = {"vms": {"nav": "open", "media": "open"}, "devices": {"display": ["nav", "media"]}}
    plan = plan_devices(design)
    _, vms, devices, _ = apply(design, plan)
    got = {name: vm.exits.get("DABT_LOWER", 0) for name, vm in vms.items()}
    if got != {"nav": WRITES, "media": WRITES} or len(devices["display"].output) != 2 * WRITES:
        raise AssertionError(f"display, used by nav and media (both open), planned {plan['display']!r}: exits "
                             f"{got}, the display got {len(devices['display'].output)} of {2 * WRITES} bytes -- "
                             "both should reach it, each access an exit")


def _safety_never_shares_with_open(plan_devices):
    design = {"vms": {"safety": "safety", "info": "open"}, "devices": {"can": ["safety", "info"], "gps": ["info"]}}
    expect(plan_devices(design), {"can": "refuse", "gps": "passthrough:info"}, "a CAN bus both would use")


def _safety_vms_may_share(plan_devices):
    design = {"vms": {"brakes": "safety", "steering": "safety"}, "devices": {"clock": ["brakes", "steering"]}}
    expect(plan_devices(design), {"clock": "shared"}, "a device two safety VMs use")


def _unused(plan_devices):
    design = {"vms": {"info": "open"}, "devices": {"spare": [], "radio": ["info"]}}
    expect(plan_devices(design), {"spare": "unused", "radio": "passthrough:info"}, "a device nobody uses")


def _random_designs(plan_devices):
    rng = random.Random(6)
    for _ in range(40):
        vms = {f"vm{i}": rng.choice(["safety", "open"]) for i in range(rng.randrange(1, 5))}
        devices = {f"dev{i}": rng.sample(sorted(vms), rng.randrange(0, len(vms) + 1)) for i in range(rng.randrange(1, 6))}
        expected = {}
        for device, users in devices.items():
            kinds = {vms[u] for u in users}
            expected[device] = ("unused" if not users else f"passthrough:{users[0]}" if len(users) == 1
                                else "refuse" if kinds == {"safety", "open"} else "shared")
        expect(plan_devices({"vms": vms, "devices": devices}), expected, f"design {devices} with VMs {vms}")


PLAN_DEVICES = Exercise(
    id="ch06.plan_devices",
    title="Plan a car's devices: passed through, shared, or refused",
    statement="Given which VMs (safety or open) use which devices, give each device to its one user, share it "
              "among several, or refuse to let a safety VM share it with an open one.",
    points=3,
    module=MODULE,
    tests=(
        Test("a device one VM uses is that VM's alone: no exits, and another VM's probe faults", _one_user_design,
             hint="exactly one user: 'passthrough:' followed by its name"),
        Test("a device several open VMs use is shared: each access an exit, all of them reach it", _open_vms_share),
        Test("a safety VM never shares a device with an open VM", _safety_never_shares_with_open,
             hint="look at the kinds of all the users, not only the first"),
        Test("safety VMs may share a device with each other", _safety_vms_may_share),
        Test("a device nobody uses is 'unused'", _unused),
        Test("random designs", _random_designs, hidden=True),
    ),
)

EXERCISES = (PREDICTED_CYCLES, PLAN_DEVICES)

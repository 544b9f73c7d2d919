"""Chapter 6 exercises: type 1 and type 2. You price an exit's path, and plan a car's devices.

Check your answers in a notebook:

    from vlab.grading import check, load
    ch06 = load("ch06_hypervisor_types")   # this file, as saved now
    check("ch06.predicted_cycles", ch06.predicted_cycles)
    check("ch06.plan_devices", ch06.plan_devices)

Both take and return plain data (dicts, lists, strings, numbers): no vlab object is needed.
"""


def predicted_cycles(steps, costs):
    """The cycle model's price of one exit along a path, from the path's steps.

    `steps` lists the path's steps in order; each is a dict with "layer" (the layer that runs after
    the step, a string such as "host kernel (EL1)"), "saved" and "restored" (each a list of
    [kind, count] pairs: `count` registers of `kind` saved or restored at that step, for example
    ["general-purpose", 31] or ["EL1 system registers", 23]). `costs` is a dict of cycles:
    "transition" (one trap to a layer or return from it), "gpr" (one register of kind
    "general-purpose") and "sysreg" (one register of any other kind).

    Return  transitions * costs["transition"]
          + (general-purpose registers saved plus restored) * costs["gpr"]
          + (registers of every other kind saved plus restored) * costs["sysreg"],
    where the transitions are 1 (the trap into the first step's layer) plus 1 for each step whose
    layer differs from the layer of the step before it. No steps (no exit) cost 0.
    """
    raise NotImplementedError("write your answer here (see the docstring above)")


def plan_devices(design):
    """Decide how each device of a car's chip is given to the chip's VMs.

    `design` is a dict: "vms" maps each VM's name to "safety" (a closed, safety-critical OS) or
    "open" (an infotainment OS, say); "devices" maps each device's name to the list of the names
    of the VMs that use it. Return a dict mapping every device to one of:
      "passthrough:NAME"  exactly one VM, NAME, uses it: it is given to NAME alone (no exits, and
                          any other VM's access to it faults);
      "shared"            several VMs use it and no safety VM shares it with an open VM: it is
                          emulated for each of them (every access an exit);
      "refuse"            a safety VM and an open VM would both use it: a safety-critical VM must
                          not depend on a device an open VM can also drive;
      "unused"            no VM uses it.
    """
    raise NotImplementedError("write your answer here (see the docstring above)")

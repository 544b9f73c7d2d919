"""`vlab run FILE [FILE...]`: run guests on the bare board, or as VMs sharing a host, and print what they printed.

    vlab run hello.S                  # UART output, then a one-line stop report on stderr
    vlab run prog.elf --json          # one JSON object: uart, virtio_console, stop, instructions, registers, ...
    vlab run kernel.bin --max-insns 1000000
    vlab run my.c                     # built first with aarch64-linux-gnu-gcc and vlab's C runtime
    vlab run hello.S --virt --trap TVM,TWI   # inside a VM; the JSON adds `exits` (class -> count)
    vlab run smp.elf --virt --vcpus 4 --pcpus 2 --sched credit
    vlab run a.S b.S c.S --virt --pcpus 2 --sched credit --weights 512,256,256 --caps 0,50,0
    vlab run safety.S info.S --virt --sched arinc653 --windows "safety=2ms,info=4ms/frame=8ms"
    vlab run hello.S --virt --hyp type2      # under a hypervisor structure: type1, type2 or vhe; the
                                             # JSON adds `hyp`: per exit class, its count and paths

Several FILEs are several VMs on one host, in that order, each with its RAM behind stage-2
tables (demand-paged: a VM gets host frames as it touches its pages); --vcpus applies to every
VM (a guest starts its secondaries with PSCI CPU_ON); --max-insns bounds each VM on its own, so
one that never stops cannot keep the others from finishing. ARINC 653 windows name the VMs by
their file's name without its suffix (or by their place: 0, 1, ...). Under --hyp every exit takes
the structure's path (vlab.hyp.hypervisors); with type1, dom0 runs beside the guests, as the
host's first VM, and is not reported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vlab import run_migrate
from vlab.arch.hcr import HCR
from vlab.errors import VlabError
from vlab.machine.board import DEFAULT_MAX_INSNS, DEFAULT_RAM_SIZE, DEFAULT_TIMEOUT_S, Board
from vlab.machine.loader import image_from_file, load

VIRTIO_HEADING = "--- virtio console ---"  # in text mode, between the UART's output and the virtio console's


def add_parser(subparsers) -> None:
    """Register the `run` subcommand."""
    p = subparsers.add_parser("run", help="run guests (.S, .c, .bin or ELF) on the bare machine, or as VMs on a host",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="assembly source (.S/.s), C source (.c, built first), raw binary (.bin, loaded at "
                        "0x40000000) or AArch64 ELF; several: VMs")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--max-insns", type=int, default=DEFAULT_MAX_INSNS, metavar="N",
                   help=f"instruction budget, of each VM (default {DEFAULT_MAX_INSNS:,})")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help=f"wall-clock guard (default {DEFAULT_TIMEOUT_S:g} s)")
    p.add_argument("--virt", action="store_true", help="run inside VMs under vlab's hypervisor")
    p.add_argument("--trap", default="", metavar="BITS",
                   help="with --virt: HCR_EL2 trap controls, e.g. TVM,TRVM,TID3,TACR,TSC,TWI")
    p.add_argument("--trap-log", action="store_true", help="with --virt: print the hypervisor's trap log (stderr)")
    p.add_argument("--paging", choices=("nested", "shadow"), default="nested",
                   help="with --virt: the hardware's stage 2 (nested, the default) or the hypervisor's shadow "
                        "page tables, which trap the guest's table writes and TTBR/TCR/SCTLR (TVM, TRVM)")
    host = p.add_argument_group("the host (with --virt)")
    host.add_argument("--vcpus", type=int, default=1, metavar="N", help="vCPUs of every VM (default 1)")
    host.add_argument("--pcpus", type=int, default=None, metavar="M",
                      help="physical CPUs (default: one per vCPU for one FILE, 1 for several)")
    host.add_argument("--sched", default="rr", metavar="POLICY",
                      help="rr, credit, fair, arinc653 or cosched (default rr)")
    host.add_argument("--slice", type=float, default=None, metavar="MS", help="the policy's slice in milliseconds")
    host.add_argument("--windows", default=None, metavar="FRAME",
                      help='with --sched arinc653: e.g. "a=2ms,b=4ms/frame=8ms"')
    host.add_argument("--weights", default=None, metavar="W1,W2,...", help="each VM's weight, in the order of the FILEs")
    host.add_argument("--caps", default=None, metavar="C1,C2,...", help="each VM's cap in percent of one physical CPU")
    host.add_argument("--hyp", default=None, metavar="STRUCTURE",
                      help="the hypervisor's structure: type1 (Xen-like, with dom0), type2 (KVM without VHE) or vhe")
    run_migrate.add_options(p)
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Exit status: 0 when every guest powered off or went idle, 1 for other stops, 2 for bad input."""
    problem = _refused(args) or run_migrate.refused(args)
    if problem:
        print(f"vlab run: {problem}", file=sys.stderr)
        return 2
    try:
        if not args.virt:
            board = Board()
            load(board, image_from_file(_guest(args.files[0])))
            return _report_one(args, board.run(max_insns=args.max_insns, timeout_s=args.timeout))
        if args.migrate_at is not None:
            return run_migrate.run(args)
        host, vms, structure = _host(args)
        result = host.run(max_insns=args.max_insns, timeout_s=args.timeout)  # refuses what cannot run, first
    except (VlabError, ValueError) as e:  # a SchedError is a ValueError: weights, caps, windows, sizes
        print(f"vlab run: {e}", file=sys.stderr)
        return 2
    if args.trap_log:
        for vm in vms:
            for record in vm.trap_log:
                print(f"vm{vm.index} {record}" if len(vms) > 1 else record, file=sys.stderr)
    results = [result.vms[host.vms.index(vm)] for vm in vms]  # not dom0's, under --hyp type1
    hyp = [{"structure": structure.name, "exits": structure.summary(vm)} if structure else None for vm in vms]
    if len(vms) == 1:
        return _report_one(args, results[0], _sched_of(host, vms[0]), hyp[0], structure and structure.text(vms[0]))
    return _report_host(args, host, result.pcpus, vms, results, hyp)


def _refused(args: argparse.Namespace) -> str:
    """Why these options cannot run, before anything does ('' when they can)."""
    if args.max_insns <= 0:
        return "--max-insns must be a positive number of instructions"
    if not args.timeout > 0:  # (not <= 0: NaN is no timeout either)
        return f"--timeout must be a positive number of seconds, not {args.timeout:g}"
    if args.slice is not None and not args.slice > 0:
        return f"--slice must be a positive number of milliseconds, not {args.slice:g}"
    host_options = [name for name, value in (("--trap", args.trap), ("--trap-log", args.trap_log),
                                              ("--vcpus", args.vcpus != 1), ("--pcpus", args.pcpus),
                                              ("--sched", args.sched != "rr"), ("--slice", args.slice),
                                              ("--windows", args.windows), ("--weights", args.weights),
                                              ("--caps", args.caps), ("--hyp", args.hyp),
                                              ("--paging", args.paging != "nested")) if value]
    if not args.virt and (host_options or len(args.files) > 1):
        what = f"{host_options[0]} applies" if host_options else "several guests run"
        return f"{what} inside VMs under the hypervisor: add --virt"
    for option, text in (("--weights", args.weights), ("--caps", args.caps)):
        if text is not None and len(text.split(",")) != len(args.files):
            return f"{option} gives {len(text.split(','))} values for {len(args.files)} FILE(s): one per VM, in order"
    return ""


def _numbers(option: str, text: str | None, default: int, count: int) -> list[int]:
    if text is None:
        return [default] * count
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{option} takes whole numbers separated by commas, e.g. 512,256 -- not {text!r}") from None


def _host(args: argparse.Namespace):
    """The host, its VMs and their hypervisor structure (None: vlab's own, as it is), as the options
    describe them; ValueError for anything they cannot be."""
    from vlab.hyp import VM, Host  # only a VM run needs the hypervisor
    from vlab.hyp.hypervisors import make_structure
    from vlab.hyp.vm import MAX_VCPUS
    from vlab.sched.registry import make_policy
    from vlab.sched.units import ms

    files = args.files
    # A VM alone gets a physical CPU per vCPU; a --vcpus out of range is left for the VM to refuse by name.
    own_cores = len(files) == 1 and 1 <= args.vcpus <= MAX_VCPUS
    pcpus = args.pcpus if args.pcpus is not None else (args.vcpus if own_cores else 1)
    names = [Path(f).stem for f in files]
    if len(set(names)) != len(names):
        names = []  # windows name the VMs by their place only
    policy = make_policy(args.sched, pcpus, slice_ticks=None if args.slice is None else ms(args.slice),
                         windows=args.windows, vm_names=names)
    weights = _numbers("--weights", args.weights, 256, len(files))
    caps = _numbers("--caps", args.caps, 0, len(files))
    traps = _trap_controls(args.trap)
    alone = len(files) == 1
    host = Host(pcpus, memory=None if alone else len(files) * (DEFAULT_RAM_SIZE + 0x20_0000) + 0x40_0000,
                scheduler=policy)
    # Made before the VMs: a type 1 hypervisor's dom0 is the host's first VM. Under a structure the
    # guest's RAM is behind stage 2 (dom0 shares the host), laid out alike under each.
    structure = make_structure(args.hyp, host) if args.hyp else None
    stage2 = "demand" if not alone else "contiguous" if structure else None
    vms = [VM.from_file(_guest(f), traps=traps, vcpus=args.vcpus, host=host, weight=w, cap=c, stage2=stage2,
                        paging=args.paging) for f, w, c in zip(files, weights, caps)]
    for vm in vms if structure else ():
        structure.attach(vm)
    return host, vms, structure


def _sched_of(host, vm) -> dict:
    """The `sched` key of one VM's JSON: the policy, and each of its vCPUs' figures."""
    figures = host.figures().as_dict()
    return {"policy": host.policy.name, "pcpus": len(host.pcpus),
            "vcpus": [v for v in figures["vcpus"] if v["vm"] == vm.index]}


def _report_one(args: argparse.Namespace, result, sched: dict | None = None, hyp: dict | None = None,
                hyp_text: str | None = None) -> int:
    if args.json:
        out = result.to_json()
        if sched is not None:
            out["sched"] = sched
        if hyp is not None:
            out["hyp"] = hyp
        print(json.dumps(out))
    else:
        print_text(result, virt=args.virt)
        if hyp_text:
            print(hyp_text, file=sys.stderr)
    return 0 if result.reason.value in ("powered_off", "idle") else 1


def print_text(result, virt: bool, heading: str = "") -> None:
    """A run's outcome in text mode: its UART's output, its virtio console's under a heading, on
    stdout; how it ended (and, in a VM, its exits) on stderr."""
    if heading:
        print(heading)
    _print_output(result.uart)
    if result.virtio_console:
        print(VIRTIO_HEADING)
        _print_output(result.virtio_console)
    print(f"[{result.reason.value}] {result.message} after {result.instructions:,} instructions, "
          f"PC={result.pc:#x} EL{result.el}", file=sys.stderr)
    if virt:
        exits = ", ".join(f"{kind} {n}" for kind, n in sorted(result.exits.items())) or "none"
        print(f"exits: {exits}", file=sys.stderr)


def _report_host(args: argparse.Namespace, host, pcpus: list, vms: list, results: list, hyp: list) -> int:
    figures = host.figures()
    if args.json:
        report = []
        for file, vm_result, paths in zip(args.files, results, hyp):
            full = vm_result.to_json()
            report.append({"file": file, "uart": full["uart"], "virtio_console": full["virtio_console"],
                           "stop": full["stop"], "message": full["message"],
                           "instructions": full["instructions"], "exits": full["exits"], "vcpus": full["vcpus"]}
                          | ({"hyp": paths} if paths else {}))
        print(json.dumps({"vms": report, "pcpus": pcpus, "sched": {"policy": host.policy.name, **figures.as_dict()}}))
    else:
        for vm, file, vm_result in zip(vms, args.files, results):  # vm.index: as the figures below name it
            print_text(vm_result, virt=True, heading=f"== vm{vm.index}: {file} ==")
        print(f"== {host.policy.name} on {len(host.pcpus)} physical CPU(s) ==", file=sys.stderr)
        print(figures.table(), file=sys.stderr)
    return 0 if all(r.reason.value in ("powered_off", "idle") for r in results) else 1


def _guest(file: str) -> str | Path:
    """The file to load: a C source is built into an ELF first, saying so (what runs is not the file named)."""
    if Path(file).suffix != ".c":
        return file
    from vlab.guests.build import C_DIR, COMPILER, build

    elf = build(Path(file))  # ToolError naming the package when the compiler is missing
    print(f"vlab run: built {Path(file).name} with {COMPILER} and vlab's C runtime ({C_DIR}: start.S calls your "
          f"main(), lib.c has printf): {elf}", file=sys.stderr)
    return elf


def _trap_controls(names: str) -> HCR:
    """--trap's HCR_EL2 bits; an unknown name is refused listing only the controls a VM honours."""
    from vlab.hyp import SUPPORTED_TRAPS

    unknown = [n for n in (n.strip().upper() for n in names.split(",")) if n and n not in HCR.__members__]
    if unknown:
        raise ValueError(f"unknown HCR_EL2 bit {unknown[0]!r}; the trap controls vlab's VMs honour: "
                         + ", ".join(bit.name for bit in HCR if bit & SUPPORTED_TRAPS))
    return HCR.parse(names)


def _print_output(text: str) -> None:
    """What a guest printed, ending with a newline whether or not the guest ended its last line."""
    sys.stdout.write(text)
    if text and not text.endswith("\n"):
        sys.stdout.write("\n")

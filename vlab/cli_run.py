"""`vlab run FILE`: run a guest on the bare board and print what it printed.

    vlab run hello.S                  # UART output, then a one-line stop report on stderr
    vlab run prog.elf --json          # one JSON object: uart, stop, instructions, registers, ...
    vlab run kernel.bin --max-insns 1000000
    vlab run my.c                     # built first with aarch64-linux-gnu-gcc and vlab's C runtime
    vlab run hello.S --virt --trap TVM,TWI   # inside a VM; the JSON adds `exits` (class -> count)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vlab.arch.hcr import HCR
from vlab.errors import VlabError
from vlab.machine.board import DEFAULT_MAX_INSNS, DEFAULT_TIMEOUT_S, Board
from vlab.machine.loader import image_from_file, load


def add_parser(subparsers) -> None:
    """Register the `run` subcommand."""
    p = subparsers.add_parser("run", help="run a guest (.S, .c, .bin or ELF) on the bare machine",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="assembly source (.S/.s), C source (.c, built first), raw binary (.bin, loaded "
                                "at 0x40000000) or AArch64 ELF")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--max-insns", type=int, default=DEFAULT_MAX_INSNS, metavar="N",
                   help=f"instruction budget (default {DEFAULT_MAX_INSNS:,})")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help=f"wall-clock guard (default {DEFAULT_TIMEOUT_S:g} s)")
    p.add_argument("--virt", action="store_true", help="run it inside a VM under vlab's hypervisor")
    p.add_argument("--trap", default="", metavar="BITS",
                   help="with --virt: HCR_EL2 trap controls, e.g. TVM,TRVM,TID3,TACR,TSC,TWI")
    p.add_argument("--trap-log", action="store_true", help="with --virt: print the hypervisor's trap log (stderr)")
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Exit status: 0 when the guest powered off or went idle, 1 for other stops, 2 for bad input."""
    if args.max_insns <= 0:
        print("vlab run: --max-insns must be a positive number of instructions", file=sys.stderr)
        return 2
    if (args.trap or args.trap_log) and not args.virt:
        print("vlab run: --trap and --trap-log apply to a VM: add --virt", file=sys.stderr)
        return 2
    try:
        guest = _built(Path(args.file)) if Path(args.file).suffix == ".c" else args.file
        if args.virt:
            from vlab.hyp import VM  # only a VM run needs the hypervisor

            machine = VM.from_file(guest, traps=_trap_controls(args.trap))
        else:
            machine = Board()
            load(machine, image_from_file(guest))
    except (VlabError, ValueError) as e:
        print(f"vlab run: {e}", file=sys.stderr)
        return 2
    result = machine.run(max_insns=args.max_insns, timeout_s=args.timeout)
    if args.trap_log:
        for record in machine.trap_log:
            print(record, file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        sys.stdout.write(result.uart)
        if result.uart and not result.uart.endswith("\n"):
            sys.stdout.write("\n")
        print(f"[{result.reason.value}] {result.message} after {result.instructions:,} instructions, "
              f"PC={result.pc:#x} EL{result.el}", file=sys.stderr)
        if args.virt:
            exits = ", ".join(f"{kind} {n}" for kind, n in sorted(result.exits.items())) or "none"
            print(f"exits: {exits}", file=sys.stderr)
    return 0 if result.reason.value in ("powered_off", "idle") else 1


def _built(source: Path) -> Path:
    """A C guest built into an ELF file, saying so: what runs is not the file the user named."""
    from vlab.guests.build import C_DIR, COMPILER, build

    elf = build(source)  # ToolError naming the package when the compiler is missing
    print(f"vlab run: built {source.name} with {COMPILER} and vlab's C runtime ({C_DIR}: start.S calls your "
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

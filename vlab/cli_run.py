"""`vlab run FILE`: run a guest on the bare board and print what it printed.

    vlab run hello.S                  # UART output, then a one-line stop report on stderr
    vlab run prog.elf --json          # one JSON object: uart, virtio_console, stop, instructions, registers, ...
    vlab run kernel.bin --max-insns 1000000
    vlab run hello.S --virt --trap TVM,TWI   # inside a VM; the JSON adds `exits` (class -> count)
"""

from __future__ import annotations

import argparse
import json
import sys

from vlab.arch.hcr import HCR
from vlab.errors import VlabError
from vlab.machine.board import DEFAULT_MAX_INSNS, DEFAULT_TIMEOUT_S, Board
from vlab.machine.loader import image_from_file, load

VIRTIO_HEADING = "--- virtio console ---"  # in text mode, between the UART's output and the virtio console's


def add_parser(subparsers) -> None:
    """Register the `run` subcommand."""
    p = subparsers.add_parser("run", help="run a guest (.S, .bin or ELF) on the bare machine",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="assembly source (.S/.s), raw binary (loaded at 0x40000000) or AArch64 ELF")
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
        if args.virt:
            from vlab.hyp import VM  # only a VM run needs the hypervisor

            machine = VM.from_file(args.file, traps=HCR.parse(args.trap))
        else:
            machine = Board()
            load(machine, image_from_file(args.file))
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
        _print_output(result.uart)
        if result.virtio_console:
            print(VIRTIO_HEADING)
            _print_output(result.virtio_console)
        print(f"[{result.reason.value}] {result.message} after {result.instructions:,} instructions, "
              f"PC={result.pc:#x} EL{result.el}", file=sys.stderr)
        if args.virt:
            exits = ", ".join(f"{kind} {n}" for kind, n in sorted(result.exits.items())) or "none"
            print(f"exits: {exits}", file=sys.stderr)
    return 0 if result.reason.value in ("powered_off", "idle") else 1


def _print_output(text: str) -> None:
    """What the guest printed, ending with a newline whether or not the guest ended its last line."""
    sys.stdout.write(text)
    if text and not text.endswith("\n"):
        sys.stdout.write("\n")

"""`vlab run FILE`: run a guest on the bare board and print what it printed.

    vlab run hello.S                  # UART output, then a one-line stop report on stderr
    vlab run prog.elf --json          # one JSON object: uart, stop, instructions, registers, ...
    vlab run kernel.bin --max-insns 1000000
"""

from __future__ import annotations

import argparse
import json
import sys

from vlab.errors import VlabError
from vlab.machine.board import DEFAULT_MAX_INSNS, DEFAULT_TIMEOUT_S, Board
from vlab.machine.loader import image_from_file, load


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
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Exit status: 0 when the guest powered off or went idle, 1 for other stops, 2 for bad input."""
    if args.max_insns <= 0:
        print("vlab run: --max-insns must be a positive number of instructions", file=sys.stderr)
        return 2
    try:
        board = Board()
        load(board, image_from_file(args.file))
    except VlabError as e:
        print(f"vlab run: {e}", file=sys.stderr)
        return 2
    result = board.run(max_insns=args.max_insns, timeout_s=args.timeout)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        sys.stdout.write(result.uart)
        if result.uart and not result.uart.endswith("\n"):
            sys.stdout.write("\n")
        print(f"[{result.reason.value}] {result.message} after {result.instructions:,} instructions, "
              f"PC={result.pc:#x} EL{result.el}", file=sys.stderr)
    return 0 if result.reason.value in ("powered_off", "idle") else 1

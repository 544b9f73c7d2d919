"""The `vlab` command: one subcommand per module, each registering itself with `add_parser`.

    vlab doctor          is everything installed?
    vlab run FILE        run a guest on the bare machine (or, with --virt, inside a VM)
    vlab exercises       regenerate exercises/ from solutions/
    vlab grade DIR...    grade students' submissions

A subcommand module defines `add_parser(subparsers)`, which adds its parser and sets
`func` to a function taking the parsed arguments and returning the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vlab import __version__

# Imported lazily, so `vlab doctor` still runs when a dependency of another subcommand is missing.
SUBCOMMANDS = ("vlab.doctor", "vlab.cli_run", "vlab.cli_exercises", "vlab.cli_grade", "vlab.cli_demo",
               "vlab.course_site")


def build_parser() -> argparse.ArgumentParser:
    """The parser for every subcommand that could be imported (a broken one is reported, not fatal)."""
    parser = argparse.ArgumentParser(prog="vlab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"vlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            print(f"vlab: the '{name.rsplit('.', 1)[-1]}' command is unavailable ({e}); "
                  "run `vlab doctor` to see what is missing", file=sys.stderr)
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` (default: the process arguments), run the subcommand, return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

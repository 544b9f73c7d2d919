"""The `vlab` command: one subcommand per module, each registering itself with `add_parser`.

A subcommand module defines `add_parser(subparsers)`, which adds its parser and sets
`func` to a function taking the parsed arguments and returning the exit status.
`vlab --help` shows USAGE, written for the people who run the command.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vlab import __version__

# command -> the module that registers it. Only the command asked for is imported (the others
# only for --help), so `vlab doctor` starts quickly and still runs when a dependency of
# another command is missing.
SUBCOMMANDS = {"doctor": "vlab.doctor", "run": "vlab.cli_run", "exercises": "vlab.cli_exercises",
               "grade": "vlab.cli_grade", "demo": "vlab.cli_demo", "site": "vlab.course_site"}


USAGE = """vlab: a virtualization lab whose guests are real AArch64 machine code.

    vlab doctor          is everything installed?
    vlab run FILE        run a guest on the bare machine (or, with --virt, inside a VM)
    vlab exercises       regenerate exercises/ from solutions/
    vlab grade DIR...    grade students' submissions
    vlab demo [CHAPTER]  serve the chapters' widgets as Voila dashboards
    vlab site [OUT]      build a static HTML site of the executed chapters

`vlab COMMAND --help` says more about each command."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser for subcommand `only` (default: every one that could be imported; a broken one
    is reported, not fatal)."""
    parser = argparse.ArgumentParser(prog="vlab", description=USAGE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"vlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command, name in SUBCOMMANDS.items():
        if only is not None and command != only:
            continue
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            print(f"vlab: the '{command}' command is unavailable ({e}); "
                  "run `vlab doctor` to see what is missing", file=sys.stderr)
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` (default: the process arguments), run the subcommand, return its exit status."""
    argv = sys.argv[1:] if argv is None else argv
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    parser = build_parser(only=first if first in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

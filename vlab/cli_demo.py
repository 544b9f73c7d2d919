"""`vlab demo [CHAPTER]`: a chapter's main widgets as a Voilà dashboard, for a projector.

    vlab demo            # every chapter's dashboard, listed at http://127.0.0.1:8866/
    vlab demo 2          # chapter 2's (trap and emulate) only

Voilà runs the dashboard notebook (notebooks/demo/) and shows its outputs and live widgets
without the code. It listens on localhost only.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEMOS = Path(__file__).resolve().parent.parent / "notebooks" / "demo"


def dashboards() -> dict[int, Path]:
    """Chapter number -> its dashboard notebook."""
    return {int(p.name[2:4]): p for p in sorted(DEMOS.glob("ch[0-9][0-9]_*.ipynb"))}


def voila_command(chapter: int | None, port: int) -> list[str]:
    """The Voilà command line that serves one chapter's dashboard (or all of them)."""
    target = DEMOS if chapter is None else dashboards()[chapter]
    return [sys.executable, "-m", "voila", str(target), "--no-browser", f"--port={port}",
            "--Voila.ip=127.0.0.1", "--theme=light"]


def add_parser(subparsers) -> None:
    """Register the `demo` subcommand."""
    p = subparsers.add_parser("demo", help="serve the chapters' widgets as Voila dashboards (localhost)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("chapter", nargs="?", type=int, help="a chapter number (default: all of them)")
    p.add_argument("--port", type=int, default=8866)
    p.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    """Check the chapter, then become the Voila server (returns only to refuse an unknown chapter)."""
    known = dashboards()
    if args.chapter is not None and args.chapter not in known:
        print(f"vlab demo: no dashboard for chapter {args.chapter}; there are: {', '.join(map(str, known))}",
              file=sys.stderr)
        return 2
    print(f"Serving on http://127.0.0.1:{args.port}/ (Ctrl-C stops it)", flush=True)
    command = voila_command(args.chapter, args.port)
    # Voila replaces this process rather than running under it: stopping `vlab demo` (Ctrl-C, a
    # kill, a test's terminate()) then stops the server and its kernels, instead of orphaning them.
    os.execv(command[0], command)

"""`vlab demo [CHAPTER]`: a chapter's live widgets for a projector, served by Voilà on localhost.

    vlab demo            # every chapter's dashboard, listed at http://127.0.0.1:8866/
    vlab demo 2          # chapter 2's (trap and emulate) only
    vlab demo --slides 2 # chapter 2 itself as a reveal.js slideshow, its widgets live

Voilà runs the notebook and shows its outputs and live widgets without the code: a dashboard
(notebooks/demo/) or, with --slides, the chapter cut into slides by its slide metadata. The pages
use vlab's Voilà templates (jupyter/voila/templates/), which fetch nothing from outside the
server: reveal.js's stylesheet is served from the template.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
DEMOS = NOTEBOOKS / "demo"
TEMPLATES = ROOT / "jupyter"  # a Jupyter data directory: voila/templates/vlab-dashboard, vlab-slides


def _numbered(folder: Path) -> dict[int, Path]:
    """Chapter number -> notebook, for NN_*.ipynb or chNN_*.ipynb in `folder`."""
    found = (re.match(r"(?:ch)?(\d\d)_.*\.ipynb$", p.name) for p in sorted(folder.iterdir()))
    return {int(m.group(1)): folder / m.group(0) for m in found if m}


def dashboards() -> dict[int, Path]:
    """Chapter number -> its dashboard notebook."""
    return _numbered(DEMOS)


def slideshows() -> dict[int, Path]:
    """Chapter number -> the chapter notebook, which carries its slide metadata."""
    return _numbered(NOTEBOOKS)


def voila_command(chapter: int | None, port: int, slides: bool = False) -> list[str]:
    """The Voilà command line that serves one chapter (or all of them) as dashboards or slides."""
    folder, chapters, template = ((NOTEBOOKS, slideshows(), "vlab-slides") if slides
                                  else (DEMOS, dashboards(), "vlab-dashboard"))
    target = folder if chapter is None else chapters[chapter]
    return [sys.executable, "-m", "voila", str(target), "--no-browser", f"--port={port}",
            "--Voila.ip=127.0.0.1", "--Voila.port_retries=0", "--theme=light", f"--template={template}"]


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:`port` now."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def voila_environment() -> dict[str, str]:
    """This process's environment, with vlab's templates where Voilà looks for templates."""
    paths = [str(TEMPLATES), *filter(None, os.environ.get("JUPYTER_PATH", "").split(os.pathsep))]
    return dict(os.environ, JUPYTER_PATH=os.pathsep.join(paths))


def add_parser(subparsers) -> None:
    """Register the `demo` subcommand."""
    p = subparsers.add_parser("demo", help="serve the chapters' widgets as Voila dashboards or slides (localhost)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("chapter", nargs="?", type=int, help="a chapter number (default: all of them)")
    p.add_argument("--slides", action="store_true", help="the chapter as a reveal.js slideshow with live widgets")
    p.add_argument("--port", type=int, default=8866)
    p.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    """Check the chapter, then become the Voila server (returns only to refuse an unknown chapter)."""
    known = slideshows() if args.slides else dashboards()
    if args.chapter is not None and args.chapter not in known:
        what = "slideshow" if args.slides else "dashboard"
        print(f"vlab demo: no {what} for chapter {args.chapter}; there are: {', '.join(map(str, known))}",
              file=sys.stderr)
        return 2
    if not port_is_free(args.port):
        print(f"vlab demo: port {args.port} on 127.0.0.1 is in use (another vlab demo or Jupyter?): "
              f"stop it, or choose another port with --port", file=sys.stderr)
        return 2
    print(f"Serving on http://127.0.0.1:{args.port}/ (Ctrl-C stops it)", flush=True)
    command = voila_command(args.chapter, args.port, args.slides)
    # Voila replaces this process rather than running under it: stopping `vlab demo` (Ctrl-C, a
    # kill, a test's terminate()) then stops the server and its kernels, instead of orphaning them.
    os.execve(command[0], command, voila_environment())

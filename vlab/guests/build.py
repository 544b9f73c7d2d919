"""Building the bare-metal C guests in vlab/guests/c/ with the AArch64 cross compiler.

A C guest is its own `NAME.c` (plus `NAME.S` when it needs assembly), linked
with the runtime every guest shares: `start.S` (stack, .bss, FPU, then main and
PSCI SYSTEM_OFF), `lib.c` (PL011 console, printf) and `link.ld` (load address
0x4008_0000) -- and with the shared modules it names on a line of its own
`// links: gic.c irq.S` (the GIC driver and the interrupt vectors, say). The result is an ELF that `qemu-system-aarch64 -M virt -kernel`
and vlab's loader both boot. Builds are cached by the hash of everything that
goes into them, so a test suite builds each program once.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from vlab.errors import ToolError

C_DIR = Path(__file__).parent / "c"
COMPILER = "aarch64-linux-gnu-gcc"
COMPILER_PACKAGE = "gcc-aarch64-linux-gnu"  # the Debian package that provides COMPILER
RUNTIME = ("start.S", "lib.c")
LINKER_SCRIPT = "link.ld"
# -mgeneral-regs-only: no FP/SIMD registers, so no guest depends on the FPU state at boot.
# -mstrict-align: with the MMU off, memory is Device memory, where an unaligned access faults on
# hardware (neither QEMU 7.2 nor Unicorn checks it: docs/equivalence.md).
CFLAGS = (
    "-nostdlib", "-ffreestanding", "-mgeneral-regs-only", "-mstrict-align", "-O2", "-g",
    "-fno-pie", "-no-pie", "-static", "-fno-stack-protector", "-fno-asynchronous-unwind-tables",
    "-Wall", "-Werror", "-Wl,--build-id=none", "-Wl,--no-warn-rwx-segments",
)


def require_tool(command: str, package: str, purpose: str) -> str:
    """The path of `command`; ToolError naming the Debian package to install when it is missing."""
    path = shutil.which(command)
    if path is None:
        raise ToolError(f"{command} is not installed: install the Debian package {package} "
                        f"(`sudo apt-get install {package}`) {purpose}")
    return path


def compiler() -> str:
    """The cross compiler's path; ToolError saying what to install when it is missing."""
    return require_tool(COMPILER, COMPILER_PACKAGE, "to build C guests")


LINKS = re.compile(r"^// links:(.*)$", re.MULTILINE)
MAIN = re.compile(r"^int main\(void\)", re.MULTILINE)


def programs() -> list[str]:
    """The names of the C guests shipped with vlab (every NAME.c with a main)."""
    return sorted(p.stem for p in C_DIR.glob("*.c") if p.name not in RUNTIME and MAIN.search(p.read_text()))


def linked_modules(main: Path) -> list[Path]:
    """The shared modules of vlab/guests/c/ that a guest names on its `// links: ...` lines."""
    names = [name for line in LINKS.findall(main.read_text()) for name in line.split()]
    missing = [name for name in names if not (C_DIR / name).is_file()]
    if missing:
        raise ToolError(f"{main.name} links {', '.join(missing)}, which vlab/guests/c/ does not have")
    return [C_DIR / name for name in names]


def sources(program: str | Path) -> list[Path]:
    """The files one program is built from: its .c (and .S), the runtime, the headers and the linker script.

    A lone assembly guest (a `.S` path, such as vlab/guests/hello.S) is built alone, with no runtime.
    """
    shipped = isinstance(program, str) and "/" not in program and not program.endswith((".c", ".S"))
    main = C_DIR / f"{program}.c" if shipped else Path(program)
    if not main.is_file():
        raise ToolError(f"no C guest {str(program)!r}: vlab ships {', '.join(programs())}, "
                        "or give the path of a .c or .S file")
    if main.suffix == ".S":
        return [main, C_DIR / LINKER_SCRIPT]
    own = [main] + ([main.with_suffix(".S")] if main.with_suffix(".S").is_file() else [])
    return own + linked_modules(main) + [C_DIR / name for name in RUNTIME] + sorted(C_DIR.glob("*.h")) + [C_DIR / LINKER_SCRIPT]


def default_cache_dir() -> Path:
    """Where built guests are kept: $VLAB_CACHE_DIR, else a per-user folder in the temp directory."""
    if "VLAB_CACHE_DIR" in os.environ:
        return Path(os.environ["VLAB_CACHE_DIR"]) / "guests"
    return Path(tempfile.gettempdir()) / f"vlab-guests-{os.getuid()}"


def build(program: str | Path, cache_dir: Path | None = None) -> Path:
    """Build a C guest (a shipped name, a .c or a lone .S path) into an ELF file and return its path."""
    cc = compiler()
    inputs = sources(program)
    digest = hashlib.sha256("\0".join((cc, *CFLAGS)).encode())
    for path in inputs:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    out_dir = cache_dir or default_cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    elf = out_dir / f"{inputs[0].stem}-{digest.hexdigest()[:16]}.elf"
    if elf.is_file():
        return elf
    compiled = [p for p in inputs if p.suffix in (".c", ".S")]
    partial = elf.with_suffix(f".{os.getpid()}.tmp")  # build aside, then rename: safe against parallel builds
    command = [cc, *CFLAGS, f"-I{C_DIR}", "-T", str(C_DIR / LINKER_SCRIPT), "-o", str(partial), *map(str, compiled)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise ToolError(f"building {inputs[0].name} failed:\n{done.stderr.strip()}")
    partial.replace(elf)
    return elf

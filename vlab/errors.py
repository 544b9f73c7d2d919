"""The exceptions vlab raises to its users (students, instructors, tests).

Every message should say *what* went wrong, *where* (guest address, source
line, instruction) and, when we know it, *what to do about it*.
"""


class VlabError(Exception):
    """Base class of every error vlab raises on purpose."""


class AssemblyError(VlabError):
    """Guest assembly source that cannot be turned into exactly the code it says."""

    def __init__(self, message: str, line: int | None = None, text: str | None = None):
        self.line, self.text, self.reason = line, text, message
        where = f"line {line}: {text.strip()!r}: " if line is not None else ""
        super().__init__(where + message)


class LoadError(VlabError):
    """A guest image (raw binary, assembly or ELF) that cannot be loaded on the board."""


class ToolError(VlabError):
    """An outside tool (cross compiler, QEMU) is missing -- the message names the package -- or failed."""


class MigrationError(VlabError):
    """A VM that cannot be migrated as asked (a device whose state vlab cannot carry, a stream cut short)."""

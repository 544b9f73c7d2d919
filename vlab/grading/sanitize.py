"""Text that came from a student's code, made safe to show and to save.

A submission controls its exception messages, what it prints and even its folder's name. Before
any of it reaches a console, a CSV, a JSON file or a feedback page: escape sequences go (they
could recolour or clear a terminal), every other control character becomes a visible `\\xNN`,
and the length is capped.
"""

from __future__ import annotations

import re

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \\), and two-character escapes (ESC x).
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?|\x9b[0-?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_FIELD = 2000  # characters of one message kept


def clean(text: str, limit: int = MAX_FIELD, newlines: bool = False) -> str:
    """`text` without escape sequences or control characters (newlines kept only if asked), at most
    `limit` characters (the cut is marked)."""
    text = _ESCAPES.sub("", str(text))
    keep = "\n" if newlines else ""
    text = _CONTROL.sub(lambda m: m.group() if m.group() in keep else
                        (" " if m.group() in "\t\n\r" else f"\\x{ord(m.group()):02x}"), text)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit:,} more characters cut)"

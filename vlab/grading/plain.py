"""Plain data: the only thing that crosses between a student's code and the grader.

A student's answer runs in another process. What it returns comes back as JSON built from
numbers, strings, booleans and None, with containers tagged by their type:

    {"list": [...]}  {"tuple": [...]}  {"set": [...]}  {"dict": [[key, value], ...]}  {"bytes": "hex"}

Anything else -- an object with its own `__eq__`, a generator, a class -- becomes
`Unplain("AlwaysEqual")`, which equals nothing. `decode` rebuilds exact Python types, so the
grader compares an int with an int and never calls code the student wrote.

Arguments going the other way may also carry memory for the answer to read: a
`Memory({page address: 4096 bytes})` arrives as a `read64(address)` function (`encode_cases`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

MAX_DEPTH = 32
MAX_LINE = 4 << 20  # bytes of one encoded message: more is not an answer anyone wrote by hand


@dataclass(frozen=True)
class Unplain:
    """What an answer returned that is not plain data: only its type's name crosses."""

    type_name: str

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = object.__hash__


PAGE = 0x1000


@dataclass(frozen=True)
class Memory:
    """Pages of memory for an answer to read (a VM's stage-2 tables): page address -> 4096 bytes."""

    pages: dict[int, bytes]


class NotPlain(ValueError):
    """A message that is not plain data in this format (a forged or garbled reply)."""


def encode(value: Any, depth: int = 0) -> Any:
    """`value` as JSON-able plain data; what is not plain becomes {"object": type name}."""
    if depth > MAX_DEPTH:
        return {"object": "a structure nested too deep"}
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return int.__int__(value)  # an IntEnum or IntFlag member is the number it stands for
    if type(value) in (list, tuple, set, frozenset):
        items = [encode(v, depth + 1) for v in value]
        if type(value) in (set, frozenset):
            items.sort(key=lambda item: json.dumps(item, sort_keys=True))
        return {{list: "list", tuple: "tuple"}.get(type(value), "set"): items}
    if type(value) is dict:
        return {"dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if type(value) is bytes:
        return {"bytes": value.hex()}
    if type(value) is Memory:
        return {"memory": [[address, page.hex()] for address, page in sorted(value.pages.items())]}
    return {"object": type(value).__name__}


def decode(data: Any, depth: int = 0) -> Any:
    """Python values from `encode`'s output; NotPlain for anything else (a Memory included: it
    travels only as a case's argument, see `decode_cases`)."""
    if depth > MAX_DEPTH:
        raise NotPlain("nested too deep")
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is not dict or len(data) != 1:
        raise NotPlain(f"not plain data: {type(data).__name__}")
    (tag, body), = data.items()
    if tag == "object" and type(body) is str:
        return Unplain(body[:80])
    if tag == "bytes" and type(body) is str:
        try:
            return bytes.fromhex(body)
        except ValueError:
            raise NotPlain("bytes that are not hex") from None
    if type(body) is not list:
        raise NotPlain(f"a {tag!r} that is not a list")
    if tag == "dict":
        if not all(type(pair) is list and len(pair) == 2 for pair in body):
            raise NotPlain("a dict whose items are not pairs")
        pairs = [(decode(k, depth + 1), decode(v, depth + 1)) for k, v in body]
        try:
            return dict(pairs)
        except TypeError:
            raise NotPlain("a dict whose keys cannot be keys") from None
    items = [decode(v, depth + 1) for v in body]
    if tag == "list":
        return items
    if tag == "tuple":
        return tuple(items)
    if tag == "set":
        try:
            return set(items)
        except TypeError:
            raise NotPlain("a set of unhashable items") from None
    raise NotPlain(f"unknown tag {tag!r}")


def encode_cases(cases: list[tuple]) -> tuple[list, list]:
    """Argument lists as plain data, each Memory sent once: (the memories, the cases referring to them)."""
    shared: list = []
    seen: dict[int, int] = {}

    def one(value):
        if type(value) is not Memory:
            return encode(value)
        if id(value) not in seen:
            seen[id(value)] = len(shared)
            shared.append(encode(value))
        return {"shared": seen[id(value)]}
    return shared, [[one(v) for v in args] for args in cases]


def decode_cases(shared: list, cases: list, memory: Callable[[dict[int, bytes]], Any]) -> list[list]:
    """The argument lists `encode_cases` made, each Memory turned into `memory(pages)` (once)."""
    memories = [memory({int(address): bytes.fromhex(page) for address, page in m["memory"]}) for m in shared]
    return [[memories[v["shared"]] if type(v) is dict and list(v) == ["shared"] else decode(v) for v in args]
            for args in cases]


def read64_of(pages: dict[int, bytes]):
    """The read64(address) an answer is given: the little-endian word there, or an error naming
    the address when no page given holds it (a walk that went astray)."""
    def read64(address):
        if type(address) is not int:
            raise TypeError(f"read64() takes an int address, not {type(address).__name__}")
        page = pages.get(address & ~(PAGE - 1))
        if page is None or address % 8:
            raise ValueError(f"read64({address:#x}): no stage-2 table holds an 8-byte descriptor at this "
                             "address (is an index or a table address computed wrongly?)")
        offset = address % PAGE
        return int.from_bytes(page[offset:offset + 8], "little")
    return read64


def dumps(message: dict) -> bytes:
    """One message as a line of JSON."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def loads(line: bytes) -> dict:
    """A message read from a line; NotPlain when it is not a JSON object."""
    if len(line) > MAX_LINE:
        raise NotPlain(f"a message of {len(line):,} bytes")
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        raise NotPlain("not JSON") from None
    if type(message) is not dict:
        raise NotPlain("not a JSON object")
    return message


# --- comparing and showing, for the grader's messages ---------------------------------------------

def type_name(value: Any) -> str:
    """What a student would call the type of `value`: 'int', 'str', 'AlwaysEqual object', 'None'."""
    if isinstance(value, Unplain):
        return f"{value.type_name} object"
    return "None" if value is None else type(value).__name__


def a(name: str) -> str:
    """'an int', 'a str', 'None'."""
    return name if name == "None" else ("an " if name[:1].lower() in "aeiou" else "a ") + name


def mismatch(got: Any, expected: Any) -> str | None:
    """Why `got` is not `expected` (types compared exactly: True is not 1), or None when it is."""
    if type(got) is not type(expected):
        shown = f" {show(got)}" if type(got) in (int, str, float, bool) else ""
        return f"returned {a(type_name(got))}{shown}, expected {a(type_name(expected))}"
    if isinstance(expected, (set, frozenset)):
        wrong = [v for v in got if not any(type(v) is type(e) and v == e for e in expected)]
        if wrong:
            return f"{show(wrong[0])} should not be in it"
        missing = [e for e in expected if not any(type(v) is type(e) and v == e for v in got)]
        return f"{show(missing[0])} is missing" if missing else None
    if isinstance(expected, dict):
        if set(got) != set(expected):
            extra, absent = sorted(map(show, set(got) - set(expected))), sorted(map(show, set(expected) - set(got)))
            return "; ".join(p for p in (f"keys not expected: {', '.join(extra)}" if extra else "",
                                         f"keys missing: {', '.join(absent)}" if absent else "") if p)
        for key, value in expected.items():
            why = mismatch(got[key], value)
            if why:
                return f"[{show(key)}] {why}"
        return None
    if isinstance(expected, (list, tuple)):
        if len(got) != len(expected):
            return f"{len(got)} items, expected {len(expected)}"
        for i, (g, e) in enumerate(zip(got, expected)):
            why = mismatch(g, e)
            if why:
                return f"item {i}: {why}"
        return None
    return None if got == expected else f"expected {show(expected)}, got {show(got)}"


def show(value: Any) -> str:
    """A value as the grader's messages write it: integers in hex (registers, syndromes, addresses)."""
    if type(value) is int:
        return f"{value:#x}" if value >= 0 else f"-{-value:#x}"
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(sorted(map(show, value))) + "}" if value else "set()"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{show(k)}: {show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(map(show, value)) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(map(show, value)) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, Unplain):
        return f"<a {value.type_name} object>"
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."

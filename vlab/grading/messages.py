"""The grader's sentences about what a student's code did: what it raised, why a file does not
load, that it reached for vlab's own answer. Everything quoted from the student's side is cleaned."""

from __future__ import annotations

from vlab.grading.sanitize import clean


def raised(error: dict, function: str = "") -> str:
    """What the answer raised, from the plain data its process sent (`vlab.grading.serve.describe`)."""
    kind, message = clean(error.get("type", "?"), 80), clean(error.get("message", ""), 500)
    if kind == "missing" or kind == "Refused":
        return message
    if kind == "NotImplementedError":
        return not_done(function or "the function")
    if kind == "MemoryError" or "Cannot allocate memory" in message:
        return f"{kind}: the code asked for more memory than it may use"
    if kind == "SyntaxError":
        text = clean(error.get("text", ""), 120)
        return f"SyntaxError: {message} (line {error.get('line')}{f': {text!r}' if text else ''})"
    where = f" (line {error['line']} of {clean(error.get('file', '?'), 80)})" if type(error.get("line")) is int else ""
    return f"{kind}: {message}{where}" if message else f"{kind}{where}"


def does_not_load(module: str, error: dict) -> str:
    if error.get("type") == "missing":
        return raised(error)
    return f"{module}.py does not load: {raised(error)}"


def delegation(names: list[str]) -> str:
    return (f"your code called {', '.join(clean(n, 120) for n in names)}: vlab's own answer to this exercise. "
            "Delegating to it earns nothing; write the answer yourself (in a notebook you may still compare "
            "your answer with vlab's)")


def timed_out(timeout_s: float, during: str) -> str:
    return f"timed out after {timeout_s:g} s {during}: does the code loop forever?"


def not_done(function: str) -> str:
    return f"not done yet: {function} still raises NotImplementedError"

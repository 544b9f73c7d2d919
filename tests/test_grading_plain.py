"""What crosses between a student's code and the grader: plain data with exact types, and text made safe."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from vlab.grading import plain
from vlab.grading.sanitize import clean

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20),
                    st.floats(allow_nan=False), st.binary(max_size=16))
hashable = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.lists(inner, max_size=4).map(tuple), st.sets(hashable, max_size=4),
    st.dictionaries(hashable, inner, max_size=4)), max_leaves=20)


def exactly(a, b) -> bool:
    """Equal, and of the same types all the way down (True is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(exactly(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(exactly(a[k], b[k]) for k in a)
    if isinstance(a, set):
        return a == b and {(type(x), x) for x in a} == {(type(x), x) for x in b}
    return a == b


@given(values)
def test_plain_data_comes_back_with_its_exact_types_through_json(value):
    back = plain.decode(json.loads(json.dumps(plain.encode(value))))
    assert exactly(back, value)
    assert plain.mismatch(back, value) is None


@given(values, values)
def test_a_mismatch_is_reported_exactly_when_values_or_types_differ(a, b):
    assert (plain.mismatch(a, b) is None) == exactly(a, b)


def test_what_is_not_plain_data_equals_nothing_and_is_named():
    class AlwaysEqual:
        def __eq__(self, other):
            return True

    back = plain.decode(json.loads(json.dumps(plain.encode(AlwaysEqual()))))
    assert back != 0 and back != back and plain.mismatch(back, 0) == "returned an AlwaysEqual object, expected an int"
    assert plain.mismatch(True, 1) == "returned a bool True, expected an int"
    assert plain.mismatch("0x56000000", 0x56000000) == "returned a str '0x56000000', expected an int"


def test_forged_messages_are_refused_not_trusted():
    for forged in ({"int": 5}, {"set": "abc"}, {"dict": [[1]]}, [1, 2], {"object": 5}, {"list": [1], "x": 2}):
        try:
            plain.decode(forged)
        except plain.NotPlain:
            continue
        raise AssertionError(f"{forged} was accepted")


def test_memory_arrives_as_read64_once_for_all_cases():
    memory = plain.Memory({0x1000: bytes(range(256)) * 16})
    shared, cases = plain.encode_cases([(memory, 0x1008), (memory, 0x1ff8)])
    assert len(shared) == 1
    (read64, a), (again, b) = plain.decode_cases(*json.loads(json.dumps([shared, cases])), plain.read64_of)
    assert read64 is again and read64(a) == int.from_bytes(bytes(range(8, 16)), "little")
    try:
        read64(0x2000)
    except ValueError as e:
        assert "0x2000" in str(e)
    else:
        raise AssertionError("read64 outside the tables given")


@given(st.text())
def test_cleaned_text_has_no_control_character_or_escape_and_is_capped(text):
    cleaned = clean(text, limit=100)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in cleaned)
    assert len(cleaned) <= 100 + len("... (999,999,999 more characters cut)")


def test_cleaning_removes_terminal_escape_sequences_whole():
    assert clean("\x1b[2J\x1b]0;pwned\x07\x1b[31mred\x1b[0m done") == "red done"
    assert clean("a\tb\nc", newlines=True) == "a b\nc" and clean("a\nb") == "a b"
    assert clean("\x00") == "\\x00"

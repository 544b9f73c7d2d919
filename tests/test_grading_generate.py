"""exercises/ from solutions/: properties of stripping the solution regions, on generated files."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vlab.grading.generate import BEGIN, END, PLACEHOLDER, strip_solutions

# Ordinary lines may mention the markers, as long as a marker is not the whole (stripped) line.
plain_line = st.text(st.characters(blacklist_categories=("Cs", "Zl", "Zp", "Cc")), max_size=30).filter(
    lambda s: s.strip() not in (BEGIN, END))
indent = st.sampled_from(["", "    ", "        ", "\t"])
region = st.tuples(indent, st.lists(plain_line, max_size=4))
blocks = st.lists(st.one_of(plain_line.map(lambda line: ("line", line)), region.map(lambda r: ("region", r))),
                  max_size=12)


def solution_file(parts) -> str:
    out = []
    for kind, value in parts:
        if kind == "line":
            out.append(value)
        else:
            pad, body = value
            out += [pad + BEGIN, *body, pad + END]
    return "".join(line + "\n" for line in out)


@given(blocks)
def test_each_region_becomes_one_placeholder_at_its_indentation_and_other_lines_stay(parts):
    expected = "".join((value if kind == "line" else value[0] + PLACEHOLDER) + "\n" for kind, value in parts)
    assert strip_solutions(solution_file(parts)) == expected


@given(blocks)
def test_an_exercise_has_no_solution_left_to_strip(parts):
    exercise = strip_solutions(solution_file(parts))
    assert strip_solutions(exercise) == exercise
    assert exercise.count(PLACEHOLDER) == sum(kind == "region" for kind, _ in parts)

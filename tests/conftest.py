"""Test-suite settings. Hypothesis's per-example deadline is a timing test in disguise: on a shared,
loaded machine a correct example can take longer than 200 ms, so deadlines are off (speed is
measured by the benchmarks/ scripts, never by tests)."""

from hypothesis import settings

settings.register_profile("vlab", deadline=None)
settings.load_profile("vlab")

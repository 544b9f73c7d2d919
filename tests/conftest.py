"""Test-suite settings. Hypothesis's per-example deadline is a timing test in disguise: on a shared,
loaded machine a correct example can take longer than 200 ms, so deadlines are off (speed is
measured by the benchmarks/ scripts, never by tests)."""

import pytest
from hypothesis import settings

settings.register_profile("vlab", deadline=None)
settings.load_profile("vlab")


@pytest.fixture
def stuck_in_vlab(monkeypatch):
    """A loop inside vlab that no run's own wall-clock guard can end: the hook every newly
    translated block calls never returns (that guard is checked between runs of the engine)."""
    from vlab.machine.cpu import CPU

    def stuck(self, *args):
        while True:
            pass

    monkeypatch.setattr(CPU, "_on_new_block", stuck)

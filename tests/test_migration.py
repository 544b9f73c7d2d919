"""Live migration between two vlab hosts (vlab.hyp.migration): pre-copy and post-copy, with real guests."""

from __future__ import annotations

import pytest

from vlab.guests import GUESTS
from vlab.hyp import VM, Host
from vlab.machine.board import StopReason
from vlab.sched.registry import POLICIES, make_policy


@pytest.mark.parametrize("policy", sorted(set(POLICIES) - {"arinc653"}))
def test_a_vm_paused_between_runs_goes_on_where_it_stopped_under_every_policy(policy):
    """Pre-copy runs the source host round after round: a VM stopped by a budget or a duration must
    go on at the next run (round-robin used to take it for still running, and idle)."""
    host = Host(scheduler=make_policy(policy, 1))
    vm = VM.from_file(GUESTS["hello"].path, host=host, stage2="demand")
    assert vm.run(max_insns=10).reason is StopReason.BUDGET
    assert host.run(duration=40, timeout_s=10).vms[0].instructions == 50
    result = vm.run(timeout_s=10)
    assert result.reason is StopReason.POWERED_OFF and result.uart == GUESTS["hello"].expected_uart

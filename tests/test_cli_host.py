"""`vlab run FILE [FILE...] --virt` with a host's options: several VMs, cores, a policy, and the JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vlab.guests import GUESTS

HELLO, PAGING = str(GUESTS["hello"].path), str(GUESTS["paging"].path)


def vlab(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlab", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def spin(tmp_path):
    path = tmp_path / "spin.S"
    path.write_text("loop: b loop\n")
    return str(path)


def test_several_files_are_vms_on_one_host_reported_in_their_order():
    done = vlab("run", HELLO, PAGING, "--virt", "--pcpus", "2", "--sched", "credit", "--weights", "512,256", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [vm["file"] for vm in out["vms"]] == [HELLO, PAGING]
    assert [vm["uart"] for vm in out["vms"]] == [GUESTS["hello"].expected_uart, GUESTS["paging"].expected_uart]
    for vm in out["vms"]:
        assert set(vm) == {"file", "uart", "virtio_console", "stop", "message", "instructions", "exits", "vcpus"}
        assert vm["virtio_console"] == ""  # neither guest uses the virtio console
        assert vm["stop"] == "powered_off" and vm["exits"]["HVC64"] >= 1
    assert [p["pcpu"] for p in out["pcpus"]] == [0, 1]
    assert out["sched"]["policy"] == "credit" and len(out["sched"]["vcpus"]) == 2
    assert sum(v["ran"] for v in out["sched"]["vcpus"]) == sum(vm["instructions"] for vm in out["vms"])


def test_one_file_keeps_its_keys_and_adds_the_schedulers_figures():
    done = vlab("run", HELLO, "--virt", "--json")
    out = json.loads(done.stdout)
    assert {"uart", "stop", "message", "instructions", "el", "registers", "exits"} <= set(out)
    assert out["sched"]["policy"] == "rr" and [v["vcpu"] for v in out["sched"]["vcpus"]] == [0]


def test_the_budget_bounds_each_vm_so_a_spinning_one_cannot_keep_the_others_from_finishing(spin):
    done = vlab("run", spin, HELLO, "--virt", "--max-insns", "300000", "--json")
    first, second = json.loads(done.stdout)["vms"]
    assert (first["stop"], first["instructions"]) == ("budget", 300_000)
    assert second["stop"] == "powered_off" and second["uart"] == GUESTS["hello"].expected_uart
    assert done.returncode == 1  # not every guest ended well


def test_text_mode_heads_each_vms_output_and_ends_with_the_figures():
    done = vlab("run", HELLO, PAGING, "--virt")
    assert done.stdout.index("== vm0:") < done.stdout.index("Hello") < done.stdout.index("== vm1:")
    assert "rr on 1 physical CPU" in done.stderr and "pCPU utilisation" in done.stderr


def test_arinc_653_windows_name_the_vms_by_their_files():
    done = vlab("run", HELLO, PAGING, "--virt", "--sched", "arinc653", "--windows", "hello=1ms,paging=2ms", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sched"]["deadline_misses"] == 0


def test_vcpus_applies_to_every_vm():
    done = vlab("run", HELLO, PAGING, "--virt", "--vcpus", "2", "--json")
    assert [len(vm["vcpus"]) for vm in json.loads(done.stdout)["vms"]] == [2, 2]


@pytest.mark.parametrize("args, says", [
    (["--weights", "0,256"], "weight 0 is out of range"),
    (["--weights", "256"], "--weights gives 1 values for 2 FILE(s)"),
    (["--weights", "a,b"], "whole numbers"),
    (["--sched", "credit", "--caps", "0,300"], "cap"),
    (["--sched", "arinc653", "--windows", "hello=5ms,paging=5ms/frame=8ms"], "frame"),
    (["--sched", "arinc653", "--windows", ",".join(["hello=1ms"] * 65) + ",paging=1ms"], "64"),
    (["--sched", "lottery"], "no scheduling policy is called 'lottery'"),
    (["--vcpus", "99"], "vCPUs"),
    (["--pcpus", "0"], "physical CPU"),
])
def test_bad_host_options_are_refused_before_anything_runs(args, says):
    done = vlab("run", HELLO, PAGING, "--virt", *args)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("args, says", [(["--timeout", "-1"], "--timeout must be a positive number of seconds, not -1"),
                                        (["--timeout", "0"], "--timeout must be a positive number of seconds, not 0"),
                                        (["--slice", "-3"], "--slice must be a positive number of milliseconds, not -3"),
                                        (["--slice", "0"], "--slice must be a positive number of milliseconds, not 0")])
def test_a_guard_or_a_slice_that_is_not_positive_is_refused_by_its_option(args, says):
    done = vlab("run", HELLO, "--virt", *args)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("vcpus", ["0", "9", "-1"])
def test_a_vm_alone_with_too_few_or_too_many_vcpus_is_told_of_its_vcpus(vcpus):
    # alone, a VM's host gets a physical CPU per vCPU: the error must still be about the vCPUs
    done = vlab("run", HELLO, "--virt", "--vcpus", vcpus)
    assert done.returncode == 2 and f"a VM has 1 to 8 vCPUs, not {vcpus}" in done.stderr, done.stderr
    assert done.stdout == ""


def test_several_files_or_host_options_need_a_hypervisor():
    for args in ([HELLO, PAGING], [HELLO, "--pcpus", "2"], [HELLO, "--sched", "credit"]):
        done = vlab("run", *args)
        assert done.returncode == 2 and "add --virt" in done.stderr

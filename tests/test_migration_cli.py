"""`vlab run FILE --virt --migrate-at N [--bandwidth MBPS] [--post-copy] [--json]`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vlab.guests import GUESTS
from vlab.machine.timer import FREQUENCY_HZ

PAGING = str(GUESTS["paging"].path)
# A guest long enough to migrate: it writes a word into each of 20 pages, 2,000 times over, then
# prints how many words it wrote (read back from its memory) and powers off.
WRITER = """    ldr x19, =0x40020000
    mov x20, #2000
again:
    mov x21, #20
    mov x22, x19
page:
    ldr x4, [x22]
    add x4, x4, #1
    str x4, [x22]
    add x22, x22, #4096
    subs x21, x21, #1
    b.ne page
    subs x20, x20, #1
    b.ne again
    mov x21, #20
    mov x22, x19
    mov x5, #0
sum:
    ldr x4, [x22]
    add x5, x5, x4
    add x22, x22, #4096
    subs x21, x21, #1
    b.ne sum
    ldr x1, =0x09000000
    mov x6, #10000
digit:
    udiv x7, x5, x6
    add x8, x7, #48
    str w8, [x1]
    msub x5, x7, x6, x5
    mov x9, #10
    udiv x6, x6, x9
    cbnz x6, digit
    mov w8, #10
    str w8, [x1]
    ldr x0, =0x84000008
    hvc #0
"""
WRITER_UART = "40000\n"


def vlab(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlab", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def writer(tmp_path):
    path = tmp_path / "writer.S"
    path.write_text(WRITER)
    return str(path)


@pytest.mark.parametrize("at", ["0", "30", "20000", "100000"])
def test_the_json_adds_the_migration_and_the_guest_prints_what_it_prints_unmigrated(writer, at):
    alone = json.loads(vlab("run", writer, "--virt", "--json").stdout)
    done = vlab("run", writer, "--virt", "--migrate-at", at, "--bandwidth", "10000", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["uart"] == alone["uart"] == WRITER_UART
    assert (out["stop"], out["instructions"]) == ("powered_off", alone["instructions"])
    m = out["migration"]
    assert {"rounds", "pages_sent", "downtime_insns", "downtime_ms_modelled"} <= set(m)
    assert m["completed"] and m["mode"] == "pre-copy" and m["rounds"] >= 1 and m["pages_sent"] >= 1
    assert m["downtime_ms_modelled"] == pytest.approx(m["downtime_insns"] * 1000 / FREQUENCY_HZ, abs=1e-6)
    assert m["link"] == {"bandwidth_mbps": 10000, "latency_ms": 0.05}


def test_post_copy_pauses_for_the_state_alone_and_pulls_pages_after(writer):
    out = json.loads(vlab("run", writer, "--virt", "--migrate-at", "100", "--post-copy", "--json").stdout)
    m = out["migration"]
    assert out["uart"] == WRITER_UART
    assert m["mode"] == "post-copy" and m["rounds"] == 0 and m["faults"] >= 1
    assert m["transfers"][0]["kind"] == "stop-and-copy" and m["transfers"][0]["pages"] == 0


def test_a_slower_link_makes_a_longer_downtime(writer):
    def downtime(bandwidth):
        done = vlab("run", writer, "--virt", "--migrate-at", "100", "--bandwidth", bandwidth, "--json")
        return json.loads(done.stdout)["migration"]["downtime_insns"]

    assert downtime("400") > downtime("1000") > downtime("10000")


def test_text_mode_prints_the_output_and_says_what_the_migration_cost(writer):
    done = vlab("run", writer, "--virt", "--migrate-at", "100", "--latency", "0.2")
    assert done.returncode == 0 and done.stdout == WRITER_UART
    assert "migration: pre-copy over 1000 Mbit/s, 0.2 ms latency" in done.stderr and "pause of" in done.stderr


def test_a_guest_that_ends_during_precopy_stays_on_its_host_and_says_so():
    out = json.loads(vlab("run", PAGING, "--virt", "--migrate-at", "100", "--json").stdout)
    assert out["uart"] == GUESTS["paging"].expected_uart and out["stop"] == "powered_off"
    assert not out["migration"]["completed"] and "stopped on the source" in out["migration"]["why"]


def test_a_guest_that_ends_before_the_migration_point_is_not_migrated():
    out = json.loads(vlab("run", PAGING, "--virt", "--migrate-at", "900000", "--json").stdout)
    assert out["migration"] is None and out["uart"] == GUESTS["paging"].expected_uart


@pytest.mark.parametrize("args, problem", [
    (["--migrate-at", "5"], "add --virt"),
    (["--virt", "--bandwidth", "100"], "add --migrate-at N"),
    (["--virt", "--post-copy"], "add --migrate-at N"),
    (["--virt", "--migrate-at", "-1"], "0 or more"),
    (["--virt", "--migrate-at", "50", "--max-insns", "40"], "past --max-insns"),
    (["--virt", "--migrate-at", "5", "--bandwidth", "0"], "--bandwidth must be positive"),
    (["--virt", "--migrate-at", "5", "--latency", "-1"], "--latency must be 0 or more"),
    (["--virt", "--migrate-at", "5", "--rule", "fastest"], "no stopping rule 'fastest'"),
    (["--virt", "--migrate-at", "5", "--post-copy", "--rule", "xen_2005"], "post-copy sends each page once"),
    (["--virt", "--migrate-at", "5", "--sched", "credit"], "--sched shapes a shared host"),
    (["--virt", "--migrate-at", "5", "--hyp", "type1"], "--hyp shapes a shared host"),
])
def test_options_that_cannot_migrate_are_refused_before_anything_runs(args, problem):
    done = vlab("run", PAGING, *args)
    assert done.returncode == 2 and problem in done.stderr and done.stdout == ""


def test_several_files_cannot_migrate_at_once():
    done = vlab("run", PAGING, PAGING, "--virt", "--migrate-at", "5")
    assert done.returncode == 2 and "one FILE" in done.stderr

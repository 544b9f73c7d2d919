"""`vlab run FILE --virt --migrate-at N`: the guest migrates to a second host after N instructions (part of `vlab run`).

    vlab run hello.elf --virt --migrate-at 5000                  # pre-copy over 1 Gbit/s
    vlab run hello.elf --virt --migrate-at 5000 --bandwidth 100 --latency 0.5 --json
    vlab run hello.elf --virt --migrate-at 5000 --post-copy

What it prints is the whole run's output, as `vlab run` prints it -- the UART's, then the virtio
console's under a heading -- on the source, then on the destination; stderr says how the run
ended, its exits on both hosts and what the migration cost. The JSON adds `migration`: rounds, pages_sent,
downtime_insns (the pause in the guest's time: one instruction per tick), downtime_ms_modelled
(the same pause on the modelled link), and the rest of vlab.hyp.migration's report.
"""

from __future__ import annotations

import argparse
import json
import sys

from vlab.hyp.link import DEFAULT_BANDWIDTH_MBPS, DEFAULT_LATENCY_MS


def add_options(parser: argparse.ArgumentParser) -> None:
    """The migration options of `vlab run`."""
    group = parser.add_argument_group("live migration (with --virt, one FILE)")
    group.add_argument("--migrate-at", type=int, default=None, metavar="N",
                       help="migrate the VM to a second host after N guest instructions")
    group.add_argument("--bandwidth", type=float, default=None, metavar="MBPS",
                       help=f"the link's bandwidth in Mbit/s (default {DEFAULT_BANDWIDTH_MBPS:g})")
    group.add_argument("--latency", type=float, default=None, metavar="MS",
                       help=f"the link's one-way latency in ms (default {DEFAULT_LATENCY_MS:g})")
    group.add_argument("--post-copy", action="store_true",
                       help="post-copy: resume on the destination at once, pull pages on demand")
    group.add_argument("--rule", default="xen", metavar="RULE",
                       help="pre-copy's stopping rule: xen (today's: < 50 dirty pages or 5 rounds) or xen_2005")


def refused(args: argparse.Namespace) -> str:
    """Why the migration options cannot run as given ('' when they can, or are not used)."""
    from vlab.hyp.migration import RULES

    used = [name for name, value in (("--bandwidth", args.bandwidth), ("--latency", args.latency),
                                      ("--post-copy", args.post_copy), ("--rule", args.rule != "xen")) if value]
    if args.migrate_at is None:
        return f"{used[0]} applies to a migration: add --migrate-at N" if used else ""
    if not args.virt:
        return "--migrate-at moves a VM between hosts: add --virt"
    if len(args.files) != 1:
        return "--migrate-at migrates one VM: give one FILE"
    shared = [name for name, value in (("--pcpus", args.pcpus), ("--sched", args.sched != "rr"),
                                        ("--slice", args.slice), ("--windows", args.windows),
                                        ("--weights", args.weights), ("--caps", args.caps),
                                        ("--hyp", args.hyp)) if value]
    if shared:
        return f"{shared[0]} shapes a shared host; a migration runs its VM alone on each host (one pCPU per vCPU)"
    if args.migrate_at < 0:
        return "--migrate-at takes a number of instructions, 0 or more"
    if args.migrate_at >= args.max_insns:
        return f"--migrate-at {args.migrate_at:,} is past --max-insns {args.max_insns:,}: the run ends before it"
    if args.rule not in RULES:
        return f"no stopping rule {args.rule!r}: choose {' or '.join(RULES)}"
    if args.post_copy and args.rule != "xen":
        return "--rule is pre-copy's stopping rule: post-copy sends each page once, it has no rounds"
    for option, value in (("--bandwidth", args.bandwidth), ("--latency", args.latency)):
        if value is not None and not (value > 0 if option == "--bandwidth" else value >= 0):
            return f"{option} must be {'positive' if option == '--bandwidth' else '0 or more'}, not {value:g}"
    return ""


def run(args: argparse.Namespace) -> int:
    """Run FILE with a migration in it; exit status as `vlab run`'s (0: powered off or idle)."""
    from vlab.arch.hcr import HCR
    from vlab.cli_run import print_text  # which imports this module
    from vlab.hyp.link import Link
    from vlab.hyp.migration import RULES
    from vlab.hyp.migration_experiment import migrate_guest
    from vlab.machine.loader import image_from_file

    link = Link(DEFAULT_BANDWIDTH_MBPS if args.bandwidth is None else args.bandwidth,
                DEFAULT_LATENCY_MS if args.latency is None else args.latency)
    run = migrate_guest(image_from_file(args.files[0]), args.migrate_at, link, args.post_copy, RULES[args.rule],
                        args.max_insns, args.vcpus, HCR.parse(args.trap), timeout_s=args.timeout)
    result = run.result
    if args.trap_log:
        for side, vm in (("source", run.source), ("destination", run.destination)):
            for entry in vm.trap_log if vm is not None else ():
                print(f"{side} {entry}", file=sys.stderr)
    if args.json:
        print(json.dumps(run.to_json()))
    else:
        print_text(result, virt=True)
        if run.migration is None:
            print(f"migration: none -- the guest stopped before instruction {args.migrate_at:,}", file=sys.stderr)
        else:
            print(f"migration: {run.migration.summary()}", file=sys.stderr)
    return 0 if result.reason.value in ("powered_off", "idle") else 1

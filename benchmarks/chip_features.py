"""Chapter 9's host times: each hardware feature's row, with it and without it, and their ratio, in one run.

    python benchmarks/chip_features.py [--quick]

The counts of each row (exits, wrong answers, bytes overwritten) are the test suite's
(tests/test_chip_features.py); here are the times, which tests never assert. Each cost is
measured on vlab with the feature (the virtual CPU interface, the virtual timer, a device passed
through, VHE) and without it (an emulated CPU interface, CNTHCTL_EL2 trapping time, an emulated
device, KVM's split mode). Target: every cost at least TARGET times higher without the feature,
except the whole virtual interrupt (its two extra exits are a fraction of vlab's long interrupt
path) and VHE's hypercall (vlab's exit path is Python, beside which moving registers is cheap),
which need only be higher.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vlab.hyp import chip_features as chip  # noqa: E402

TARGET = 2.0
ONLY_HIGHER = ("host time of a whole virtual interrupt", "host time of one hypercall exit")
FLOOR_US = 1.0  # a cost measured below this is noise: divide by this instead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter loops, fewer repetitions")
    args = parser.parse_args()
    iterations, repeats = (300, 3) if args.quick else (2_000, 5)
    print(f"each cost: loops of {iterations}, best of {repeats} (structures: median of {repeats} pairs)")
    print(f"    {'feature':<18} {'cost':<58} {'with us':>9} {'without us':>11} {'ratio':>7}")
    for name in ("the virtual GIC", "the virtual timer", "the SMMU", "VHE"):
        for m in chip.measure(name, iterations, repeats).measured:
            if m.unit != "us":
                continue
            ratio = m.without / max(m.with_feature, FLOOR_US)
            needed = 1.0 if m.quantity in ONLY_HIGHER else TARGET
            verdict = "ok" if ratio > needed else "MISSED TARGET"
            print(f"    {name:<18} {m.quantity:<58} {m.with_feature:>9,.1f} {m.without:>11,.1f} {ratio:>6.1f}x"
                  f"  (target > {needed:g}x) {verdict}")


if __name__ == "__main__":
    main()

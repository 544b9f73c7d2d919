"""The same guest on the bare board or in a VM: one helper for the tests that compare them."""

from __future__ import annotations

from vlab.hyp import VM
from vlab.machine.board import Board, RunResult
from vlab.machine.loader import Image, load

# A vector table whose synchronous entry (current EL, SP_ELx) records ESR_EL1 in x20, FAR_EL1 in x21,
# then powers off.
RECORDING_VECTORS = """    .balign 0x800
vectors:
    .space  0x200
    mrs     x20, esr_el1
    mrs     x21, far_el1
    ldr     x0, =0x84000008
    hvc     #0
"""


def run_on(machine: str | None, image: Image, max_insns: int = 10_000) -> RunResult:
    """Run `image` on `machine`: "board", or a VM with that stage-2 layout (None: no stage 2)."""
    if machine == "board":
        board = Board()
        load(board, image)
        return board.run(max_insns=max_insns, timeout_s=10)
    return VM.from_image(image, stage2=machine).run(max_insns=max_insns, timeout_s=10)

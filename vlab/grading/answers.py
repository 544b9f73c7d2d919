"""vlab's own answers to the exercises, as data: what graded code may not call.

vlab implements everything a student is asked to write -- the hypervisor's handlers, the
stage-2 walk, the descriptor decoder -- and the grader's own oracles compute the expected
answers. A graded submission that calls any of them has not answered the exercise: it scores
0 there, with a message naming what it called. (In a notebook a student may still compare
their answer with vlab's: `check()` does not apply this rule.)

How it holds while grading (see `vlab.grading.confined`):
- The confined process sees only the parts of vlab a student's answer may use,
  `GRADED_CODE_MAY_IMPORT`; the rest of vlab -- the hypervisor, the MMU, the machine, the
  grader's tests and oracles -- is not in its filesystem at all. Importing any of it gives a
  stand-in whose use fails with the reason.
- Answers that live inside what it may import (`vlab.arch.esr` can encode an SVC's syndrome)
  are replaced there, for the exercise they answer, by a function that refuses.
"""

from __future__ import annotations

GRADED_CODE_MAY_IMPORT = ("vlab.arch", "vlab.errors")

# exercise id -> the vlab names (module.attribute[.attribute]) that compute its answer
ANSWERS: dict[str, tuple[str, ...]] = {
    "ch01.decode_uart_flags": ("vlab.machine.uart.FR", "vlab.machine.uart.PL011.flags",
                               "vlab.grading.specs.ch01.flags_from_the_machine"),
    "ch01.svc_esr": ("vlab.arch.esr.imm16_syndrome", "vlab.arch.esr.Syndrome.esr",
                     "vlab.grading.specs.ch01.esr_the_machine_reports"),
    "ch01.print_number_source": (),
    "ch02.handle_sysreg": ("vlab.hyp.handlers.handle_sysreg", "vlab.hyp.handlers.DEFAULT_HANDLERS"),
    "ch02.handle_uart_access": ("vlab.hyp.handlers.handle_data_abort", "vlab.hyp.handlers.DEFAULT_HANDLERS"),
    "ch03.decode_stage2_descriptor": ("vlab.mmu.descriptors.decode",
                                      "vlab.grading.specs.ch03.reference_decode"),
    "ch03.stage2_translate": ("vlab.mmu.walk.walk", "vlab.hyp.memory.VmMemory.translate",
                              "vlab.grading.specs.ch03.reference_translate"),
    "ch04.list_register": ("vlab.machine.gic_virt.ListRegister.encode", "vlab.hyp.vgic.VGic.flush",
                           "vlab.grading.specs.ch04.architecture_value"),
    "ch06.predicted_cycles": ("vlab.hyp.cycle_model.cycles", "vlab.grading.specs.ch06.priced"),
    "ch06.plan_devices": ("vlab.grading.specs.ch06.reference_plan",),
    "ch07.console_write_source": (),
    "ch07.offer_buffer": ("vlab.grading.specs.ch07.ring_after_offer",),
    "ch07.console_io": ("vlab.hyp.xen.console_io", "vlab.hyp.xen.xen_handler", "vlab.hyp.xen.serve",
                        "vlab.grading.specs.ch07.xen_answers"),
    "ch05.pick_next": ("vlab.sched.fair.Fair", "vlab.grading.specs.ch05.reference_pick",
                       "vlab.grading.specs.ch05.fair_charge"),
    "ch05.arinc653_frame": (),
}


def may_import(module: str) -> bool:
    """Whether graded code finds this vlab module in its confined process."""
    return module == "vlab" or any(module == m or module.startswith(m + ".") for m in GRADED_CODE_MAY_IMPORT)


def answered_by(name: str) -> list[str]:
    """The exercises whose answer `name` (or something inside it) is, e.g. 'vlab.hyp.handlers'
    -> ['ch02.handle_sysreg', 'ch02.handle_uart_access']."""
    return [exercise for exercise, names in ANSWERS.items()
            if any(n == name or n.startswith(name + ".") or name.startswith(n + ".") for n in names)]


def refusal(name: str) -> str:
    """Why graded code may not use the vlab name it reached for."""
    exercises = answered_by(name)
    if exercises:
        return (f"{name} is vlab's own answer to {' and '.join(exercises)}: a submission that calls it "
                "earns nothing for that exercise (write the answer yourself)")
    return (f"{name} is not available while grading: an answer may use "
            f"{' and '.join(GRADED_CODE_MAY_IMPORT)}, and Python's standard library")


class Refused(BaseException):
    """Graded code reached for a part of vlab it may not use (see `refusal`).

    A BaseException, so that an answer's `except Exception:` does not hide it.
    """

"""What a student's exit handler sees: the documented slice of a vCPU, of its exit and of a device.

    handler(vcpu, exit) -> str        one line saying what it did

    vcpu.x(n), vcpu.set_x(n, value)                  general-purpose registers (31: the zero register)
    vcpu.read_sysreg(name), vcpu.write_sysreg(name, value)
    vcpu.skip(exit)                                  the instruction is emulated: continue after it
    vcpu.platform.device_at(ipa)                     the device there (.name, .base, .size), or None
    vcpu.platform.mmio(device, offset, size, value, is_write)   a device access; the value read
    exit.syndrome (.ec, .iss, .il, .esr), exit.ipa, exit.far, exit.address, exit.return_address,
    exit.el, exit.instruction

The handler runs in another process than the VM (the confined one while grading, a fork of the
kernel in `check()`), so this view is all it has: the exit's registers and the VM's devices come
with the exit, and a request that changes the vCPU (set_x, write_sysreg, skip, an MMIO store) is
kept, in order, until the handler asks for something only the VM knows (read_sysreg, an MMIO
load) or returns; then the grader's side performs them (`apply`) and answers. Every request is
checked here, when it is made, and checked again by `perform` on the grader's side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from vlab.arch.esr import ExceptionClass, Syndrome
from vlab.grading.plain import type_name

Ask = Callable[[str, list, list], Any]  # (operation, arguments, the changes kept until now) -> the answer
OPERATIONS = ("set_x", "write_sysreg", "skip", "mmio", "read_sysreg")
_U64 = (1 << 64) - 1
SIZES = (1, 2, 4, 8)


@dataclass(frozen=True)
class ExitView:
    """An exit as ESR_EL2 (`syndrome`), ELR_EL2, FAR_EL2 and the faulting IPA report it: the fields of
    vlab.hyp.Exit a handler needs (`exit.syndrome.ec`, `.iss` and `.fields()` decode the syndrome)."""

    syndrome: Syndrome
    address: int
    return_address: int
    el: int
    far: int | None
    ipa: int | None
    instruction: str
    vcpu: int = 0

    @classmethod
    def from_plain(cls, data: dict) -> ExitView:
        syndrome = Syndrome(ExceptionClass(data["ec"]), data["iss"], data["il"])
        return cls(syndrome, data["address"], data["return_address"], data["el"], data["far"], data["ipa"],
                   data["instruction"], data["vcpu"])


def exit_as_plain(exit, vcpu) -> dict:
    """A vlab.hyp.Exit as the plain data of an ExitView, with what a handler reads most: the vCPU's
    registers, its VM's devices, and the system register a trapped MRS or MSR names (each question
    the handler need not ask is a round trip between two processes saved)."""
    from vlab.arch.esr import SysRegAccess
    from vlab.arch.sysregs import BY_ENCODING

    sysregs = {}
    if exit.syndrome.ec is ExceptionClass.SYS64:
        register = BY_ENCODING.get(SysRegAccess.from_iss(exit.syndrome.iss).encoding)
        if register is not None and register.min_el <= 1:
            sysregs[register.name] = vcpu.read_sysreg(register.name)
    return {"ec": int(exit.syndrome.ec), "iss": exit.syndrome.iss, "il": exit.syndrome.il,
            "address": exit.address, "return_address": exit.return_address, "el": exit.el, "far": exit.far,
            "ipa": exit.ipa, "instruction": exit.instruction, "vcpu": exit.vcpu,
            "x": [vcpu.x(n) for n in range(31)], "sysregs": sysregs,
            "devices": [[d.name, d.base, d.size] for d in vcpu.vm.devices]}


@dataclass(frozen=True)
class DeviceView:
    name: str
    base: int
    size: int


class VcpuView:
    """The vCPU a handler is given; anything not in the handler's interface is an AttributeError saying so."""

    def __init__(self, exit: dict, ask: Ask):
        self._x, self._sysregs, self._ask, self.changes = list(exit["x"]), dict(exit["sysregs"]), ask, []
        self.platform = _PlatformView(self, [DeviceView(*d) for d in exit["devices"]])

    def x(self, n: int) -> int:
        n, = _arguments("x", [n], int)
        return 0 if _register(n) == 31 else self._x[n]

    def set_x(self, n: int, value: int) -> None:
        n, value = _arguments("set_x", [n, value], int, int)
        value = _value(f"set_x({n}, ...)", value)
        if _register(n) != 31:  # writes to the zero register are discarded
            self._x[n] = value
        self.changes.append(["set_x", n, value])

    def read_sysreg(self, name: str) -> int:
        name, = _arguments("read_sysreg", [name], str)
        name = _sysreg(name)
        return self._sysregs[name] if name in self._sysregs else self.ask("read_sysreg", [name])

    def write_sysreg(self, name: str, value: int) -> None:
        name, value = _arguments("write_sysreg", [name, value], str, int)
        self._sysregs.pop(_sysreg(name), None)  # what reads back is the register's business: ask it next time
        self.changes.append(["write_sysreg", _sysreg(name), _value(f"write_sysreg({name!r}, ...)", value)])

    def skip(self, exit: ExitView) -> None:
        if not isinstance(exit, ExitView):
            raise TypeError(f"vcpu.skip(exit) takes the exit your handler was given, not a {type(exit).__name__}")
        self.changes.append(["skip"])

    def ask(self, operation: str, args: list) -> Any:
        changes, self.changes = self.changes, []
        return self._ask(operation, args, changes)

    def __getattr__(self, name: str):
        raise AttributeError(f"a handler's vcpu has no {name!r}: it offers x, set_x, read_sysreg, write_sysreg, "
                             "skip, and platform.device_at and platform.mmio")


class _PlatformView:
    def __init__(self, vcpu: VcpuView, devices: list[DeviceView]):
        self._vcpu, self._devices = vcpu, devices

    def device_at(self, ipa: int | None) -> DeviceView | None:
        if ipa is not None and type(ipa) is not int:
            raise TypeError(f"device_at() takes an int IPA, not {type_name(ipa)}")
        return next((d for d in self._devices if ipa is not None and d.base <= ipa < d.base + d.size), None)

    def mmio(self, device: DeviceView, offset: int, size: int, value: int, is_write: bool) -> int:
        if not isinstance(device, DeviceView):
            raise TypeError(f"platform.mmio() takes a device from platform.device_at(), not a "
                            f"{type(device).__name__}")
        args = _mmio_arguments(self._devices, [device.name, offset, size, value, is_write])
        if is_write:
            self._vcpu.changes.append(["mmio", *args])
            return value
        return self._vcpu.ask("mmio", args)

    def __getattr__(self, name: str):
        raise AttributeError(f"a handler's vcpu.platform has no {name!r}: it offers device_at and mmio")


def _mmio_arguments(devices, args: list) -> list:
    name, offset, size, value, is_write = _arguments("mmio", args, str, int, int, int, bool)
    device = next((d for d in devices if d.name == name), None)
    if device is None:
        raise ValueError(f"mmio(): no device {name!r}")
    if size not in SIZES or not 0 <= offset <= device.size - size:
        raise ValueError(f"mmio(): {size} bytes at offset {offset:#x} is not an access to {name} "
                         f"({device.size:#x} bytes; sizes 1, 2, 4 or 8)")
    return [name, offset, size, _value("mmio(..., value, ...)", value), is_write]


def apply(vcpu, exit, changes: list) -> None:
    """Carry out, in order, the changes a handler asked of the real vCPU (vlab.hyp.VCpu) for `exit`.
    Raises TypeError or ValueError for one the interface does not allow (a forged request)."""
    if type(changes) is not list:
        raise ValueError("changes that are not a list")
    for change in changes:
        if type(change) is not list or not change or change[0] not in OPERATIONS[:4]:
            raise ValueError(f"no vCPU change {change!r}")
        perform(vcpu, exit, change[0], change[1:])


def perform(vcpu, exit, operation: str, args: list) -> Any:
    """One request of a handler, checked, on the real vCPU for the real exit; its answer as plain data."""
    if operation == "set_x":
        n, value = _arguments(operation, args, int, int)
        vcpu.set_x(_register(n), _value(f"set_x({n}, ...)", value))
    elif operation == "write_sysreg":
        name, value = _arguments(operation, args, str, int)
        vcpu.write_sysreg(_sysreg(name), _value(f"write_sysreg({name!r}, ...)", value))
    elif operation == "skip":
        vcpu.skip(exit)
    elif operation == "read_sysreg":
        name, = _arguments(operation, args, str)
        return vcpu.read_sysreg(_sysreg(name))
    elif operation == "mmio":
        name, offset, size, value, is_write = _mmio_arguments(vcpu.vm.devices, args)
        device = next(d for d in vcpu.vm.devices if d.name == name)
        return vcpu.platform.mmio(device, offset, size, value, is_write)
    else:
        raise ValueError(f"no vCPU operation {operation!r}")
    return None


def _arguments(operation: str, args: list, *types: type) -> list:
    """The arguments as exactly the types wanted: an int (an IntEnum member too, not a bool), a str,
    a bool (or 0 and 1); TypeError naming both otherwise."""
    def fits(value, wanted: type) -> bool:
        if wanted is int:
            return isinstance(value, int) and not isinstance(value, bool)
        if wanted is bool:
            return isinstance(value, bool) or type(value) is int and value in (0, 1)
        return isinstance(value, wanted)

    if len(args) != len(types) or not all(fits(a, t) for a, t in zip(args, types)):
        given = ", ".join(type_name(a) for a in args)
        wanted = ", ".join(t.__name__ for t in types)
        raise TypeError(f"{operation}() takes ({wanted}), not ({given})")
    return [{int: int.__int__, bool: bool, str: str.__str__}[t](a) for a, t in zip(args, types)]


def _register(n: int) -> int:
    if not 0 <= n <= 31:
        raise ValueError(f"there is no register x{n}: general-purpose registers are x0..x30, and 31 is the zero "
                         "register")
    return n


def _value(what: str, value: int) -> int:
    if not -(1 << 63) <= value <= _U64:
        raise ValueError(f"{what}: {value:#x} does not fit in a 64-bit register")
    return value & _U64


def _sysreg(name: str) -> str:
    """The register's name if a handler may touch it: the guest's own (EL0 and EL1), not EL2's or EL3's."""
    from vlab.arch.sysregs import lookup

    try:
        register = lookup(name)
    except KeyError as e:
        raise ValueError(e.args[0]) from None
    if register.min_el > 1:
        raise ValueError(f"{register.name} belongs to EL{register.min_el}: a handler emulates the guest's "
                         "own registers (EL0 and EL1)")
    return register.name

"""Xen's ARM hypercall ABI: the subset vlab serves, with Xen's own numbers.

A paravirtual guest asks the hypervisor for a service instead of touching the
hardware. On Arm, Xen's guests call it with (xen/include/public/arch-arm.h):

    HVC #0xEA1          the immediate is Xen's tag, XEN_HYPERCALL_TAG
    x16                 the hypercall number
    x0 .. x4            the arguments (a pointer is a guest address)
    x0                  the result: >= 0, or -errno (xen/include/public/errno.h)

The subset (numbers from xen/include/public/xen.h, sched.h, version.h; behaviour
from xen/common/kernel.c, sched/core.c and drivers/char/console.c):

    17 xen_version(cmd, arg)
         XENVER_version       0   -> (major << 16) | minor
         XENVER_extraversion  1   char[16] at arg <- the version suffix; 0, or -EFAULT
         XENVER_get_features  6   struct xen_feature_info {u32 submap_idx; u32 submap} at arg:
                                  submap 0 filled in; -EINVAL for another index; -EFAULT
         XENVER_pagesize      7   arg must be NULL (-EINVAL otherwise) -> 4096
         any other cmd            -ENOSYS
    18 console_io(cmd, count, buffer)
         CONSOLEIO_write      0   count bytes at buffer to the domain's console -> 0, or -EFAULT
                                  (copied in Xen's chunks of 127 bytes: those before a bad
                                  chunk are written, as Xen writes them)
         any other cmd            -ENOSYS (CONSOLEIO_read 1 is not served)
    29 sched_op(cmd, arg)
         SCHEDOP_yield        0   -> 0: the scheduler may run someone else
         SCHEDOP_block        1   -> 0: the vCPU sleeps until an event
         SCHEDOP_shutdown     2   struct sched_shutdown {u32 reason} at arg -> 0, or -EFAULT;
                                  reason SHUTDOWN_poweroff 0, reboot 1, suspend 2, crash 3,
                                  watchdog 4, soft_reset 5 (Xen keeps the low byte)
         any other cmd            -ENOSYS
    48 vlab_domain_info(cmd, arg, max)   vlab's own, NOT Xen's (see below)
         VLAB_DOMAIN_self     0   -> this domain's id
         VLAB_DOMAIN_list     1   up to max domid_t (u16) at arg -> how many domains exist;
                                  -EFAULT; -EINVAL if max is above DOMID_FIRST_RESERVED
         any other cmd            -ENOSYS
    any other number              -ENOSYS (-38), as Xen answers

Where vlab differs from Xen, on purpose:
* console_io: Xen serves it only to domains with console rights (the hardware
  domain, or every domain in a CONFIG_VERBOSE_DEBUG build), strips unprintable
  bytes and buffers a domU's text by line; vlab lets every domain write and
  passes the bytes on unchanged, as Xen does for the hardware domain.
* Xen has no hypercall that tells a guest its domain id: a domU reads it from
  XenStore, and the control domain lists domains with domctl/sysctl, whose
  structures change with every Xen release. vlab offers one small call in the
  range Xen reserves for architecture-specific hypercalls, which Xen on Arm
  leaves unused (__HYPERVISOR_arch_0 = 48): on a real Xen it answers -ENOSYS.
* Xen reads hypercall buffers at guest *virtual* addresses; vlab's vCPU reads at
  IPAs, which is the same for a guest running with its MMU off.
* Xen's debug builds clobber the argument registers after a call; vlab leaves
  them, which the ABI allows (a guest must not rely on either).
* An HVC whose immediate is neither 0 (PSCI, SMCCC) nor 0xEA1 is undefined for the
  guest, as Xen makes it (do_trap_hypercall: inject_undef_exception); vlab's ELR_EL1
  then points at the HVC, as for any undefined instruction, Xen's after it.
* vlab has no domain 0: its toolstack is the Python that builds the host. A VM's
  domain id is its place on its host, counting from 1 (`domain_id`).

Arguments are truncated to the C types of Xen's handlers (cmd and count are
32-bit), exactly as the compiled Xen sees them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Protocol

from vlab.arch.esr import ExceptionClass
from vlab.machine.board import StopReason

XEN_HYPERCALL_TAG = 0xEA1

# hypercall numbers (xen/include/public/xen.h)
HYPERVISOR_xen_version = 17
HYPERVISOR_console_io = 18
HYPERVISOR_sched_op = 29
HYPERVISOR_arch_0 = 48  # vlab_domain_info: vlab's own

XENVER_version, XENVER_extraversion, XENVER_get_features, XENVER_pagesize = 0, 1, 6, 7
CONSOLEIO_write = 0
SCHEDOP_yield, SCHEDOP_block, SCHEDOP_shutdown = 0, 1, 2
SHUTDOWN_poweroff, SHUTDOWN_reboot, SHUTDOWN_soft_reset = 0, 1, 5
SHUTDOWN_REASONS = {0: "poweroff", 1: "reboot", 2: "suspend", 3: "crash", 4: "watchdog", 5: "soft_reset"}
VLAB_DOMAIN_self, VLAB_DOMAIN_list = 0, 1
DOMID_FIRST_RESERVED = 0x7FF0

# errno values (xen/include/public/errno.h)
EFAULT, EINVAL, ENOSYS = 14, 22, 38

# What XENVER_version and XENVER_extraversion report: the Xen interface vlab follows.
XEN_MAJOR, XEN_MINOR, XEN_EXTRAVERSION = 4, 19, ".0-vlab"
PAGE_SIZE = 4096
CONSOLE_CHUNK = 127  # guest_console_write copies through a char[128] holding a NUL
CONSOLE_BLOCK = CONSOLE_CHUNK * 256  # vlab reads this many at once, chunk by chunk only on a fault
# XENVER_get_features submap 0 for an Arm guest under stage 2 (xen/include/public/features.h)
XENFEAT_writable_page_tables = 0
XENFEAT_auto_translated_physmap = 2
XENFEAT_memory_op_vnode_supported = 13
XENFEAT_ARM_SMCCC_supported = 14
XENFEAT_not_direct_mapped = 16
XENFEAT_runstate_phys_area = 18
ARM_FEATURES = sum(1 << bit for bit in (
    XENFEAT_writable_page_tables, XENFEAT_auto_translated_physmap, XENFEAT_memory_op_vnode_supported,
    XENFEAT_ARM_SMCCC_supported, XENFEAT_not_direct_mapped, XENFEAT_runstate_phys_area))

_U64 = (1 << 64) - 1


class XenVCpu(Protocol):
    """What a hypercall handler uses of a vCPU. read/write_memory raise ValueError outside the VM."""

    def x(self, n: int) -> int: ...
    def set_x(self, n: int, value: int) -> None: ...
    def read_memory(self, ipa: int, size: int) -> bytes: ...
    def write_memory(self, ipa: int, data: bytes) -> None: ...


@dataclass(frozen=True)
class XenServices:
    """What the hypervisor around the handlers provides; each returns a line for the trap log.

    console_write(vcpu, data)   the domain's console (what a run reports as its output)
    yield_(vcpu)                let the scheduler run another vCPU
    block(vcpu)                 put the vCPU to sleep until an event for it
    shutdown(vcpu, reason)      end the domain (SHUTDOWN_* reason)
    domain_id(vcpu)             the id of the vCPU's domain
    domain_ids(vcpu)            the ids of every domain on the vCPU's host
    """

    console_write: Callable[[XenVCpu, bytes], None]
    yield_: Callable[[XenVCpu], str]
    block: Callable[[XenVCpu], str]
    shutdown: Callable[[XenVCpu, int], str]
    domain_id: Callable[[XenVCpu], int]
    domain_ids: Callable[[XenVCpu], list[int]]


class _Fault(Exception):
    """A guest buffer vlab could not read or write: the call answers -EFAULT."""


def is_xen_hypercall(exit) -> bool:
    """Is this exit an HVC carrying Xen's tag? (HVC #0 is PSCI/SMCCC, for Xen as for vlab.)"""
    return exit.syndrome.ec is ExceptionClass.HVC64 and exit.syndrome.iss & 0xFFFF == XEN_HYPERCALL_TAG


def xen_handler(services: XenServices) -> Callable[[XenVCpu, object], str]:
    """A handler `handler(vcpu, exit) -> str` serving Xen hypercalls (HVC #0xEA1) with `services`.

    Route only exits for which `is_xen_hypercall` holds to it: Xen answers an HVC with
    another immediate by injecting an undefined-instruction exception, which is the
    dispatcher's job. The HVC has completed when the exit is taken: the guest resumes
    after it, with the result in x0.
    """

    def handle(vcpu: XenVCpu, exit) -> str:
        if not is_xen_hypercall(exit):
            raise ValueError(f"not a Xen hypercall (HVC #{XEN_HYPERCALL_TAG:#x}): {exit!r}")
        number = vcpu.x(16)
        call = HYPERCALLS.get(number)
        if call is None:
            vcpu.set_x(0, -ENOSYS & _U64)
            return f"hypercall {number} is not one vlab serves: x0 = -ENOSYS"
        try:
            result, action = call.serve(vcpu, services)
        except _Fault as fault:
            result, action = -EFAULT, f"{call.name}: {fault}: x0 = -EFAULT"
        vcpu.set_x(0, result & _U64)
        return action

    return handle


# --- the hypercalls -------------------------------------------------------------------


def _u32(value: int) -> int:
    return value & 0xFFFF_FFFF


def _read(vcpu: XenVCpu, address: int, size: int) -> bytes:
    try:
        return vcpu.read_memory(address, size)
    except ValueError:
        raise _Fault(f"{size} bytes at {address:#x} are outside the domain's memory") from None


def _write(vcpu: XenVCpu, address: int, data: bytes) -> None:
    try:
        vcpu.write_memory(address, data)
    except ValueError:
        raise _Fault(f"{len(data)} bytes at {address:#x} are outside the domain's memory") from None


def xen_version(vcpu: XenVCpu, services: XenServices) -> tuple[int, str]:
    cmd, arg = _u32(vcpu.x(0)), vcpu.x(1)
    if cmd == XENVER_version:
        return XEN_MAJOR << 16 | XEN_MINOR, f"xen_version: {XEN_MAJOR}.{XEN_MINOR}"
    if cmd == XENVER_extraversion:
        _write(vcpu, arg, XEN_EXTRAVERSION.encode().ljust(16, b"\0"))
        return 0, f"xen_version: extraversion {XEN_EXTRAVERSION!r} written at {arg:#x}"
    if cmd == XENVER_get_features:
        submap_idx, _ = struct.unpack("<II", _read(vcpu, arg, 8))
        if submap_idx != 0:
            return -EINVAL, f"xen_version: no feature submap {submap_idx}: x0 = -EINVAL"
        _write(vcpu, arg, struct.pack("<II", submap_idx, ARM_FEATURES))
        return 0, f"xen_version: features submap 0 = {ARM_FEATURES:#x}"
    if cmd == XENVER_pagesize:
        if arg != 0:
            return -EINVAL, "xen_version: pagesize takes no buffer: x0 = -EINVAL"
        return PAGE_SIZE, f"xen_version: page size {PAGE_SIZE}"
    return -ENOSYS, f"xen_version: command {cmd} is not served: x0 = -ENOSYS"


def console_io(vcpu: XenVCpu, services: XenServices) -> tuple[int, str]:
    cmd, count, buffer = _u32(vcpu.x(0)), _u32(vcpu.x(1)), vcpu.x(2)
    if cmd != CONSOLEIO_write:
        return -ENOSYS, f"console_io: command {cmd} is not served: x0 = -ENOSYS"
    written = 0
    while written < count:
        size = min(CONSOLE_BLOCK, count - written)
        data = _read_or_none(vcpu, buffer + written, size)
        if data is not None:
            services.console_write(vcpu, data)
        else:  # a bad byte in this block: copy it as Xen does, chunk by chunk, up to the bad chunk
            for start in range(written, written + size, CONSOLE_CHUNK):
                chunk = _read_or_none(vcpu, buffer + start, min(CONSOLE_CHUNK, written + size - start))
                if chunk is None:
                    raise _Fault(f"bytes {start}.. of the {count} at {buffer:#x} are outside the domain's memory")
                services.console_write(vcpu, chunk)
        written += size
    return 0, f"console_io: wrote {count} bytes from {buffer:#x}"


def _read_or_none(vcpu: XenVCpu, address: int, size: int) -> bytes | None:
    try:
        return _read(vcpu, address, size)
    except _Fault:
        return None


def sched_op(vcpu: XenVCpu, services: XenServices) -> tuple[int, str]:
    cmd, arg = _u32(vcpu.x(0)), vcpu.x(1)
    if cmd == SCHEDOP_yield:
        return 0, f"sched_op yield: {services.yield_(vcpu)}"
    if cmd == SCHEDOP_block:
        return 0, f"sched_op block: {services.block(vcpu)}"
    if cmd == SCHEDOP_shutdown:
        (reason,) = struct.unpack("<I", _read(vcpu, arg, 4))
        reason &= 0xFF  # domain_shutdown(d, (u8)reason)
        name = SHUTDOWN_REASONS.get(reason, f"reason {reason}")
        return 0, f"sched_op shutdown ({name}): {services.shutdown(vcpu, reason)}"
    return -ENOSYS, f"sched_op: command {cmd} is not served: x0 = -ENOSYS"


def vlab_domain_info(vcpu: XenVCpu, services: XenServices) -> tuple[int, str]:
    cmd, arg, most = _u32(vcpu.x(0)), vcpu.x(1), _u32(vcpu.x(2))
    if cmd == VLAB_DOMAIN_self:
        me = services.domain_id(vcpu)
        return me, f"vlab_domain_info: you are domain {me}"
    if cmd == VLAB_DOMAIN_list:
        if most > DOMID_FIRST_RESERVED:
            return -EINVAL, f"vlab_domain_info: room for {most} ids is more than domains can exist: x0 = -EINVAL"
        ids = sorted(services.domain_ids(vcpu))
        if most:
            _write(vcpu, arg, struct.pack(f"<{min(most, len(ids))}H", *ids[:most]))
        return len(ids), f"vlab_domain_info: {len(ids)} domains {ids}"
    return -ENOSYS, f"vlab_domain_info: command {cmd} is not served: x0 = -ENOSYS"


@dataclass(frozen=True)
class Hypercall:
    number: int
    name: str
    serve: Callable[[XenVCpu, XenServices], tuple[int, str]]
    xen: bool  # False: vlab's own extension


HYPERCALLS: dict[int, Hypercall] = {
    h.number: h for h in (
        Hypercall(HYPERVISOR_xen_version, "xen_version", xen_version, True),
        Hypercall(HYPERVISOR_console_io, "console_io", console_io, True),
        Hypercall(HYPERVISOR_sched_op, "sched_op", sched_op, True),
        Hypercall(HYPERVISOR_arch_0, "vlab_domain_info", vlab_domain_info, False),
    )
}


# --- the services, as vlab's hypervisor provides them to a vCPU in a VM ------------------------


def domain_id(vm) -> int:
    """A VM's Xen domain id: its place on its host, from 1 (vlab has no domain 0)."""
    return vm.index + 1


def _shutdown(vcpu, reason: int) -> str:
    """The domain ends: a reboot resets it, every other reason powers it off (vlab has no toolstack
    to keep a suspended or crashed domain for)."""
    name = SHUTDOWN_REASONS.get(reason, f"reason {reason}")
    stop = StopReason.RESET if reason in (SHUTDOWN_reboot, SHUTDOWN_soft_reset) else StopReason.POWERED_OFF
    vcpu.halt(stop, f"the guest asked Xen to shut its domain down ({name})")
    return f"domain {domain_id(vcpu.vm)} {'resets' if stop is StopReason.RESET else 'is powered off'}"


VM_SERVICES = XenServices(
    console_write=lambda vcpu, data: vcpu.platform.console(data),  # the VM's console: what its run reports as uart
    yield_=lambda vcpu: vcpu.yield_cpu(),
    block=lambda vcpu: vcpu.wait_for_interrupt(),
    shutdown=_shutdown,
    domain_id=lambda vcpu: domain_id(vcpu.vm),
    domain_ids=lambda vcpu: [domain_id(vm) for vm in vcpu.vm.host.vms],
)
serve = xen_handler(VM_SERVICES)  # what vlab.hyp.handlers.handle_hvc calls for HVC #0xEA1

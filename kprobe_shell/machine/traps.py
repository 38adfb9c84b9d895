"""Traps and faults: what the guest's exceptions become.

int3 and the debug trap go to the handlers registered in Machine.trap_handlers (the probe
engine's); a fault goes to Machine.fault_notifier (the kprobe fault path) and, when nobody
deals with it, stops the guest with a report that names it as the kernel's traps.c does.

The bad-access hooks (unmapped memory, writes to read-only memory, fetches from
non-executable memory) cover only the addresses where such a fault can happen, and never
writable memory: while any memory hook covers a page, unicorn 2.1.4 keeps every store to
it on the TLB's slow path for good (notdirty_write in qemu/accel/tcg/cputlb.c asks
uc_mem_hook_installed in qemu/include/exec/exec-all.h before it marks the page dirty),
where each store also looks for translated code to drop.  See bad_access_ranges.
"""
from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Iterable

from unicorn import (
    UC_ERR_FETCH_PROT,
    UC_HOOK_INSN_INVALID,
    UC_HOOK_INTR,
    UC_HOOK_MEM_FETCH_PROT,
    UC_HOOK_MEM_FETCH_UNMAPPED,
    UC_HOOK_MEM_READ_UNMAPPED,
    UC_HOOK_MEM_WRITE_PROT,
    UC_HOOK_MEM_WRITE_UNMAPPED,
    UC_MEM_FETCH_PROT,
    UC_MEM_FETCH_UNMAPPED,
    UC_MEM_READ_UNMAPPED,
    UC_MEM_WRITE_PROT,
    UC_MEM_WRITE_UNMAPPED,
    UC_PROT_EXEC,
    UC_PROT_WRITE,
    UcError,
)
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib

from .events import MachineError, StopEvent, StopReason
from .layout import PAGE_SIZE

if TYPE_CHECKING:
    from .machine import Machine
    from .smp import Cpu

#: Exception vectors reported by name, as the kernel's traps.c does.
FAULT_NAMES = {
    0: "divide error (#DE)", 1: "debug (#DB)", 3: "int3 (#BP)", 4: "overflow (#OF)",
    5: "bounds (#BR)", 6: "invalid opcode (#UD)", 7: "device not available (#NM)",
    8: "double fault (#DF)", 10: "invalid TSS (#TS)", 11: "segment not present (#NP)",
    12: "stack segment (#SS)", 13: "general protection (#GP)", 14: "page fault (#PF)",
    16: "x87 floating point (#MF)", 17: "alignment check (#AC)", 19: "SIMD floating point (#XM)",
}

#: uc_cb_hookintr_t: (uc, intno, user_data).
HOOK_INTR_CFUNC = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p)
#: uc_cb_eventmem_t: (uc, type, address, size, value, user_data) -> handled.
HOOK_BAD_ACCESS_CFUNC = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64,
                                         ctypes.c_int, ctypes.c_int64, ctypes.c_void_p)
_UNMAPPED = UC_HOOK_MEM_READ_UNMAPPED | UC_HOOK_MEM_WRITE_UNMAPPED | UC_HOOK_MEM_FETCH_UNMAPPED
_LAST_ADDRESS = (1 << 64) - 1

_ACCESS = {
    UC_MEM_READ_UNMAPPED: "read from unmapped memory",
    UC_MEM_WRITE_UNMAPPED: "write to unmapped memory",
    UC_MEM_FETCH_UNMAPPED: "execute from unmapped memory",
    UC_MEM_WRITE_PROT: "write to read-only memory",
    UC_MEM_FETCH_PROT: "execute from non-executable memory",
}
_REG_RIP = X.UC_X86_REG_RIP


def bad_access_ranges(regions: Iterable[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """The bad-access hooks for a memory map given as unicorn's mem_regions() (first, last,
    prot): (first, last, hook kinds) each, in address order.  The unmapped kinds cover the
    gaps between regions; UC_HOOK_MEM_WRITE_PROT the regions without write permission;
    UC_HOOK_MEM_FETCH_PROT those with neither write nor execute permission.  A fetch from
    writable, non-executable memory (a stack, data) has no hook: unicorn reports it all
    the same, and fetch_fault_address finds where it was.  unicorn checks a hook's bounds
    against the physical address (HOOK_BOUND_CHECK on paddr in cputlb.c), and the
    regions are physical memory."""
    kinds: list[tuple[int, int, int]] = []
    at = 0
    for first, last, prot in sorted(regions):
        if first > at:
            kinds.append((at, first - 1, _UNMAPPED))
        kind = 0
        if not prot & UC_PROT_WRITE:
            kind |= UC_HOOK_MEM_WRITE_PROT
            if not prot & UC_PROT_EXEC:
                kind |= UC_HOOK_MEM_FETCH_PROT
        kinds.append((first, last, kind))
        at = last + 1
    if at <= _LAST_ADDRESS:
        kinds.append((at, _LAST_ADDRESS, _UNMAPPED))
    merged: list[tuple[int, int, int]] = []
    for first, last, kind in kinds:
        if merged and merged[-1][2] == kind and merged[-1][1] + 1 == first:
            merged[-1] = (merged[-1][0], last, kind)
        else:
            merged.append((first, last, kind))
    return [r for r in merged if r[2]]


def fetch_fault_address(regions: Iterable[tuple[int, int, int]], rip: int) -> int:
    """Where a fetch from non-executable memory that no hook saw happened: at rip, unless
    rip is executable, then the translated block ran on into the next page (unicorn
    leaves rip at the start of the block it could not translate)."""
    for first, last, prot in regions:
        if first <= rip <= last:
            if prot & UC_PROT_EXEC:
                return (rip | (PAGE_SIZE - 1)) + 1
            break
    return rip


class Traps:
    """The CPUs' exception hooks, and the fault of the current run (what, where)."""

    def __init__(self, machine: "Machine") -> None:
        self.machine = machine
        #: (what, address or None) of a fault unicorn reported; None: no fault.
        self.fault: tuple[str, int | None] | None = None
        #: CPU index -> (ranges, handles) of its bad-access hooks (see cover_memory).
        self._bad_access_hooks: dict[int, tuple[list[tuple[int, int, int]], list[int]]] = {}
        self._bad_access_cb = HOOK_BAD_ACCESS_CFUNC(self.on_bad_access)  # one thunk for every CPU

    def install(self, cpu: "Cpu") -> None:
        uc = cpu.uc
        # Traps (int3, the debug trap) are a probe's hot path: a plain ctypes callback,
        # without the binding's two wrapper frames (see Machine.add_fast_code_hook).  It
        # works on the current CPU, the one that trapped: only one runs at a time.
        cpu.trap_cb = HOOK_INTR_CFUNC(self.on_trap)
        handle = ctypes.c_size_t()
        err = uclib.uc_hook_add(uc._uch, ctypes.byref(handle), UC_HOOK_INTR, ctypes.cast(cpu.trap_cb, ctypes.c_void_p),
                                None, ctypes.c_uint64(1), ctypes.c_uint64(0))
        if err:
            raise MachineError(f"could not install the interrupt hook (unicorn error {err})")
        self._bad_access_hooks[cpu.index] = ([], [])
        self._cover(cpu, bad_access_ranges(uc.mem_regions()))
        uc.hook_add(UC_HOOK_INSN_INVALID, self.on_invalid_insn)

    def cover_memory(self) -> None:
        """The machine mapped memory: every CPU's bad-access hooks follow the new map."""
        if self._bad_access_hooks:
            ranges = bad_access_ranges(self.machine.uc.mem_regions())
            for cpu in self.machine.cpus:
                if cpu.index in self._bad_access_hooks:
                    self._cover(cpu, ranges)

    def covered(self, cpu: "Cpu") -> list[tuple[int, int, int]]:
        """(first, last, hook kinds) of the CPU's bad-access hooks."""
        return list(self._bad_access_hooks[cpu.index][0])

    def _cover(self, cpu: "Cpu", ranges: list[tuple[int, int, int]]) -> None:
        uch = cpu.uc._uch
        covered, handles = self._bad_access_hooks[cpu.index]
        for handle in handles:
            uclib.uc_hook_del(uch, ctypes.c_size_t(handle))
        handles.clear()
        covered[:] = ranges
        callback = ctypes.cast(self._bad_access_cb, ctypes.c_void_p)
        for first, last, kind in ranges:
            handle = ctypes.c_size_t()
            err = uclib.uc_hook_add(uch, ctypes.byref(handle), kind, callback, None,
                                    ctypes.c_uint64(first), ctypes.c_uint64(last))
            if err:
                raise MachineError(f"could not install the bad-access hooks (unicorn error {err})")
            handles.append(handle.value)

    def on_trap(self, _uch, intno: int, _data) -> None:
        """unicorn's interrupt hook: int3, the debug trap, or a fault the CPU raised."""
        machine = self.machine
        try:
            clock = machine.clock
            clock.counter.if_may_rise = 1  # the trap's handler may change IF (see _clock.c)
            if intno not in (1, 3):
                # A fault in the middle of a block (#DE, say) ends it there: count exactly.
                # (Traps end their block: rip is past it.)
                clock.settle(machine.uc.reg_read(_REG_RIP), True)
            if machine.userspace is not None and machine.userspace.user_mode():
                # uprobes first (arch_uprobe_exception_notify), else the program's kernel
                notify = machine.userspace.trap_notifier
                if notify is None or not notify(machine, intno):
                    machine.userspace.enter_trap(intno)
                return
            handler = machine.trap_handlers.get(intno)
            if handler is not None and handler(machine):
                return
            if intno not in (1, 3) and self.notify_fault(intno):
                return
            rip = machine.uc.reg_read(_REG_RIP)
            if intno == 3:
                where = machine.image.symbols.format(rip - 1)
                msg = f"int3 at {where} that no probe owns (a guest breakpoint with no debugger)"
            else:
                msg = FAULT_NAMES.get(intno, f"exception vector {intno}")
                if intno == 14 and machine.userspace is not None:
                    msg += machine.userspace.kernel_page_fault(rip)
            machine.stop_guest(machine.stop_event(StopReason.FAULT, msg, details={"vector": intno}))
        except BaseException as exc:  # noqa: BLE001 - stop the guest, run() raises it
            machine.hook_failed(exc)

    def on_bad_access(self, _uch, access: int, address: int, _size, _value, _data) -> bool:
        self.fault = (_ACCESS.get(access, f"bad memory access ({access})"), address)
        return False

    def note_error(self, exc: UcError) -> None:
        """emu_start failed: the fault it names, where no hook saw it (a fetch from
        writable, non-executable memory, see bad_access_ranges)."""
        if self.fault is None and exc.errno == UC_ERR_FETCH_PROT:
            uc = self.machine.uc
            self.fault = (_ACCESS[UC_MEM_FETCH_PROT], fetch_fault_address(uc.mem_regions(), uc.reg_read(_REG_RIP)))

    def on_invalid_insn(self, _uc, _data) -> bool:
        self.fault = (FAULT_NAMES[6], None)
        return False

    def notify_fault(self, trapnr: int) -> bool:
        """Offer the fault to the machine's fault notifier; True: it dealt with it."""
        machine = self.machine
        if machine.fault_notifier is not None and machine.fault_notifier(machine, trapnr):
            self.fault = None
            return True
        return False

    def fault_event(self, exc: UcError | None) -> StopEvent:
        """The stop event of the fault unicorn reported (or of exc, when it named none)."""
        machine = self.machine
        if self.fault is not None:
            what, address = self.fault
        else:
            what, address = (str(exc) if exc else "fault"), None
        rip = machine.rip
        if address is not None:
            what = f"{what} at 0x{address:x}"
            rsp = machine.reg("rsp")
            if address < rsp and rsp - address <= 2 * PAGE_SIZE and "write" in what:
                what += " (just below rsp: a stack overflow?)"
        self.fault = None
        return machine.stop_event(StopReason.FAULT, what, fault_address=address, rip=rip)

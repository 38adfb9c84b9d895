"""Traps and faults: what the guest's exceptions become.

int3 and the debug trap go to the handlers registered in Machine.trap_handlers (the probe
engine's); a fault goes to Machine.fault_notifier (the kprobe fault path) and, when nobody
deals with it, stops the guest with a report that names it as the kernel's traps.c does.
"""
from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING

from unicorn import (
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
    Uc,
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

_ACCESS = {
    UC_MEM_READ_UNMAPPED: "read from unmapped memory",
    UC_MEM_WRITE_UNMAPPED: "write to unmapped memory",
    UC_MEM_FETCH_UNMAPPED: "execute from unmapped memory",
    UC_MEM_WRITE_PROT: "write to read-only memory",
    UC_MEM_FETCH_PROT: "execute from non-executable memory",
}
_REG_RIP = X.UC_X86_REG_RIP


class Traps:
    """The CPUs' exception hooks, and the fault of the current run (what, where)."""

    def __init__(self, machine: "Machine") -> None:
        self.machine = machine
        #: (what, address or None) of a fault unicorn reported; None: no fault.
        self.fault: tuple[str, int | None] | None = None

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
        uc.hook_add(
            UC_HOOK_MEM_READ_UNMAPPED | UC_HOOK_MEM_WRITE_UNMAPPED | UC_HOOK_MEM_FETCH_UNMAPPED
            | UC_HOOK_MEM_WRITE_PROT | UC_HOOK_MEM_FETCH_PROT,
            self.on_bad_access,
        )
        uc.hook_add(UC_HOOK_INSN_INVALID, self.on_invalid_insn)

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
            machine.stop_guest(machine.stop_event(StopReason.FAULT, msg, details={"vector": intno}))
        except BaseException as exc:  # noqa: BLE001 - stop the guest, run() raises it
            machine.hook_failed(exc)

    def on_bad_access(self, uc: Uc, access: int, address: int, size: int, value: int, user_data) -> bool:
        self.fault = (_ACCESS.get(access, f"bad memory access ({access})"), address)
        return False

    def on_invalid_insn(self, uc: Uc, user_data) -> bool:
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

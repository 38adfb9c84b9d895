"""Interrupt delivery: each CPU's local timer and the guest's IDT.

The timer ticks every `timer_period` instructions of the CPU's own clock.  A tick that
finds interrupts off is held (as the local APIC keeps it pending) and retried every
IRQ_RETRY instructions; one that finds them on enters the guest's handler through its IDT
gate, with the interrupt frame the CPU would push.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from unicorn import x86_const as X

from . import capi
from .events import MachineError, StopEvent, StopReason
from .layout import EFLAGS_IF, EFLAGS_TF, TIMER_VECTOR

if TYPE_CHECKING:
    from .machine import Machine

#: A tick that finds interrupts off is retried this many instructions later.
IRQ_RETRY = 16
_REG_EFLAGS = X.UC_X86_REG_EFLAGS


class Interrupts:
    """Delivers the current CPU's timer interrupt, through the guest's IDT."""

    def __init__(self, machine: "Machine") -> None:
        self.machine = machine

    def timer_tick(self) -> StopEvent | None:
        """The count reached the next tick: deliver it, or hold it until IF is set.  Returns
        a stop event when the CPU cannot take the interrupt at all (a triple fault)."""
        machine = self.machine
        cpu = machine.cpu
        retired = cpu.icount.retired
        if retired < cpu.next_tick:
            return None
        if not capi.reg_read(cpu.uch, _REG_EFLAGS) & EFLAGS_IF:
            # Interrupts are off: the tick is held and looked at again a few instructions
            # later.  The clock's block hook skips the retries it knows would fail (see
            # _clock.c).
            cpu.next_tick = retired + IRQ_RETRY
            cpu.irq_waiting = True
            return None
        cpu.irq_waiting = False
        if shutdown := self.frame_problem(TIMER_VECTOR):
            return machine.stop_event(StopReason.FAULT, shutdown,
                                      details={"vector": TIMER_VECTOR, "triple_fault": True})
        # Delivered, or dropped when the guest has no timer vector (it never set one up).
        self.deliver(TIMER_VECTOR)
        while cpu.next_tick <= retired:
            cpu.next_tick += machine.timer_period
        return None

    def frame_problem(self, vector: int) -> str | None:
        """Why the CPU could not push an interrupt frame, if it could not.

        With the stack pointer in unmapped memory, pushing the frame page-faults, the #PF
        cannot be delivered on that stack either (#DF), and the CPU shuts down: a triple
        fault.
        """
        machine = self.machine
        if machine.userspace is not None and machine.userspace.user_mode():
            return None  # the trap gate switches to the kernel stack
        rsp = capi.reg_read(machine.uch, X.UC_X86_REG_RSP)
        frame_at = ((rsp & ~0xF) - 40) & 0xFFFFFFFFFFFFFFFF
        if machine.is_mapped(frame_at, 40) or self.idt_gate(vector) is None:
            return None
        return (f"triple fault: the timer interrupt (vector 0x{vector:x}) cannot be delivered: its frame "
                f"would go to 0x{frame_at:x} (rsp 0x{rsp:x}), which is not mapped memory "
                "(#PF while delivering, then #DF: the CPU shuts down)")

    def timer_vector_present(self) -> bool:
        return self.idt_gate(TIMER_VECTOR) is not None

    def idtr(self) -> tuple[int, int]:
        """(base, limit) of the current CPU's IDT register; limit 0: no IDT loaded."""
        _sel, base, limit, _flags = self.machine.uc.reg_read(X.UC_X86_REG_IDTR)
        return base, limit

    def idt_gate(self, vector: int) -> tuple[int, int] | None:
        """(handler, gate type) of an IDT entry, or None when the guest has none."""
        base, limit = self.idtr()
        if limit < vector * 16 + 15:
            return None
        try:
            gate = self.machine.read(base + vector * 16, 16)
        except MachineError:
            return None
        lo, sel, ist, attr, mid, hi, _ = struct.unpack("<HHBBHII", gate)
        if not attr & 0x80:
            return None
        return lo | (mid << 16) | (hi << 32), attr & 0xF

    def deliver(self, vector: int) -> bool:
        """Enter the guest's handler as the CPU would: an iretq frame on an aligned stack.
        At CPL 3 through the user-space kernel's trap gate (it set its IDT up before it
        ran any program): every tick of a program comes here, so its IDT is not read."""
        machine = self.machine
        if machine.userspace is not None and machine.userspace.user_mode():
            return machine.userspace.enter_trap(vector)
        gate = self.idt_gate(vector)
        if gate is None:
            return False
        handler, gate_type = gate
        uch = machine.uch
        read, write = capi.reg_read, capi.reg_write  # every tick in the kernel comes here
        rsp = read(uch, X.UC_X86_REG_RSP)
        rflags = read(uch, X.UC_X86_REG_EFLAGS)
        frame = struct.pack("<5Q", read(uch, X.UC_X86_REG_RIP), read(uch, X.UC_X86_REG_CS), rflags, rsp,
                            read(uch, X.UC_X86_REG_SS))
        new_rsp = (rsp & ~0xF) - len(frame)
        machine.write(new_rsp, frame)
        write(uch, X.UC_X86_REG_RSP, new_rsp)
        if gate_type == 0xE:  # interrupt gate: IF off on entry; trap gates leave it
            rflags &= ~EFLAGS_IF
        write(uch, X.UC_X86_REG_EFLAGS, rflags & ~EFLAGS_TF)
        write(uch, X.UC_X86_REG_RIP, handler)
        return True

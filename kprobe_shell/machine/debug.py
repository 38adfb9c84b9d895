"""Debugger support: data watchpoints and running one CPU alone.

For a debugger attached to the machine (the gdb remote stub, kprobe_shell/gdbstub).  None of
it costs anything until used: a watchpoint is a unicorn memory hook on the watched range only.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from unicorn import UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UC_MEM_WRITE, Uc

from . import capi
from .events import MachineError, StopEvent, StopReason
from .smp import CpuState

if TYPE_CHECKING:
    from .machine import Machine


class Debugger:
    """What a debugger asks of one machine (Machine.debug)."""

    def __init__(self, machine: "Machine") -> None:
        self.machine = machine
        #: Writes a watchpoint stopped before they were undone: (address, old bytes).
        self._watched_writes: list[tuple[int, bytes]] | None = None

    def add_memory_watch(self, begin: int, end: int, *, reads: bool, writes: bool,
                         callback: Callable[[bool, int, int], bool]) -> int:
        """Watch the guest's accesses to [begin, end) on every CPU, as x86's debug registers
        do (DR7's R/W bits); returns a handle for Machine.remove_hook.

        callback(is_write, address, size) is called for each access that overlaps the
        range.  When it returns True the guest stops at the accessing instruction, which
        has not completed (unicorn cannot stop between an access and the end of its
        instruction): rip is at it, the clock has not counted it, and a write's bytes are
        put back as they were.  The event's details["watch"] is (is_write, address, size);
        a debugger finishes the instruction with run(1) while its callback says False and
        reports the stop after it, trap-like, as the CPU's #DB does."""
        m = self.machine
        kinds = (UC_HOOK_MEM_READ if reads else 0) | (UC_HOOK_MEM_WRITE if writes else 0)
        if self._watched_writes is None:
            self._watched_writes = []
            m.after_run.insert(0, self._put_back_watched_writes)

        def on_access(uc: Uc, access: int, address: int, size: int, _value: int, _data) -> None:
            if not (address < end and begin < address + size):
                return
            is_write = access == UC_MEM_WRITE
            if not callback(is_write, address, size):
                return
            rip = m.rip
            if is_write:
                # unicorn stores the bytes after this hook, then stops: put back after the run.
                self._watched_writes.append((address, bytes(uc.mem_read(address, size))))
            m.clock.settle(rip, False)
            m.stop_guest(m.stop_event(StopReason.BREAKPOINT, "watchpoint", rip=rip,
                                      details={"watch": (is_write, address, size)}))

        hooks = [(cpu.uc, cpu.uc.hook_add(kinds, on_access, None, max(0, begin - 7), end - 1)) for cpu in m.cpus]
        return m.register_hooks(hooks)

    def _put_back_watched_writes(self, _event: StopEvent) -> None:
        while self._watched_writes:
            address, old = self._watched_writes.pop()
            capi.mem_write(self.machine.uch, address, old)

    def take_stop_request(self) -> bool:
        """Was request_stop() called since the last run ended (or while stopped)?  Clears
        it.  A debugger stub waiting for its client polls this, so that the prompt's
        Ctrl-C, which asks the machine to stop, ends the wait."""
        m = self.machine
        if m.running:
            return False
        asked, m.stop_requested = m.stop_requested, False
        return asked

    def run_alone(self, index: int, max_insns: int | None = None) -> StopEvent:
        """run() with only CPU index running and the others held where they are (their clocks
        stand still), as a debugger steps one vCPU.  The next plain run() starts with it."""
        m = self.machine
        if not 0 <= index < m.ncpus:
            raise MachineError(f"no CPU {index} (the machine has {m.ncpus})")
        if m.ncpus == 1:
            return m.run(max_insns)
        if m.cpus[index].state is not CpuState.ONLINE:
            raise MachineError(f"CPU {index} cannot run: {m.cpus[index].state.value}")
        held = [c for c in m.cpus if c.index != index and c.state is CpuState.ONLINE]
        for cpu in held:
            cpu.state = CpuState.PARKED
        if not m.running:
            m.smp.turn = index
            m.switch_cpu(m.cpus[index])
        try:
            event = m.run(max_insns)
        finally:
            for cpu in held:
                if cpu.state is CpuState.PARKED:
                    cpu.state = CpuState.ONLINE
        if event.reason is StopReason.HALTED and held:
            # Only the stepped CPU parked: the machine as a whole goes on.
            m.halted = False
            event = m.stop_event(StopReason.BUDGET, f"CPU {index} parked (hlt with interrupts off)")
            m.last_stop = event
        return event

"""SMP: the machine's CPUs, their start-up and their scheduling.

unicorn has no multi-CPU mode (a `uc_engine` is one QEMU vCPU), so each CPU is a unicorn
instance of its own, all mapping the same host buffers (see Machine._map).  The CPUs run
in turn, a fixed quantum of instructions each by their own instruction clocks (round
robin, CPU 0 first), so a run is deterministic: the interleaving depends only on the
quantum, the timer period and the guest.  Application processors wait for the start-up
IPI the guest sends through SMP_STARTUP_PORT; a CPU that executes hlt with interrupts off
is parked and never runs again.
"""
from __future__ import annotations

import enum
import struct
from typing import TYPE_CHECKING

from unicorn import Uc
from unicorn import x86_const as X

from .clock import InstructionClock
from .events import MachineError, StopEvent, StopReason
from .registers import GENERAL_REGISTERS, REGISTERS

if TYPE_CHECKING:
    from .machine import Machine

#: Machine._run_cpu's answers to the scheduler besides a StopEvent: the CPU's quantum is
#: over (or given up), or it parked in `cli; hlt`.
QUANTUM_OVER = None
PARKED = object()


class CpuState(enum.Enum):
    WAIT_FOR_SIPI = "wait-for-sipi"  # an AP not started yet (the guest has not sent its startup IPI)
    ONLINE = "online"                # running, or idle in `sti; hlt` waiting for its timer
    PARKED = "parked"                # executed hlt with interrupts off: it never runs again


class Cpu:
    """One virtual CPU: its unicorn instance (registers, IDTR, GS_BASE, translation cache,
    hooks), its instruction clock and its local timer."""

    def __init__(self, index: int, uc: Uc, clock: InstructionClock, state: CpuState):
        self.index = index
        self.uc = uc
        self.clock = clock
        self.icount = clock.counter  # the clock's struct icount
        self.state = state
        self.next_tick = 0
        self.irq_waiting = False  # its timer ticked with interrupts off: retry every IRQ_RETRY
        self.uch = clock.uch  # the uc_engine pointer, for the C accessors
        self.trap_cb = None  # the ctypes interrupt hook (kept alive with the CPU)

    def registers(self) -> dict[str, int]:
        """Its general registers (whether it is the current CPU or not)."""
        read = self.uc.reg_read
        return {name: read(REGISTERS[name]) for name in GENERAL_REGISTERS}

    def __repr__(self) -> str:
        return f"<Cpu {self.index} {self.state.value} at {self.icount.retired}>"


class Scheduler:
    """Whose turn it is and where the current round of quanta ends (machine state, so a run
    stopped part way and resumed interleaves exactly as one that never stopped)."""

    def __init__(self, machine: "Machine", quantum: int) -> None:
        self.machine = machine
        self.quantum = quantum
        self.turn = 0
        self.round_end = quantum
        #: Set by end_quantum() from a trap handler; the run loop ends the CPU's turn.
        self.quantum_given_up = False

    def run(self, budget_end: int | None) -> StopEvent:
        """Each online CPU in turn runs until its clock reaches the end of the current round
        (round_end, a multiple of the quantum), then the next; when the last CPU has had its
        turn the round ends one quantum later."""
        machine = self.machine
        cpus = machine.cpus
        while True:
            if machine.stop_requested:
                return machine.stop_event(StopReason.INTERRUPTED, "stopped by request (Ctrl-C)")
            cpu = cpus[self.turn]
            if cpu.state is CpuState.ONLINE:
                machine.switch_cpu(cpu)
                result = machine.run_cpu(budget_end, self.round_end)
                if result is PARKED:
                    cpu.state = CpuState.PARKED
                    if not any(c.state is CpuState.ONLINE for c in cpus):
                        return machine.stop_event(
                            StopReason.HALTED, "hlt with interrupts off on every CPU: the machine halted")
                elif result is not QUANTUM_OVER:
                    return result
            self.turn += 1
            if self.turn == len(cpus):
                self.turn = 0
                self.round_end += self.quantum

    def end_quantum(self) -> None:
        """From a trap handler: this CPU gives up the rest of its quantum, and the other CPUs
        run theirs before it goes on (the stepping CPU of an in-place single-step, a CPU
        waiting for the kprobe lock).  Its clock stays where it stopped: it is not
        scheduled meanwhile, like a vCPU its host does not run, and it makes the instructions
        up in its next quantum, which ends at the next round's end as every CPU's does.  One
        CPU: nothing else could run, so this does nothing."""
        if self.machine.ncpus == 1:
            return
        self.quantum_given_up = True
        self.machine.stop_cpu()

    def start_secondary(self, params_addr: int, now: int) -> None:
        """The startup IPI (INIT/SIPI): the guest wrote struct ap_boot_params { u64 cpu, rip,
        rsp, gs_base } and sent its address to SMP_STARTUP_PORT at clock `now`.  The AP
        starts in the boot state at rip with its own stack and per-CPU data area; its clock
        starts at the sender's time and its local timer one period later."""
        machine = self.machine
        try:
            index, rip, rsp, gs_base = struct.unpack("<4Q", machine.read(params_addr, 32))
        except MachineError:
            return
        if not 0 < index < machine.ncpus or machine.cpus[index].state is not CpuState.WAIT_FOR_SIPI:
            return  # no such CPU, or already started: a real APIC ignores it too
        cpu = machine.cpus[index]
        uc = cpu.uc
        uc.reg_write(X.UC_X86_REG_RIP, rip)
        uc.reg_write(X.UC_X86_REG_RSP, rsp)
        uc.reg_write(X.UC_X86_REG_GS_BASE, gs_base)
        uc.reg_write(X.UC_X86_REG_EFLAGS, 0x2)
        cpu.icount.retired = now
        cpu.next_tick = now + machine.timer_period
        cpu.state = CpuState.ONLINE

    def cpu_current_task(self, index: int) -> int:
        """The task_struct pointer CPU index runs (its %gs:pcurrent), 0 if it has none."""
        machine = self.machine
        cpu = machine.cpus[index]
        if cpu.state is CpuState.WAIT_FOR_SIPI:
            return 0
        if not machine.tasks.has_kernel_tasks:
            return machine.tasks.current_address() if index == 0 else 0
        try:
            return machine.read_u64(cpu.uc.reg_read(X.UC_X86_REG_GS_BASE))
        except MachineError:
            return 0

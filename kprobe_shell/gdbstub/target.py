"""What gdb drives: the session's machine, its CPUs as threads, gdb's breakpoints and
watchpoints, and running the guest until something stops it.

gdb's breakpoints are exact-address code hooks, not int3 bytes written into guest memory:
memory stays what the guest and the probe engine made it (`x/i` at a probed address shows
the int3 or the jmp that is really there).  On an instruction that holds a kprobe's int3,
the order is the kernel's die notifier chain for int3 (arch/x86/kernel/traps.c do_int3 ->
notify_die): kprobes' notifier first (kprobe_exceptions_notify runs the pre_handler and
sets up the single-step), then the debugger's, so gdb stops with the probe's handler done
and its step pending; the pc gdb sees is the probed address (the slot is the tool's).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..machine import MachineError, StopEvent, StopReason
from ..machine.layout import RESERVED_BASE, RESERVED_END
from .registers import REGISTERS, RIP, read_register, write_register

#: Signals in stop replies (gdb's numbering: include/gdb/signals.def).
SIGINT, SIGILL, SIGTRAP, SIGFPE, SIGSEGV = 2, 4, 5, 8, 11
_FAULT_SIGNALS = {0: SIGFPE, 6: SIGILL, 16: SIGFPE, 19: SIGFPE}
_WATCH_KINDS = {2: ("watch", False, True), 3: ("rwatch", True, False), 4: ("awatch", True, True)}
BREAKPOINT_INSN = 0xCC


class TargetError(Exception):
    """A request the target refuses; the text goes to gdb as an error reply's reason."""


@dataclass
class Watchpoint:
    kind: int  # 2 write, 3 read, 4 access (Z2-Z4)
    addr: int
    length: int
    handle: int


class GdbTarget:
    """The session's machine as gdb's remote target (all-stop: one run stops every CPU)."""

    def __init__(self, session) -> None:
        self.session = session
        self.machine = session.machine
        self.breakpoints: dict[tuple[int, int], int] = {}  # (type 0/1, addr) -> hook handle
        self.watchpoints: dict[tuple[int, int, int], Watchpoint] = {}
        self.watch_muted = False
        #: A kprobe's int3 gdb stepped over by writing pc (see write_register).
        self.int3_skipped: int | None = None
        self._pass_once: int | None = None
        self.last_stop: str = ""
        self.stopped_thread = self.machine.cpu_id + 1
        self._kprobe_int3 = None
        self._kprobe_debug = None
        self._finishing_probe_step = False

    # ------------------------------------------------------------------ attach / detach
    def attach(self) -> None:
        """Chain the debugger after kprobes on the int3 trap (see the module's docstring)."""
        m = self.machine
        self._kprobe_int3 = m.trap_handlers.get(3)
        m.trap_handlers[3] = self._int3_notifier_chain
        self._kprobe_debug = m.trap_handlers.get(1)
        m.trap_handlers[1] = self._debug_notifier_chain
        self.last_stop = self._stop_reply_for_signal(SIGTRAP)

    def detach(self) -> None:
        """Take every breakpoint and watchpoint out and give the int3 trap back to kprobes."""
        m = self.machine
        for handle in list(self.breakpoints.values()):
            m.remove_hook(handle)
        for wp in list(self.watchpoints.values()):
            m.remove_hook(wp.handle)
        self.breakpoints.clear()
        self.watchpoints.clear()
        for vector, mine, theirs in ((3, self._int3_notifier_chain, self._kprobe_int3),
                                     (1, self._debug_notifier_chain, self._kprobe_debug)):
            if m.trap_handlers.get(vector) == mine:
                if theirs is None:
                    del m.trap_handlers[vector]
                else:
                    m.trap_handlers[vector] = theirs

    def follow_machine(self) -> None:
        """After a `monitor reset` or `monitor load` the session has a new machine: gdb's
        breakpoints were on the old one."""
        if self.session.machine is not self.machine:
            self.breakpoints.clear()
            self.watchpoints.clear()
            self.machine = self.session.machine
            self.attach()

    # ------------------------------------------------------------------ threads
    def threads(self) -> list[int]:
        """gdb thread ids: CPU n is thread n + 1, as QEMU numbers its vCPUs."""
        return [cpu.index + 1 for cpu in self.machine.cpus]

    def cpu_of(self, thread: int) -> int:
        """The CPU a thread id names (0 and -1, gdb's "any" and "all", are the stopped one)."""
        if thread in (0, -1):
            return self.stopped_thread - 1
        if thread - 1 not in range(self.machine.ncpus):
            raise TargetError(f"no thread {thread}")
        return thread - 1

    def thread_extra_info(self, thread: int) -> str:
        m = self.machine
        cpu = m.cpus[self.cpu_of(thread)]
        state = {"online": "running", "parked": "halted", "wait-for-sipi": "waiting for SIPI"}[cpu.state.value]
        task = m.tasks.read_task(m.smp.cpu_current_task(cpu.index)) if cpu.state.value != "wait-for-sipi" else None
        return f"CPU#{cpu.index} [{state}]" + (f" {task.label}" if task else "")

    # ------------------------------------------------------------------ registers and memory
    def read_registers(self, thread: int) -> list[bytes]:
        index = self.cpu_of(thread)
        uc = self.machine.cpus[index].uc
        regs = [read_register(uc, n) for n in range(len(REGISTERS))]
        regs[RIP] = self._shown_rip(index).to_bytes(8, "little")
        return regs

    def _shown_rip(self, index: int) -> int:
        """rip as gdb should see it: a CPU stepping a probed instruction's copy in the
        tool's pages is at the probed instruction, as far as the guest's code goes."""
        return self.machine.guest_address(self.machine.cpus[index].uc.reg_read(REGISTERS[RIP].uc_id))

    def write_register(self, thread: int, number: int, data: bytes) -> None:
        if not 0 <= number < len(REGISTERS) or len(data) != REGISTERS[number].size:
            raise TargetError("no such register, or the value has the wrong size")
        index = self.cpu_of(thread)
        uc = self.machine.cpus[index].uc
        if read_register(uc, number) == data:
            return  # unchanged (gdb's G rewrites every register)
        shown = self._shown_rip(index)
        if number == RIP and shown.to_bytes(8, "little") == data:
            return  # the probed address shown for a copy being stepped: leave the copy be
        if number == RIP and int.from_bytes(data, "little") == shown + 1 and self._kprobe_owns(shown):
            # gdb takes a kprobe's int3 under its breakpoint for the program's own
            # ("permanent") breakpoint and steps over it by moving pc past the int3.  The
            # instruction under it is real: it runs at the next resume instead.
            self.int3_skipped = shown
            return
        if self.machine.kprobes.kprobe_running() and number == RIP:
            raise TargetError("a probe is being stepped on this CPU; step or continue first")
        try:
            write_register(uc, number, data)
        except Exception as exc:  # noqa: BLE001 - unicorn refuses some segment values
            raise TargetError(f"cannot set {REGISTERS[number].name}: {exc}") from None

    def read_memory(self, addr: int, length: int) -> bytes:
        """Guest memory as it is (planted int3s and jmps included); short at a hole."""
        m = self.machine
        try:
            return m.read(addr, length)
        except MachineError:
            pass
        out = bytearray()
        while len(out) < length:  # up to the first unmapped page
            chunk = min(length - len(out), 0x1000 - ((addr + len(out)) & 0xFFF))
            try:
                out += m.read(addr + len(out), chunk)
            except MachineError:
                break
        if not out:
            raise TargetError(f"cannot read memory at 0x{addr:x}")
        return bytes(out)

    def write_memory(self, addr: int, data: bytes) -> None:
        m = self.machine
        if addr < RESERVED_END and RESERVED_BASE < addr + len(data):
            raise TargetError("the tool's own pages (instruction slots, detours) are not the guest's to change")
        probed = set(m.kprobes.planted()) | set(m.kprobes.optimizer.replaced_bytes())
        if any(addr <= a < addr + len(data) for a in probed):
            raise TargetError("a probe's int3 or jmp is planted there; unregister the probe first")
        try:
            m.write(addr, data)
        except MachineError as exc:
            raise TargetError(str(exc)) from None

    # ------------------------------------------------------------------ breakpoints
    def insert(self, kind: int, addr: int, length: int) -> None:
        if kind in (0, 1):
            self._insert_breakpoint(kind, addr)
        elif kind in _WATCH_KINDS:
            self._insert_watchpoint(kind, addr, length)
        else:
            raise NotImplementedError

    def remove(self, kind: int, addr: int, length: int) -> None:
        if kind in (0, 1):
            handle = self.breakpoints.pop((kind, addr), None)
            if handle is not None:
                self.machine.remove_hook(handle)
        elif kind in _WATCH_KINDS:
            wp = self.watchpoints.pop((kind, addr, length), None)
            if wp is not None:
                self.machine.remove_hook(wp.handle)
        else:
            raise NotImplementedError

    def _insert_breakpoint(self, kind: int, addr: int) -> None:
        if (kind, addr) in self.breakpoints:
            return
        m = self.machine
        if RESERVED_BASE <= addr < RESERVED_END:
            raise TargetError("the tool's own pages cannot hold a breakpoint")
        if not m.is_mapped(addr):
            raise TargetError(f"0x{addr:x} is not mapped")

        def on_reach(machine) -> None:
            if self._kprobe_owns(addr):
                return  # kprobes' notifier runs first: the int3 path stops (see _int3_notifier_chain)
            if self._passing(addr):
                return
            machine.clock.uncount_current()  # the instruction runs after we go on, counted then
            self._stop(machine, "swbreak" if kind == 0 else "hwbreak", addr)

        self.breakpoints[(kind, addr)] = m.add_code_hook(addr, on_reach)

    def _passing(self, addr: int) -> bool:
        """The guest resumes at addr past a breakpoint gdb stepped over: not again now."""
        if self._pass_once != addr:
            return False
        self._pass_once = None
        return True

    def _kprobe_owns(self, addr: int) -> bool:
        m = self.machine
        return m.kprobes.get_kprobe(addr) is not None and m.read(addr, 1)[0] == BREAKPOINT_INSN

    def _int3_notifier_chain(self, machine) -> bool:
        """int3: kprobes' notifier, then the debugger's when a gdb breakpoint is there too."""
        addr = machine.rip - 1
        handled = self._kprobe_int3(machine) if self._kprobe_int3 is not None else False
        if handled and not self._passing(addr) and ((0, addr) in self.breakpoints or (1, addr) in self.breakpoints):
            if machine.guest_address(machine.rip) != addr:
                # The probe's handler sent the guest elsewhere (a jprobe's entry, the
                # trampoline's real return address): a plain SIGTRAP there, since gdb
                # ignores a breakpoint stop away from its breakpoint.
                machine.stop_guest(machine.stop_event(StopReason.BREAKPOINT, f"moved by the probe at 0x{addr:x}"))
            else:
                self._stop(machine, "swbreak" if (0, addr) in self.breakpoints else "hwbreak", addr)
        return handled

    def _debug_notifier_chain(self, machine) -> bool:
        """The debug trap: kprobes' post_kprobe_handler, then the debugger's step ends
        there when it was finishing a probed instruction's step (see _step)."""
        handled = self._kprobe_debug(machine) if self._kprobe_debug is not None else False
        if handled and self._finishing_probe_step:
            machine.stop_guest(machine.stop_event(StopReason.BREAKPOINT, "stepped", details={"step": True}))
        return handled

    def _stop(self, machine, why: str, addr: int) -> None:
        machine.stop_guest(machine.stop_event(StopReason.BREAKPOINT, f"gdb breakpoint at 0x{addr:x}",
                                          details={"gdb": why}))

    def _insert_watchpoint(self, kind: int, addr: int, length: int) -> None:
        if not 1 <= length <= 0x1000:
            raise TargetError("a watchpoint covers 1 to 4096 bytes")
        if (kind, addr, length) in self.watchpoints:
            return
        _name, reads, writes = _WATCH_KINDS[kind]

        def on_access(is_write: bool, address: int, size: int) -> bool:
            return not self.watch_muted

        handle = self.machine.debug.add_memory_watch(addr, addr + length, reads=reads, writes=writes, callback=on_access)
        self.watchpoints[(kind, addr, length)] = Watchpoint(kind, addr, length, handle)

    # ------------------------------------------------------------------ running
    def resume(self, step_thread: int | None) -> str:
        """Continue every CPU (step_thread None) or step one CPU alone; the stop reply."""
        self.follow_machine()
        m, session = self.machine, self.session
        if m.halted:
            return "W00"
        last = m.last_stop
        if last is not None and last.reason in (StopReason.FAULT, StopReason.BUG):
            return self.stop_reply(last)
        self._skip_shell_breakpoint()
        self._pass_once = None
        if self.int3_skipped is not None:
            step_thread = self._after_int3_skip(step_thread)
        with session.run_lock:
            if step_thread is None:
                event = m.run()
            else:
                try:
                    event = self._step(self.cpu_of(step_thread))
                except MachineError as exc:  # a CPU not started yet, or parked
                    raise TargetError(str(exc)) from None
            if "watch" in event.details:
                event = self._finish_watched_access(event)
        session.stop_event = event
        session.out.flush()
        self.stopped_thread = m.cpu_id + 1
        self.last_stop = self.stop_reply(event)
        return self.last_stop

    def _step(self, index: int) -> StopEvent:
        """One instruction on CPU index.  A CPU stopped in the middle of a probe hit (its
        handlers ran, the copy of the probed instruction is still to run in the tool's
        pages) has only that copy left of the instruction: the step ends after it, at the
        debug trap's post-handler or where a boosted copy jumps back."""
        m = self.machine
        real = m.cpus[index].uc.reg_read(REGISTERS[RIP].uc_id)
        if not RESERVED_BASE <= real < RESERVED_END:
            return m.debug.run_alone(index, 1)
        probed = m.guest_address(real)
        p = m.kprobes.get_kprobe(probed)
        back = None
        if p is not None and p.ainsn is not None:
            back = m.add_code_hook(probed + p.ainsn.length, self._end_of_copy, cpus=[index])
        self._finishing_probe_step = True
        try:
            return m.debug.run_alone(index, None)
        finally:
            self._finishing_probe_step = False
            if back is not None:
                m.remove_hook(back)

    def _end_of_copy(self, machine) -> None:
        if self._finishing_probe_step:
            machine.clock.uncount_current()
            machine.stop_guest(machine.stop_event(StopReason.BREAKPOINT, "stepped", details={"step": True}))

    def _after_int3_skip(self, step_thread: int | None) -> int | None:
        """gdb "skipped" a kprobe's int3 at addr (see write_register): for a stepi it then
        continues to a breakpoint at addr + 1, which stands for "one instruction": step
        instead.  A continue goes past addr without stopping there again."""
        addr, self.int3_skipped = self.int3_skipped, None
        if step_thread is None and ((0, addr + 1) in self.breakpoints or (1, addr + 1) in self.breakpoints):
            return self.stopped_thread
        if self.machine.rip == addr:
            self._pass_once = addr
        return step_thread

    def _skip_shell_breakpoint(self) -> None:
        """A shell breakpoint we stopped at must let the guest past it, as `continue` does."""
        session = self.session
        if session.stop_event is not None and session.stop_event.reason is StopReason.BREAKPOINT:
            if self.machine.rip in self.machine.hooked_addresses.values():
                session._skip_break_once = self.machine.rip

    def _finish_watched_access(self, event: StopEvent) -> StopEvent:
        """The watched access's instruction is run now, then the stop is reported after
        it, as x86 reports a data breakpoint (a trap: rip past the instruction)."""
        self.watch_muted = True
        try:
            after = self._step(self.machine.cpu_id)
        finally:
            self.watch_muted = False
        if after.reason is not StopReason.BUDGET:
            return after
        after.details["watch"] = event.details["watch"]
        after.reason, after.message = StopReason.BREAKPOINT, event.message
        return after

    def interrupt(self) -> None:
        """The 0x03 byte while the guest runs (thread-safe)."""
        self.machine.request_stop()

    # ------------------------------------------------------------------ stop replies
    def _stop_reply_for_signal(self, signal: int, extra: str = "") -> str:
        return f"T{signal:02x}{extra}thread:{self.stopped_thread:x};"

    def stop_reply(self, event: StopEvent) -> str:
        if event.reason is StopReason.HALTED:
            return "W00"
        if event.reason is StopReason.INTERRUPTED:
            return self._stop_reply_for_signal(SIGINT)
        if event.reason is StopReason.FAULT:
            vector = event.details.get("vector", 14)
            return self._stop_reply_for_signal(_FAULT_SIGNALS.get(vector, SIGSEGV))
        watch = event.details.get("watch")
        if watch is not None:
            return self._stop_reply_for_signal(SIGTRAP, self._watch_field(*watch))
        why = event.details.get("gdb")
        return self._stop_reply_for_signal(SIGTRAP, f"{why}:;" if why else "")

    def _watch_field(self, is_write: bool, address: int, size: int) -> str:
        """`watch:ADDR;` naming the watchpoint the access hit (its start, within its range)."""
        for (kind, addr, length), _wp in sorted(self.watchpoints.items()):
            name, reads, writes = _WATCH_KINDS[kind]
            if address < addr + length and addr < address + size and (writes if is_write else reads):
                return f"{name}:{addr:x};"
        return f"{'watch' if is_write else 'rwatch'}:{address:x};"

"""The uprobes engine (kernel/events/uprobes.c): registration, the breakpoints in each
process's text, the hit and the out-of-line step.

The breakpoint.  A program's text is private to each process here (the kernel reads the
file into fresh pages at exec, and fork copies every page), as the page Linux's
uprobe_write_opcode makes by copy-on-write is private to each mm: so install_breakpoint
writes the int3 into each address space that maps the program.  uprobe_register reaches
the processes running now (the task list, each task's mm); uprobe_mmap arms a process
when exec has mapped the program (a code hook at start_thread_user, the last step of
the kernel's load_elf_user_binary); a fork's child has the parent's bytes, int3s and
all.  The program's file on the guest's disk is never changed.

The hit.  A user int3 does not go to the kernel's own trap path when it is a uprobe's
(arch_uprobe_exception_notify, then handle_swbp): handlers run, then the instruction is
single-stepped from the task's XOL slot (xol.py); the debug trap after it ends the step
(handle_singlestep, arch_uprobe_post_xol).  A fault in the slot is given back to the
kernel at the probed address (arch_uprobe_abort_xol).  The int3 is not one of the
program's instructions: the clock takes it off, so a probed run counts what an
unprobed one does.

The tasks.  Per-task state (struct uprobe_task: the step, the return instances) is
created on a task's first hit, copied to a fork's child (uprobe_copy_process: its stack
holds the same hijacked return addresses), and freed when the task execs or exits
(uprobe_free_utask, from the kernel's kprobe_flush_task on both paths).
"""
from __future__ import annotations

import struct
import traceback
from typing import TYPE_CHECKING

from unicorn.x86_const import UC_X86_REG_CR3

from ..kprobes.regs import PtRegs
from ..machine import capi
from ..kprobes.types import HandlerError
from ..machine.events import StopReason
from . import xol
from .program import ProbedProgram
from .types import (
    UPROBE_SWBP_INSN, Uprobe, UprobeEntry, UprobeError, UprobeTask, Uretprobe, UtaskState,
)

if TYPE_CHECKING:
    from ..machine import Machine

_DEBUG, _BREAKPOINT = 1, 3


class UprobeEngine:
    """The machine's uprobes: struct uprobe entries by (program, vaddr), tasks, XOL areas."""

    def __init__(self, machine: "Machine") -> None:
        self.machine = machine
        self.uprobes: dict[tuple[str, int], UprobeEntry] = {}   # (exe, vaddr) -> struct uprobe
        self.utasks: dict[int, UprobeTask] = {}                  # task_struct -> struct uprobe_task
        self.xol_areas: dict[int, xol.XolArea] = {}              # pgd -> its [uprobes] page
        self.xol_pool = xol.XolPool(self)
        self.programs: dict[str, ProbedProgram] = {}             # host path -> its ELF
        #: Who hears of handler errors when the machine has no kprobes engine (a bare
        #: machine); otherwise the kprobes engine's listeners (the shell's) do.
        self.listeners: list = []
        self._exe_of_mm: dict[int, str] = {}
        self._hooked = False
        self._forking: tuple = (None, 0)  # (the parent's XOL area, the child's mm) in dup_mmap
        self._layout = None
        self.regs = PtRegs(machine)
        from .uretprobes import UretprobeState

        self.ret = UretprobeState(self)

    @property
    def narrator(self):
        """`explain on`: the kprobes engine's narrator says the uprobes steps too."""
        kprobes = getattr(self.machine, "kprobes", None)
        return kprobes.narrator if kprobes is not None else None

    def narrate(self, event) -> None:
        from .narrate import render

        self.narrator(render(event))

    def _pid_of_mm(self, pgd: int) -> int:
        for pid, mm_pgd, _exe in self._processes():
            if mm_pgd == pgd:
                return pid
        return 0

    # ------------------------------------------------------------------ kernel structures
    def _offsets(self) -> tuple[int, int, int]:
        """offsetof(task_struct, mm), offsetof(mm_struct, pgd), offsetof(mm_struct, exe)."""
        if self._layout is None:
            from ..tracing.structs import struct_layouts

            layouts = struct_layouts(self.machine.image)
            mm = layouts["mm_struct"].members
            self._layout = (layouts["task_struct"].members["mm"].offset, mm["pgd"].offset, mm["exe"].offset)
        return self._layout

    def _mm_of_task(self, task_addr: int) -> tuple[int, str] | None:
        """(pgd, exe) of a task's address space, or None (a kernel thread, a zombie)."""
        off_mm, off_pgd, off_exe = self._offsets()
        m = self.machine
        mm = m.read_u64(task_addr + off_mm)
        if not mm:
            return None
        pgd = m.read_u64(mm + off_pgd)
        if not pgd:
            return None
        return pgd, m.read(mm + off_exe, 48).split(b"\0", 1)[0].decode("latin-1")

    def current_exe(self) -> tuple[int, str] | None:
        """(pgd, exe) of the current process (cached per address space until mmput)."""
        pgd = capi.reg_read(self.machine.uch, UC_X86_REG_CR3) & 0x000FFFFFFFFFF000
        exe = self._exe_of_mm.get(pgd)
        if exe is None:
            found = self._mm_of_task(self.machine.tasks.current_address())
            if found is None:
                return None
            exe = self._exe_of_mm[pgd] = found[1]
        return pgd, exe

    def current_task(self) -> int:
        return self.machine.tasks.current_address()

    def _processes(self):
        """(pid, pgd, exe) of every live process (a task with an address space)."""
        if self.machine.userspace is None:
            return
        for task in self.machine.tasks.all():
            found = self._mm_of_task(task.address)
            if found is not None:
                yield task.pid, found[0], found[1]

    # ------------------------------------------------------------------ register
    def program(self, path: str) -> ProbedProgram:
        if path not in self.programs:
            self.programs[path] = ProbedProgram(path)
        return self.programs[path]

    def resolve(self, up: Uprobe) -> tuple[ProbedProgram, int]:
        """The program and vaddr a consumer asks for (its file offset filled in)."""
        prog = self.program(up.path)
        if up.symbol_name is not None:
            vaddr = prog.vaddr_of_symbol(up.symbol_name, up.symbol_offset)
            up.offset = prog.offset_of_vaddr(vaddr)
        elif up.offset is not None:
            vaddr = prog.vaddr_of_offset(up.offset)
        else:
            raise UprobeError("a uprobe needs a file offset or a function name")
        return prog, vaddr

    def register(self, up: Uprobe) -> Uprobe:
        """uprobe_register / uretprobe_register."""
        if up.program is not None:
            raise UprobeError(f"{up!r} is registered already")
        prog, vaddr = self.resolve(up)
        key = (prog.exe, vaddr)
        entry = self.uprobes.get(key)
        if entry is None:
            entry = UprobeEntry(prog, vaddr, prog.check_probe_address(vaddr))
        if self.machine.userspace is not None:
            self._install_hooks()
        # else: a kernel that runs no programs: the probe waits, as for a program not yet run
        up.program, up.vaddr = prog, vaddr
        entry.consumers.append(up)
        if key not in self.uprobes:
            self.uprobes[key] = entry
            for _pid, pgd, exe in self._processes():
                if exe == prog.exe:
                    self.install_breakpoint(pgd, entry)
        return up

    def unregister(self, up: Uprobe) -> None:
        prog = up.program
        if prog is None:
            return
        key = (prog.exe, up.vaddr)
        entry = self.uprobes.get(key)
        if entry is not None and up in entry.consumers:
            entry.consumers.remove(up)
            if not entry.consumers:
                del self.uprobes[key]
                for _pid, pgd, exe in self._processes():
                    if exe == prog.exe:
                        self.remove_breakpoint(pgd, entry)
        up.program = None

    def all_probes(self) -> list[Uprobe]:
        return [c for e in self.uprobes.values() for c in e.consumers]

    # ------------------------------------------------------------------ the breakpoint
    def _write_text(self, pgd: int, vaddr: int, byte: int, expect: int) -> bool:
        """uprobe_write_opcode in the address space at pgd: True when written (the byte
        there was `expect`: verify_opcode)."""
        m = self.machine
        pte = m.userspace.pte_of(pgd, vaddr)
        if pte is None:
            return False
        entry = struct.unpack("<Q", m.uc.mem_read(pte, 8))[0]
        if not entry & 1:
            return False
        phys = (entry & 0x000FFFFFFFFFF000) | (vaddr & 0xFFF)
        if m.uc.mem_read(phys, 1)[0] != expect:
            return False
        m.uc.mem_write(phys, bytes([byte]))
        # Another address space may run a translation of this code: drop them all, and
        # the clock's counts of those blocks (one table per CPU on a machine with programs).
        for cpu in m.cpus:
            cpu.uc.ctl_flush_tb()
        for blocks in dict.fromkeys(cpu.clock.blocks for cpu in m.cpus):
            blocks.forget(vaddr, vaddr + 1)
        return True

    def install_breakpoint(self, pgd: int, entry: UprobeEntry, why: str = "uprobe_register") -> bool:
        done = self._write_text(pgd, entry.vaddr, UPROBE_SWBP_INSN, entry.insn.raw[0])
        if done and self.narrator is not None:
            from .narrate import BreakpointInstalled

            self.narrate(BreakpointInstalled(entry.program.name, entry.program.describe(entry.vaddr), entry.vaddr,
                                             self._pid_of_mm(pgd), why))
        return done

    def remove_breakpoint(self, pgd: int, entry: UprobeEntry) -> bool:
        return self._write_text(pgd, entry.vaddr, entry.insn.raw[0], UPROBE_SWBP_INSN)

    # ------------------------------------------------------------------ kernel hooks
    def _install_hooks(self) -> None:
        if self._hooked:
            return
        m = self.machine
        hooks = []
        for name, fn in (("start_thread_user", self._uprobe_mmap), ("mmput", self._uprobe_clear_state),
                         ("kprobe_flush_task", self._uprobe_free_utask), ("copy_user_mm", self._uprobe_copy_process),
                         ("dup_mmap", self._dup_mmap)):
            sym = m.image.symbols.get(name)
            if sym is None:
                raise UprobeError(f"this kernel has no {name}: uprobes cannot follow its processes")
            hooks.append((sym.address, fn))
        hooks.append((self._after_dup_mmap(), self._dup_xol))
        self._hooked = True
        m.userspace.trap_notifier = self.on_user_trap
        for addr, fn in hooks:
            m.add_code_hook(addr, fn)

    def _after_dup_mmap(self) -> int:
        """Where copy_user_mm goes on after its call to dup_mmap."""
        from ..kprobes.x86 import decode

        syms = self.machine.image.symbols
        caller, callee = syms.get("copy_user_mm"), syms.get("dup_mmap")
        code = self.machine.image.symbol_bytes(caller)
        at = 0
        while at < len(code):
            insn = decode(code[at:at + 15], caller.address + at)
            if insn is None:
                break
            at += insn.size
            if insn.mnemonic == "call" and insn.op_str == hex(callee.address):
                return insn.address + insn.size
        raise UprobeError("copy_user_mm does not call dup_mmap: uprobes cannot follow this kernel's forks")

    def _uprobe_mmap(self, machine: "Machine") -> None:
        """exec has mapped the program (start_thread_user): arm its uprobes."""
        found = self._mm_of_task(machine.tasks.current_address())
        if found is None:
            return
        pgd, exe = found
        self._exe_of_mm[pgd] = exe
        for (prog_exe, _vaddr), entry in self.uprobes.items():
            if prog_exe == exe:
                self.install_breakpoint(pgd, entry, "uprobe_mmap: exec mapped the program")

    def _uprobe_clear_state(self, machine: "Machine") -> None:
        """mmput(mm): the address space goes; its [uprobes] page first."""
        _off_mm, off_pgd, _off_exe = self._offsets()
        pgd = machine.read_u64(machine.reg("rdi") + off_pgd)
        self._exe_of_mm.pop(pgd, None)
        area = self.xol_areas.pop(pgd, None)
        if area is not None:
            xol.xol_remove_vma(self, area)

    def _uprobe_free_utask(self, machine: "Machine") -> None:
        """The task execs or exits: its state and pending return instances go."""
        utask = self.utasks.pop(machine.reg("rdi"), None)
        if utask is not None:
            if utask.return_instances and self.narrator is not None:
                from .narrate import UtaskFreed

                self.narrate(UtaskFreed(utask.pid, utask.depth))
            self.ret.free_utask(utask)

    def _uprobe_copy_process(self, machine: "Machine") -> None:
        """fork: the child's stack holds the parent's hijacked return addresses."""
        child = machine.tasks.read_task(machine.reg("rdi"))
        parent = self.utasks.get(self.current_task())
        if child is not None and parent is not None and parent.return_instances:
            self.utasks[child.address] = self.ret.dup_utask(parent, child)

    def _dup_mmap(self, machine: "Machine") -> None:
        """dup_mmap(mm, oldmm): the [uprobes] page is not the fork's to copy (Linux's
        xol vma is VM_DONTCOPY): out of the parent's page tables while they are copied."""
        _off_mm, off_pgd, _off_exe = self._offsets()
        area = self.xol_areas.get(machine.read_u64(machine.reg("rsi") + off_pgd))
        self._forking = (area, machine.reg("rdi"))
        if area is not None:
            xol.set_xol_pte(self, area.pgd, None)

    def _dup_xol(self, machine: "Machine") -> None:
        """After the copy: the parent's page back; the child's own, trampoline and all
        (dup_xol_work): its stack may hold the parent's hijacked return addresses."""
        area, mm = self._forking
        self._forking = (None, 0)
        if area is None:
            return
        xol.set_xol_pte(self, area.pgd, area.page)
        child_pgd = machine.read_u64(mm + self._offsets()[1]) if machine.reg("rax") & 0xFFFFFFFF == 0 else 0
        if child_pgd:
            self.xol_areas[child_pgd] = xol.xol_add_vma(self, child_pgd)

    # ------------------------------------------------------------------ the hit
    def on_user_trap(self, machine: "Machine", intno: int) -> bool:
        """A trap at CPL 3 (the notifier): True when uprobes dealt with it."""
        if intno == _BREAKPOINT:
            return self.handle_swbp(machine)
        utask = self.utasks.get(self.current_task())
        if utask is None or utask.state is not UtaskState.SSTEP:
            return False
        if intno == _DEBUG:
            self.handle_singlestep(utask)
            return True
        # A fault in the slot: the kernel sees it at the probed address.
        xol.arch_uprobe_abort_xol(self, utask)
        self._end_step(utask)
        return False

    def _utask(self) -> UprobeTask:
        """current->utask, made on the task's first hit."""
        addr = self.current_task()
        utask = self.utasks.get(addr)
        if utask is None:
            task = self.machine.tasks.read_task(addr)
            utask = self.utasks[addr] = UprobeTask(addr, task.pid if task else 0, task.comm if task else "")
        return utask

    def get_xol_area(self, pgd: int) -> xol.XolArea:
        area = self.xol_areas.get(pgd)
        if area is None:
            area = self.xol_areas[pgd] = xol.xol_add_vma(self, pgd)
            if self.narrator is not None:
                from .narrate import XolAreaAdded

                self.narrate(XolAreaAdded(self._pid_of_mm(pgd), area.vaddr, area.page))
        return area

    def handle_swbp(self, machine: "Machine") -> bool:
        bp_vaddr = machine.rip - 1
        mm = self.current_exe()
        if mm is None:
            return False
        pgd, exe = mm
        area = self.xol_areas.get(pgd)
        if bp_vaddr == xol.XOL_VADDR and area is not None:
            machine.clock.adjust(-1)
            return self.ret.handle_trampoline(area)
        entry = self.uprobes.get((exe, bp_vaddr))
        if entry is None:
            return False  # not ours: the kernel's SIGTRAP
        machine.clock.adjust(-1)
        machine.set_reg("rip", bp_vaddr)
        utask = self._utask()
        if self.narrator is not None:
            from .narrate import UprobeHit

            self.narrate(UprobeHit(utask.comm, utask.pid, entry.program.describe(bp_vaddr), bp_vaddr,
                                   len(entry.consumers)))
        self.handler_chain(entry, utask)
        utask.active, utask.vaddr, utask.state = entry, bp_vaddr, UtaskState.SSTEP
        scratch = xol.arch_uprobe_pre_xol(self, utask, self.get_xol_area(pgd))
        if self.narrator is not None:
            from .narrate import SteppedOutOfLine

            self.narrate(SteppedOutOfLine(bp_vaddr, utask.xol_vaddr, entry.insn.text, scratch))
        return True

    def handler_chain(self, entry: UprobeEntry, utask: UprobeTask) -> None:
        need_ret = False
        for c in list(entry.consumers):
            if c.disabled:
                continue
            c.hits += 1
            if isinstance(c, Uretprobe):
                need_ret = True
            elif c.handler is not None:
                self.call(c, "handler", c.handler, c, self.regs)
        if need_ret:
            self.ret.prepare_uretprobe(entry, utask)

    def handle_singlestep(self, utask: UprobeTask) -> None:
        kind, stepped_rip = xol.arch_uprobe_post_xol(self, utask)
        self._end_step(utask)
        if self.narrator is not None:
            from .narrate import StepFinished

            self.narrate(StepFinished(str(kind), stepped_rip, self.machine.rip))

    def _end_step(self, utask: UprobeTask) -> None:
        mm = self.current_exe()
        area = self.xol_areas.get(mm[0]) if mm else None
        if area is not None:
            area.free_slot(utask.xol_vaddr)
        utask.state, utask.active = UtaskState.RUNNING, None

    # ------------------------------------------------------------------ handlers
    def call(self, up: Uprobe, which: str, fn, *args):
        """Run a user handler: an exception is charged to the probe, never fatal."""
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - the handler's failure, reported
            up.faults += 1
            tb = traceback.extract_tb(exc.__traceback__)
            where = f"{tb[-1].filename}:{tb[-1].lineno}" if tb else "?"
            self.emit(HandlerError(up, which, exc, where))
            kprobes = getattr(self.machine, "kprobes", None)
            if kprobes is not None and kprobes.handler_error_policy == "stop":
                self.machine.stop_guest(self.machine.stop_event(StopReason.HANDLER, f"{which} of {up!r} failed: {exc}"))
            return 0

    def emit(self, event) -> None:
        kprobes = getattr(self.machine, "kprobes", None)
        for listener in (kprobes.listeners if kprobes is not None else self.listeners):
            listener(event)

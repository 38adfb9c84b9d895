"""gdb's frames and threads for the shell: which frame `print`, `info locals` and `finish`
look at, and the registers each frame had.

The frames are the ones `bt` walks (tracing/stacks.py's unwind, which resolves return
addresses a kretprobe hijacked); this module only adds what each frame's registers were,
from the call frame information (.debug_frame) as gdb's DWARF unwinder finds them: the
CFA, the callee-saved registers the callee pushed, and "not saved" for the others.

Threads are numbered as the gdb stub numbers them: CPU n is thread n + 1 (as QEMU does);
the tasks that sleep (not on any CPU) follow, each from the context switch_to() saved.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..machine import MachineError
from ..machine.dwarf_locations import DwarfLocationError, OptimizedOut, debug_info, find_member
from ..machine.registers import GENERAL_REGISTERS
from ..tracing.cvalue import (BUILTIN_TYPES, CODE_PTR, DATA_PTR, LONG, CType, EvalError, Value, ctype_of,
                              function_parameters)
from ..tracing.stacks import unwind

#: The registers a callee keeps for its caller (SysV x86_64 ABI); the others die in calls.
CALLEE_SAVED = ("rbx", "rbp", "r12", "r13", "r14", "r15")
#: switch_to() pushes these (rbp first) before it saves rsp in thread.rsp.
SWITCH_TO_PUSHES = ("r15", "r14", "r13", "r12", "rbx", "rbp")


@dataclass
class Frame:
    level: int
    pc: int
    regs: dict[str, int | None]   # None: not saved by the callee (gdb's "<not saved>")
    hijacked: bool = False        # its return address was kretprobe_trampoline's

    @property
    def lookup_pc(self) -> int:
        """Where to look the frame up in the debug info: a caller's pc is the return
        address, which may be past the end of the call's block (gdb uses pc - 1)."""
        return self.pc if self.level == 0 else self.pc - 1


@dataclass
class Thread:
    number: int
    cpu: int | None     # the CPU it runs on, or None for a task asleep
    task: int           # task_struct address (0: none)


def threads(machine) -> list[Thread]:
    """CPU threads first (1..ncpus, as the gdb stub numbers them), then sleeping tasks."""
    out = []
    on_cpu = set()
    for cpu in machine.cpus:
        task = machine.smp.cpu_current_task(cpu.index)
        on_cpu.add(task)
        out.append(Thread(cpu.index + 1, cpu.index, task))
    if machine.tasks.has_kernel_tasks:
        for t in machine.tasks.all():
            if t.address not in on_cpu:
                out.append(Thread(len(out) + 1, None, t.address))
    return out


def thread_registers(machine, thread: Thread) -> dict[str, int | None]:
    """A thread's registers: its CPU's, or those switch_to() saved for a sleeping task."""
    if thread.cpu is not None:
        uc = machine.cpus[thread.cpu].uc
        from ..machine.registers import REGISTERS

        regs = {name: uc.reg_read(REGISTERS[name]) for name in GENERAL_REGISTERS}
        regs["rip"] = machine.guest_address(regs["rip"])
        return regs
    rsp = machine.read_u64(thread.task + _thread_rsp_offset(machine))
    regs: dict[str, int | None] = {name: None for name in GENERAL_REGISTERS}
    for i, name in enumerate(SWITCH_TO_PUSHES):
        regs[name] = machine.read_u64(rsp + 8 * i)
    regs["rip"] = machine.read_u64(rsp + 8 * len(SWITCH_TO_PUSHES))
    regs["rsp"] = rsp + 8 * (len(SWITCH_TO_PUSHES) + 1)
    return regs


def _thread_rsp_offset(machine) -> int:
    info = debug_info(machine.image)
    task = info.type_named("struct task_struct") if info.available else None
    thread = find_member(task, "thread") if task is not None else None
    if thread is not None:
        rsp = find_member(thread[1].get_DIE_from_attribute("DW_AT_type"), "rsp")
        if rsp is not None:
            return thread[0] + rsp[0]
    return 32  # the bundled kernel's TASK_thread_rsp


def walk(machine, regs: dict[str, int | None] | None = None, limit: int = 64,
         task: int | None = None) -> list[Frame]:
    """The frames of the current task (regs None: the frames `bt` shows), or of a thread
    from its registers (TASK: its task_struct, whose kretprobe instances give the return
    addresses a kretprobe hijacked)."""
    info = debug_info(machine.image)
    if regs is None:
        start = machine.registers()
        pcs = unwind(machine, limit)
        start["rip"] = pcs[0][0]
        frames = [Frame(0, pcs[0][0], dict(start))]
        for level, (pc, hijacked) in enumerate(pcs[1:], 1):
            caller = _caller_registers(machine, info, frames[-1]) or {}
            caller["rip"] = pc
            frames.append(Frame(level, pc, caller, hijacked))
        return frames
    frames = [Frame(0, regs["rip"], dict(regs))]
    kretprobes = machine.kprobes.kretprobes
    hijacked = 0
    while len(frames) < limit:
        caller = _caller_registers(machine, info, frames[-1])
        pc = caller.get("rip") if caller else None
        resolved = bool(pc) and task is not None and kretprobes.is_trampoline(pc)
        if resolved:  # as unwind() does: the task's instances hold the real return address
            pc = caller["rip"] = kretprobes.real_return_address(task, hijacked)
            hijacked += 1
        if not pc or not machine.image.is_text(pc):
            break
        frames.append(Frame(len(frames), pc, caller, resolved))
    return frames


def _caller_registers(machine, info, frame: Frame) -> dict[str, int | None] | None:
    """The caller's registers, by the CFI row at the frame's pc (gdb's dwarf2 unwinder)."""
    row = info.unwind_row(frame.lookup_pc) if info.available else None
    regs = frame.regs
    if row is None:
        return _by_frame_pointer(machine, regs)
    cfa_reg, cfa_off, saved = row
    base = regs.get(cfa_reg)
    if base is None:
        return None
    cfa = base + cfa_off
    caller: dict[str, int | None] = {name: (regs.get(name) if name in CALLEE_SAVED else None)
                                     for name in GENERAL_REGISTERS}
    try:
        for name, offset in saved.items():
            caller[name] = machine.read_u64(cfa + offset)
    except MachineError:
        return None
    caller["rsp"] = cfa
    return caller


def _by_frame_pointer(machine, regs) -> dict[str, int | None] | None:
    """No CFI here (hand-written assembly): the rbp chain, as `bt` walks it."""
    rbp = regs.get("rbp")
    if not rbp:
        return None
    try:
        caller = {name: None for name in GENERAL_REGISTERS}
        caller.update(rbp=machine.read_u64(rbp), rip=machine.read_u64(rbp + 8), rsp=rbp + 16)
    except MachineError:
        return None
    return caller


# ---------------------------------------------------------------------- values in a frame
class FrameContext:
    """What a C expression sees in one frame: its variables, registers and the memory."""

    def __init__(self, session, frame: Frame, history=None):
        self.session = session
        self.history = history
        self.machine = session.machine
        self.frame = frame
        self.info = debug_info(self.machine.image)
        self.function = self.info.function_at(frame.lookup_pc) if self.info.available else None

    # memory and symbols
    def read(self, addr: int, size: int) -> bytes:
        try:
            return self.machine.read(addr, size)
        except MachineError:
            raise EvalError(f"Cannot access memory at address 0x{addr:x}") from None

    def symbolize(self, addr: int) -> str:
        hit = self.machine.symbols.containing(addr)
        if hit is None:
            return ""
        sym, off = hit
        if off >= max(sym.size, 1):
            return ""
        return sym.name + (f"+{off}" if off else "")

    def type_named(self, name: str) -> CType | None:
        die = self.info.type_named(name) if self.info.available else None
        if die is not None:
            return ctype_of(die)
        return BUILTIN_TYPES.get(name)

    # registers and the value history
    def dollar(self, tok: str) -> Value:
        name = tok[1:]
        history = self.history
        if history is not None and (name == "" or name == "$" or name.isdigit() or (name.startswith("$") and name[1:].isdigit())):
            return history.get(tok)
        reg = {"pc": "rip", "sp": "rsp", "fp": "rbp", "ps": "eflags"}.get(name.lower(), name.lower())
        if reg not in GENERAL_REGISTERS:
            raise EvalError(f"unknown register '{tok}' (registers: $pc $sp $fp $rax ... $r15 $rip $eflags; "
                            "$, $$, $N: the value history)")
        value = self.frame.regs.get(reg)
        t = CODE_PTR if reg == "rip" else DATA_PTR if reg in ("rsp", "rbp") else \
            CType("int", 4, "i386_eflags") if reg == "eflags" else LONG
        if value is None:
            return Value(t, missing="not saved")
        return Value(Value.of_int(t, value).type, value.to_bytes(8, "little")[: t.size], register=reg)

    # variables
    def has_variable(self, name: str) -> bool:
        if self.function is not None and any(v.name == name for v in self._scope()):
            return True
        return self.info.available and self.info.global_variable(name) is not None

    def _scope(self):
        return self.info.variables_at(self.function, self.frame.lookup_pc)

    def variable(self, name: str) -> Value:
        if self.function is not None:
            for var in self._scope():
                if var.name == name:
                    return self.variable_value(var)
        glob = self.info.global_variable(name) if self.info.available else None
        if glob is not None:
            t = ctype_of(glob[0])
            return Value(t, self.read(glob[1], t.size), glob[1])
        fn = self.info.functions.get(name) if self.info.available else None
        sym = self.machine.symbols.get(name)
        if fn is not None and fn.high_pc:
            ret = fn.die.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in fn.die.attributes else None
            return Value(CType("func", 1, target=ctype_of(ret), params=function_parameters(fn.die)),
                         address=fn.low_pc)
        if sym is not None:
            if self.machine.image.is_text(sym.address):
                return Value(CType("func", 1, "<text variable, no debug info>", target=CType("int", 4, "int", True),
                                   params=None), address=sym.address)
            raise EvalError(f"'{name}' has unknown type; cast it to its declared type")
        raise EvalError(f'No symbol "{name}" in current context.')

    def variable_value(self, var) -> Value:
        """A parameter's or local's value in this frame (missing: optimized out)."""
        t = ctype_of(var.type_die)
        try:
            loc = self.info.location(self.function, var, self.frame.lookup_pc)
        except OptimizedOut:
            return Value(t, missing="optimized out")
        except DwarfLocationError as exc:
            raise EvalError(str(exc)) from None
        if loc.kind == "const":
            return Value.of_int(t, loc.offset) if isinstance(loc.offset, int) else Value(t, bytes(loc.offset))
        if loc.kind == "addr":
            return Value(t, self.read(loc.offset, t.size), loc.offset)
        base = self.frame.regs.get(loc.reg)
        if base is None:
            return Value(t, missing="optimized out")
        if loc.kind == "reg":
            return Value(t, base.to_bytes(8, "little")[: t.size].ljust(t.size, b"\0"), register=loc.reg)
        addr = (base + loc.offset) & 0xFFFFFFFFFFFFFFFF
        return Value(t, self.read(addr, t.size), addr)

    def arguments(self) -> list:
        return [v for v in self._scope() if v.is_param] if self.function is not None else []

    def locals(self) -> list:
        return [v for v in self._scope() if not v.is_param] if self.function is not None else []

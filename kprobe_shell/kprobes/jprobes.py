"""Jprobes: a handler with the probed function's prototype, entered at its first instruction.

A guest-resident handler really runs in the guest: setjmp_pre_handler saves the
registers and the top of the stack (at most 64 bytes, MIN_STACK_SIZE), clears IF and
sends rip to the handler, which sees the probed call's arguments untouched (rdi, rsi,
... and the stack) and ends with jprobe_return(): `xchg %rbx,%rsp; int3`.  That int3 has
no probe, so the running probe's break_handler (longjmp_break_handler) checks it came from
jprobe_return with the saved rsp, restores registers and stack bytes, and the original
instruction is then single-stepped as for any kprobe.

A Python callable as entry gets the same arguments by position (named and typed from
DWARF when the image has it) without leaving the host.

The guest handler's instructions are the tool's work, not the guest's: the clock is put
back at longjmp, so the guest's schedule is the same with and without the jprobe.
"""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Callable

from ..display import Displayed
from ..machine import StopReason
from ..machine.abi import ABI_ARG_REGISTERS
from ..machine.layout import EFLAGS_IF
from ..machine import capi
from ..machine.registers import REGISTERS
from .narrate import JprobeLongjmp, JprobeSetjmp
from .types import Kprobe, ProbeError
from .percpu import per_cpu
_reg_read = capi.reg_read
_REG_RSP = REGISTERS["rsp"]

#: unicorn's ids of the argument registers, in ABI order.
_ARG_REGIDS = tuple(REGISTERS[name] for name in ABI_ARG_REGISTERS)

if TYPE_CHECKING:
    from .core import KprobeEngine

MAX_STACK_SIZE = 64
THREAD_SIZE = 8192


class Jprobe(Displayed):
    """struct jprobe: a kprobe plus an entry (a guest function name/address or a callable)."""

    kind = "j"

    def __init__(self, symbol_name: str | None = None, entry: str | int | Callable | None = None, *,
                 addr: int | None = None, name: str | None = None):
        if entry is None:
            raise ProbeError("a jprobe needs an entry: a guest handler symbol or a Python callable")
        self.entry = entry
        self.kp = Kprobe(symbol_name, 0, addr=addr, name=name)
        self.kp._owner = self
        self.kp.kind = "j"
        self.name = name
        self.nmissed = 0
        self.missed_in_place = 0
        self.faults = 0
        self.number: int | None = None
        self.internal = False
        self.entry_addr: int | None = None  # resolved guest handler
        self.manager: "JprobeManager | None" = None

    def __repr__(self) -> str:
        return f"<Jprobe {self.symbol_name or hex(self.addr or 0)} -> {self.entry_label}>"

    symbol_name = property(lambda self: self.kp.symbol_name)
    addr = property(lambda self: self.kp.addr)
    offset = property(lambda self: 0)
    disabled = property(lambda self: self.kp.disabled)
    registered = property(lambda self: self.manager is not None)
    owner = property(lambda self: self)
    hits = property(lambda self: self.kp.hits)
    mode = property(lambda self: self.kp.mode)

    @property
    def entry_label(self) -> str:
        if callable(self.entry):
            return getattr(self.entry, "__qualname__", repr(self.entry))
        return str(self.entry) if isinstance(self.entry, str) else hex(self.entry)


class JprobeManager:
    # The kernel keeps one set of these per CPU (jprobe_saved_regs, jprobes_stack; in the
    # 2.6.16 kprobe_ctlblk): they live in the trapping CPU's control block.  The guest's
    # jprobe_saved_rsp variable is one global, as in 2.6.12: the global kprobe_lock, held
    # from the jprobe's int3 to the end of its step, keeps a second CPU out meanwhile.
    jprobe_saved_regs = per_cpu("jprobe_saved_regs")
    jprobe_saved_rsp = per_cpu("jprobe_saved_rsp")
    jprobes_stack = per_cpu("jprobes_stack")
    _clock_at_entry = per_cpu("jprobe_clock_at_entry")
    _tick_at_entry = per_cpu("jprobe_tick_at_entry")
    active = per_cpu("jprobe_active")

    @property
    def kcb(self):
        return self.engine.kcb

    def __init__(self, engine: "KprobeEngine"):
        self.engine = engine
        syms = engine.machine.image.symbols
        saved = syms.get("jprobe_saved_rsp")
        self._saved_rsp_var = saved.address if saved else None
        self._params: dict[tuple, list] = {}  # (function, entry) -> its parameters, for function_arguments

    def register_jprobe(self, jp: Jprobe) -> Jprobe:
        engine = self.engine
        machine = engine.machine
        addr = engine.resolve(jp.kp)
        hit = machine.image.symbols.containing(addr)
        if hit is None or hit[1] != 0:
            raise ProbeError("a jprobe goes on a function's entry (offset 0)")
        if callable(jp.entry):
            jp.kp.pre_handler = lambda p, regs: self._python_entry(jp, regs)
        else:
            if self._saved_rsp_var is None or engine._jprobe_return is None:
                raise ProbeError("this image has no jprobe_return/jprobe_saved_rsp: use a Python handler")
            syms = machine.image.symbols
            if isinstance(jp.entry, str):
                if jp.entry not in syms:
                    raise ProbeError(syms.unknown_message(jp.entry))
                jp.entry_addr = syms[jp.entry].address
            else:
                jp.entry_addr = int(jp.entry)
            if not machine.image.is_text(jp.entry_addr):
                raise ProbeError(f"the jprobe handler 0x{jp.entry_addr:x} is not code of the image")
            jp.kp.pre_handler = lambda p, regs: self.setjmp_pre_handler(jp, regs)
            jp.kp.break_handler = lambda p, regs: self.longjmp_break_handler(jp, regs)
        jp.manager = self
        try:
            engine.register_kprobe(jp.kp)
        except ProbeError:
            jp.manager = None
            raise
        return jp

    def unregister_jprobe(self, jp: Jprobe) -> None:
        if jp.manager is not self:
            raise ProbeError(f"{jp!r} is not registered")
        self.engine.unregister_kprobe(jp.kp)
        jp.manager = None

    # ------------------------------------------------------------------ the guest handler path
    def _min_stack_size(self, addr: int) -> int:
        """MIN_STACK_SIZE: up to 64 bytes, never past the top of the task's stack."""
        machine = self.engine.machine
        task = machine.tasks.current()
        lay = machine.tasks.layout
        if task is not None and lay is not None and task.stack and task.stack <= addr < task.stack + lay["stack_size"]:
            to_top = task.stack + lay["stack_size"] - addr
        else:
            to_top = THREAD_SIZE - (addr & (THREAD_SIZE - 1))
        return min(MAX_STACK_SIZE, to_top)

    def setjmp_pre_handler(self, jp: Jprobe, regs) -> int:
        machine = self.engine.machine
        self.jprobe_saved_regs = machine.registers()
        rsp = self.jprobe_saved_regs["rsp"]
        self.jprobe_saved_rsp = rsp
        self.jprobes_stack = machine.read(rsp, self._min_stack_size(rsp))
        machine.write_u64(self._saved_rsp_var, rsp)
        self._clock_at_entry = machine.retired
        self._tick_at_entry = machine.clock.counter.tick
        self.active = jp
        machine.set_reg("eflags", machine.eflags & ~EFLAGS_IF)
        machine.set_reg("rip", jp.entry_addr)
        if self.engine.narrator is not None:
            stack = self.jprobes_stack
            self.engine.narrate(JprobeSetjmp(self.jprobe_saved_regs, rsp, len(stack),
                                             int.from_bytes(stack[:8], "little"), jp.entry_addr))
        return 1

    def longjmp_break_handler(self, jp: Jprobe, regs) -> int:
        engine = self.engine
        machine = engine.machine
        addr = machine.rip - 1
        jr = engine._jprobe_return
        if not (jr.address < addr < (engine._jprobe_return_end or jr.end)):
            return 0
        rsp = machine.reg("rsp")
        if rsp != self.jprobe_saved_rsp:
            machine.stop_guest(
                machine.stop_event(
                    StopReason.BUG,
                    f"kernel BUG in longjmp_break_handler: current rsp 0x{rsp:x} does not match the saved "
                    f"rsp 0x{self.jprobe_saved_rsp:x} of {jp!r} (the handler left its stack unbalanced)",
                    details={"saved_regs": self.jprobe_saved_regs},
                )
            )
            # Leave the CPU as it was at the trap so the state can be inspected.
            return 0
        for name, value in self.jprobe_saved_regs.items():
            machine.set_reg(name, value)
        machine.write(self.jprobe_saved_rsp, self.jprobes_stack)
        # The handler's instructions are the tool's work: the clock goes back to the trap,
        # and so does the next tick, which the handler (IF clear) may have pushed on.
        machine.clock.set(self._clock_at_entry)
        ic = machine.clock.counter
        ic.tick = self._tick_at_entry
        ic.deadline = min(ic.tick, ic.limit)
        self.active = None
        if engine.narrator is not None:
            engine.narrate(JprobeLongjmp(addr, rsp, len(self.jprobe_saved_regs), len(self.jprobes_stack), machine.rip))
        return 1

    # ------------------------------------------------------------------ the Python handler path
    def _python_entry(self, jp: Jprobe, regs) -> int:
        args = self.function_arguments(jp.kp.addr, jp.entry)
        jp.entry(*args)
        return 0

    def function_arguments(self, func_addr: int, entry: Callable | None = None) -> list[int]:
        """The probed call's arguments at entry: count and signedness from DWARF, else from
        the callable's signature."""
        machine = self.engine.machine
        key = (func_addr, entry)
        params = self._params.get(key)
        if params is None:
            # Looked up once per (function, entry): this runs at every hit.
            hit = machine.image.symbols.containing(func_addr)
            params = machine.image.parameters.get(hit[0].name) if hit else None
            if params is None:
                count = _positional_count(entry) if entry is not None else 6
                params = [None] * count
            self._params[key] = params
        values = []
        uch = machine.uch  # the running CPU's: registers read without machine.reg's frame
        for i, param in enumerate(params):
            if i < len(ABI_ARG_REGISTERS):
                raw = _reg_read(uch, _ARG_REGIDS[i])
            else:
                raw = machine.read_u64(_reg_read(uch, _REG_RSP) + 8 * (i - len(ABI_ARG_REGISTERS) + 1))
            if param is not None and param.size < 8:
                raw &= (1 << (8 * param.size)) - 1
                if param.signed and raw >> (8 * param.size - 1):
                    raw -= 1 << (8 * param.size)
            elif param is not None and param.signed and raw >> 63:
                raw -= 1 << 64
            values.append(raw)
        return values


def _positional_count(fn: Callable) -> int:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 6
    n = 0
    for prm in sig.parameters.values():
        if prm.kind is prm.VAR_POSITIONAL:
            return 6
        if prm.kind in (prm.POSITIONAL_ONLY, prm.POSITIONAL_OR_KEYWORD):
            n += 1
    return n

"""The handlers the shell gives its probes: what runs at a hit.

The built-in handlers of `kprobe`, `kretprobe`, `jprobe` without a handler and the
kprobe_events lines build one trace event per hit (trace_event) and hand it to the
session, which keeps it, feeds the maps and prints it (TraceEvent.ftrace in
tracing/trace.py formats the line).  Handler files' functions are wrapped so that the
helpers of kprobe_shell.handlers see the hit.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from .. import handlers as H
from ..machine import MachineError
from ..tracing import fetch as F
from ..tracing.trace import TraceEvent

if TYPE_CHECKING:
    from .session import Session
    from .userprobes import UserProbe


def _signed(value: int) -> int:
    return value - (1 << 64) if value >> 63 else value


def trace_event(session: Session, up: UserProbe, where: str, args: str = "", values: dict | None = None) -> TraceEvent:
    """The trace event of a hit of `up` now: the task, CPU and virtual time, and what the handler adds."""
    m = session.machine
    comm, pid = m.tasks.current_comm_pid() or ("?", -1)
    return TraceEvent(
        time_ns=m.time_ns, comm=comm, pid=pid,
        cpu=m.cpu_id, event=up.event, where=where, args=args, kind=up.kind,
        probe=up.number, values=values or {},
    )


# ---------------------------------------------------------------------- the shell's own handlers
def make_kprobe_handler(session, up: UserProbe, render=None, condition=None):
    """The default pre_handler: one ftrace line per hit, then the probe's commands."""
    machine = session.machine
    fmt = machine.symbols.format
    where_of: dict[int, str] = {}  # sym+off of the probed address, formatted once

    def pre_handler(p, regs):
        args, values = render(regs) if render else ("", {})
        if condition is not None and not condition(values):
            return 0
        where = where_of.get(p.addr)
        if where is None:
            where = where_of[p.addr] = fmt(p.addr)
        session.emit_trace(trace_event(session, up, where, args, values), up)
        session.run_probe_commands(up)
        return 0

    return pre_handler


def make_kprobe_post_handler(session, up: UserProbe):
    """A post_handler in the spirit of the kernel's kprobe_example: one line after the step.

    It runs at the debug trap, before resume_execution, so it sees what the 2005 kernel's
    post_handler saw: rip still inside the insn slot (just past the copy) and TF set."""
    machine = session.machine
    fmt = machine.symbols.format

    def post_handler(p, regs, flags):
        rip, eflags = regs.rip, machine.eflags
        slot = machine.kprobes.slots.slot_of(rip)
        where = f"slot 0x{slot:x}+0x{rip - slot:x}" if slot is not None else fmt(rip)
        args = f" post_handler: rip=0x{rip:x} ({where}) eflags=0x{eflags:x}{' TF' if eflags & 0x100 else ''}"
        session.emit_trace(trace_event(session, up, fmt(p.addr), args, {"rip": rip, "eflags": eflags}), up)

    return post_handler


def make_kretprobe_handler(session, up: UserProbe, render=None, condition=None):
    """The default return handler: the return site and the function, the value signed and hex."""
    machine = session.machine
    fmt = machine.symbols.format

    names: dict[int, str] = {}  # return sites and probed functions, formatted once

    def name_of(addr: int, function: bool = False) -> str:
        key = -addr if function else addr
        text = names.get(key)
        if text is None:
            text = names[key] = machine.symbols.containing(addr)[0].name if function else fmt(addr)
        return text

    def handler(ri, regs):
        site = name_of(ri.ret_addr)
        func = name_of(ri.rp.addr, function=True) if ri.rp else "?"
        args, values = _return_args(regs, render)
        if condition is not None and not condition(values):
            return 0
        session.emit_trace(trace_event(session, up, f"{site} <- {func}", args, values), up)
        session.run_probe_commands(up)
        return 0

    return handler


def _return_args(regs, render) -> tuple[str, dict]:
    """A return probe's ARGS and their values: the event's fetch args, else ret= (rax)."""
    if render is not None:
        return render(regs)
    rax = regs.rax
    return f" ret={_signed(rax)} (0x{rax:x})", {"ret": _signed(rax)}


def make_uprobe_handler(session, up: UserProbe, render=None, condition=None):
    """A uprobe's handler: ftrace's uprobe line, `EVENT: (0x401136) ARGS`."""

    def handler(p, regs):
        args, values = render(regs) if render else ("", {})
        if condition is not None and not condition(values):
            return 0
        session.emit_trace(trace_event(session, up, f"0x{p.vaddr:x}", args, values), up)
        session.run_probe_commands(up)
        return 0

    return handler


def make_uretprobe_handler(session, up: UserProbe, render=None, condition=None):
    """A uretprobe's handler: `EVENT: (0x4011a0 <- 0x401136) ARGS`, the return site and the
    function as print_uprobe_event shows them (and ret= when no ARGS)."""

    def handler(ri, regs):
        args, values = _return_args(regs, render)
        if condition is not None and not condition(values):
            return 0
        session.emit_trace(trace_event(session, up, f"0x{ri.ret_addr:x} <- 0x{ri.func:x}", args, values), up)
        session.run_probe_commands(up)
        return 0

    return handler


def make_jprobe_trace_entry(session, up: UserProbe):
    """A Python jprobe entry that prints the probed call's arguments, named from DWARF."""
    machine = session.machine
    probed: dict[int, tuple] = {}  # the probed address -> (sym+off, DWARF parameters), looked up once

    def entry(*args):
        addr = up.addr
        known = probed.get(addr)
        if known is None:
            func = machine.symbols.containing(addr)[0].name
            known = probed[addr] = (machine.symbols.format(addr), machine.image.parameters.get(func) or [])
        where, params = known
        parts = []
        for i, value in enumerate(args):
            name = params[i].name if i < len(params) else f"arg{i + 1}"
            shown = f"{value}" if value < 0 else f"0x{value:x}"
            if i < len(params) and params[i].is_string and value > 0:
                try:
                    shown = '"' + machine.read_cstring(value).decode("utf-8", "replace") + '"'
                except Exception:  # noqa: BLE001 - a bad pointer shows as (fault)
                    shown = "(fault)"
            parts.append(f"{name}={shown}")
        args_text = (" " + " ".join(parts)) if parts else ""
        session.emit_trace(trace_event(session, up, where, args_text), up)
        session.run_probe_commands(up)

    entry.__qualname__ = "(built-in entry: prints the arguments)"  # what `probes` shows as the handler
    return entry


# ---------------------------------------------------------------------- kprobe_events fetch args
class MachineFetchContext:
    """The FetchContext of the tracing module, read from the machine at a probe hit."""

    def __init__(self, machine, is_return: bool):
        self.machine = machine
        self.is_return = is_return

    def reg(self, name: str) -> int:
        from ..kprobes.regs import canonical_register

        return self.machine.reg(canonical_register(name) or name)

    def register_reader(self, name: str):
        """A function reading the register `name` of the CPU running at the time it is
        called (fetch programs read registers with it), None for no such register."""
        from ..kprobes.regs import canonical_register
        from ..machine import capi
        from ..machine.registers import REGISTERS

        regid = REGISTERS.get(canonical_register(name) or name)
        if regid is None:
            return None
        machine, reg_read = self.machine, capi.reg_read
        return lambda: reg_read(machine.uch, regid)

    def read_mem(self, addr: int, size: int) -> bytes:
        try:
            return self.machine.read(addr, size)
        except MachineError:
            raise F.FetchFault(addr) from None

    def symbol_address(self, name: str) -> int:
        return self.machine.symbols.lookup(name).address

    def symbolize(self, addr: int) -> str:
        return self.machine.symbols.format(addr)

    def comm(self) -> str:
        t = self.machine.tasks.current()
        return t.comm if t else ""

    def pid(self) -> int:
        t = self.machine.tasks.current()
        return t.pid if t else -1

    def retval(self) -> int:
        return self.machine.reg("rax")


# ---------------------------------------------------------------------- handler files' functions
def in_hit_context(session, up, fn, *, returns: bool = False, commands: bool = False):
    """fn(ri, regs) / fn(p, regs) / fn(*args) with the helpers pointed at this hit.

    Exceptions go through untouched: the engine reports them with the user's file:line,
    charges them to the probe (its `faults`) and the guest goes on."""

    @functools.wraps(fn)  # keeps the signature: a jprobe without DWARF counts its arguments
    def call(*args):
        ri = args[0] if returns else None
        with H.active(H.HitContext(session, up, ri)):
            try:
                result = fn(*args)
            except SystemExit as exc:
                # sys.exit() in a handler must not end the shell: it is the handler's fault,
                # reported with the handler's file:line (the traceback is kept).
                raise H.HandlerUsageError(f"sys.exit({exc.code!r}) in a probe handler").with_traceback(
                    exc.__traceback__) from None
        if commands:  # `commands N ... end`, once per hit, as for the shell's own probes
            session.run_probe_commands(up)
        return result

    return call


def first_args(fn):
    """A jprobe function may take fewer parameters than the probed function has (the
    kernel's jprobe handlers must mirror the prototype; leaving off trailing ones is harmless)."""
    from ..kprobes.jprobes import _positional_count

    n = _positional_count(fn)

    @functools.wraps(fn)
    def entry(*args):
        return fn(*args[:n])

    return entry


def pre_handler_of(session, up, fn):
    inner = in_hit_context(session, up, fn, commands=True)

    def pre_handler(p, regs):
        # The kernel's contract: non-zero means "I changed rip, do not single-step".
        return 1 if inner(p, regs) else 0

    return functools.update_wrapper(pre_handler, fn)

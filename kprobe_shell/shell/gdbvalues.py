"""The shell's gdb state around values: the value history ($1, $, $$2), the selected
frame and thread, and the auto-display list; with gdb's frame line
(`#1  0x... in sys_read (fd=3, ...) at fs.c:848`) and source line.

The commands are in commands/gdbdata.py; frames and their registers in frames.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..machine.dwarf_locations import debug_info
from ..tracing.cexpr import evaluate
from ..tracing.cvalue import EvalError, Printer, Value
from . import frames as _frames
from .registry import CommandError


class ValueHistory:
    """gdb's value history: every `print` adds its value as $N."""

    def __init__(self) -> None:
        self.values: list[Value] = []

    def add(self, v: Value) -> int:
        self.values.append(v)
        return len(self.values)

    def get(self, tok: str) -> Value:
        """$ (the last), $$ (the one before), $N, $$N (N back from the last)."""
        n = len(self.values)
        if tok in ("$", "$$") or tok.startswith("$$"):
            back = 0 if tok == "$" else 1 if tok == "$$" else int(tok[2:])
            index = n - back
        else:
            index = int(tok[1:])
        if not self.values:
            raise EvalError("History is empty." if tok in ("$", "$$") or tok.startswith("$$")
                            else f"History has not yet reached ${index}.")
        if not 1 <= index <= n:
            raise EvalError(f"History has not yet reached ${index}." if index > n else
                            "History does not go back that far.")
        return self.values[index - 1]


@dataclass
class Display:
    number: int
    fmt: str
    expr: str
    enabled: bool = True


@dataclass
class GdbState:
    """Per session: history, displays, and what is selected (reset when the guest runs)."""

    history: ValueHistory = field(default_factory=ValueHistory)
    displays: list[Display] = field(default_factory=list)
    next_display: int = 1
    frame: int = 0
    thread: int | None = None   # None: the current task on the CPU that ran last
    watch_hit: object = None    # the watchpoint whose access stopped the guest
    watch_muted: bool = False   # while that access's instruction is run alone

    def guest_ran(self) -> None:
        self.frame = 0
        self.thread = None


def gdb_state(session) -> GdbState:
    state = session.__dict__.get("gdb")
    if state is None:
        state = session.__dict__["gdb"] = GdbState()
    return state


def selected_frames(session, limit: int = 64) -> list[_frames.Frame]:
    m = session.machine
    state = gdb_state(session)
    if m.halted:
        raise CommandError("No stack.")
    if state.thread is None:
        return _frames.walk(m, None, limit)
    thread = next((t for t in _frames.threads(m) if t.number == state.thread), None)
    if thread is None:
        state.thread = None
        return _frames.walk(m, None, limit)
    return _frames.walk(m, _frames.thread_registers(m, thread), limit, thread.task or None)


def selected_frame(session) -> _frames.Frame:
    frames = selected_frames(session)
    state = gdb_state(session)
    if state.frame >= len(frames):
        state.frame = len(frames) - 1
    return frames[state.frame]


def context(session, frame: _frames.Frame | None = None) -> _frames.FrameContext:
    if frame is None and session.machine.halted:
        # No frames once the guest halted; globals and memory can still be read (gdb's
        # print after the program exited).
        frame = _frames.Frame(0, 0, {name: None for name in ("rip", "rsp", "rbp")})
    return _frames.FrameContext(session, frame or selected_frame(session), gdb_state(session).history)


def evaluate_in(session, text: str, frame=None) -> tuple[Value, _frames.FrameContext]:
    ctx = context(session, frame)
    try:
        return evaluate(ctx, text), ctx
    except EvalError as exc:
        raise CommandError(str(exc)) from None


def printer(ctx, fmt: str = "") -> Printer:
    return Printer(ctx.read, ctx.symbolize, fmt)


def parse_format(text: str, allowed: str = "xduotacsz") -> tuple[str, str]:
    """`/FMT rest` -> (format letter, rest); gdb's /x, /d ... (a count is refused)."""
    if not text.startswith("/"):
        return "", text.strip()
    fmt, _, rest = text[1:].partition(" ")
    if len(fmt) != 1 or fmt not in allowed:
        if fmt and fmt[-1] in allowed and fmt[:-1].isdigit():
            raise CommandError("Item count other than 1 is meaningless in \"print\" command.")
        letter = fmt[:1] or "/"
        raise CommandError(f"Undefined output format \"{letter}\" (formats: {' '.join(allowed)})")
    return fmt, rest.strip()


def check_condition(session, addr: int, text: str) -> None:
    """A breakpoint condition, checked when set as gdb checks it: it must parse, and each
    name must be a variable in scope at ADDR, a global, or a symbol."""
    from ..tracing.cexpr import tokenize, _TYPE_WORDS

    try:
        tokens = tokenize(text)
    except EvalError as exc:
        raise CommandError(str(exc)) from None
    if not tokens:
        raise CommandError("Argument required (boolean expression).")
    m = session.machine
    info = debug_info(m.image)
    fn = info.function_at(addr) if info.available else None
    scope = {v.name for v in info.variables_at(fn, addr)} if fn is not None else set()
    for i, (kind, tok) in enumerate(tokens):
        if kind != "name" or tok in _TYPE_WORDS or tok == "sizeof" or (i and tokens[i - 1][1] in (".", "->")):
            continue
        known = tok in scope or tok in m.symbols or (info.available and (
            info.global_variable(tok) is not None or info.type_named(tok) is not None))
        if not known:
            raise CommandError(f'No symbol "{tok}" in current context.')


def condition_at_stop(session, text: str) -> bool:
    """A breakpoint's condition at the instruction it stops at: frame 0 only (no walk)."""
    m = session.machine
    frame = _frames.Frame(0, m.guest_address(m.rip), m.registers())
    frame.regs["rip"] = frame.pc
    v, _ctx = evaluate_in(session, text, frame)
    try:
        return v.as_int() != 0
    except EvalError as exc:
        raise CommandError(str(exc)) from None


def thread_backtrace(session, limit: int) -> list[dict]:
    """`bt` of the thread `thread N` selected, in bt's own format."""
    m = session.machine
    frames = selected_frames(session, limit)
    for f in frames:
        session.out.print(f"#{f.level:<3}0x{f.pc:016x} in {m.symbols.format(f.pc)}")
    return [{"frame": f.level, "addr": f.pc, "where": m.symbols.format(f.pc)} for f in frames]


# ---------------------------------------------------------------------- the frame line
def frame_line(session, frame: _frames.Frame) -> str:
    """`#1  0x0000000000102dba in sys_read (fd=3, buf=0x...) at fs.c:848`, as gdb's bt."""
    ctx = context(session, frame)
    info = ctx.info
    fn = ctx.function
    row = info.line_at(frame.lookup_pc) if info.available else None
    name = fn.name if fn is not None else _symbol_name(session, frame.pc)
    show_pc = frame.level > 0 or row is None or row.address != frame.pc
    text = f"#{frame.level:<3}" + (f"0x{frame.pc:016x} in " if show_pc else "") + name
    if fn is not None:
        text += " (" + ", ".join(f"{v.name}={frame_argument(ctx, v)}" for v in ctx.arguments()) + ")"
    else:
        text += " ()"
    if row is not None and fn is not None:
        text += f" at {row.file}:{row.line}"
    return text


def _symbol_name(session, pc: int) -> str:
    hit = session.machine.symbols.containing(pc)
    return hit[0].name if hit is not None else "??"


def frame_argument(ctx, var) -> str:
    """An argument as bt shows it (`print frame-arguments scalars`: aggregates as ...)."""
    try:
        v = ctx.variable_value(var)
        if v.type.kind in ("struct", "union", "array") and not v.missing:
            return "..."
        return printer(ctx).value(v)
    except EvalError as exc:
        return f"<error: {exc}>"


def source_line(session, frame: _frames.Frame) -> str | None:
    """`848\\t\\tret = vfs_read(...);`: the frame's line of source, when the file is here."""
    from ..tracing.perf_probe import source_lines

    info = debug_info(session.machine.image)
    row = info.line_at(frame.lookup_pc) if info.available else None
    if row is None:
        return None
    lines = source_lines(info, row.file)
    if lines is None or not 0 < row.line <= len(lines):
        return None
    return f"{row.line}\t{lines[row.line - 1]}"


def print_frame(session, frame: _frames.Frame) -> None:
    out = session.out
    out.print(frame_line(session, frame))
    src = source_line(session, frame)
    if src is not None:
        out.print(src)


# ---------------------------------------------------------------------- displays
def show_displays(session) -> None:
    """Each enabled `display`, as gdb shows them when the guest stops: `1: x = 3`."""
    state = gdb_state(session)
    if not state.displays or session.machine.halted:
        return
    for d in state.displays:
        text = display_text(session, d) if d.enabled else None
        # gdb shows a display naming locals only where they are in scope.
        if text is not None and "<error: No symbol " not in text:
            session.out.print(text)


def display_text(session, d: Display) -> str:
    head = f"{d.number}: " + (f"/{d.fmt} " if d.fmt else "") + d.expr
    try:
        v, ctx = evaluate_in(session, d.expr)
        return f"{head} = {printer(ctx, d.fmt).value(v)}"
    except CommandError as exc:
        return f"{head} = <error: {exc}>"

"""gdb's data commands over the guest's DWARF: print/FMT, output, display, frame, up,
down, info frame, info args, info locals, info threads, thread."""
from __future__ import annotations

from ...machine.registers import GENERAL_REGISTERS
from ...tracing.cvalue import EvalError
from .. import frames as _frames
from ..gdbvalues import (Display, context, display_text, evaluate_in, frame_argument, frame_line, gdb_state,
                         parse_format, print_frame, printer, selected_frame, selected_frames, show_displays)
from ..registry import CommandError, command
from .common import no_arguments, parse_number


@command("print", group="inspect", aliases=("inspect",), args=("symbol",),
         summary="evaluate a C expression in the selected frame, as gdb", usage="print[/FMT] EXPR",
         example="print file->f_pos\np/x $rsp\nprint *(long *)$rsp\nprint $1")
def cmd_print(session, rest: str):
    """Evaluate EXPR over the guest's DWARF in the selected frame: parameters, locals and
globals by name, `$rax`..`$r15`, `$pc`, `$sp`, `$fp`, the value history (`$1`, `$`, `$$`,
`$$2`), and C's operators: `->`, `.`, `[i]`, `*`, `&`, casts such as `(long *)`, arithmetic,
comparisons, `sizeof`. The value is printed as gdb prints it and kept as `$N`.
FMT: x hex, d signed, u unsigned, o octal, t binary, c char, a address, s string, z
zero-padded hex. A variable without a location at this address is `<optimized out>`;
print never writes to the guest (an assignment is refused)."""
    v, text = _value_and_text(session, rest)
    if v.type.kind == "void":
        session.out.print("$%d = void" % gdb_state(session).history.add(v))
        return None
    n = gdb_state(session).history.add(v)
    session.out.print(f"${n} = {text}")
    return {"history": n, "value": text}


def _value_and_text(session, rest: str):
    """[/FMT] EXPR evaluated in the selected frame: the value, and its text as gdb prints it."""
    fmt, expr = parse_format(rest)
    v, ctx = evaluate_in(session, expr)
    try:
        return v, printer(ctx, fmt).top(v) if v.type.kind != "void" else "void"
    except EvalError as exc:
        raise CommandError(str(exc)) from None


@command("output", group="inspect", args=("symbol",), summary="print a value alone (no $N, not kept)",
         usage="output[/FMT] EXPR", example="output count")
def cmd_output(session, rest: str):
    """Like print, but only the value: no `$N = `, and it does not enter the value history
(gdb's `output`, for scripts that build their own lines)."""
    _v, text = _value_and_text(session, rest)
    session.out.print(text)
    return text


# ---------------------------------------------------------------------- frames
def _select(session, level: int) -> None:
    frames = selected_frames(session)
    if level < 0:
        raise CommandError("Bottom (innermost) frame selected; you cannot go down.")
    if level >= len(frames):
        if gdb_state(session).frame == len(frames) - 1 and level > len(frames) - 1:
            raise CommandError("Initial frame selected; you cannot go up.")
        raise CommandError(f"No frame at level {level}.")
    gdb_state(session).frame = level
    print_frame(session, frames[level])


@command("frame", group="inspect", aliases=("f",), args=("number",), summary="select and show a stack frame",
         usage="frame [N]", example="frame 1")
def cmd_frame(session, rest: str):
    """Select frame N (0 is the innermost, as `bt` numbers them) and show it with its line
of source. print, info args and info locals then look at that frame. The selection goes
back to frame 0 when the guest runs."""
    if rest.strip():
        _select(session, parse_number(rest.strip(), "frame number"))
    else:
        print_frame(session, selected_frame(session))
    return {"frame": gdb_state(session).frame}


@command("up", group="inspect", args=("number",), summary="select the caller's frame", usage="up [N]")
def cmd_up(session, rest: str):
    """Select the frame N levels up (towards the callers; default 1)."""
    n = parse_number(rest.strip(), "count") if rest.strip() else 1
    state = gdb_state(session)
    last = len(selected_frames(session)) - 1
    if state.frame >= last and n > 0:
        raise CommandError("Initial frame selected; you cannot go up.")
    _select(session, min(state.frame + n, last))


@command("down", group="inspect", args=("number",), summary="select the callee's frame", usage="down [N]")
def cmd_down(session, rest: str):
    """Select the frame N levels down (towards frame 0; default 1)."""
    n = parse_number(rest.strip(), "count") if rest.strip() else 1
    state = gdb_state(session)
    if state.frame == 0 and n > 0:
        raise CommandError("Bottom (innermost) frame selected; you cannot go down.")
    _select(session, max(state.frame - n, 0))


@command("info-frame", group="inspect", aliases=("info frame", "i frame"), summary="the selected frame in detail",
         usage="info frame")
def cmd_info_frame(session, rest: str):
    """gdb's `info frame`: the frame's CFA ("frame at"), pc, the caller's pc (saved rip),
the frames next to it, and where the caller's registers are saved."""
    no_arguments(rest, "info frame")
    frames = selected_frames(session)
    frame = selected_frame(session)
    ctx = context(session, frame)
    m = session.machine
    info = ctx.info
    row = info.unwind_row(frame.lookup_pc) if info.available else None
    cfa = (frame.regs.get(row[0]) or 0) + row[1] if row is not None and frame.regs.get(row[0]) is not None else None
    at = f"0x{cfa:x}" if cfa is not None else "??"
    out = session.out
    out.print(f"Stack level {frame.level}, frame at {at}:")
    name = ctx.function.name if ctx.function else m.symbols.format(frame.pc, with_size=False)
    line = info.line_at(frame.lookup_pc) if info.available and ctx.function else None
    caller = frames[frame.level + 1] if frame.level + 1 < len(frames) else None
    saved = f"; saved rip = 0x{caller.pc:x}" if caller is not None else ""
    out.print(f" rip = 0x{frame.pc:x} in {name}" + (f" ({line.file}:{line.line})" if line else "") + saved)
    if caller is not None and caller.regs.get("rsp") is not None:
        out.print(f" called by frame at 0x{_cfa_of(info, caller) or caller.regs['rsp']:x}")
    if frame.level > 0:
        out.print(f" caller of frame at 0x{_cfa_of(info, frames[frame.level - 1]) or 0:x}")
    if frame.hijacked:
        out.print(" return address held by a kretprobe instance (the stack holds kretprobe_trampoline)")
    args = ", ".join(f"{v.name}={frame_argument(ctx, v)}" for v in ctx.arguments())
    out.print(f" Arglist at {at}, args: {args}")
    if row is not None and cfa is not None:
        out.print(f" Locals at {at}, Previous frame's sp is 0x{cfa:x}")
        regs = sorted(row[2].items(), key=lambda kv: GENERAL_REGISTERS.index(kv[0]))
        out.print(" Saved registers:")
        out.print("  " + ", ".join(f"{reg} at 0x{cfa + off:x}" for reg, off in regs))
    return {"level": frame.level, "pc": frame.pc, "cfa": cfa}


def _cfa_of(info, frame) -> int | None:
    row = info.unwind_row(frame.lookup_pc) if info.available else None
    if row is None or frame.regs.get(row[0]) is None:
        return None
    return frame.regs[row[0]] + row[1]


def _list_variables(session, which: str, empty: str) -> list[dict]:
    ctx = context(session)
    if ctx.function is None:
        raise CommandError("No symbol table info available.")
    rows = []
    for var in getattr(ctx, which)():
        try:
            text = printer(ctx).value(ctx.variable_value(var))
        except EvalError as exc:
            text = f"<error: {exc}>"
        session.out.print(f"{var.name} = {text}")
        rows.append({"name": var.name, "value": text})
    if not rows:
        session.out.print(empty)
    return rows


@command("info-args", group="inspect", aliases=("info args", "i args"), summary="the selected frame's arguments",
         usage="info args")
def cmd_info_args(session, rest: str):
    """Each argument of the selected frame's function, from its DWARF location here."""
    no_arguments(rest, "info args")
    return _list_variables(session, "arguments", "No arguments.")


@command("info-locals", group="inspect", aliases=("info locals", "i locals"),
         summary="the selected frame's local variables", usage="info locals")
def cmd_info_locals(session, rest: str):
    """Each local variable in scope at the selected frame's pc (innermost block first);
one with no location here is `<optimized out>`, as gdb says."""
    no_arguments(rest, "info locals")
    return _list_variables(session, "locals", "No locals.")


# ---------------------------------------------------------------------- threads
@command("info-threads", group="inspect", aliases=("info threads", "i threads"), summary="CPUs and tasks as threads",
         usage="info threads")
def cmd_info_threads(session, rest: str):
    """The guest's threads as gdb shows them through the gdb stub: each CPU is a thread
(CPU n is thread n+1, as QEMU numbers them), and each task not on a CPU follows, its
frame taken from the context switch_to() saved. `*` marks the selected thread."""
    no_arguments(rest, "info threads")
    m = session.machine
    state = gdb_state(session)
    current = state.thread or m.cpu_id + 1
    out = session.out
    out.print(f"  {'Id':<4} {'Target Id':<40} Frame", "header")
    data = []
    for t in _frames.threads(m):
        task = m.tasks.read_task(t.task) if t.task else None
        if t.cpu is not None:
            cpu = m.cpus[t.cpu]
            word = {"online": "running", "parked": "halted", "wait-for-sipi": "waiting for SIPI"}[cpu.state.value]
            target = f"CPU#{t.cpu} [{word}]" + (f" {task.label}" if task else "")
        else:
            target = f"Task {task.label} [{task.state_word}]" if task else f"Task 0x{t.task:x}"
        try:
            frame = _frames.walk(m, _frames.thread_registers(m, t), 1)[0]
            where = frame_line(session, frame)[4:]
        except Exception as exc:  # noqa: BLE001 - a task's saved context may be unreadable
            where = f"<unreadable: {str(exc)[:60]}>"
        mark = "*" if t.number == current else " "
        out.print(f"{mark} {t.number:<4} {target:<40} {where}")
        data.append({"id": t.number, "target": target, "frame": where})
    return data


@command("thread", group="inspect", args=("number",), summary="select a thread (a CPU or a sleeping task)",
         usage="thread [N]", example="thread 2")
def cmd_thread(session, rest: str):
    """Select thread N of `info threads`: print, bt-style frames (frame, up, down, info
locals) then look at that CPU or at that sleeping task's saved context. With no N, say
which thread is selected. Running the guest selects the CPU that stops again."""
    m = session.machine
    state = gdb_state(session)
    threads = _frames.threads(m)
    if not rest.strip():
        n = state.thread or m.cpu_id + 1
        session.out.print(f"[Current thread is {n}]")
        return {"thread": n}
    n = parse_number(rest.strip(), "thread number")
    chosen = next((t for t in threads if t.number == n), None)
    if chosen is None:
        raise CommandError(f"Invalid thread ID: {n} (threads: 1-{len(threads)})")
    state.thread = None if chosen.cpu == m.cpu_id else n
    state.frame = 0
    task = m.tasks.read_task(chosen.task) if chosen.task else None
    label = f"CPU#{chosen.cpu}" if chosen.cpu is not None else "Task"
    session.out.print(f"[Switching to thread {n} ({label}" + (f" {task.label}" if task else "") + ")]")
    print_frame(session, selected_frame(session))
    return {"thread": n}


# ---------------------------------------------------------------------- display
@command("display", group="inspect", args=("symbol",), summary="show an expression at every stop",
         usage="display[/FMT] [EXPR]", example="display count\ndisplay/x $rsp")
def cmd_display(session, rest: str):
    """Add EXPR to the auto-display list: it is shown now and each time the guest stops
(`1: count = 4096`), evaluated in the frame where the guest stopped. With no EXPR, show
them all now."""
    state = gdb_state(session)
    if not rest.strip():
        show_displays(session)
        return None
    fmt, expr = parse_format(rest)
    if not expr:
        raise CommandError("usage: display[/FMT] EXPR")
    d = Display(state.next_display, fmt, expr)
    evaluate_in(session, expr)  # a bad expression is refused now, as gdb does
    state.next_display += 1
    state.displays.append(d)
    session.out.print(display_text(session, d))
    return {"display": d.number}


@command("undisplay", group="inspect", args=("number",), summary="remove auto-display expressions",
         usage="undisplay [N...]")
def cmd_undisplay(session, rest: str):
    """Remove display N (all of them when no N is given)."""
    state = gdb_state(session)
    words = rest.split()
    if not words:
        state.displays.clear()
        return None
    numbers = [parse_number(w, "display number") for w in words]
    for n in numbers:
        if not any(d.number == n for d in state.displays):
            raise CommandError(f"No display number {n}.")
    state.displays = [d for d in state.displays if d.number not in numbers]
    return None


@command("info-display", group="inspect", aliases=("info display", "i display"),
         summary="the auto-display expressions", usage="info display")
def cmd_info_display(session, rest: str):
    """The expressions `display` shows at each stop, by number."""
    no_arguments(rest, "info display")
    state = gdb_state(session)
    if not state.displays:
        session.out.print("There are no auto-display expressions now.")
        return []
    session.out.print("Auto-display expressions now in effect:\nNum Enb Expression")
    for d in state.displays:
        session.out.print(f"{d.number}:   {'y' if d.enabled else 'n'}  " + (f"/{d.fmt} " if d.fmt else "") + d.expr)
    return [{"number": d.number, "expr": d.expr, "format": d.fmt} for d in state.displays]


# ---------------------------------------------------------------------- watchpoints
def _watch(session, rest: str, access: str):
    from ..userprobes import UserProbe
    from ..watchpoints import TITLES, create_watchpoint

    expr = rest.strip()
    if not expr:
        raise CommandError("Argument required (expression to compute).")
    v, _ctx = evaluate_in(session, expr)
    if v.address is None:
        where = f" (it is in {v.register} here)" if v.register else ""
        raise CommandError(f"Cannot watch constant value `{expr}'{where}: watch memory (a global, *pointer, "
                           "a struct member)")
    if not 1 <= v.type.size <= 4096:
        raise CommandError(f"a watchpoint covers 1 to 4096 bytes, not {v.type.size}")
    up = UserProbe(number=0, kind="w", location=expr, addr=v.address,
                   spec={"access": access, "size": v.type.size, "ctype": v.type})
    create_watchpoint(session, up)
    session.out.print(f"{TITLES[access]} {up.number}: {expr}")
    return {"number": up.number, "addr": up.addr, "size": v.type.size}


@command("watch", repeatable=False, group="running", args=("symbol",),
         summary="stop when EXPR's value changes (a data watchpoint)", usage="watch EXPR",
         example="watch jiffies\nwatch file->f_pos")
def cmd_watch(session, rest: str):
    """Stop right after an instruction writes a new value into EXPR's bytes, with gdb's
"Old value = / New value =" and where it happened. EXPR is evaluated once, now, for its
address (a global, *pointer, a member); the hook covers those bytes only and costs nothing
elsewhere. Writes of the same value go on silently, as in gdb. `delete N` removes it."""
    return _watch(session, rest, "write")


@command("rwatch", repeatable=False, group="running", args=("symbol",),
         summary="stop when EXPR is read", usage="rwatch EXPR")
def cmd_rwatch(session, rest: str):
    """Stop right after an instruction reads EXPR's bytes ("Value = ...")."""
    return _watch(session, rest, "read")


@command("awatch", repeatable=False, group="running", args=("symbol",),
         summary="stop when EXPR is read or written", usage="awatch EXPR")
def cmd_awatch(session, rest: str):
    """Stop right after an instruction reads or writes EXPR's bytes."""
    return _watch(session, rest, "access")

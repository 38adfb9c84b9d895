"""Running the guest: run, continue, stepi, nexti, finish, until, reset, load."""
from __future__ import annotations

import os

from ...kprobes.x86 import decode_at
from ...machine import MachineError, StopReason
from ..registry import CommandError, command
from ..gdbvalues import gdb_state
from ..userprobes import delete_user_probe
from ..watchpoints import finish_watch_stop
from ..locations import parse_location
from .common import no_arguments, parse_number


def _go(session, max_insns: int | None = None, quiet_budget: bool = False):
    """Run, honouring breakpoints: the one we are stopped at is stepped over first.
    A breakpoint whose commands end in `continue` (gdb's idiom) goes round this loop
    again, however many stops there are."""
    while True:
        event, go_on = _run_to_next_stop(session, max_insns, quiet_budget)
        if not go_on:
            return event
        max_insns = None


def _run_to_next_stop(session, max_insns: int | None, quiet_budget: bool):
    """One run up to the next stop, reported; then the commands of the breakpoint it
    stopped at, if any.  Returns the stop and whether those commands said `continue`."""
    m = session.machine
    if m.halted:
        raise CommandError("the guest has halted; 'reset' gives a fresh machine")
    last = session.stop_event
    if last is not None and last.reason in (StopReason.FAULT, StopReason.BUG):
        raise CommandError(f"the guest stopped on a {last.reason.value} ({last.message}); 'reset' gives a fresh machine")
    if last is not None and last.reason is StopReason.BREAKPOINT:
        session._skip_break_once = m.rip
    session.last_regs = m.registers()
    event = session.run_guest(max_insns)
    session._skip_break_once = None
    if "watch" in event.details and gdb_state(session).watch_hit is not None:
        event, go_on = finish_watch_stop(session, event)
        if go_on:
            return event, True
    up = session._stop_at_break
    if event.reason is StopReason.BREAKPOINT and up is not None and up.kind == "t":
        delete_user_probe(session, up)
    session.report_stop(event, quiet_budget=quiet_budget)
    if event.reason is StopReason.BREAKPOINT and up is not None and up.commands:
        for line in up.commands:
            if line.strip() in ("continue", "c", "cont"):
                return event, True
            session.execute(line, from_probe=True)
    return event, False


@command("run", group="running", aliases=("r",), args=("number",), runs_guest=True,
         summary="run the guest (until it halts, faults, hits a breakpoint, or N instructions)",
         usage="run [N] [&]", example="run\nrun 20000\nrun &")
def cmd_run(session, rest: str):
    """Run the guest from where it is. With N, stop after N more guest instructions (an
instruction budget; the virtual clock counts exactly). Ctrl-C stops a running guest.
At the interactive prompt, a trailing & (`run &`, `continue &`) runs it in the background:
the prompt comes back at once, output appears above it, `interrupt` stops it."""
    n = parse_number(rest, "instruction count") if rest else None
    if n is not None and n <= 0:
        raise CommandError("the instruction budget must be positive")
    ev = _go(session, n)
    return {"reason": ev.reason.value, "rip": ev.rip, "time_ns": ev.time_ns}


@command("interrupt", group="running", repeatable=False, summary="stop a guest running in the background",
         usage="interrupt", example="continue &\ninterrupt")
def cmd_interrupt(session, rest: str):
    """Stop the guest started with `run &` / `continue &` (gdb's non-stop habit); the stop
is reported as an interruption and the guest stays inspectable. Ctrl-C at the prompt does
the same."""
    if not session.background_running:
        raise CommandError("the guest is not running in the background")
    if not session.stop_background():
        raise CommandError("the guest did not stop within 10 s (a handler may be stuck)")
    return None


@command("continue", group="running", aliases=("c", "cont"), args=("number",), runs_guest=True,
         summary="continue after a stop", usage="continue [N] [&]")
def cmd_continue(session, rest: str):
    """Same as run: go on from the current instruction (past a breakpoint we stopped at)."""
    return cmd_run(session, rest)


@command("stepi", group="running", aliases=("si",), args=("number",), runs_guest=True,
         summary="execute N guest instructions (default 1)", usage="stepi [N]")
def cmd_stepi(session, rest: str):
    """Execute exactly N guest instructions, then show where the guest is. A probed
instruction counts as one: its trap, handlers and out-of-line step are the tool's work."""
    n = parse_number(rest, "count") if rest else 1
    if n <= 0:
        raise CommandError("the count must be positive")
    ev = _go(session, n, quiet_budget=True)
    _show_pc(session)
    return {"reason": ev.reason.value, "rip": ev.rip}


def _show_pc(session) -> None:
    from .inspect import disassemble_lines

    m = session.machine
    if m.halted:
        return
    for line in disassemble_lines(session, m.rip, 1, mark_pc=True):
        session.out.print(line)


def _run_to(session, addr: int, above: int | None = None):
    """Run until rip reaches addr in the current task (a temporary internal breakpoint);
    with `above`, only once rsp is at least that high (the frame was left, not a
    recursive call's copy of it)."""
    m = session.machine
    task = m.tasks.current_address()
    hit = {"stop": False}

    def on_reach(machine):
        if above is not None and machine.reg("rsp") < above:
            return
        if machine.tasks.current_address() == task and not machine.kprobes.kprobe_running():
            machine.clock.uncount_current()
            hit["stop"] = True
            machine.stop_guest(machine.stop_event(StopReason.BREAKPOINT, "reached"))

    handle = m.add_code_hook(addr, on_reach)
    try:
        return _go(session, None)
    finally:
        m.remove_hook(handle)


@command("nexti", group="running", aliases=("ni",), runs_guest=True, summary="step one instruction, over calls",
         usage="nexti")
def cmd_nexti(session, rest: str):
    """Like stepi, but a call runs to its return."""
    no_arguments(rest, "nexti")
    m = session.machine
    try:
        insn = decode_at(session.machine.kprobes.original_bytes(m.rip, 15), m.rip)
    except MachineError:
        insn = None  # rip in unmapped memory (after a fault): step it, and report the fault
    if insn is not None and insn.mnemonic == "call":
        _run_to(session, m.rip + insn.length)
    else:
        _go(session, 1, quiet_budget=True)
    _show_pc(session)


@command("finish", group="running", aliases=("fin",), runs_guest=True,
         summary="run until the selected frame returns; show the value returned", usage="finish")
def cmd_finish(session, rest: str):
    """Run until the selected frame (frame 0 unless `frame`/`up` chose another) returns
to its caller, as gdb's finish: "Run till exit from #0 ...", the caller's frame, and
"Value returned is $N = ..." from rax, typed from the function's DWARF (kept in the
value history). The return address is the real one: a return address the kretprobe
trampoline replaced is looked up in the task's instances. A breakpoint met before the
return stops there instead, as in gdb."""
    from ..gdbvalues import frame_line, gdb_state, selected_frames

    no_arguments(rest, "finish")
    frames = selected_frames(session)
    level = gdb_state(session).frame
    if level + 1 >= len(frames):
        raise CommandError("no caller frame to finish to (\"finish\" not meaningful in the outermost frame)")
    if gdb_state(session).thread is not None:
        raise CommandError("finish runs the thread that stopped; `thread` selected another one")
    callee, caller = frames[level], frames[level + 1]
    session.out.print(f"Run till exit from {frame_line(session, callee)}")
    ret_type = _return_type(session, callee)
    event = _run_to(session, caller.pc, above=caller.regs.get("rsp"))
    if session.machine.halted or event.message != "reached":
        return None
    _show_frame(session)
    if ret_type is not None:
        _value_returned(session, ret_type)
    return None


def _return_type(session, frame):
    """The DWARF return type of the frame's function (None: void or no debug info)."""
    from ...machine.dwarf_locations import debug_info

    info = debug_info(session.machine.image)
    fn = info.function_at(frame.lookup_pc) if info.available else None
    if fn is None or "DW_AT_type" not in fn.die.attributes:
        return None
    return fn.die.get_DIE_from_attribute("DW_AT_type")


def _value_returned(session, type_die) -> None:
    from ...tracing.cvalue import Value, ctype_of
    from ..gdbvalues import gdb_state, printer, context

    t = ctype_of(type_die)
    if not t.is_scalar:
        session.out.print(f"Value returned has type: {t.spell()}. Cannot determine contents")
        return
    rax = session.machine.reg("rax")
    v = Value(t, rax.to_bytes(8, "little")[: t.size], register="rax")
    n = gdb_state(session).history.add(v)
    session.out.print(f"Value returned is ${n} = {printer(context(session)).top(v)}")


def _show_frame(session) -> None:
    """gdb's stop location: the frame line (without its level, as at any stop), then its
    line of source."""
    from ..gdbvalues import frame_line, selected_frame, source_line

    frame = selected_frame(session)
    session.out.print(frame_line(session, frame)[4:])
    src = source_line(session, frame)
    if src is not None:
        session.out.print(src)


@command("until", group="running", aliases=("u", "advance"), args=("location",), runs_guest=True,
         summary="run until LOCATION is reached by the current task", usage="until LOCATION")
def cmd_until(session, rest: str):
    """Run until the current task reaches LOCATION."""
    if not rest:
        raise CommandError("usage: until LOCATION")
    _sym, _off, addr = parse_location(session, rest)
    if not session.machine.image.is_text(addr):
        # A data or unmapped address is never executed: the guest would run to its end.
        raise CommandError(f"0x{addr:x} is not in the image's text: the guest never executes it")
    _run_to(session, addr)
    _show_pc(session)


@command("reset", group="running", runs_guest=False, repeatable=False,
         summary="a fresh machine from the same image (probes are kept)", usage="reset [--no-probes]")
def cmd_reset(session, rest: str):
    """Boot a fresh machine from the image. Probes and breakpoints are registered again on
it (counters start from zero) unless --no-probes."""
    keep = rest.strip() != "--no-probes"
    if rest.strip() not in ("", "--no-probes"):
        raise CommandError("usage: reset [--no-probes]")
    path = session.image_path if session.image_explicit else session.bundled_image()
    failures = session.replace_machine(path, keep_probes=keep)
    for f in failures:
        session.out.error(f)
    cpus = session.machine.ncpus
    # The bundled kernel by name: its path depends on where the package is installed, and
    # the same script must print the same bytes from any checkout.
    image = session.image_path if session.image_explicit else f"the bundled {os.path.basename(session.image_path)}"
    session.out.print(f"Fresh machine from {image}" + (f" with {len(session.probes)} probe(s)" if keep else "")
                      + (f", {cpus} CPUs" if cpus > 1 else ""))


@command("load", group="running", args=("file",), repeatable=False,
         summary="load another guest image (the current one stays on error)", usage="load IMAGE")
def cmd_load(session, rest: str):
    """Load a static x86_64 ELF image. A broken image is refused and the shell stays on its
current machine. Probes are re-created by symbol where the new image has them."""
    args = session.split_args(rest)
    if len(args) != 1:
        raise CommandError("usage: load IMAGE")
    failures = session.replace_machine(args[0], keep_probes=True)
    session.image_explicit = True
    for f in failures:
        session.out.error(f)
    m = session.machine
    session.out.print(f"Loaded {args[0]}: entry {m.symbols.format(m.image.entry)}, {len(m.symbols)} symbols")
    if failures:
        # Loaded, but not all that was asked for is there: an error, so a script stops here.
        raise CommandError(f"{len(failures)} probe(s) could not be re-created on the new image (see above)")


@command("exec", group="running", args=("file",), repeatable=False,
         summary="run a static Linux program as a user process (a fresh machine)",
         usage="exec PROGRAM [ARG...] [< FILE]")
def cmd_exec(session, rest: str):
    """Put the host executable PROGRAM on the guest's disk as /bin/NAME; init runs it with
fork + execve, with ARGs and stdin from FILE. Several `exec` lines run several processes at
once. The programs replace the built-in workload (`set keep-workload on` keeps it). The
machine is booted afresh with every program given so far; probes are kept."""
    from ...machine.userspace import Program, UserSpaceError

    try:
        prog = Program.parse(rest)
    except UserSpaceError as exc:
        raise CommandError(str(exc)) from None
    if session.image_explicit and session.machine.userspace is None:
        raise CommandError(f"{session.image_path} cannot run programs: the bundled kernel can (its CONFIG_USERSPACE build)")
    session.programs.append(prog)
    try:
        failures = session.replace_machine(session.image_path if session.image_explicit else session.bundled_image())
    except CommandError:
        session.programs.pop()
        raise
    for f in failures:
        session.out.error(f)
    session.out.print(f"exec: /bin/{prog.name} queued ({len(session.programs)} program(s)); `run` starts them")

"""The shell itself: help, echo, source, set, show, trace, quit."""
from __future__ import annotations

import os

from ...userfiles import UserFileError, printable_name, read_user_file, text_lines
from ..registry import REGISTRY, CommandError, QuitRequest, command
from ..settings import SETTINGS, apply_setting, setting


@command("help", group="shell", aliases=("h", "?"), args=("command",), repeatable=False,
         summary="list commands, or show one command's usage and example", usage="help [COMMAND]")
def cmd_help(session, rest: str):
    """Without an argument: every command by group, one line each. With one: its usage,
what it does, its aliases and an example."""
    out = session.out
    if not rest.strip():
        for title, cmds in REGISTRY.by_group():
            out.print(title + ":", "header")
            for c in cmds:
                alias = f" ({', '.join(c.aliases)})" if c.aliases else ""
                out.print(f"  {c.name:<12} {c.summary}{alias}")
        out.print("")
        out.print("Probe definitions in ftrace's kprobe_events language also work as commands:")
        out.print("  p[:[GRP/]EVENT] SYM[+offs]|ADDR [FETCHARGS]    r[MAXACTIVE][:[GRP/]EVENT] SYM [FETCHARGS]")
        out.print("  -:[GRP/]EVENT                                  ('help probe-event' for the details)")
        out.print("and bpftrace-style maps fed by a probe: @NAME[KEY, ...] = FUNC(FIELD) on EVENT ('help aggregate').")
        out.print("'help COMMAND' shows usage and an example.")
        return None
    cmd, _ = REGISTRY.lookup_line(rest.strip())
    out.print(f"usage: {cmd.usage}", "header")
    if cmd.details:
        out.print("")
        for line in cmd.details.splitlines():
            out.print(line.strip())
    if cmd.aliases:
        out.print(f"\naliases: {', '.join(cmd.aliases)}")
    if cmd.example:
        out.print("\nexample:")
        for line in cmd.example.splitlines():
            out.print(f"  (kprobe) {line}")
    return None


@command("echo", group="shell", args=("text",), repeatable=False, summary="print text (for scripts and demos)",
         usage="echo TEXT")
def cmd_echo(session, rest: str):
    """Print TEXT. \\n in TEXT is a newline, as in gdb's echo."""
    session.out.print(rest.replace("\\n", "\n").rstrip("\n") if rest.endswith("\\n") else rest.replace("\\n", "\n"))


#: How deeply `source` files may nest.
MAX_SOURCE_DEPTH = 16


@command("source", group="shell", args=("file",), repeatable=False, summary="run the commands in a file",
         usage="source FILE")
def cmd_source(session, rest: str):
    """Run a command file: one command per line, # comments, commands ... end blocks. The
first error stops the file and is reported as FILE:LINE: message."""
    path = os.path.expanduser(rest.strip())
    if not path:
        raise CommandError("usage: source FILE")
    depth = getattr(session, "_source_depth", 0)
    if depth >= MAX_SOURCE_DEPTH:
        raise CommandError(f"source {path}: command files nested more than {MAX_SOURCE_DEPTH} deep "
                           "(does a file source itself?)")
    try:
        lines = text_lines(read_user_file(path))
    except UserFileError as exc:
        raise CommandError(f"cannot read {printable_name(path)}: {exc}") from None
    except UnicodeDecodeError:
        raise CommandError(f"cannot read {path}: not a text file") from None
    session._source_depth = depth + 1
    try:
        session.run_lines(lines, path)
    finally:
        session._source_depth = depth


@command("set", group="shell", args=("setting", "text"), repeatable=False, summary="change a setting",
         usage="set NAME VALUE", example="set kprobe-mode single-step\nset explain on",
         details="\n".join(f"{s.name}: {s.help}" for s in SETTINGS))
def cmd_set(session, rest: str):
    parts = rest.split(None, 1)
    if len(parts) != 2:
        raise CommandError("usage: set NAME VALUE ('show' lists the settings)")
    apply_setting(session, parts[0], parts[1].strip())


@command("show", group="shell", args=("setting",), repeatable=False, summary="show settings", usage="show [NAME]")
def cmd_show(session, rest: str):
    """Show one setting or all of them."""
    names = [rest.strip()] if rest.strip() else [s.name for s in SETTINGS]
    for n in names:
        if n not in session.settings:
            raise CommandError(f"unknown setting '{n}'")
        row = setting(n)
        session.out.print(f"{n:<16} {row.shown(session.settings[n]):<12} {row.help}")
    return {n: session.settings[n] for n in names}


@command("trace", group="trace", args=("text",), repeatable=False,
         summary="the trace buffer: show, pipe, stats, clear, save FILE (text, trace.dat, folded, chrome), --svg FILE",
         usage="trace [show|pipe|stats|clear|save [--format text|dat|folded|chrome] [--v7] FILE|--svg FILE]")
def cmd_trace(session, rest: str):
    """Every trace line in the buffer (ftrace format, virtual time) under ftrace's `#
tracer: nop` header, whose entries-in-buffer/entries-written says how many events a full
buffer overwrote. The buffer is ftrace's: `set trace-buffer-size KB` per CPU (1408 as
ftrace boots with), the oldest events overwritten when full, or new ones dropped with `set
trace-overwrite off`. `trace pipe` reads the buffer as trace_pipe does: the events not
read yet, then they are gone, `CPU:N [LOST M EVENTS]` before a CPU's first event after
events it lost. `trace stats` prints each CPU's per_cpu/cpuN/stats (entries, overrun,
dropped events). `trace save FILE` writes the lines to a file under the header; FILE.dat
(or --format dat) is trace-cmd's trace.dat (v6; --v7 for version 7), which `trace-cmd
report -i FILE.dat` and KernelShark read (recorded stacks as ftrace's kernel_stack
entries, overwritten events as the page's missed events: trace-cmd says `CPU:N [M EVENTS
DROPPED]`); --format folded writes the recorded stacks (`set trace-stack on`, or `trigger
EVENT stacktrace`) one line per distinct stack with its count, for flame graphs; --format
chrome writes Chrome Trace Event JSON (Perfetto, speedscope): a track per task,
entry/return pairs as nested slices, other hits as instants. `trace --svg FILE` draws the
trace as a timeline: one row per task, entry/return pairs as bars, other hits as ticks."""
    args = session.split_args(rest)
    sub = args[0] if args else "show"
    if sub in ("show", "pipe", "stats") and len(args) > 1:
        raise CommandError(f"usage: trace {sub}")
    if sub == "show":
        from ...tracing import export

        out = session.out
        for line in export.text_header(session.trace, session.machine.ncpus).splitlines():
            out.print(line)
        for line in session.trace.lines():
            out.print(out.guest_text(line))
    elif sub == "pipe":
        for line in session.trace.consume():
            session.out.print(session.out.guest_text(line))
    elif sub == "stats":
        return trace_stats(session)
    elif sub == "clear":
        session.trace.clear()
    elif sub == "save":
        save_trace(session, args[1:])
    elif sub == "--svg":
        from ... import figures

        if len(args) != 2:
            raise CommandError("usage: trace --svg FILE")
        figures.save_svg(session, figures.timeline_svg(session.trace.events), args[1], "the trace timeline")
    else:
        raise CommandError("usage: trace [show|pipe|stats|clear|save [--format FMT] [--v7] FILE]")
    return None


def trace_stats(session) -> list[dict]:
    """`trace stats`: per_cpu/cpuN/stats of every CPU, under a `CPU: N` line as trace-cmd's
    report --stat prints them."""
    trace, now = session.trace, session.machine.time_ns
    rows = []
    for cpu in range(max(session.machine.ncpus, len(trace.cpus))):
        session.out.print(f"CPU: {cpu}")
        for line in trace.stats(cpu, now).splitlines():
            session.out.print(line)
        buf = trace.cpu(cpu)
        rows.append({"cpu": cpu, "entries": buf.entries, "overrun": buf.overrun, "bytes": buf.bytes,
                     "dropped": buf.dropped, "read": buf.read})
    return rows


def save_trace(session, args: list[str]) -> None:
    """`trace save [--format text|dat|folded|chrome] [--v7] FILE` (tracing/export.py)."""
    from ...tracing import export

    version = 7 if "--v7" in args else 6
    args = [a for a in args if a != "--v7"]
    given = None
    if len(args) == 3 and args[0] == "--format":
        given, args = args[1], args[2:]
    if len(args) != 1:
        raise CommandError("usage: trace save [--format text|dat|folded|chrome] [--v7] FILE")
    path = args[0]
    try:
        fmt = export.format_for(path, given)
        if version == 7 and fmt != "dat":
            raise ValueError("--v7 is trace.dat's version 7: for the dat format only")
        data = export.render(fmt, session, version)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    try:
        with open(os.path.expanduser(path), "wb") as f:
            f.write(data)
    except OSError as exc:
        raise CommandError(f"cannot write {printable_name(path)}: {exc.strerror}") from None
    except ValueError:  # open() refuses a name with a NUL byte
        raise CommandError(f"cannot write {printable_name(path)}: the file name contains a NUL byte") from None
    what = "trace lines" if fmt == "text" else f"events ({export.DESCRIPTIONS[fmt]}{', v7' if version == 7 else ''})"
    session.out.print(f"Saved {session.trace.entries} {what} to {path}")


@command("trigger", group="trace", args=("text",), repeatable=False,
         summary="ftrace's event triggers: record the stack with one event's hits",
         usage="trigger [EVENT stacktrace|EVENT !stacktrace]", example="trigger open stacktrace")
def cmd_trigger(session, rest: str):
    """As `echo stacktrace > events/kprobes/EVENT/trigger`: every hit of EVENT records the
task's stack (frame pointers, kretprobe_trampoline slots resolved to the real return
addresses), shown under its trace line and saved by `trace save` (all formats).
`trigger EVENT !stacktrace` removes it; `trigger` lists them. `set trace-stack on` does
it for every event."""
    args = session.split_args(rest)
    recorder = session.stacks
    if not args:
        for name in sorted(recorder.events):
            session.out.print(f"{name}: stacktrace")
        return sorted(recorder.events)
    if len(args) != 2 or args[1] not in ("stacktrace", "!stacktrace"):
        raise CommandError("usage: trigger EVENT stacktrace|!stacktrace")
    name, action = args
    if action == "stacktrace":
        if not any(up.event == name for up in session.probes.values()):
            have = ", ".join(sorted({up.event for up in session.probes.values() if up.event})) or "none"
            raise CommandError(f"no event '{name}' (events: {have})")
        recorder.events.add(name)
    elif name not in recorder.events:
        raise CommandError(f"event '{name}' has no stacktrace trigger")
    else:
        recorder.events.discard(name)
    recorder.update()
    return None


@command("quit", group="shell", aliases=("q", "exit"), repeatable=False, summary="leave the shell", usage="quit")
def cmd_quit(session, rest: str):
    """Leave the shell (Ctrl-D too)."""
    raise QuitRequest()


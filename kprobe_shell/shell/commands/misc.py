"""The shell itself: help, echo, source, set, show, trace, quit."""
from __future__ import annotations

import os

from ...numbers import NumberError, parse_int
from ...userfiles import UserFileError, printable_name, read_user_file, text_lines
from ..registry import REGISTRY, CommandError, command

SETTINGS_HELP = {
    "timer-period": "guest instructions between timer interrupts (applies at the next reset/load)",
    "cpus": "virtual CPUs, 1-4 (applies at the next reset/load; the bundled kernel's SMP build for 2+)",
    "kprobe-mode": "how probes get past their instruction: auto, single-step, boost, optimize (1 CPU only)",
    "kprobe-step": "where the probed instruction is stepped: out-of-line (its slot) or in-place (naive)",
    "handler-error": "when a handler raises: continue, disable (the probe), stop (the guest)",
    "handler-timeout": "seconds a Python handler may run before it is stopped (a handler error); off: no limit",
    "explain": "narrate each step of the probe mechanism: on/off",
    "color": "colour output: on/off (default: on for a terminal)",
    "history-size": "commands kept in the history file (trimmed at once and at every start)",
}


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


#: The longest timer period (instructions): ticks stay far inside the 64-bit clock.
MAX_TIMER_PERIOD = 10**12
#: How deeply `source` files may nest.
MAX_SOURCE_DEPTH = 16


@command("source", group="shell", args=("file",), repeatable=False, summary="run the commands in a file",
         usage="source FILE")
def cmd_source(session, rest: str):
    """Run a command file: one command per line, # comments, commands ... end blocks. The
first error stops the file and is reported as FILE:LINE: message."""
    from ..script import run_lines

    path = os.path.expanduser(rest.strip())
    if not path:
        raise CommandError("usage: source FILE")
    depth = getattr(session, "_source_depth", 0)
    if depth >= MAX_SOURCE_DEPTH:
        # [robustness fix] a file that sources itself recursed until RecursionError.
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
        run_lines(session, lines, path)
    finally:
        session._source_depth = depth


def _parse_setting(name: str, value: str):
    if name in ("explain", "color"):
        if value not in ("on", "off"):
            raise CommandError(f"set {name} takes on or off")
        return value == "on"
    if name in ("timer-period", "history-size"):
        try:
            n = parse_int(value)
        except NumberError as exc:
            if exc.too_large and name == "timer-period":
                n = MAX_TIMER_PERIOD + 1
            elif exc.too_large:
                raise CommandError(f"numeric constant too large (set {name})") from None
            else:
                raise CommandError(f"set {name} takes a number") from None
        if name == "timer-period" and n < 100:
            raise CommandError("the timer period must be at least 100 instructions")
        if name == "timer-period" and n > MAX_TIMER_PERIOD:
            # [robustness fix] the clock's deadline is a 64-bit counter: a huge period wrapped.
            raise CommandError(f"the timer period must be at most {MAX_TIMER_PERIOD} instructions")
        if name == "history-size" and n < 0:
            raise CommandError("history-size must be >= 0 (0: no history file)")
        return n
    if name == "cpus":
        from ...machine.layout import MAX_CPUS

        try:
            n = parse_int(value)
        except NumberError as exc:
            if not exc.too_large:
                raise CommandError("set cpus takes a number") from None
            n = MAX_CPUS + 1
        if not 1 <= n <= MAX_CPUS:
            raise CommandError(f"the machine has 1 to {MAX_CPUS} CPUs")
        return n
    if name == "kprobe-step":
        if value not in ("out-of-line", "in-place"):
            raise CommandError("kprobe-step is one of out-of-line, in-place")
        return value
    if name == "kprobe-mode":
        if value not in ("auto", "single-step", "boost", "optimize"):
            raise CommandError("kprobe-mode is one of auto, single-step, boost, optimize")
        return value
    if name == "handler-error":
        if value not in ("continue", "disable", "stop"):
            raise CommandError("handler-error is one of continue, disable, stop")
        return value
    if name == "handler-timeout":
        if value == "off":
            return None
        try:
            seconds = float(value)
        except ValueError:
            raise CommandError("handler-timeout takes a number of seconds, or off") from None
        if not seconds > 0 or seconds == float("inf"):
            raise CommandError("handler-timeout must be > 0 seconds (or off)")
        return seconds
    raise CommandError(f"unknown setting '{name}' (settings: {', '.join(SETTINGS_HELP)})")


def _not_optimized(m, up) -> str | None:
    """Why the optimizer left a user probe as an int3 probe (None: optimized or n/a)."""
    if up.is_breakpoint or up.addr in m.kprobes.optimizer.active:
        return None
    entry = m.kprobes.get_kprobe(up.addr)
    return entry.optimize_refusal if entry is not None else None


@command("set", group="shell", args=("setting", "text"), repeatable=False, summary="change a setting",
         usage="set NAME VALUE", example="set kprobe-mode single-step\nset explain on",
         details="\n".join(f"{k}: {v}" for k, v in SETTINGS_HELP.items()))
def cmd_set(session, rest: str):
    parts = rest.split(None, 1)
    if len(parts) != 2:
        raise CommandError("usage: set NAME VALUE ('show' lists the settings)")
    apply_setting(session, parts[0], parts[1].strip())


def apply_setting(session, name: str, value: str) -> None:
    """Parse and apply one setting (shared by `set` and its shorthands such as `explain`);
    a bad value raises before anything changes."""
    parsed = _parse_setting(name, value)
    m = session.machine
    if name == "kprobe-step":
        from ...kprobes.x86 import ProbeError

        try:
            m.kprobes.set_step_mode(parsed)
        except ProbeError as exc:
            raise CommandError(str(exc)) from None
    session.settings[name] = parsed
    if name == "kprobe-mode":
        m.kprobes.set_mode(parsed)
        if parsed == "optimize":
            # Teaching mode: say which probes stay int3 probes, and why.
            for up in sorted(session.probes.values(), key=lambda p: p.number):
                why = _not_optimized(m, up)
                if why:
                    session.out.print(f"probe {up.number} at {m.symbols.format(up.addr)} not optimized: {why}")
    elif name == "handler-error":
        m.kprobes.handler_error_policy = parsed
    elif name == "handler-timeout":
        m.kprobes.guard.timeout = parsed
    elif name == "explain":
        m.kprobes.narrator = session._narrate if parsed else None
    elif name == "color":
        session.out.color = parsed and not session.out.json_mode
    elif name in ("timer-period", "cpus"):
        session.out.print("(takes effect at the next reset or load)")
    elif name == "history-size" and session.history_path:
        from ..repl import trim_history_file

        trim_history_file(session.history_path, parsed, slack=0)
        session.out.print(f"(history file trimmed to the newest {parsed} commands)")


@command("show", group="shell", args=("setting",), repeatable=False, summary="show settings", usage="show [NAME]")
def cmd_show(session, rest: str):
    """Show one setting or all of them."""
    names = [rest.strip()] if rest.strip() else list(SETTINGS_HELP)
    for n in names:
        if n not in session.settings:
            raise CommandError(f"unknown setting '{n}'")
        v = session.settings[n]
        if n == "handler-timeout":
            shown = "off" if v is None else f"{v:g}"
        else:
            shown = {True: "on", False: "off", None: "auto"}.get(v, v) if not isinstance(v, int) or isinstance(v, bool) else v
        session.out.print(f"{n:<16} {shown!s:<12} {SETTINGS_HELP[n]}")
    return {n: session.settings[n] for n in names}


@command("trace", group="trace", args=("text",), repeatable=False,
         summary="the trace buffer: show, clear, save FILE", usage="trace [show|clear|save FILE]")
def cmd_trace(session, rest: str):
    """Every trace line since the last clear (ftrace format, virtual time). `trace save
FILE` writes them to a file."""
    args = session.split_args(rest)
    sub = args[0] if args else "show"
    if sub == "show":
        for line in session.trace.lines():
            session.out.print(session.out.guest_text(line))
        if session.trace.dropped:
            session.out.print(f"({session.trace.dropped} older events dropped)")
    elif sub == "clear":
        session.trace.clear()
    elif sub == "save":
        if len(args) != 2:
            raise CommandError("usage: trace save FILE")
        try:
            with open(os.path.expanduser(args[1]), "w", encoding="utf-8") as f:
                for line in session.trace.lines():
                    f.write(line + "\n")
        except OSError as exc:
            raise CommandError(f"cannot write {args[1]}: {exc.strerror}") from None
        except ValueError:  # open() refuses a name with a NUL byte
            raise CommandError(f"cannot write {printable_name(args[1])}: the file name contains a NUL byte") from None
        session.out.print(f"Saved {len(session.trace.events)} trace lines to {args[1]}")
    else:
        raise CommandError("usage: trace [show|clear|save FILE]")


class QuitRequest(Exception):
    pass


@command("quit", group="shell", aliases=("q", "exit"), repeatable=False, summary="leave the shell", usage="quit")
def cmd_quit(session, rest: str):
    """Leave the shell (Ctrl-D too)."""
    raise QuitRequest()


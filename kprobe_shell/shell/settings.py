"""The settings table: every setting of `set` in one row.

`set` and `show`, the config file's defaults, `help set` and tab completion all read this
table, so a setting is added (or its values changed) in one place.  A row says how the
text the user types becomes a value (parse, which raises CommandError with the reason and
changes nothing), which values completion offers, the default, and how a value takes
effect: on a machine (for every new machine, and at once when `set`), and what `set`
says or does besides.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from ..numbers import NumberError, parse_int
from ..tracing.trace import DEFAULT_SIZE_KB
from .registry import CommandError

#: The longest timer period (instructions): ticks stay far inside the 64-bit clock.
MAX_TIMER_PERIOD = 10**12


@dataclass(frozen=True)
class Setting:
    name: str
    default: object
    help: str
    parse: Callable[[str], object]          # the typed text -> the value; CommandError when bad
    choices: tuple[str, ...] = ()           # what completion offers after `set NAME`
    in_config: bool = True                  # the config file may give its default
    on_machine: Callable | None = None      # (session, machine, value): a machine takes the value
    after_set: Callable | None = None       # (session, value): what `set` says or does besides

    def shown(self, value: object) -> str:
        """The value as `show` prints it (and as `set` takes it)."""
        if self.name == "handler-timeout":
            return "off" if value is None else f"{value:g}"
        if isinstance(value, bool) or value is None:
            return {True: "on", False: "off", None: "auto"}[value]
        return str(value)


# ---------------------------------------------------------------------- parsers
def _on_off(name: str) -> Callable[[str], bool]:
    def parse(value: str) -> bool:
        if value not in ("on", "off"):
            raise CommandError(f"set {name} takes on or off")
        return value == "on"

    return parse


def _one_of(name: str, choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise CommandError(f"{name} is one of {', '.join(choices)}")
        return value

    return parse


def _integer(name: str, value: str, too_large: int | None = None) -> int:
    """A number as the shell reads numbers (kprobe_shell/numbers.py); one too large for 64
    bits is too_large when given (so the range check names the limit), else refused."""
    try:
        return parse_int(value)
    except NumberError as exc:
        if not exc.too_large:
            raise CommandError(f"set {name} takes a number") from None
        if too_large is None:
            raise CommandError(f"numeric constant too large (set {name})") from None
        return too_large


def _timer_period(value: str) -> int:
    n = _integer("timer-period", value, too_large=MAX_TIMER_PERIOD + 1)
    if n < 100:
        raise CommandError("the timer period must be at least 100 instructions")
    if n > MAX_TIMER_PERIOD:
        # The clock's deadline is a 64-bit counter: a larger period would wrap it.
        raise CommandError(f"the timer period must be at most {MAX_TIMER_PERIOD} instructions")
    return n


def _history_size(value: str) -> int:
    n = _integer("history-size", value)
    if n < 0:
        raise CommandError("history-size must be >= 0 (0: no history file)")
    return n


def _cpus(value: str) -> int:
    from ..machine.layout import MAX_CPUS

    n = _integer("cpus", value, too_large=MAX_CPUS + 1)
    if not 1 <= n <= MAX_CPUS:
        raise CommandError(f"the machine has 1 to {MAX_CPUS} CPUs")
    return n


def _ram_mib(value: str) -> int:
    from ..machine.userspace import MAX_RAM_SIZE

    n = _integer("ram-mib", value)
    if not 1 <= n <= MAX_RAM_SIZE >> 20:
        raise CommandError(f"ram-mib must be 1 to {MAX_RAM_SIZE >> 20} (MiB)")
    return n


_SECONDS = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")
#: The longest a handler may be allowed to run: longer is no limit at all (say `off`).
MAX_HANDLER_TIMEOUT = 86400


def _handler_timeout(value: str) -> float | None:
    if value == "off":
        return None
    # ASCII decimal only: float() also takes '٣', 'nan', 'inf' and turns 5,000 digits into inf.
    if not _SECONDS.fullmatch(value):
        raise CommandError("handler-timeout takes a number of seconds, or off")
    seconds = float(value)
    if not seconds > 0:
        raise CommandError("handler-timeout must be > 0 seconds (or off)")
    if seconds > MAX_HANDLER_TIMEOUT:
        raise CommandError(f"handler-timeout must be at most {MAX_HANDLER_TIMEOUT} seconds (a day; or off)")
    return seconds


#: The largest trace buffer a CPU may have, in KiB (its events are kept as Python
#: records, several times the bytes they count for).
MAX_TRACE_BUFFER_KB = 1 << 20


def _trace_buffer_size(value: str) -> int:
    n = _integer("trace-buffer-size", value, too_large=MAX_TRACE_BUFFER_KB + 1)
    if not 1 <= n <= MAX_TRACE_BUFFER_KB:
        raise CommandError(f"trace-buffer-size is 1 to {MAX_TRACE_BUFFER_KB} (KiB per CPU)")
    return n


# ---------------------------------------------------------------------- taking effect
def _kprobe_mode(session, machine, value) -> None:
    machine.kprobes.set_mode(value)


def _kprobe_step(session, machine, value) -> None:
    machine.kprobes.set_step_mode(value)


def _handler_error(session, machine, value) -> None:
    machine.kprobes.handler_error_policy = value


def _handler_timeout_on(session, machine, value) -> None:
    machine.kprobes.guard.timeout = value


def _explain(session, machine, value) -> None:
    machine.kprobes.narrator = session._narrate if value else None


def _say_not_optimized(session, value) -> None:
    """Teaching mode: say which probes stay int3 probes, and why."""
    if value != "optimize":
        return
    from .userprobes import why_not_optimized

    m = session.machine
    for up in session.probes.sorted():
        why = why_not_optimized(m, up)
        if why:
            session.out.print(f"probe {up.number} at {m.symbols.format(up.addr)} not optimized: {why}")


def _trace_stack(session, machine, value) -> None:
    session.stacks.all_events = value
    session.stacks.update()


def _trace_hits(session, machine, value) -> None:
    machine.kprobes.c_hits = value == "c"


def _trace_buffer_size_on(session, machine, value) -> None:
    session.trace.resize(value)


def _trace_overwrite(session, machine, value) -> None:
    session.trace.overwrite = value


def _at_next_machine(session, value) -> None:
    session.out.print("(takes effect at the next reset or load)")


def _color(session, value) -> None:
    session.out.color = value and not session.out.json_mode


def _trim_history(session, value) -> None:
    if not session.history_path:
        return
    from .history import trim_history_file

    trim_history_file(session.history_path, value, slack=0)
    session.out.print(f"(history file trimmed to the newest {value} commands)")


KPROBE_MODES = ("auto", "single-step", "boost", "optimize")
KPROBE_STEPS = ("out-of-line", "in-place")
HANDLER_ERROR_POLICIES = ("continue", "disable", "stop")
TRACE_HITS = ("c", "python")

#: Every setting, in the order `show` lists them.
SETTINGS: tuple[Setting, ...] = (
    Setting("timer-period", 5000,
            "guest instructions between timer interrupts (applies at the next reset/load)",
            _timer_period, after_set=_at_next_machine),
    Setting("cpus", 1,
            "virtual CPUs, 1-4 (applies at the next reset/load; the bundled kernel's SMP build for 2+)",
            _cpus, after_set=_at_next_machine),
    Setting("kprobe-mode", "auto",
            "how probes get past their instruction: auto, single-step, boost, optimize (1 CPU only)",
            _one_of("kprobe-mode", KPROBE_MODES), KPROBE_MODES,
            on_machine=_kprobe_mode, after_set=_say_not_optimized),
    Setting("kprobe-step", "out-of-line",
            "where the probed instruction is stepped: out-of-line (its slot) or in-place (naive)",
            _one_of("kprobe-step", KPROBE_STEPS), KPROBE_STEPS, on_machine=_kprobe_step),
    Setting("handler-error", "continue",
            "when a handler raises: continue, disable (the probe), stop (the guest)",
            _one_of("handler-error", HANDLER_ERROR_POLICIES), HANDLER_ERROR_POLICIES, on_machine=_handler_error),
    Setting("handler-timeout", 5.0,
            "seconds a Python handler may run before it is stopped (a handler error); off: no limit",
            _handler_timeout, ("1", "5", "off"), on_machine=_handler_timeout_on),
    Setting("explain", False, "narrate each step of the probe mechanism: on/off",
            _on_off("explain"), ("on", "off"), in_config=False, on_machine=_explain),
    Setting("color", None, "colour output: on/off (default: on for a terminal)",
            _on_off("color"), ("on", "off"), in_config=False, after_set=_color),
    Setting("trace-stack", False,
            "record the stack with every trace event (ftrace's stacktrace option): on/off",
            _on_off("trace-stack"), ("on", "off"), on_machine=_trace_stack),
    Setting("trace-hits", "c",
            "where a traced kprobe hit is recorded: c (at a jump-optimized probe that runs no Python) or python",
            _one_of("trace-hits", TRACE_HITS), TRACE_HITS, on_machine=_trace_hits),
    Setting("trace-buffer-size", DEFAULT_SIZE_KB,
            "the trace buffer of each CPU, in KiB (ftrace's buffer_size_kb); smaller loses the oldest",
            _trace_buffer_size, (str(DEFAULT_SIZE_KB), "4096"), on_machine=_trace_buffer_size_on),
    Setting("trace-overwrite", True,
            "a full trace buffer overwrites its oldest events (on) or drops new ones (off), as ftrace's overwrite option",
            _on_off("trace-overwrite"), ("on", "off"), on_machine=_trace_overwrite),
    Setting("history-size", 10000,
            "commands kept in the history file (trimmed at once and at every start)",
            _history_size, after_set=_trim_history),
    Setting("ram-mib", 256,
            "guest RAM for user processes, in MiB (applies at the next reset/load)",
            _ram_mib, after_set=_at_next_machine),
    Setting("keep-workload", False,
            "with programs to exec: run the built-in workload too (applies at the next reset/load)",
            _on_off("keep-workload"), ("on", "off"), after_set=_at_next_machine),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}

#: The value of every setting before `set` or the config file changes it.
DEFAULT_SETTINGS: dict[str, object] = {s.name: s.default for s in SETTINGS}

#: Settings the config file may give defaults for: the ones `set` takes at start-up.
CONFIG_SETTINGS: tuple[str, ...] = tuple(s.name for s in SETTINGS if s.in_config)


def setting(name: str) -> Setting:
    try:
        return BY_NAME[name]
    except KeyError:
        raise CommandError(f"unknown setting '{name}' (settings: {', '.join(BY_NAME)})") from None


def parse_setting(name: str, value: str) -> object:
    """The value `set NAME VALUE` would give NAME (the config file checks its lines with it)."""
    return setting(name).parse(value)


def configure_machine(session, machine) -> None:
    """A new machine takes every setting that lives on the machine."""
    for s in SETTINGS:
        if s.on_machine is not None:
            s.on_machine(session, machine, session.settings[s.name])


def apply_setting(session, name: str, value: str) -> None:
    """Parse and apply one setting (`set`, and shorthands such as `explain`); a bad value
    raises before anything changes."""
    from ..api import ProbeError

    row = setting(name)
    parsed = row.parse(value)
    if row.on_machine is not None:
        try:
            row.on_machine(session, session.machine, parsed)
        except ProbeError as exc:
            raise CommandError(str(exc)) from None
    session.settings[name] = parsed
    if row.after_set is not None:
        row.after_set(session, parsed)

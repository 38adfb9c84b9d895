"""A shell session: one machine, the user's probes and breakpoints, settings, the trace.

The session is the shell without a terminal: it parses a line, looks the command up in
the registry and runs it.  The interactive prompt, scripts (`source`, -x), batch mode and
the tests all drive the same `execute()`.
"""
from __future__ import annotations

import ctypes
import json
import shlex
import threading

from ..api import HandlerError, Machine, ProbeError
from ..images import bundled_image_path, bundled_kernel
from ..kprobes.core import describe_handler_exception
from ..kprobes.kretprobes import FlushEvent
from ..machine import ImageError, MachineError, StopEvent, StopReason
from ..tracing.maps import MapStore
from ..tracing.stacks import StackRecorder
from ..tracing._ring import W_FUNC
from ..tracing.trace import TraceBuffer, TraceEvent
from ..tracing.tracedat import EventLengths
from .output import Output
from .registry import CommandError, QuitRequest
from .resolve import resolve
from .script import run_lines
from .gdbvalues import gdb_state, show_displays
from . import crecord
from .settings import DEFAULT_SETTINGS, configure_machine, parse_setting
from .userprobes import UserProbe, UserProbes, create_from_spec

__all__ = ["Session", "UserProbe"]


class Session:
    def __init__(self, image: str | None = None, *, output: Output | None = None, timer_period: int | None = None,
                 settings: dict | None = None, cpus: int | None = None):
        self.out = output or Output()
        self.settings = dict(DEFAULT_SETTINGS)
        if settings:
            self.settings.update(settings)
        # The command line's --timer-period is checked as `set timer-period` checks it.
        if timer_period is not None:
            self.settings["timer-period"] = parse_setting("timer-period", str(timer_period))
        if cpus is not None:
            self.settings["cpus"] = cpus
        #: Did the user name the image?  If not, the bundled kernel follows `cpus` (its UP
        #: build for one CPU, its SMP build for more) at every reset.
        self.image_explicit = image is not None
        #: Programs `exec` put on the guest's disk (they run as user processes).
        self.programs: list = []
        self.image_path = image or self.bundled_image()
        #: The user's probes and breakpoints by number (see userprobes.py).
        self.probes = UserProbes()
        self.trace = TraceBuffer(int(self.settings["trace-buffer-size"]), bool(self.settings["trace-overwrite"]),
                                 lengths=EventLengths(self.probes))
        self.out.follow(self.trace, self._ring_readable)
        #: ftrace's stacktrace option and triggers (`set trace-stack`, `trigger EVENT stacktrace`)
        self.stacks = StackRecorder(self)
        #: bpftrace-style maps (handler files' count()/hist() ..., and `@map = f() on EVENT`)
        self.maps = MapStore()
        #: probe number -> the `@map[...] = f(...) on EVENT` lines fed by its hits
        self.aggregations: dict[int, list] = {}
        self.last_regs: dict[str, int] | None = None
        self.stop_event: StopEvent | None = None
        self._skip_break_once: int | None = None
        self._stop_at_break: UserProbe | None = None
        self._in_probe_commands = False
        #: (probe, handler, error, where) of each handler failure said, and how many
        #: times it came again since (see _on_handler_error).
        self._repeated_failures: dict[tuple, int] = {}
        self.run_lock = threading.Lock()
        #: --batch: nothing may wait for a person (`pause` does nothing).
        self.batch = False
        self.machine = self._new_machine(self.image_path)
        self.last_command = ""
        # gdb's `continue &`: at the interactive prompt a run can go on in the background.
        self.interactive = False
        self.background: threading.Thread | None = None
        self.on_background_done = None  # the REPL's callback: redraw the toolbar
        self.history_path: str | None = None  # the REPL's history file, when it has one

    # ------------------------------------------------------------------ the machine
    def bundled_image(self) -> str:
        """The bundled kernel for the number of CPUs set (UP or SMP build), or its
        CONFIG_USERSPACE build when programs are to run."""
        return bundled_image_path(bundled_kernel(int(self.settings["cpus"]), bool(self.programs)))

    def _new_machine(self, path: str) -> Machine:
        try:
            extra = {}
            if self.programs:
                extra = {"programs": self.programs, "ram_size": int(self.settings["ram-mib"]) << 20,
                         "keep_workload": bool(self.settings["keep-workload"])}
            m = Machine(path, timer_period=int(self.settings["timer-period"]), cpus=int(self.settings["cpus"]), **extra)
        except (ImageError, MachineError) as exc:
            raise CommandError(str(exc)) from None
        configure_machine(self, m)
        # after the optimizer's own (appended when the engine was made)
        m.before_run.append(lambda: crecord.refresh(self))
        self._watch_ring(m)
        m.kprobes.listeners.append(self._on_engine_event)
        m.serial.line_listeners.append(self._on_console_line)
        return m

    def _watch_ring(self, m: Machine) -> None:
        """The trace ring stops `m`'s CPUs (their stop words) before it would overwrite
        live lines not printed yet; the output prints them and the run goes on."""
        ring = self.trace.ring
        ring.set_stop_words([ctypes.addressof(cpu.icount) + type(cpu.icount).stop_asked.offset for cpu in m.cpus])
        ring.forget_where()  # another image: other symbols
        ring.symbolizer = self._where_text

        def flush() -> None:
            if ring.flush_wanted:
                ring.flush_wanted = False
                self.out.flush()

        m.on_stop_asked.append(flush)

    def _ring_readable(self) -> bool:
        """The trace ring may be read from this thread now: the guest is not running, or
        this is the thread that runs it (a background run's recorders write without the GIL)."""
        m = getattr(self, "machine", None)  # None while the session is being made
        return m is None or not m.running or threading.get_ident() == m._run_thread

    def _where_text(self, ip: int, kind: int) -> str:
        """The text of an address in a trace record (the ring asks once per address): a
        probed function's name (a return event's), else sym+off/size."""
        symbols = self.machine.symbols
        if kind == W_FUNC:
            hit = symbols.containing(ip)
            return hit[0].name if hit else f"0x{ip:x}"
        return symbols.format(ip)

    def replace_machine(self, path: str, keep_probes: bool = True) -> list[str]:
        """A fresh machine (reset or load); probes are re-created on it. Returns failures."""
        new = self._new_machine(path)  # raises before anything changes
        old_probes = self.probes.sorted()
        self.machine, self.image_path = new, path
        self.probes.clear()
        # A fresh machine is a fresh run: maps start empty, as each bpftrace run's do.
        self.maps.reset()
        self._repeated_failures.clear()  # a fresh run says its failures afresh
        self.stop_event = None
        self.last_regs = None
        failures = []
        if keep_probes:
            for up in old_probes:
                up.spec.pop("_warned_missed", None)  # the counters start again from zero
                try:
                    create_from_spec(self, up)
                except (ProbeError, CommandError, KeyError) as exc:
                    failures.append(f"probe {up.number} ({up.location}) dropped: {exc}")
        return failures

    # ------------------------------------------------------------------ events during a run
    def _on_console_line(self, line: bytes) -> None:
        text = line.decode("utf-8", errors="replace").rstrip("\n")
        self.out.event({"type": "console", "text": text}, self.out.guest_text(text), "console")

    def _narrate(self, text: str) -> None:
        self.out.event({"type": "explain", "text": text}, f"  [explain] {text}", "narrate")

    def _on_engine_event(self, event) -> None:
        if isinstance(event, HandlerError):
            self._on_handler_error(event)
        elif isinstance(event, FlushEvent):
            who = self.machine.tasks.read_task(event.task)
            label = who.label if who else f"0x{event.task:x}"
            self.out.event(
                {"type": "flush", "task": label, "instances": len(event.instances)},
                f"kprobe_flush_task: {label}: {len(event.instances)} return-probe instance(s) recycled", "dim",
            )

    def _on_handler_error(self, event: HandlerError) -> None:
        """A handler failed: said once, with where; the same failure again is only
        counted, and the count said when the run stops (the kernel's printk_ratelimit
        keeps a looping warning from flooding the log the same way).  --json keeps one
        object per failure: a tool counts them itself."""
        error = f"{type(event.exception).__name__}: {event.exception}"
        key = (event.probe.number, event.handler, error, event.where)
        if key in self._repeated_failures and not self.out.json_mode:
            self._repeated_failures[key] += 1
            return
        self._repeated_failures[key] = 0
        self.out.event(
            {"type": "handler-error", "probe": event.probe.number, "handler": event.handler,
             "error": error, "where": event.where, "faults": event.probe.faults},
            f"warning: {self._probe_name(event.probe)}: {event.handler} "
            f"{describe_handler_exception(event.exception)} ({event.where}) "
            f"[faults={event.probe.faults}, handler-error={self.machine.kprobes.handler_error_policy}]", "warning",
        )

    def _probe_name(self, probe) -> str:
        """A probe as `probes` names it: number and event."""
        up = self.probes.get(probe.number)
        return f"probe {up.number} ({up.event or up.location})" if up else repr(probe)

    def _say_repeated_failures(self) -> None:
        policy = self.machine.kprobes.handler_error_policy
        for (number, handler, error, where), count in self._repeated_failures.items():
            if not count:
                continue
            self._repeated_failures[(number, handler, error, where)] = 0
            up = self.probes.get(number)
            faults = getattr(up.obj, "faults", 0) if up else 0
            who = f"probe {number} ({up.event or up.location})" if up else f"probe {number}"
            self.out.event(
                {"type": "handler-error-repeated", "probe": number, "handler": handler, "error": error,
                 "where": where, "repeated": count, "faults": faults},
                f"warning: {who}: {handler} failed the same way {count} more time(s) "
                f"[faults={faults}, handler-error={policy}]", "warning")

    def emit_trace(self, ev: TraceEvent, up: UserProbe | None = None) -> None:
        self.trace.add(ev)
        if up is not None:
            for agg in self.aggregations.get(up.number, ()):
                agg.apply(self, ev)
        if up is not None and up.silent:
            return
        self.out.trace(ev)  # rendered later, in order (see Output)

    def run_probe_commands(self, up: UserProbe) -> None:
        """`commands N ... end` of a probe, run at the hit (inspection only)."""
        if not up.commands or self._in_probe_commands:
            return
        self._in_probe_commands = True
        try:
            for line in up.commands:
                # In --json each is a result of its own, not text folded into `run`'s.
                outer = self.out.begin_command()
                try:
                    data = self.execute(line, from_probe=True)
                except CommandError as exc:
                    self.out.end_command(line, False, error=f"in commands of probe {up.number}: {exc}", outer=outer)
                    if not self.out.json_mode:
                        self.out.error(f"in commands of probe {up.number}: {exc}")
                    continue
                self.out.end_command(line, True, data if _jsonable(data) else None, outer=outer)
        finally:
            self._in_probe_commands = False

    def drop_aggregations(self, number: int) -> None:
        self.aggregations.pop(number, None)

    def print_maps(self, names: list[str] | None = None) -> list[dict]:
        """Every map with entries (or the named ones), as bpftrace prints them at exit."""
        shown = []
        for name in names if names is not None else self.maps.names():
            bmap = self.maps.maps[name]
            if not bmap.keys_count:
                continue
            self.out.event(bmap.as_json(), bmap.text(), None)
            shown.append(bmap.as_json())
        return shown

    # ------------------------------------------------------------------ numbering
    @property
    def next_number(self) -> int:
        return self.probes.next_number

    def add_user_probe(self, up: UserProbe) -> UserProbe:
        """Number and keep a probe made outside the shell's commands (Python API users)."""
        return self.probes.add(up)

    # ------------------------------------------------------------------ running
    def run_guest(self, max_insns: int | None = None) -> StopEvent:
        """Run until something stops the guest, then report why (one line)."""
        m = self.machine
        gdb_state(self).guest_ran()
        with self.run_lock:
            self._stop_at_break = None
            event = m.run(max_insns)
        self.stop_event = event
        self.out.flush()
        return event

    def report_stop(self, event: StopEvent, quiet_budget: bool = False) -> None:
        m = self.machine
        where = m.image.symbols.format(event.rip)
        data = {"type": "stop", "reason": event.reason.value, "message": event.message, "rip": event.rip,
                "where": where, "task": event.task, "time_ns": event.time_ns}
        if event.reason is StopReason.BREAKPOINT and self._stop_at_break is not None:
            up = self._stop_at_break
            text = f"Breakpoint {up.number}, {where} (0x{event.rip:x}) in {event.task}"
        elif event.reason is StopReason.BREAKPOINT and "watchpoint_report" in event.details:
            text = event.details["watchpoint_report"]
        elif event.reason is StopReason.HALTED:
            text = f"[guest halted: {event.message}; {event.time_ns} instructions]"
        elif event.reason is StopReason.BUDGET:
            if quiet_budget:
                return
            text = f"[stopped after the instruction budget at {where} (0x{event.rip:x}), task {event.task}]"
        elif event.reason is StopReason.INTERRUPTED:
            text = f"[interrupted at {where} (0x{event.rip:x}), task {event.task}]"
        else:
            text = f"[{event.reason.value}: {event.message}; rip {where} (0x{event.rip:x}); task {event.task}]"
            last = self._last_probe_hit()
            if last:
                text += f"\n[last probe hit: {last}]"
                data["last_probe"] = last
            running = self._probe_running()
            if running:
                text += f"\n[{running}]"
                data["probe_running"] = running
        at_break = self._stop_at_break if event.reason is StopReason.BREAKPOINT else None
        silent = at_break is not None and at_break.silent
        if not (silent and not self.out.json_mode):  # gdb's `silent`: no announcement of the stop
            self.out.event(data, text, "error" if event.reason in (StopReason.FAULT, StopReason.BUG) else "header")
        if event.is_final:
            # bpftrace prints its maps when the traced program is over; so do we.
            self.print_maps()
        else:
            show_displays(self)
        self._warn_missed()

    def _probe_running(self) -> str | None:
        """The probe the engine was in the middle of when the guest stopped (a fault in a
        guest-resident jprobe handler, say), which no trace line would name."""
        engine = self.machine.kprobes
        cur = engine.current_kprobe
        if cur is None:
            return None
        probes = cur.children if hasattr(cur, "children") else [cur]
        names = ", ".join(f"probe {p.owner.number}" if p.owner.number else repr(p.owner) for p in probes)
        where = self.machine.symbols.format(cur.addr)
        status = engine.kprobe_status.value if engine.kprobe_status else "?"
        inside = ", inside its guest jprobe handler" if engine.jprobes.active is not None else ""
        return f"while {names} at {where} was running ({status}{inside})"

    def _last_probe_hit(self) -> str | None:
        ev = self.trace.last
        if ev is None:
            return None
        return f"probe {ev.probe} {ev.event} at {ev.where} ({ev.comm}-{ev.pid})"

    def _warn_missed(self) -> None:
        self._say_repeated_failures()
        for up in self.probes.sorted():
            obj = up.obj
            missed = getattr(obj, "nmissed", 0)
            seen = up.spec.setdefault("_warned_missed", 0)
            if missed > seen:
                up.spec["_warned_missed"] = missed
                hint = ""
                if up.kind == "r":
                    hint = f" (maxactive={obj.maxactive} was too small; try maxactive={max(2 * obj.maxactive, 20)})"
                self.out.event(
                    {"type": "warning", "probe": up.number, "nmissed": missed},
                    f"warning: probe {up.number} ({up.location}) missed {missed} hit(s){hint}", "warning",
                )
            unseen = getattr(obj, "missed_in_place", 0)
            seen = up.spec.setdefault("_warned_in_place", 0)
            if unseen > seen:
                up.spec["_warned_in_place"] = unseen
                self.out.event(
                    {"type": "warning", "probe": up.number, "missed_in_place": unseen},
                    f"warning: probe {up.number} ({up.location}): other CPUs ran through it {unseen} time(s) unseen "
                    "while its int3 was lifted for an in-place step", "warning",
                )

    # ------------------------------------------------------------------ commands
    def execute(self, line: str, *, from_probe: bool = False) -> object:
        """Run one command line. Raises CommandError with a one-line message on bad input."""
        line = line.strip()
        if not line or line.startswith("#"):
            return None
        resolved = resolve(line)
        cmd = resolved.command
        if cmd is None:
            raise CommandError(resolved.error)
        rest = resolved.argument
        if from_probe or self._in_probe_commands:
            _refuse_at_a_probe_hit(cmd)
        if cmd.runs_guest and rest.endswith("&"):
            return self.start_background(cmd, rest[:-1].strip(), line)
        if self.background_running and cmd.name not in ALLOWED_WHILE_RUNNING:
            raise CommandError(f"the guest is running in the background; 'interrupt' stops it "
                               f"(only {', '.join(sorted(ALLOWED_WHILE_RUNNING))} work meanwhile)")
        try:
            return cmd.func(self, rest)
        finally:
            self._report_debug_info_error()

    def _report_debug_info_error(self) -> None:
        """Broken DWARF is found when first read (by whichever command needs it) and
        reported once, as gdb's "DWARF Error" is; the command itself goes on without it."""
        machine = self.machine
        message = machine.image.take_dwarf_warning() if machine is not None else None
        if message:
            self.out.event({"type": "warning", "message": message}, f"warning: {message}", "warning")

    # ------------------------------------------------------------------ background runs (`continue &`)
    @property
    def background_running(self) -> bool:
        return self.background is not None and self.background.is_alive()

    def start_background(self, cmd, rest: str, line: str) -> None:
        """Run a guest-running command in a thread and return to the prompt at once; its
        output (trace lines, the stop report) appears above the prompt as it comes."""
        if not self.interactive:
            raise CommandError("'&' runs the guest in the background, which only makes sense at the "
                               "interactive prompt; drop the '&' in scripts")
        if self.background_running:
            raise CommandError("the guest is already running in the background ('interrupt' stops it)")

        def work() -> None:
            try:
                cmd.func(self, rest)
            except CommandError as exc:
                self.out.error(f"error: {exc}")
            except Exception as exc:  # noqa: BLE001 - reported, never a traceback
                self.out.error(f"internal error in '{line}': {type(exc).__name__}: {exc}")
            finally:
                self.out.flush()
                if self.on_background_done is not None:
                    self.on_background_done()

        self.background = threading.Thread(target=work, name="kprobe-shell-background", daemon=True)
        self.background.start()
        self.out.print(f"[running in the background: {cmd.name}{' ' + rest if rest else ''}; 'interrupt' stops it]",
                       "dim")
        return None

    def stop_background(self, timeout: float = 10.0) -> bool:
        """Ask a background run to stop and wait for it; True when it has ended."""
        thread = self.background
        if thread is None:
            return True
        while thread.is_alive() and timeout > 0:
            self.machine.request_stop()
            thread.join(0.05)
            timeout -= 0.05
        return not thread.is_alive()

    def execute_and_report(self, line: str) -> object:
        """execute(), with the command's result reported as one JSON object in --json mode."""
        self.out.begin_command()
        try:
            data = self.execute(line)
        except CommandError as exc:
            self.out.end_command(line, False, error=str(exc))
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback
            if isinstance(exc, QuitRequest):
                self.out.end_command(line, True)
                raise
            if isinstance(exc, BrokenPipeError):
                raise  # the reader went away: the program ends quietly (kprobe_shell/__main__.py)
            # A bug of the shell, not of the user's input: one line, and the session goes on.
            msg = (str(exc).splitlines() or [""])[0]
            error = f"internal error: {type(exc).__name__}: {msg}" if msg else f"internal error: {type(exc).__name__}"
            self.out.end_command(line, False, error=error)
            raise CommandError(error) from exc
        except BaseException:
            self.out.end_command(line, False)
            raise
        self.out.end_command(line, True, data if _jsonable(data) else None)
        return data

    def run_lines(self, lines: list[str], name: str) -> None:
        """Run a command file's lines (`source`); the first error stops it as FILE:LINE."""
        run_lines(self, lines, name)

    def split_args(self, rest: str) -> list[str]:
        try:
            return shlex.split(rest)
        except ValueError as exc:
            raise CommandError(f"cannot parse arguments: {exc}") from None


#: Commands that swap the machine: never while its guest is in the middle of a probe hit.
REPLACES_MACHINE = frozenset({"reset", "load"})


def _refuse_at_a_probe_hit(cmd) -> None:
    """A probe's commands run inside the guest's trap, as the kernel's handlers do: the
    guest cannot run from there (the kernel refuses re-entering its probe path), nor can
    the machine under it be swapped.  `try` and `source` do not get round it."""
    if cmd.runs_guest:
        raise CommandError(f"'{cmd.name}' cannot run inside a probe's commands (the guest is mid-trap)")
    if cmd.name in REPLACES_MACHINE:
        raise CommandError(f"'{cmd.name}' cannot run inside a probe's commands (it would replace the machine "
                           "while its guest is mid-trap)")


#: Commands that do not touch the guest, so they may run while it runs in the background.
ALLOWED_WHILE_RUNNING = frozenset({"interrupt", "help", "echo", "show", "quit"})


def _jsonable(data: object) -> bool:
    try:
        json.dumps(data)
        return True
    except (TypeError, ValueError):
        return False

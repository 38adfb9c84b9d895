"""A shell session: one machine, the user's probes and breakpoints, settings, the trace.

The session is the shell without a terminal: it parses a line, looks the command up in
the registry and runs it.  The interactive prompt, scripts (`source`, -x), batch mode and
the tests all drive the same `execute()`.
"""
from __future__ import annotations

import shlex
import threading
from dataclasses import dataclass, field

from ..api import HandlerError, Jprobe, Kprobe, Kretprobe, Machine, ProbeError
from ..images import bundled_image_path
from ..kprobes.kretprobes import FlushEvent
from ..machine import ImageError, MachineError, StopEvent, StopReason
from ..tracing.trace import TraceBuffer, TraceEvent
from .output import Output
from .registry import REGISTRY, CommandError


@dataclass
class UserProbe:
    """A numbered entry of `probes`: a probe or a breakpoint and what the user attached to it."""

    number: int
    kind: str               # k, j, r (probes), b (breakpoint), t (temporary breakpoint)
    location: str           # as the user wrote it
    addr: int
    obj: object = None      # Kprobe / Jprobe / Kretprobe, or the hook handle of a breakpoint
    event: str = ""
    spec: dict = field(default_factory=dict)  # how to re-create it after reset/load
    commands: list[str] = field(default_factory=list)
    silent: bool = False
    hits: int = 0           # breakpoints count here; probes count on their kprobe
    enabled: bool = True

    @property
    def is_breakpoint(self) -> bool:
        return self.kind in ("b", "t")


DEFAULT_SETTINGS = {
    "timer-period": 5000,
    "kprobe-mode": "auto",
    "handler-error": "continue",
    "explain": False,
    "color": None,
    "history-size": 10000,
    "confirm": False,
}


class Session:
    def __init__(self, image: str | None = None, *, output: Output | None = None, timer_period: int | None = None,
                 settings: dict | None = None):
        self.out = output or Output()
        self.settings = dict(DEFAULT_SETTINGS)
        if settings:
            self.settings.update(settings)
        if timer_period is not None:
            self.settings["timer-period"] = timer_period
        self.image_path = image or bundled_image_path()
        self.probes: dict[int, UserProbe] = {}
        self.next_number = 1
        self.trace = TraceBuffer()
        self.last_regs: dict[str, int] | None = None
        self.stop_event: StopEvent | None = None
        self._skip_break_once: int | None = None
        self._stop_at_break: UserProbe | None = None
        self._in_probe_commands = False
        self.run_lock = threading.Lock()
        self.machine = self._new_machine(self.image_path)
        self.last_command = ""

    # ------------------------------------------------------------------ the machine
    def _new_machine(self, path: str) -> Machine:
        try:
            m = Machine(path, timer_period=int(self.settings["timer-period"]))
        except (ImageError, MachineError) as exc:
            raise CommandError(str(exc)) from None
        m.kprobes.set_mode(self.settings["kprobe-mode"])
        m.kprobes.handler_error_policy = self.settings["handler-error"]
        m.kprobes.listeners.append(self._on_engine_event)
        if self.settings["explain"]:
            m.kprobes.narrator = self._narrate
        m.serial.line_listeners.append(self._on_console_line)
        return m

    def replace_machine(self, path: str, keep_probes: bool = True) -> list[str]:
        """A fresh machine (reset or load); probes are re-created on it. Returns failures."""
        new = self._new_machine(path)  # raises before anything changes
        old_probes = sorted(self.probes.values(), key=lambda p: p.number)
        self.machine, self.image_path = new, path
        self.probes = {}
        self.stop_event = None
        self.last_regs = None
        failures = []
        if keep_probes:
            for up in old_probes:
                try:
                    self._recreate(up)
                except (ProbeError, CommandError, KeyError) as exc:
                    failures.append(f"probe {up.number} ({up.location}) dropped: {exc}")
        return failures

    def _recreate(self, up: UserProbe) -> None:
        from .commands import probes as probe_cmds

        probe_cmds.create_from_spec(self, up)

    # ------------------------------------------------------------------ events during a run
    def _on_console_line(self, line: bytes) -> None:
        text = line.decode("utf-8", errors="replace").rstrip("\n")
        self.out.event({"type": "console", "text": text}, text, "console")

    def _narrate(self, text: str) -> None:
        self.out.event({"type": "explain", "text": text}, f"  [explain] {text}", "narrate")

    def _on_engine_event(self, event) -> None:
        if isinstance(event, HandlerError):
            self.out.event(
                {"type": "handler-error", "probe": event.probe.number, "handler": event.handler,
                 "error": f"{type(event.exception).__name__}: {event.exception}", "where": event.where},
                f"warning: {event}", "warning",
            )
        elif isinstance(event, FlushEvent):
            who = self.machine.tasks.read_task(event.task)
            label = who.label if who else f"0x{event.task:x}"
            self.out.event(
                {"type": "flush", "task": label, "instances": len(event.instances)},
                f"kprobe_flush_task: {label}: {len(event.instances)} return-probe instance(s) recycled", "dim",
            )

    def emit_trace(self, ev: TraceEvent, up: UserProbe | None = None) -> None:
        self.trace.add(ev)
        if up is not None and up.silent:
            return
        # Only the form that is shown is built (a probe hit pays for one rendering).
        out = self.out
        if out.json_mode:
            out.event(ev.as_json(), "", "trace")
        else:
            out.event(None, ev.ftrace(), "trace")

    def trace_event_for(self, up: UserProbe, where: str, args: str = "", values: dict | None = None) -> TraceEvent:
        m = self.machine
        task = m.tasks.current()
        return TraceEvent(
            time_ns=m.time_ns, comm=task.comm if task else "?", pid=task.pid if task else -1,
            cpu=task.cpu if task else 0, event=up.event, where=where, args=args, kind=up.kind,
            probe=up.number, values=values or {},
        )

    def run_probe_commands(self, up: UserProbe) -> None:
        """`commands N ... end` of a probe, run at the hit (inspection only)."""
        if not up.commands or self._in_probe_commands:
            return
        self._in_probe_commands = True
        try:
            for line in up.commands:
                try:
                    self.execute(line, from_probe=True)
                except CommandError as exc:
                    self.out.error(f"in commands of probe {up.number}: {exc}")
        finally:
            self._in_probe_commands = False

    # ------------------------------------------------------------------ numbering
    def add_user_probe(self, up: UserProbe) -> UserProbe:
        if not up.number:
            up.number = self.next_number
            self.next_number += 1
        self.probes[up.number] = up
        if hasattr(up.obj, "number"):
            up.obj.number = up.number
            kp = getattr(up.obj, "kp", None)
            if kp is not None:
                kp.number = up.number
        return up

    def get_probe(self, text: str) -> UserProbe:
        try:
            n = int(text.lstrip("#$"))
        except ValueError:
            raise CommandError(f"'{text}' is not a probe number") from None
        if n not in self.probes:
            have = ", ".join(str(k) for k in sorted(self.probes)) or "none"
            raise CommandError(f"no probe or breakpoint number {n} (existing: {have})")
        return self.probes[n]

    # ------------------------------------------------------------------ running
    def run_guest(self, max_insns: int | None = None) -> StopEvent:
        """Run until something stops the guest, then report why (one line)."""
        m = self.machine
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
        self.out.event(data, text, "error" if event.reason in (StopReason.FAULT, StopReason.BUG) else "header")
        self._warn_missed()

    def _last_probe_hit(self) -> str | None:
        if not self.trace.events:
            return None
        ev = self.trace.events[-1]
        return f"probe {ev.probe} {ev.event} at {ev.where} ({ev.comm}-{ev.pid})"

    def _warn_missed(self) -> None:
        for up in sorted(self.probes.values(), key=lambda p: p.number):
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

    # ------------------------------------------------------------------ commands
    def execute(self, line: str, *, from_probe: bool = False) -> object:
        """Run one command line. Raises CommandError with a one-line message on bad input."""
        line = line.strip()
        if not line or line.startswith("#"):
            return None
        word, _, rest = line.partition(" ")
        from . import commands  # noqa: F401 - registers every command

        # gdb's x/FMT and print/FMT glue the format to the command.
        if "/" in word and word.split("/")[0] in ("x", "print", "output"):
            word, fmt = word.split("/", 1)
            cmd, rest = REGISTRY.lookup(word), f"/{fmt} {rest}".strip()
        elif word == "r" and (not rest.strip() or rest.strip().isdigit()):
            cmd = REGISTRY.lookup("run")  # gdb's `r [N]`; a return probe always names a symbol
        elif _is_probe_event_line(word) and not (word == "p" and rest.strip().startswith("$")):
            cmd, rest = REGISTRY.lookup("probe-event"), line
        elif word == "p":
            cmd = REGISTRY.lookup("print")
        else:
            cmd, rest = REGISTRY.lookup_line(line)
        if from_probe and cmd.runs_guest:
            raise CommandError(f"'{cmd.name}' cannot run inside a probe's commands (the guest is mid-trap)")
        return cmd.func(self, rest.strip())

    def execute_and_report(self, line: str) -> object:
        """execute(), with the command's result reported as one JSON object in --json mode."""
        self.out.begin_command()
        try:
            data = self.execute(line)
        except CommandError as exc:
            self.out.end_command(line, False, error=str(exc))
            raise
        except BaseException:
            self.out.end_command(line, False)
            raise
        self.out.end_command(line, True, data if _jsonable(data) else None)
        return data

    def split_args(self, rest: str) -> list[str]:
        try:
            return shlex.split(rest)
        except ValueError as exc:
            raise CommandError(f"cannot parse arguments: {exc}") from None


def _is_probe_event_line(word: str) -> bool:
    """ftrace's kprobe_events lines: p, p:EVENT, r, r4, r:EVENT, -:EVENT."""
    import re

    return bool(re.fullmatch(r"(p|r\d*)(:\S*)?|-:\S+", word))


def _jsonable(data: object) -> bool:
    import json

    try:
        json.dumps(data)
        return True
    except (TypeError, ValueError):
        return False

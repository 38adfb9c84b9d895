"""Trace events and their ftrace rendering.

One line per probe hit, in the format of /sys/kernel/debug/tracing/trace:

             opener1-2 [000]     0.000076321: opens: (do_sys_open+0x0/0xba) dfd=0xffffff9c filename="/etc/motd" flags=0x8000
             opener1-2 [000]     0.000096562: r_do_sys_open_0: (sys_open+0x1b/0x1d <- do_sys_open) ret=3

The time is the guest's virtual clock (one instruction is one nanosecond), shown to the
nanosecond where ftrace shows microseconds, so the same script on the same image prints
the same lines and hits a few instructions apart still read apart.  Rendering is kept off the hot path:
events are stored as small records and turned into text when shown.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields

from ..display import Displayed


@dataclass(slots=True)
class TraceEvent:
    time_ns: int
    comm: str
    pid: int
    cpu: int
    event: str        # the event name (p_do_fork_0, r_do_sys_open_0, or the user's)
    where: str        # "do_fork+0x0/0x80" or "sys_open+0x1c/0x40 <- do_sys_open"
    args: str = ""    # " name=value ..." already rendered, leading space included
    kind: str = "k"   # k, j, r (for JSON consumers)
    probe: int | None = None
    values: dict = field(default_factory=dict)
    #: "sym+0x1c/0x40" frames, innermost first: a class default, so that an event without
    #: a stack (the hot path) costs no more to build; StackedTraceEvent holds one.
    stack = ()

    def ftrace(self) -> str:
        secs, nsec = divmod(self.time_ns, 1_000_000_000)
        task = f"{self.comm}-{self.pid}"
        line = f"{task:>22} [{self.cpu:03d}] {secs:5d}.{nsec:09d}: {self.event}: ({self.where}){self.args}"
        if self.stack:  # ftrace's kernel_stack entry follows the event it was taken with
            line += (f"\n{task:>22} [{self.cpu:03d}] {secs:5d}.{nsec:09d}: <stack trace>"
                     + "".join(f"\n => {frame}" for frame in self.stack))
        return line

    def as_json(self) -> dict:
        return {
            "type": "trace", "time_ns": self.time_ns, "comm": self.comm, "pid": self.pid, "cpu": self.cpu,
            "event": self.event, "kind": self.kind, "probe": self.probe, "where": self.where,
            "args": self.values, **({"stack": list(self.stack)} if self.stack else {}),
        }


class StackedTraceEvent(TraceEvent):
    """A trace event with the stack taken at its hit (`set trace-stack on`, or a trigger)."""

    __slots__ = ("stack",)

    @classmethod
    def of(cls, ev: TraceEvent, stack: tuple) -> "StackedTraceEvent":
        out = cls(*(getattr(ev, f.name) for f in fields(TraceEvent)))
        out.stack = stack
        return out


class TraceBuffer(Displayed):
    """The `trace` buffer: every event since the last `trace clear`, bounded."""

    def __init__(self, limit: int = 200_000):
        # A full deque drops its oldest in constant time (a list's pop(0) moves them all).
        self.events: deque[TraceEvent] = deque(maxlen=limit)
        self.limit = limit
        self.dropped = 0

    def add(self, event: TraceEvent) -> None:
        if len(self.events) == self.limit:
            self.dropped += 1
        self.events.append(event)

    def clear(self) -> None:
        self.events.clear()
        self.dropped = 0

    def lines(self) -> list[str]:
        """The events as ftrace's trace file shows them: the CPUs' buffers merged by
        timestamp (the earliest first; on a tie the lower CPU, as the kernel's iterator
        takes them).  Each CPU runs a slice at a time, so they were recorded out of order."""
        return [e.ftrace() for e in sorted(self.events, key=_by_time_then_cpu)]


def _by_time_then_cpu(event: TraceEvent) -> tuple[int, int]:
    return event.time_ns, event.cpu

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
from . import _ring, tracedat
from .fetch import FETCH_TYPES

PAGE_DATA = tracedat.PAGE_DATA

#: ftrace's buffer_size_kb at boot (kernel/trace/trace.c: TRACE_BUF_SIZE_DEFAULT, 1441792 bytes)
DEFAULT_SIZE_KB = 1408


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
    #: The order the trace buffer recorded it in, across the CPUs (set by TraceBuffer.add).
    seq: int = field(default=0, repr=False, compare=False)
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


class CpuStats:
    """One CPU's counts as per_cpu/cpuN/stats shows them (kernel/trace/trace.c)."""

    __slots__ = ("entries", "overrun", "bytes", "oldest_ns", "dropped", "written", "read", "nr_used_pages")

    def __init__(self, ring, cpu: int):
        (self.entries, self.overrun, self.bytes, self.oldest_ns, self.dropped, self.written, self.read,
         self.nr_used_pages) = ring.stats(cpu)

    def all_pages(self) -> range:
        """The pages holding events (their number: the file gets as many)."""
        return range(self.nr_used_pages)


class TraceBuffer(Displayed):
    """The `trace` buffer: a ring buffer per CPU of `size_kb` KiB (ftrace's buffer_size_kb,
    per CPU), overwriting its oldest page when full (ftrace's overwrite option) or, with
    overwrite off, dropping the new events.

    The pages are _ring.c's, laid out as kernel/trace/ring_buffer.c lays them, each event
    taking its record's bytes there.  An event the shell's Python handlers recorded keeps
    its TraceEvent beside its record (`side`, per CPU, in recording order, forgotten with
    the page it was on) and its record is written when the pages are saved; a record a
    recorder wrote in C (ringbuf.h) is all there is of its event, rendered from the bytes.

    `lengths` (tracedat.EventLengths) says the size of a Python event's record."""

    def __init__(self, size_kb: int = DEFAULT_SIZE_KB, overwrite: bool = True, lengths=None):
        self.lengths = lengths or tracedat.EventLengths({})
        self._sizes: dict[str, int] = {}          # event name -> its record's size, 0: not fixed
        self.size_kb = size_kb
        self.ring = _ring.Ring(self.nr_pages, overwrite)
        self.side: list[deque[TraceEvent]] = []   # per CPU, the Python events kept, oldest first
        self._last: TraceEvent | None = None      # the newest Python event recorded
        self.ids: dict[str, int] = {}             # event name -> its id (common_type)
        self._comms: dict[str, bytes] = {}

    @property
    def nr_pages(self) -> int:
        """Data pages per CPU: buffer_size_kb rounded up to whole pages, at least two
        (ring_buffer.c: DIV_ROUND_UP(size, BUF_PAGE_SIZE))."""
        return max(2, -(-self.size_kb * 1024 // PAGE_DATA))

    @property
    def overwrite(self) -> bool:
        return self.ring.overwrite

    @overwrite.setter
    def overwrite(self, value: bool) -> None:
        self.ring.overwrite = value

    def event_id(self, name: str) -> int:
        """The event's id (its records' common_type), given when it is first seen, as the
        kernel gives one at the kprobe_events write."""
        got = self.ids.get(name)
        if got is None:
            got = self.ids[name] = tracedat.FIRST_EVENT_ID + len(self.ids)
        return got

    def describe(self, name: str, is_return: bool, kind: str, probe: int | None, silent: bool,
                 types: dict[str, str]) -> int:
        """Tell the ring how to render the records a recorder writes in C for event `name`:
        its args' fetch types by name ("retval": a return value shown as `ret=` shows it
        without args, signed then hex).  Returns the event's id (common_type)."""
        event_id = self.event_id(name)
        self.ring.define(event_id, name, is_return, kind, -1 if probe is None else probe, silent,
                         [_arg_desc(arg, type_name) for arg, type_name in types.items()])
        return event_id

    def add(self, event: TraceEvent) -> None:
        cpu = event.cpu
        size = self._sizes.get(event.event)  # the record's size when it is fixed (no strings)
        if not size or event.stack:
            size = self._size(event)
        comm = self._comms.get(event.comm)
        if comm is None:
            comm = self._comms[event.comm] = event.comm.encode("latin-1", "replace")[:16]
        if event.stack:
            seq = self.ring.reserve(cpu, event.time_ns, size, event.pid, comm,
                                    tracedat.stack_record_size(len(event.stack)))
        else:
            seq = self.ring.reserve(cpu, event.time_ns, size, event.pid, comm)
        if not seq:  # not kept; its place in the order still counts for the live output
            event.seq = self.ring.seq
            return
        side = self.side
        if cpu >= len(side):
            side.extend(deque() for _ in range(cpu + 1 - len(side)))
        kept = side[cpu]
        if seq < 0 or not len(kept) & 4095:  # pages were overwritten (for it, or for records written in C)
            seq = abs(seq)
            self._prune(cpu)
        event.seq = seq
        kept.append(event)
        self._last = event

    def _size(self, event: TraceEvent) -> int:
        """The size of event's record (lengths.size), its event given an id when first seen."""
        name = event.event
        if name not in self._sizes:
            self.event_id(name)
        size = self.lengths.size(event)
        self._sizes[name] = self.lengths.fixed_sizes.get(name, 0)
        return size

    def _prune(self, cpu: int) -> None:
        side = self.side[cpu]
        oldest = self.ring.oldest_seq(cpu)
        while side and side[0].seq < oldest:
            side.popleft()

    def resize(self, size_kb: int) -> None:
        """buffer_size_kb written: a smaller buffer loses its oldest pages (counted as
        overrun, as rb_remove_pages counts them)."""
        self.size_kb = size_kb
        self.ring.resize(self.nr_pages)
        for cpu in range(len(self.side)):
            self._prune(cpu)

    def clear(self) -> None:
        self.ring.clear()
        self.side = []
        self._last = None

    @property
    def last(self) -> TraceEvent | None:
        """The newest event kept: the Python handlers' newest, or a record written in C
        after it (decoded).  The newest records are looked at first, in widening windows,
        so that a buffer full of C records is not decoded to find its last one."""
        ev = self._last
        newest = self.ring.seq
        since = ev.seq if ev is not None else 0
        lo = max(newest - 1, since)
        while True:
            for item in reversed(self.ring.events(lo)):
                if type(item) is not int:
                    return _decoded(item)
            if lo <= since:
                return ev
            lo = max(since, lo - 2 * (newest - lo) - 64)

    # ------------------------------------------------------------------ reading
    @property
    def cpus(self) -> list[CpuStats]:
        return [CpuStats(self.ring, n) for n in range(self.ring.ncpus)]

    def cpu(self, n: int) -> CpuStats:
        return CpuStats(self.ring, n)

    def _python_events(self) -> dict[int, TraceEvent]:
        return {ev.seq: ev for side in self.side for ev in side}

    @property
    def events(self) -> list[TraceEvent]:
        """The events kept, in the order they were recorded (C records decoded)."""
        items = self.ring.events()
        python = self._python_events()
        return [python[item] if type(item) is int else _decoded(item) for item in items]

    @property
    def entries(self) -> int:
        return sum(buf.entries for buf in self.cpus)

    @property
    def overrun(self) -> int:
        return sum(buf.overrun for buf in self.cpus)

    @property
    def dropped(self) -> int:
        return sum(buf.dropped for buf in self.cpus)

    def lines(self) -> list[str]:
        """The events as ftrace's trace file shows them: the CPUs' buffers merged by
        timestamp (the earliest first; on a tie the lower CPU, as the kernel's iterator
        takes them).  Each CPU runs a slice at a time, so they were recorded out of order."""
        items = self.ring.merged(True)
        python = self._python_events()
        return [python[item].ftrace() if type(item) is int else item for item in items]

    def consume(self) -> list[str]:
        """trace_pipe: every event not read yet, merged by timestamp, each CPU's lost
        events said before its first event after them, as print_trace_line says them."""
        out = []
        ring = self.ring
        python = self._python_events()
        said = set()
        for cpu, item in ring.merged(True, 0, 0, True):
            if cpu not in said:
                said.add(cpu)
                lost = ring.lost(cpu, True)
                if lost:
                    out.append(f"CPU:{cpu} [LOST {lost} EVENTS]")
            out.append(python[item].ftrace() if type(item) is int else item)
        for cpu in range(ring.ncpus):
            ring.consumed(cpu)
        self.side = []
        return out

    def stats(self, cpu: int, now_ns: int) -> str:
        """per_cpu/cpuN/stats (kernel/trace/trace.c, tracing_stats_read), times in
        seconds to the nanosecond as the trace lines show them."""
        buf = CpuStats(self.ring, cpu)
        return (f"entries: {buf.entries}\n"
                f"overrun: {buf.overrun}\n"
                "commit overrun: 0\n"
                f"bytes: {buf.bytes}\n"
                f"oldest event ts: {_seconds(buf.oldest_ns)}\n"
                f"now ts: {_seconds(now_ns)}\n"
                f"dropped events: {buf.dropped}\n"
                f"read events: {buf.read}\n")


def _arg_desc(name: str, type_name: str) -> tuple[str, int, int, int]:
    """(name, kind, size, style) of an argument for Ring.define: as fetch.format_value
    prints its fetch type."""
    if type_name == "retval":
        return name, _ring.K_INT, 8, _ring.S_RETVAL
    field = tracedat.arg_field(name, type_name)
    kind = {"int": _ring.K_INT, "char": _ring.K_CHAR, "string": _ring.K_STRING}[field.kind]
    ftype = FETCH_TYPES.get(type_name)
    if type_name == "symbol":
        style = _ring.S_SYMBOL
    elif ftype is not None and ftype.kind == "hex":
        style = _ring.S_HEX
    else:
        style = _ring.S_SIGNED if field.signed else _ring.S_UNSIGNED
    return name, kind, field.size, style


def decoded_events(items: list) -> list[TraceEvent]:
    """The TraceEvents of _ring's decoded records (Ring.events with live: no Python ones)."""
    return [_decoded(item) for item in items]


def _decoded(fields: tuple) -> TraceEvent:
    """The TraceEvent of a record written in C (_ring.c's decode_record)."""
    time_ns, comm, pid, cpu, event, where, args, kind, probe, values, seq = fields
    ev = TraceEvent(time_ns, comm, pid, cpu, event, where, args, kind, probe, values)
    ev.seq = seq
    return ev


def _seconds(ns: int) -> str:
    secs, nsec = divmod(ns, 1_000_000_000)
    return f"{secs:5d}.{nsec:09d}"

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

import heapq
from collections import deque
from dataclasses import dataclass, field, fields

from ..display import Displayed
from . import tracedat

PAGE_DATA = tracedat.PAGE_DATA
DELTA_MAX = (1 << tracedat.DELTA_BITS) - 1  # a longer gap from the event before takes a time extend
TIME_EXTEND = 8

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


class Page:
    """One data page of a CPU's ring buffer: its events and the bytes they take."""

    __slots__ = ("events", "used")

    def __init__(self):
        self.events: list[TraceEvent] = []
        self.used = 0


class CpuBuffer:
    """One CPU's ring buffer, as kernel/trace/ring_buffer.c keeps it: a fixed number of
    data pages (buffer_size_kb), each filled with events as the page's binary layout
    would hold them (tracedat.py), the oldest page given up to the writer when the
    buffer is full in overwrite mode, the new event dropped otherwise.  The events stay
    Python records (rendered when shown); their space is counted as the kernel counts
    it, so that `trace save FILE.dat` writes these very pages."""

    __slots__ = ("pages", "tail", "last_ns", "nr_pages", "overrun", "dropped", "written", "read", "lost_unread")

    def __init__(self, nr_pages: int):
        self.pages: deque[Page] = deque()   # the full pages, oldest first
        self.tail = Page()                  # the page being written
        self.last_ns = 0                    # the tail page's newest event time
        self.nr_pages = nr_pages
        self.overrun = 0       # events lost to overwriting (per_cpu/cpuN/stats: overrun)
        self.dropped = 0       # events refused by a full buffer, overwrite off (dropped events)
        self.written = 0       # events that reached the buffer, either way
        self.read = 0          # events consumed by `trace pipe` (read events)
        self.lost_unread = 0   # events lost since a consuming read last looked (trace_pipe's LOST)

    def all_pages(self) -> list[Page]:
        return [*self.pages, self.tail] if self.tail.events else list(self.pages)

    @property
    def entries(self) -> int:
        return sum(len(p.events) for p in self.pages) + len(self.tail.events)

    @property
    def bytes(self) -> int:
        return sum(p.used for p in self.pages) + self.tail.used

    def drop_oldest_page(self) -> None:
        lost = len(self.pages.popleft().events)
        self.overrun += lost
        self.lost_unread += lost


class TraceBuffer(Displayed):
    """The `trace` buffer: a ring buffer per CPU of `size_kb` KiB (ftrace's buffer_size_kb,
    per CPU), overwriting its oldest page when full (ftrace's overwrite option) or, with
    overwrite off, dropping the new events.

    `lengths` (tracedat.EventLengths) says what each event takes on a page, so that
    the pages end where the file's pages will."""

    def __init__(self, size_kb: int = DEFAULT_SIZE_KB, overwrite: bool = True, lengths=None):
        self.lengths = lengths or tracedat.EventLengths({})
        self.fixed_lengths = self.lengths.fixed
        self.size_kb = size_kb
        self.overwrite = overwrite
        self.cpus: list[CpuBuffer] = []
        self.seq = 0               # events recorded, for their order across the CPUs
        self.last: TraceEvent | None = None  # the newest event recorded

    @property
    def nr_pages(self) -> int:
        """Data pages per CPU: buffer_size_kb rounded up to whole pages, at least two
        (ring_buffer.c: DIV_ROUND_UP(size, BUF_PAGE_SIZE))."""
        return max(2, -(-self.size_kb * 1024 // PAGE_DATA))

    def cpu(self, n: int) -> CpuBuffer:
        while len(self.cpus) <= n:
            self.cpus.append(CpuBuffer(self.nr_pages))
        return self.cpus[n]

    def add(self, event: TraceEvent) -> None:
        cpus = self.cpus
        buf = cpus[event.cpu] if event.cpu < len(cpus) else self.cpu(event.cpu)
        buf.written += 1
        time_ns = event.time_ns
        # the bytes it takes with no time extend: known by name for most events
        length = (not event.stack and self.fixed_lengths.get(event.event)) or self.lengths.length(event)
        page = buf.tail
        if page.events:
            if time_ns - buf.last_ns > DELTA_MAX:
                length += TIME_EXTEND
            if page.used + length > PAGE_DATA:
                if not self._new_page(buf):
                    return
                page = buf.tail
                length = self.lengths.length(event)
        if not page.events:  # a page's first event takes its time stamp: no delta
            buf.last_ns = time_ns
        page.events.append(event)
        page.used += length
        if time_ns > buf.last_ns:
            buf.last_ns = time_ns
        self.seq += 1
        event.seq = self.seq
        self.last = event

    def _new_page(self, buf: CpuBuffer) -> bool:
        """Close the tail page; False when the buffer is full and keeps its events."""
        if len(buf.pages) + 1 >= buf.nr_pages:
            if not self.overwrite:
                buf.dropped += 1
                return False
            buf.drop_oldest_page()
        buf.pages.append(buf.tail)
        buf.tail = Page()
        return True

    def resize(self, size_kb: int) -> None:
        """buffer_size_kb written: a smaller buffer loses its oldest pages (counted as
        overrun, as rb_remove_pages counts them)."""
        self.size_kb = size_kb
        for buf in self.cpus:
            buf.nr_pages = self.nr_pages
            while len(buf.pages) + 1 > buf.nr_pages:
                buf.drop_oldest_page()

    def clear(self) -> None:
        self.cpus = []
        self.seq = 0
        self.last = None

    # ------------------------------------------------------------------ reading
    @property
    def events(self) -> list[TraceEvent]:
        """The events kept, in the order they were recorded."""
        lists = [[ev for page in buf.all_pages() for ev in page.events] for buf in self.cpus]
        lists = [events for events in lists if events]
        if len(lists) == 1:
            return lists[0]
        return list(heapq.merge(*lists, key=_seq))

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
        return [e.ftrace() for e in sorted(self.events, key=_by_time_then_cpu)]

    def consume(self) -> list[str]:
        """trace_pipe: every event not read yet, merged by timestamp, each CPU's lost
        events said before its first event after them, as print_trace_line says them."""
        out = []
        events = sorted(self.events, key=_by_time_then_cpu)
        for ev in events:
            buf = self.cpus[ev.cpu]
            if buf.lost_unread:
                out.append(f"CPU:{ev.cpu} [LOST {buf.lost_unread} EVENTS]")
                buf.lost_unread = 0
            out.append(ev.ftrace())
        for buf in self.cpus:
            buf.read += buf.entries
            buf.pages.clear()
            buf.tail = Page()
        return out

    def stats(self, cpu: int, now_ns: int) -> str:
        """per_cpu/cpuN/stats (kernel/trace/trace.c, tracing_stats_read), times in
        seconds to the nanosecond as the trace lines show them."""
        buf = self.cpu(cpu)
        pages = buf.all_pages()
        oldest = pages[0].events[0].time_ns if pages else 0
        return (f"entries: {buf.entries}\n"
                f"overrun: {buf.overrun}\n"
                "commit overrun: 0\n"
                f"bytes: {buf.bytes}\n"
                f"oldest event ts: {_seconds(oldest)}\n"
                f"now ts: {_seconds(now_ns)}\n"
                f"dropped events: {buf.dropped}\n"
                f"read events: {buf.read}\n")


def _seconds(ns: int) -> str:
    secs, nsec = divmod(ns, 1_000_000_000)
    return f"{secs:5d}.{nsec:09d}"


def _seq(event: TraceEvent) -> int:
    return event.seq


def _by_time_then_cpu(event: TraceEvent) -> tuple[int, int]:
    return event.time_ns, event.cpu

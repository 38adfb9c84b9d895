"""The trace buffer keeps the newest events, at constant cost per event once it is full."""
from __future__ import annotations

import time

from kprobe_shell.tracing.trace import TraceBuffer, TraceEvent


def _event(i: int) -> TraceEvent:
    return TraceEvent(i, "t", 1, 0, "e", "f+0x0/0x1")


def test_a_full_buffer_drops_the_oldest():
    buf = TraceBuffer(limit=3)
    for i in range(5):
        buf.add(_event(i))
    assert [e.time_ns for e in buf.events] == [2, 3, 4]
    assert buf.dropped == 2
    assert buf.events[-1].time_ns == 4
    buf.clear()
    assert len(buf.events) == 0 and buf.dropped == 0


def _time_adds(buf: TraceBuffer, n: int) -> float:
    events = [_event(i) for i in range(n)]
    start = time.perf_counter()
    for ev in events:
        buf.add(ev)
    return time.perf_counter() - start


def test_adding_to_a_full_buffer_costs_what_adding_to_an_empty_one_does():
    limit, n = 200_000, 20_000
    full = TraceBuffer(limit=limit)
    for i in range(limit):
        full.add(_event(i))
    # list.pop(0) moves every remaining pointer: about 100 times slower at this size.
    best_full = min(_time_adds(full, n) for _ in range(3))
    best_empty = min(_time_adds(TraceBuffer(limit=limit), n) for _ in range(3))
    assert best_full < 8 * best_empty + 0.01, (best_full, best_empty)
    assert len(full.events) == limit and full.dropped == 3 * n

"""The trace ring in C (tracing/_ring.c) against the Python it stands for: the pages it
fills are the pages tracedat's page builder makes of the same records (time extends,
long records, overwrite, drop, the missed-events flags), and the lines it renders from
records written in C are TraceEvent.ftrace's, byte for byte."""
from __future__ import annotations

import ctypes
import io
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from kprobe_shell.shell.output import Output
from kprobe_shell.tracing import _ring, tracedat
from kprobe_shell.tracing.fetch import FETCH_TYPES, decode_string, format_value, python_value
from kprobe_shell.tracing.trace import TraceBuffer, TraceEvent

DELTA_MAX = (1 << tracedat.DELTA_BITS) - 1


def model_pages(records, nr_pages: int, overwrite: bool):
    """What ring_buffer.c keeps of (time_ns, record) on one CPU: its pages' records,
    oldest first, and the events overwritten and dropped (the Python buffer's rules)."""
    pages, tail, used, last, overrun, dropped = [], [], 0, 0, 0, 0
    for t, rec in records:
        length = tracedat.event_length(0, len(rec))
        if tail:
            if t - last > DELTA_MAX:
                length += 8
            if used + length > tracedat.PAGE_DATA:
                if len(pages) + 1 >= nr_pages:
                    if not overwrite:
                        dropped += 1
                        continue
                    overrun += len(pages.pop(0))
                pages.append(tail)
                tail, used = [], 0
                length = tracedat.event_length(0, len(rec))
        if not tail:
            last = t
        tail.append((t, rec))
        used += length
        last = max(last, t)
    if tail:
        pages.append(tail)
    return pages, overrun, dropped


record_sizes = st.one_of(st.integers(8, 40), st.integers(100, 130), st.integers(400, 1500))
gaps = st.one_of(st.integers(0, 50), st.just(DELTA_MAX), st.just(DELTA_MAX + 1), st.integers(0, 1 << 44))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(gaps, record_sizes), min_size=1, max_size=400), st.integers(2, 4), st.booleans())
def test_the_pages_are_tracedats_pages(steps, nr_pages, overwrite):
    ring = _ring.Ring(nr_pages, overwrite)
    records, t = [], 0
    for i, (gap, size) in enumerate(steps):
        t += gap
        rec = struct.pack("<HBBi", 1500, 0, 0, i) + bytes((i + k) & 0xFF for k in range(size - 8))
        records.append((t, rec))
        ring.record(0, t, i, b"t", rec)
    pages, overrun, dropped = model_pages(records, nr_pages, overwrite)
    entries, r_overrun, used, oldest, r_dropped, written, read, npages = ring.stats(0)
    assert (entries, r_overrun, r_dropped, written, npages) == (
        sum(map(len, pages)), overrun, dropped, len(records), len(pages))
    assert oldest == pages[0][0][0]
    assert tracedat.mark_missed(ring.pages(0), r_overrun) == tracedat.buffer_pages(pages, overrun)


def test_a_missed_count_that_does_not_fit_is_flagged_only():
    ring = _ring.Ring(2)
    rec = bytes(8) + bytes(4060)  # fills a page but for 4 bytes (header 8 + 4068)
    for i in range(4):
        ring.record(0, i, 1, b"t", rec)
    pages = tracedat.mark_missed(ring.pages(0), ring.stats(0)[1])
    commit = struct.unpack_from("<Q", pages, 8)[0]
    assert commit & tracedat.MISSED_EVENTS and not commit & tracedat.MISSED_STORED


def test_a_smaller_ring_keeps_its_newest_pages():
    ring = _ring.Ring(8)
    rec = bytes(16)
    for i in range(5 * 204):
        ring.record(0, i, 1, b"t", rec)
    ring.resize(2)
    entries, overrun = ring.stats(0)[:2]
    assert entries == 2 * 204 and overrun == 3 * 204  # the full page before the one written stays
    assert ring.oldest_seq(0) == 3 * 204 + 1


# ---------------------------------------------------------------------- rendering in C
ARG_TYPES = ["x8", "x16", "x32", "x64", "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "char", "string",
             "symbol"]
_STYLE = {"hex": _ring.S_HEX, "symbol": _ring.S_SYMBOL}


def _desc(name: str, type_name: str):
    ftype = FETCH_TYPES[type_name]
    field = tracedat.arg_field(name, type_name)
    kind = {"int": _ring.K_INT, "char": _ring.K_CHAR, "string": _ring.K_STRING}[field.kind]
    style = _STYLE.get(ftype.kind, _ring.S_SIGNED if ftype.signed else _ring.S_UNSIGNED)
    return ftype, field, (name, kind, field.size, style)


def _record(fmt: tracedat.EventFormat, pid: int, ips, raws) -> bytes:
    """EventFormat.record's layout from the raw values (strings as their bytes)."""
    head = struct.pack("<HBBi", fmt.id, 0, 0, pid) + b"".join(struct.pack("<Q", ip) for ip in ips)
    fixed, tail, at = [head], [], fmt.fixed_size
    for a, raw in zip(fmt.args, raws):
        if a.kind == "string":
            data = (raw if isinstance(raw, bytes) else b"") + b"\0"
            fixed.append(struct.pack("<I", len(data) << 16 | at))
            tail.append(data)
            at += len(data)
        else:
            fixed.append(((raw or 0) & ((1 << 8 * a.size) - 1)).to_bytes(a.size, "little"))
    return b"".join(fixed + tail)


def _symbolize(addr: int) -> str:
    return f"sym+0x{addr & 0xfff:x}/0x1000"


_SYMBOLIZER = {_ring.W_PROBE: lambda ip: f"probe+0x{ip:x}/0x40", _ring.W_FUNC: lambda ip: f"func{ip}",
               _ring.W_ADDR: _symbolize}
arg_values = st.one_of(st.integers(0, 2**64 - 1), st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"")))


@settings(max_examples=150, deadline=None)
@given(types=st.lists(st.sampled_from(ARG_TYPES), max_size=6), raws=st.lists(arg_values, min_size=6, max_size=6),
       faults=st.integers(0, 63), is_return=st.booleans(), time_ns=st.integers(0, 2**50),
       comm=st.binary(min_size=1, max_size=16).map(lambda b: b.replace(b"\0", b"a")),
       pid=st.integers(-1, 99999), cpu=st.integers(0, 3), ips=st.tuples(st.integers(0, 2**64 - 1),
                                                                          st.integers(0, 2**64 - 1)))
def test_c_records_render_as_trace_events_do(types, raws, faults, is_return, time_ns, comm, pid, cpu, ips):
    descs = [_desc(f"a{i}", t) for i, t in enumerate(types)]
    fmt = tracedat.EventFormat("ev", 1500, is_return, [field for _, field, _ in descs])
    ring = _ring.Ring(4)
    ring.define(1500, "ev", is_return, "r" if is_return else "k", 2, False, [d for _, _, d in descs])
    ring.symbolizer = lambda ip, kind: _SYMBOLIZER[kind](ip)
    raws = [(raw if ftype.kind == "string" else int.from_bytes(raw[:8].ljust(8, b"\0"), "little"))
            if isinstance(raw, bytes) else (raw if ftype.kind != "string" else b"%d" % raw)
            for (ftype, _, _), raw in zip(descs, raws)]
    record_ips = (ips[0], ips[1]) if is_return else (ips[0],)
    assert ring.record(cpu, time_ns, pid, comm, _record(fmt, pid, record_ips, raws), faults)
    text, values = "", {}
    for i, ((ftype, field, _), raw) in enumerate(zip(descs, raws)):
        shown = None if faults >> i & 1 else (raw & ((1 << 8 * field.size) - 1) if isinstance(raw, int) else raw)
        text += f" {field.name}={format_value(shown, ftype, _symbolize)}"
        values[field.name] = python_value(shown, ftype)
    where = (f"{_symbolize(ips[1])} <- func{ips[0]}" if is_return else f"probe+0x{ips[0]:x}/0x40")
    ev = TraceEvent(time_ns, comm.decode("latin-1"), pid, cpu, "ev", where, text, "r" if is_return else "k", 2, values)
    assert ring.merged(True) == [ev.ftrace()]
    assert ring.render_live(0) == ev.ftrace() + "\n"
    [decoded] = ring.events()
    assert decoded[:10] == (ev.time_ns, ev.comm, pid, cpu, "ev", where, text, ev.kind, 2, values)


def test_strings_that_are_not_utf8_render_as_decode_string_does():
    for raw in (b"\xff", b"a\xe2\x82b", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\xe2\x82\xac",
                b"\xf0\x9f\x98\x80x", b"\xf0\x9f\x98"):
        ring = _ring.Ring(2)
        ring.define(1500, "e", False, "k", -1, False, [("s", _ring.K_STRING, 4, 0)])
        ring.set_where(_ring.W_PROBE, 0, "f")
        fmt = tracedat.EventFormat("e", 1500, False, [tracedat.arg_field("s", "string")])
        ring.record(0, 1, 1, b"t", _record(fmt, 1, (0,), [raw]))
        assert ring.merged(True)[0].endswith(f' s="{decode_string(raw)}"'), raw


def test_old_events_keep_the_comm_they_had():
    ring = _ring.Ring(4)
    ring.define(1500, "e", False, "k", -1, False, [])
    ring.set_where(_ring.W_PROBE, 0, "f")
    rec = struct.pack("<HBBiQ", 1500, 0, 0, 7, 0)
    for t, comm in ((1, b"sh"), (2, b"cat"), (3, b"cat")):
        ring.record(0, t, 7, comm, rec)
    assert [line.split()[0] for line in ring.merged(True)] == ["sh-7", "cat-7", "cat-7"]
    assert ring.cmdlines() == {7: "cat"}


# ---------------------------------------------------------------------- with the Python events
def _c_event(buf: TraceBuffer, t: int, cpu: int = 0, silent: bool = False) -> None:
    name = "quiet" if silent else "c_ev"
    event_id = buf.event_id(name)
    buf.ring.define(event_id, name, False, "k", 1, silent, [("x", _ring.K_INT, 8, _ring.S_HEX)])
    buf.ring.set_where(_ring.W_PROBE, 0x10, "f+0x0/0x8")
    buf.ring.record(cpu, t, 3, b"w", struct.pack("<HBBiQQ", event_id, 0, 0, 3, 0x10, t))


def test_the_buffer_merges_c_records_with_python_events():
    buf = TraceBuffer()
    buf.add(TraceEvent(5, "t", 1, 0, "py", "g+0x0/0x1", " n=1"))
    _c_event(buf, 3, cpu=1)
    buf.add(TraceEvent(4, "t", 1, 1, "py", "g+0x0/0x1", " n=2"))
    assert [line.split()[2] for line in buf.lines()] == ["0.000000003:", "0.000000004:", "0.000000005:"]
    events = buf.events
    assert [e.event for e in events] == ["py", "c_ev", "py"] and events[1].values == {"x": 3}
    assert buf.entries == 3


def test_the_live_output_prints_c_records_in_recording_order():
    buf, stream = TraceBuffer(), io.StringIO()
    out = Output(stream=stream, color=False)
    out.follow(buf)
    first = TraceEvent(5, "t", 1, 0, "py", "g+0x0/0x1")
    buf.add(first)
    out.trace(first)
    _c_event(buf, 6)
    _c_event(buf, 7, silent=True)
    second = TraceEvent(8, "t", 1, 0, "py", "g+0x0/0x1")
    buf.add(second)
    out.trace(second)
    _c_event(buf, 9)
    out.flush()
    assert [line.split()[3] for line in stream.getvalue().splitlines()] == ["py:", "c_ev:", "py:", "c_ev:"]
    out.print("x")
    assert stream.getvalue().count("c_ev") == 2  # printed once


def test_a_full_ring_asks_to_stop_before_it_overwrites_unprinted_lines():
    buf = TraceBuffer(size_kb=1)
    out = Output(stream=io.StringIO(), color=False)
    out.follow(buf)
    holder = (ctypes.c_uint64 * 1)()
    buf.ring.set_stop_words([ctypes.addressof(holder)])
    n = 0
    while not holder[0]:
        _c_event(buf, n)
        n += 1
    assert buf.ring.flush_wanted and buf.overrun == 0 and n < 2 * 4080 // 28 + 1
    out.flush()
    assert out.stream.getvalue().count("\n") == n


def test_the_session_prints_and_shows_c_records(build_guest):
    from kprobe_shell.shell.session import Session

    stream = io.StringIO()
    s = Session(build_guest("calls"), output=Output(stream=stream, color=False, json_mode=True))
    hot = s.machine.symbols.get("hot")
    event_id = s.trace.describe("h", False, "k", 1, False, {"i": "s64", "name": "string"})
    fmt = tracedat.EventFormat("h", event_id, False, [tracedat.arg_field("i", "s64"),
                                                      tracedat.arg_field("name", "string")])
    s.trace.ring.record(0, 42, 5, b"calls", fmt.record(5, (hot.address,), {"i": -3, "name": "bb"}))
    s.out.flush()
    printed = stream.getvalue()
    assert '"args": {"i": -3, "name": "bb"}' in printed and f'"where": "hot+0x0/0x{hot.size:x}"' in printed
    assert s.trace.lines() == [f'               calls-5 [000]     0.000000042: h: (hot+0x0/0x{hot.size:x}) i=-3 name="bb"']


def test_a_run_stops_to_print_before_the_ring_overwrites_and_goes_on(build_guest):
    """A recorder writing C records from a hook fills a 2-page ring many times over: the
    ring asks the CPU to stop before it overwrites unprinted lines, the run loop prints
    them and runs on, and every line is printed once, in order."""
    from kprobe_shell.api import Kprobe
    from kprobe_shell.shell.session import Session

    stream = io.StringIO()
    s = Session(build_guest("calls"), output=Output(stream=stream, color=False))
    s.execute("set trace-buffer-size 1")
    event_id = s.trace.describe("c", False, "k", None, False, {"i": "u64"})
    ring = s.trace.ring
    hits = []

    def record(p, regs):
        hits.append(1)
        ring.record(0, s.machine.time_ns, 1, b"calls", struct.pack("<HBBiQQ", event_id, 0, 0, 1, p.addr, len(hits)))
        return 0

    s.machine.register_kprobe(Kprobe(symbol_name="hot", pre_handler=record))
    event = s.run_guest()
    assert event.reason.value == "halted" and len(hits) == 20000
    printed = [int(line.rsplit("=", 1)[1]) for line in stream.getvalue().splitlines() if " c: " in line]
    assert printed == list(range(1, 20001))
    assert s.trace.overrun > 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1 << 28), st.integers(0, 1), st.integers(0, 2**63 - 1)), max_size=700),
       st.booleans(), st.sampled_from([1, 8]))
def test_c_records_and_python_events_keep_the_same_trace(steps, overwrite, size_kb):
    """The same events recorded as Python TraceEvents in one buffer and as records written
    in C in another: the same trace show, trace pipe, stats, events and trace.dat."""
    python, c = TraceBuffer(size_kb, overwrite), TraceBuffer(size_kb, overwrite)
    event_id = c.describe("e", False, "k", None, False, {"x": "s64"})
    c.ring.set_where(_ring.W_PROBE, 0, "f+0x0/0x8")
    clock = [0, 0]
    for gap, cpu, x in steps:
        clock[cpu] += gap
        python.add(TraceEvent(clock[cpu], "task", 9, cpu, "e", "f+0x0/0x8", f" x={x}", values={"x": x}))
        c.ring.record(cpu, clock[cpu], 9, b"task", struct.pack("<HBBiQq", event_id, 0, 0, 9, 0, x))
    assert c.lines() == python.lines()
    assert [ev.as_json() for ev in c.events] == [ev.as_json() for ev in python.events]
    assert [c.stats(n, 5) for n in range(2)] == [python.stats(n, 5) for n in range(2)]
    dat = [tracedat.DatBuilder({}, {}, 2).build(buf, 5) for buf in (python, c)]
    assert dat[0] == dat[1]
    assert c.consume() == python.consume()


def test_with_overwrite_off_the_refused_records_still_print():
    """The shell prints every event it records, kept or not (a Python event refused by a
    full buffer is printed too): a record written in C that the full buffer refuses waits
    beside the ring until the live output prints it, and is gone after."""
    buf = TraceBuffer(size_kb=1, overwrite=False)
    out = Output(stream=io.StringIO(), color=False)
    out.follow(buf)
    for t in range(1000):
        _c_event(buf, t)
    assert buf.dropped == 1000 - buf.entries > 0
    out.flush()
    assert [int(line.rsplit("=", 1)[1], 16) for line in out.stream.getvalue().splitlines()] == list(range(1000))
    assert len(buf.ring.events(0, 0, True)) == buf.entries and len(buf.lines()) == buf.entries


def test_records_shorter_than_their_fields_read_as_zeros():
    """A record cut short (a recorder's mistake) renders with what it holds, its missing
    fields as zeros, and never reads past its end."""
    ring = _ring.Ring(2)
    ring.define(1500, "e", False, "k", -1, False, [("x", _ring.K_INT, 8, _ring.S_HEX), ("s", _ring.K_STRING, 4, 0)])
    for data in (b"", b"\xdc", b"\xdc\x05\0\0\x01\0\0\0", struct.pack("<HBBiQQI", 1500, 0, 0, 1, 0, 5, 40 | 9 << 16)):
        ring.record(0, 1, 1, b"t", data)
    assert [line.split(": ", 1)[1] for line in ring.merged(True)] == [
        "?: (0x0)", "?: (0x0)", 'e: (0x0) x=0x0 s=""', 'e: (0x0) x=0x5 s=""']


def test_on_a_terminal_c_records_print_styled_and_escaped():
    buf = TraceBuffer()
    out = Output(stream=io.StringIO(), color=True)
    out.terminal = True
    out.follow(buf)
    event_id = buf.describe("e", False, "k", None, False, {"s": "string"})
    fmt = tracedat.EventFormat("e", event_id, False, [tracedat.arg_field("s", "string")])
    buf.ring.set_where(_ring.W_PROBE, 0, "f")
    buf.ring.record(0, 1, 1, b"t", fmt.record(1, (0,), {"s": "a\x1b[2Jb"}))
    out.flush()
    ev = buf.events[0]
    assert out.stream.getvalue() == out.style(out.guest_text(ev.ftrace()), "trace") + "\n"
    assert "\x1b[2J" not in out.stream.getvalue()

"""The trace buffer is ftrace's: per CPU, a fixed number of pages (buffer_size_kb), the
oldest page overwritten when full or, with overwrite off, the new events dropped; the
counts are kept and shown as ftrace shows them (the trace file's header, per_cpu stats,
trace_pipe's LOST lines, trace-cmd's EVENTS DROPPED); adding costs the same full or empty."""
from __future__ import annotations

import io
import re
import shutil
import subprocess
import time

import pytest

from kprobe_shell.shell.output import Output
from kprobe_shell.shell.session import Session
from kprobe_shell.tracing import tracedat
from kprobe_shell.tracing.trace import TraceBuffer, TraceEvent


def _event(i: int, cpu: int = 0) -> TraceEvent:
    return TraceEvent(i, "t", 1, cpu, "e", "f+0x0/0x1")


# An event of no arguments: trace_entry and __probe_ip (16 bytes) behind a 4-byte header.
PER_PAGE = tracedat.PAGE_DATA // 20


def test_a_full_buffer_overwrites_its_oldest_page():
    buf = TraceBuffer(size_kb=1)  # two pages, as ring_buffer.c's smallest buffer
    n = 3 * PER_PAGE + 5
    for i in range(n):
        buf.add(_event(i))
    kept = [e.time_ns for e in buf.events]
    assert kept == list(range(n - len(kept), n)) and kept[-1] == n - 1
    assert len(kept) == PER_PAGE + 5  # one full page and the page being written
    assert buf.overrun == n - len(kept) == 2 * PER_PAGE and buf.dropped == 0
    assert buf.cpus[0].written == n
    buf.clear()
    assert buf.events == [] and buf.overrun == 0 and buf.last is None


def test_overwrite_off_drops_the_new_events():
    buf = TraceBuffer(size_kb=1, overwrite=False)
    n = 3 * PER_PAGE
    for i in range(n):
        buf.add(_event(i))
    assert [e.time_ns for e in buf.events] == list(range(2 * PER_PAGE))
    assert buf.dropped == PER_PAGE and buf.overrun == 0


def test_a_smaller_buffer_loses_its_oldest_pages_as_overrun():
    buf = TraceBuffer(size_kb=16)
    for i in range(4 * PER_PAGE):
        buf.add(_event(i))
    assert buf.entries == 4 * PER_PAGE and buf.overrun == 0
    buf.resize(1)  # two pages: the oldest full one and the one being written stay
    assert buf.entries == 2 * PER_PAGE and buf.overrun == 2 * PER_PAGE
    assert buf.events[0].time_ns == 2 * PER_PAGE


def test_the_events_keep_their_recording_order_across_cpus():
    buf = TraceBuffer()
    order = [(5, 0), (1, 1), (6, 0), (2, 1)]
    for t, cpu in order:
        buf.add(_event(t, cpu))
    assert [(e.time_ns, e.cpu) for e in buf.events] == order
    assert [line.split()[2] for line in buf.lines()] == ["0.000000001:", "0.000000002:", "0.000000005:",
                                                          "0.000000006:"]
    assert buf.last.time_ns == 2


def test_stats_are_per_cpu_stats():
    buf = TraceBuffer(size_kb=1)
    for i in range(3 * PER_PAGE + 1):
        buf.add(_event(1000 + i))
    assert buf.stats(0, 2_000_000_123) == (
        f"entries: {PER_PAGE + 1}\noverrun: {2 * PER_PAGE}\ncommit overrun: 0\nbytes: {(PER_PAGE + 1) * 20}\n"
        f"oldest event ts:     0.{1000 + 2 * PER_PAGE:09d}\nnow ts:     2.000000123\n"
        "dropped events: 0\nread events: 0\n")


def test_the_pipe_says_the_lost_events_once_and_consumes():
    buf = TraceBuffer(size_kb=1)
    for i in range(3 * PER_PAGE + 1):
        buf.add(_event(i))
    lines = buf.consume()
    assert lines[0] == f"CPU:0 [LOST {2 * PER_PAGE} EVENTS]" and len(lines) == PER_PAGE + 2
    assert buf.entries == 0 and buf.cpus[0].read == PER_PAGE + 1
    buf.add(_event(10**6))
    assert len(buf.consume()) == 1  # said once


def test_page_sizes_are_the_dat_files_pages():
    """The buffer counts each event as rb_event encodes it: time extends, type_len 0."""
    fmt = tracedat.EventFormat("s", tracedat.FIRST_EVENT_ID, False, [tracedat.arg_field("s", "string")])
    for delta, text in ((0, "x"), (5, "x" * 200), (1 << 28, "y" * 3), (1 << 40, "")):
        data = fmt.record(1, (0,), {"s": text})
        assert tracedat.event_length(delta, len(data)) == len(tracedat.rb_event(delta, data))


def _time_adds(buf: TraceBuffer, n: int) -> float:
    events = [_event(i) for i in range(n)]
    start = time.perf_counter()
    for ev in events:
        buf.add(ev)
    return time.perf_counter() - start


def test_adding_to_a_full_buffer_costs_what_adding_to_an_empty_one_does():
    size_kb, n = 256, 20_000
    full = TraceBuffer(size_kb=size_kb)
    while full.overrun == 0:
        full.add(_event(0))
    best_full = min(_time_adds(full, n) for _ in range(3))
    best_empty = min(_time_adds(TraceBuffer(size_kb=size_kb), n) for _ in range(3))
    assert best_full < 8 * best_empty + 0.01, (best_full, best_empty)
    assert full.overrun > 3 * n - PER_PAGE


# ---------------------------------------------------------------------- in the shell
@pytest.fixture(scope="module")
def calls(build_guest):
    return build_guest("calls")


def _session(image: str, *commands: str) -> tuple[Session, io.StringIO]:
    out = io.StringIO()
    s = Session(image, output=Output(stream=out, color=False))
    for c in commands:
        s.execute(c)
    return s, out


PROBE = "p:hot hot i=%di:s64 name=+0(%si):string"


def test_the_shell_keeps_buffer_size_kb_per_cpu(calls):
    s, out = _session(calls, "set trace-buffer-size 8", PROBE, "run")
    trace = s.trace
    assert trace.overrun + trace.entries == 20000 and trace.overrun > 0
    assert trace.nr_pages == 3  # 8 KiB rounded up to whole data pages
    assert 2 * tracedat.PAGE_DATA < trace.cpus[0].bytes <= 3 * tracedat.PAGE_DATA
    out.truncate(0)
    out.seek(0)
    s.execute("trace show")
    text = out.getvalue().splitlines()
    assert text[2] == f"# entries-in-buffer/entries-written: {trace.entries}/20000   #P:1"
    assert len(text) == 6 + trace.entries and text[-1].endswith('i=19999 name="bb"')
    out.truncate(0)
    out.seek(0)
    s.execute("trace stats")
    stats = out.getvalue().splitlines()
    assert stats[:3] == ["CPU: 0", f"entries: {trace.entries}", f"overrun: {20000 - trace.entries}"]
    assert "dropped events: 0" in stats


def test_overwrite_off_in_the_shell(calls):
    s, out = _session(calls, "set trace-overwrite off", "set trace-buffer-size 8", PROBE, "run")
    assert s.trace.events[0].values["i"] == 0 and s.trace.dropped == 20000 - s.trace.entries
    s.execute("trace stats")
    assert f"dropped events: {s.trace.dropped}" in out.getvalue()


def test_bad_buffer_settings_change_nothing(calls):
    s, _ = _session(calls)
    for value, message in (("0", "trace-buffer-size is 1 to 1048576 (KiB per CPU)"),
                           ("2000000", "trace-buffer-size is 1 to 1048576 (KiB per CPU)"),
                           ("x", "set trace-buffer-size takes a number")):
        with pytest.raises(Exception, match=re.escape(message)):
            s.execute(f"set trace-buffer-size {value}")
    with pytest.raises(Exception, match="set trace-overwrite takes on or off"):
        s.execute("set trace-overwrite maybe")
    assert s.settings["trace-buffer-size"] == 1408 and s.trace.size_kb == 1408 and s.trace.overwrite


needs_trace_cmd = pytest.mark.skipif(shutil.which("trace-cmd") is None,
                                     reason="Debian's trace-cmd is not installed (apt-get install trace-cmd; .ci/run does)")


@needs_trace_cmd
@pytest.mark.parametrize("flag", ["", "--v7 "], ids=["v6", "v7"])
def test_trace_cmd_says_the_overwritten_events_dropped(calls, tmp_path, flag):
    s, _ = _session(calls, "set trace-buffer-size 8", PROBE, "run")
    s.execute(f"trace save {flag}{tmp_path / 'o.dat'}")
    out = subprocess.run(["trace-cmd", "report", "-t", "-i", str(tmp_path / "o.dat")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[1] == f"CPU:0 [{s.trace.overrun} EVENTS DROPPED]"
    reported = [re.sub(r"^\s+|\(\w+\)\s", "", line).split(": ", 1)[1] for line in lines[2:]]
    shown = [re.sub(r"\(hot\+0x0/0x\w+\)\s", "", line).split(": ", 1)[1].strip() for line in s.trace.lines()]
    assert [r.split(None, 1)[1] if r.startswith("hot:") else r for r in reported] == \
           [x.split(": ", 1)[1] if x.startswith("hot:") else x for x in shown]
    assert len(reported) == s.trace.entries
    # the buffer's pages are the file's: as many 4 KiB pages as the buffer has
    stat = subprocess.run(["trace-cmd", "report", "--stat", "-i", str(tmp_path / "o.dat")], capture_output=True,
                          text=True, timeout=60).stdout
    assert f"overrun: {s.trace.overrun}" in stat
    assert f"{len(s.trace.cpus[0].all_pages()) * 4096} bytes in size" in stat


def test_an_events_length_is_its_encoded_records():
    """EventLengths (what the buffer counts) against the record and header the file gets:
    UTF-8 strings, bytes that are not (surrogates), a faulted string, a long one."""
    class Probe:
        addr = 0x1000
        spec = {"types": {"n": "u32", "s": "string"}}

    probes = {7: Probe()}
    lengths, builder = tracedat.EventLengths(probes), tracedat.DatBuilder(probes, {}, 1)
    for text in ("x", "é" * 50, "a\udcffb", None, "y" * 300):
        ev = TraceEvent(5, "t", 1, 0, "e", "f+0x0/0x1", probe=7, values={"n": 3, "s": text})
        record = builder.records([ev])[0][1]
        assert lengths.length(ev) == len(tracedat.rb_event(0, record)), text


def test_a_return_site_outside_every_symbol_keeps_its_address_in_the_record():
    """A return event's __probe_ret_ip comes from its formatted site: a bare hex address
    (a return into code no symbol covers) is that address, as the C recorder writes it."""
    class Probe:
        addr = 0x1000
        spec = {"types": {}}

    builder = tracedat.DatBuilder({7: Probe()}, {}, 1)
    ev = TraceEvent(5, "t", 1, 0, "e", "0x40001234 <- f", probe=7, kind="r", values={})
    assert builder.ips(ev) == (0x1000, 0x40001234)
    assert builder.address("0xzz") == 0 and builder.address("nosuch+0x4/0x10") == 0

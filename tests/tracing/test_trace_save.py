"""`trace save`: ftrace's text file, and trace-cmd's trace.dat read back by trace-cmd itself.

`trace-cmd report -t -i FILE.dat` (Debian's trace-cmd) must print the events `trace show`
prints: the same event names, nanosecond timestamps, tasks, CPUs and arguments, and the
probe addresses of the where column."""
from __future__ import annotations

import io
import re
import shutil
import struct
import subprocess

import pytest

from kprobe_shell.shell.output import Output
from kprobe_shell.shell.session import Session
from kprobe_shell.tracing import tracedat

PROBES = [
    'p:open do_sys_open dfd=%di:s32 name=+0(%si):string flags=%dx:x32',
    'r:openr do_sys_open ret=$retval:s64',
    'p:fork do_fork flags=%di:x64 comm=$comm',
]
LINE = re.compile(r"^\s*(\S+)-(\d+)\s+\[(\d{3})\]\s+(\d+\.\d{9}): (\S+):\s+\((.*?)\)(.*)$")


def traced_session(cpus: int) -> tuple[Session, io.StringIO]:
    buf = io.StringIO()
    session = Session(output=Output(stream=buf, color=False))
    if cpus != 1:
        session.execute(f"set cpus {cpus}")
        session.execute("reset")
    for line in PROBES:
        session.execute(line)
    session.execute("run 300000")
    return session, buf


@pytest.fixture(scope="module", params=[1, 2], ids=["1cpu", "2cpus"])
def traced(request, kernel_path):
    return traced_session(request.param)


def show_rows(session) -> list[tuple]:
    rows = []
    for line in session.trace.lines():
        comm, pid, cpu, time, event, where, args = LINE.match(line).groups()
        rows.append((float(time), int(cpu), comm, int(pid), time, event, args))
    return rows


def report_rows(path) -> tuple[list[tuple], list[str]]:
    out = subprocess.run(["trace-cmd", "report", "-t", "-i", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows, wheres = [], []
    for line in out.stdout.splitlines():
        m = LINE.match(line)
        if m:
            comm, pid, cpu, time, event, where, args = m.groups()
            if pid == "0":  # libtraceevent names pid 0 "<idle>" whatever the cmdlines say, as ftrace does
                assert comm == "<idle>"
                comm = "swapper"
            event_args = args.lstrip()
            rows.append((float(time), int(cpu), comm, int(pid), time, event, " " + event_args if event_args else ""))
            wheres.append(where)
    return rows, wheres


needs_trace_cmd = pytest.mark.skipif(shutil.which("trace-cmd") is None,
                                     reason="Debian's trace-cmd is not installed (apt-get install trace-cmd; .ci/run does)")


@needs_trace_cmd
@pytest.mark.parametrize("flag", ["", "--v7 "], ids=["v6", "v7"])
def test_trace_cmd_reports_what_trace_show_shows(traced, tmp_path, flag):
    session, _ = traced
    session.execute(f"trace save {flag}{tmp_path / 'trace.dat'}")
    shown = show_rows(session)
    reported, wheres = report_rows(tmp_path / "trace.dat")
    assert {r[5] for r in shown} == {"open", "openr", "fork"}
    assert any('name="/etc/' in r[6] for r in shown)
    # The file keeps one name a pid (saved_cmdlines): a task that exec'd shows its latest name.
    latest = {r[3]: r[2] for r in shown}
    shown = [(t, cpu, latest[pid], pid, *rest) for t, cpu, _comm, pid, *rest in shown]
    # trace-cmd merges the CPUs by time stamp: compare in (time, cpu) order
    assert sorted(reported, key=lambda r: r[:2]) == sorted(shown, key=lambda r: r[:2])
    cpus = {r[1] for r in shown}
    assert len(cpus) == session.machine.ncpus  # every CPU's buffer is in the file
    symbols = session.machine.symbols
    do_sys_open = symbols["do_sys_open"].address
    for (time, cpu, comm, pid, _t, event, _a), where in zip(sorted(reported, key=lambda r: r[:2]), wheres):
        if event == "openr":
            site, func = (int(x, 16) for x in where.split(" <- "))
            assert func == do_sys_open and symbols.containing(site)[0].name == "sys_open"
        elif event == "open":
            assert int(where, 16) == do_sys_open


@needs_trace_cmd
def test_a_long_string_and_a_long_gap_read_back(kernel_path, tmp_path):
    """Records over 112 bytes take the type_len 0 header, gaps over 2^27 ns a time extend."""
    fmt = tracedat.EventFormat("long", tracedat.FIRST_EVENT_ID, False, [tracedat.arg_field("s", "string")])
    long_text = "x" * 300
    records = [(5, fmt.record(7, (0x1000,), {"s": "short"})),
               (5 + (1 << 30) + 123, fmt.record(7, (0x1000,), {"s": long_text}))]
    path = tmp_path / "long.dat"
    path.write_bytes(tracedat.dat_file([fmt], [records], "", {7: "task"}))
    rows, _ = report_rows(path)
    assert [(r[4], r[2], r[6]) for r in rows] == [
        ("0.000000005", "task", ' s="short"'),
        (f"{(5 + (1 << 30) + 123) // 10**9}.{(5 + (1 << 30) + 123) % 10**9:09d}", "task", f' s="{long_text}"')]


def test_pages_follow_the_kernel_layout():
    fmt = tracedat.EventFormat("e", tracedat.FIRST_EVENT_ID, False, [tracedat.arg_field("x", "u32")])
    rec = fmt.record(3, (0x10,), {"x": 9})
    assert len(rec) == 8 + 8 + 4
    pages = tracedat.cpu_pages([(100, rec)] * 300)
    assert len(pages) % tracedat.PAGE_SIZE == 0 and len(pages) > tracedat.PAGE_SIZE
    stamp, commit = struct.unpack_from("<QQ", pages)
    assert stamp == 100 and commit == (tracedat.PAGE_DATA // 24) * 24
    header, = struct.unpack_from("<I", pages, 16)
    assert header & 31 == len(rec) // 4 and header >> 5 == 0


def test_the_format_file_is_the_kernels(kernel_path):
    fmt = tracedat.EventFormat("openr", 1501, True, [tracedat.arg_field("ret", "s64"),
                                                     tracedat.arg_field("name", "string")])
    text = fmt.format_file()
    assert "\tfield:unsigned long __probe_func;\toffset:8;\tsize:8;\tsigned:0;" in text
    assert "\tfield:unsigned long __probe_ret_ip;\toffset:16;\tsize:8;\tsigned:0;" in text
    assert "\tfield:s64 ret;\toffset:24;\tsize:8;\tsigned:1;" in text
    assert "\tfield:__data_loc char[] name;\toffset:32;\tsize:4;\tsigned:1;" in text
    assert 'print fmt: "(%lx <- %lx) ret=%Ld name=\\"%s\\"", REC->__probe_ret_ip, REC->__probe_func, ' \
           'REC->ret, __get_str(name)' in text


def test_text_save_has_ftraces_header(traced, tmp_path):
    session, _ = traced
    session.execute(f"trace save {tmp_path / 'trace.txt'}")
    text = (tmp_path / "trace.txt").read_text()
    lines = session.trace.lines()
    head = text.splitlines()[:6]
    assert head[0] == "# tracer: nop"
    assert head[2] == f"# entries-in-buffer/entries-written: {len(lines)}/{len(lines)}   #P:{session.machine.ncpus}"
    assert all(h.startswith("#") for h in head)
    assert text.splitlines()[6:] == lines


@needs_trace_cmd
def test_many_pages_read_back_in_order(tmp_path):
    fmt = tracedat.EventFormat("e", tracedat.FIRST_EVENT_ID, False, [tracedat.arg_field("x", "u32")])
    records = [(1000 + 7 * i, fmt.record(3, (0x10,), {"x": i})) for i in range(2000)]
    path = tmp_path / "many.dat"
    path.write_bytes(tracedat.dat_file([fmt], [records[::2], records[1::2]], "", {3: "t"}))
    rows, _ = report_rows(path)
    assert [r[6] for r in rows] == [f" x={i}" for i in range(2000)]
    assert [r[1] for r in rows] == [i % 2 for i in range(2000)]


@needs_trace_cmd
def test_recorded_stacks_are_kernel_stack_entries_in_the_dat_file(kernel_path, tmp_path):
    buf = io.StringIO()
    session = Session(output=Output(stream=buf, color=False))
    for line in ("p:open do_sys_open name=+0(%si):string", "kretprobe cat_file", "trigger open stacktrace", "run 150000"):
        session.execute(line)
    session.execute(f"trace save {tmp_path / 's.dat'}")
    out = subprocess.run(["trace-cmd", "report", "-i", str(tmp_path / "s.dat")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    reported = [block.splitlines()[1:] for block in out.stdout.split("<stack trace >")[1:]]
    expected = [[f.partition("+")[0] for f in ev.stack] for ev in session.trace.events if ev.event == "open"]
    assert expected and all(expected)
    assert not any(ev.stack for ev in session.trace.events if ev.event != "open")
    assert [[line.split()[1] for line in block if line.startswith("=> ")] for block in reported] == expected

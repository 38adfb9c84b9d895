"""Fetch programs in C (tracing/cfetch.py, tracing/_hit.c) against the reference: fetch.py's
evaluate for the values and faults, tracedat.EventFormat.record for the record's bytes,
fetch.match_filter for the filter.  On every hit of the fetch-program events (1 and 2
CPUs), and on random fetch arguments and filters (hypothesis) at a stop."""
from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kprobe_shell.kprobes import chits
from kprobe_shell.shell import userprobes
from kprobe_shell.shell.output import Output
from kprobe_shell.shell.probe_handlers import MachineFetchContext
from kprobe_shell.shell.session import Session
from kprobe_shell.tracing import cfetch, tracedat
from kprobe_shell.tracing import fetch as F
from kprobe_shell.tracing.probe_events import ProbeEventError, parse_probe_event

from test_fetch_programs import EVENTS  # noqa: E402 - tests/tracing is on the path

FILTERED = [
    'p:fa do_sys_open name=+0(%si):string dfd=%di:s32 if name == "/etc/motd" || dfd < 0',
    "p:fb do_sys_open flags=%dx:x32 m=%cx:u16 if !(flags == 0) && m <= 438 || flags > 0x8000",
    'p:fc do_sys_open c=+0(%si):char n=+1(%si):string if c == "/" && $comm != "init" && $pid > 1',
    'p:fd do_sys_open bad=+0(%ax):u32 s=+0(%ax):string if bad == 0 || s == ""',
]


def reference(defn, machine) -> tuple[bytes, int, bool]:
    """What the C program must give: the record after the ips, the faulted arguments,
    the filter's verdict."""
    ctx = MachineFetchContext(machine, defn.is_return)
    values, faults = {}, 0
    for i, arg in enumerate(defn.args):
        try:
            raw = F.evaluate(arg.fetch, ctx, arg.type)
        except F.FetchFault:
            raw, faults = None, faults | (1 << i)
        values[arg.name] = F.python_value(raw, arg.type)
    fmt = tracedat.EventFormat(defn.event, 1, defn.is_return,
                               [tracedat.arg_field(a.name, str(a.type)) for a in defn.args])
    comm, pid = machine.tasks.current_comm_pid() or ("?", -1)
    record = fmt.record(pid, (0, 0) if defn.is_return else (0,), values)
    head = 8 + (16 if defn.is_return else 8)
    return record[head:], faults, F.match_filter(defn, ctx, values)


def run_c(defn, machine) -> tuple[bytes, int, bool]:
    program = cfetch.compile_event(defn, chits.register_id, lambda n: machine.symbols.lookup(n).address)
    comm, pid = machine.tasks.current_comm_pid() or ("?", -1)
    return chits.run_program(program, machine, comm, pid)


@pytest.mark.parametrize("cpus", [1, 2], ids=["1cpu", "2cpus"])
def test_c_programs_record_what_the_reference_records(kernel_path, monkeypatch, cpus):
    hits, mismatches = [], []
    compile_args = userprobes.compile_args

    def checked(defn, ctx):
        program = compile_args(defn, ctx)

        def both():
            got, want = run_c(defn, ctx.machine), reference(defn, ctx.machine)
            hits.append(defn.event)
            if got != want:
                mismatches.append((defn.event, got, want))
            return program()

        return both

    monkeypatch.setattr(userprobes, "compile_args", checked)
    s = Session(output=Output(stream=io.StringIO(), color=False))
    s.execute("set trace-hits python")  # every hit through the wrapped Python render
    if cpus != 1:
        s.execute(f"set cpus {cpus}")
        s.execute("reset")
    for line in EVENTS + FILTERED:
        s.execute(line)
    s.execute("run 300000")
    assert mismatches == []
    assert set(hits) == set("abcdefgh") | {"fa", "fb", "fc", "fd"}


# ---------------------------------------------------------------------- random fetch args
REGS = ["%di", "%si", "%dx", "%cx", "%r8", "%r9", "%ax", "%bx", "%bp", "%sp", "%ip", "%flags",
        "%r12", "%r15", "%rdi", "%esi", "%cs", "%ss"]
TYPES = ["u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "x8", "x16", "x32", "x64", "char", "symbol"]


def _fetchargs(depth: int):
    leaf = st.one_of(
        st.sampled_from(REGS),
        st.integers(1, 9).map(lambda n: f"$arg{n}"),
        st.integers(0, 6).map(lambda n: f"$stack{n}"),
        st.just("$stack"),
        st.sampled_from(["@jiffies", "@jiffies+8", "@0x0", "@0x1000", "@init_task+16"]),
        st.integers(-(1 << 63), (1 << 64) - 1).map(lambda v: f"\\{v}"),
    )
    if depth == 0:
        return leaf
    inner = st.one_of(st.sampled_from(REGS), st.just("$stack"), st.integers(1, 8).map(lambda n: f"$arg{n}"),
                      _fetchargs(depth - 1))
    return st.one_of(leaf, st.tuples(st.integers(-64, 64), inner).map(
        lambda t: f"{'+' if t[0] >= 0 else '-'}{abs(t[0])}({t[1]})"))


@st.composite
def arg_lines(draw):
    args = []
    for i in range(draw(st.integers(1, 6))):
        fetch = draw(_fetchargs(3))
        memory = fetch.startswith(("+", "-", "@"))
        kinds = TYPES + (["string", "b3@2/8", "b1@0/8", "b7@9/16", "b12@20/32", "b64@0/64"] if memory else [])
        if draw(st.booleans()) and fetch.startswith("\\") is False:
            t = draw(st.sampled_from(kinds))
            args.append(f"a{i}={fetch}:{t}")
        else:
            args.append(f"a{i}={fetch}")
    if draw(st.booleans()):
        args.append(f"c{len(args)}=$comm")
    return args


@pytest.fixture(scope="module")
def stopped(kernel_path):
    """A session stopped at do_sys_open's entry: registers hold pointers and small ints."""
    s = Session(output=Output(stream=io.StringIO(), color=False))
    s.execute("break do_sys_open")
    s.execute("run")
    return s


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(args=arg_lines(), literal=st.integers(-(1 << 63), (1 << 64) - 1), op=st.sampled_from(
    ["==", "!=", "<", "<=", ">", ">="]))
def test_random_fetch_args_c_equals_evaluate(stopped, args, literal, op):
    m = stopped.machine
    line = "p:rnd do_sys_open " + " ".join(args) + f" if a0 {op} {literal}"
    try:
        defn = parse_probe_event(line)
    except ProbeEventError:
        try:
            defn = parse_probe_event("p:rnd do_sys_open " + " ".join(args))
        except ProbeEventError:
            return
    try:
        got = run_c(defn, m)
    except cfetch.NotCompilable:
        return
    assert got == reference(defn, m), line


def test_what_stays_in_python_says_why(stopped):
    m = stopped.machine
    nested = "a == 0" + "".join(f" && (a == {i}" for i in range(1, 32)) + ")" * 31
    for line, why in [("p:g do_sys_open a=$comm if a ~ \"x*\"", "'~'"),
                      ("p:g do_sys_open a=@no_such_symbol", "unknown symbol"),
                      (f"p:g do_sys_open a=%di if {nested}", "deeper")]:
        defn = parse_probe_event(line)
        with pytest.raises(cfetch.NotCompilable, match=why):
            cfetch.compile_event(defn, chits.register_id, lambda n: m.symbols.lookup(n).address)


@pytest.mark.parametrize("levels", [1, 8, 14])
def test_nested_filters_within_the_stack_run_in_c(stopped, levels):
    m = stopped.machine
    nested = "a >= 0" + "".join(f" && (a != {i} || !(b == 0)" for i in range(1, levels)) + ")" * (levels - 1)
    defn = parse_probe_event(f"p:g do_sys_open a=%di:s32 b=%dx if {nested}")
    assert run_c(defn, m) == reference(defn, m)

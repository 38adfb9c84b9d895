"""Fetch programs (tracing/fetchprog.py) against the reference, fetch.render_args: on
every hit of many probe events (each type, register, $argN, $retval, $comm, derefs,
strings, symbols, bitfields, faults, on 1 and 2 CPUs) both run and give the same text
and values, byte for byte; the trace lines are the reference's."""
from __future__ import annotations

import io

import pytest

from kprobe_shell.shell import userprobes
from kprobe_shell.shell.output import Output
from kprobe_shell.shell.session import Session
from kprobe_shell.tracing import fetch as F
from kprobe_shell.tracing import fetchprog

EVENTS = [
    "p:a do_sys_open dfd=%di:s32 name=+0(%si):string flags=%dx:x32 mode=%cx:u16 raw=%si",
    "p:b do_sys_open d8=%di:s8 u8=%di:u8 x8=%di:x8 s16=%di:s16 x16=%di:x16 u32=%di:u32 s64=%di:s64 u64=%di:u64",
    "p:c do_sys_open a1=$arg1:s32 a2=+0($arg2):string a4=$arg4 c=$comm sp=$stack ",
    "p:d do_sys_open s0=$stack0 s1=$stack1:symbol ch=+0(%si):char bf=+0(%si):b3@2/8 j=@jiffies:u64",
    "p:e do_sys_open w=+0(%si):u32 w8=+1(%si):x8 nest=+0(+0(%sp)):x64 bad=+0(%ax):u32 bads=+0(%ax):string",
    "r:f do_sys_open ret=$retval:s64 r32=$retval:x32 rs=+0(%ax):string ip=%ip:symbol",
    "p:g do_fork flags=%di:x64 neg=-8(%sp):s64 imm=\\42:u8 s=\\\"hi\\\":string",
    "p:h schedule prev=%di:x64 fl=%flags:x32",
]


@pytest.mark.parametrize("cpus", [1, 2], ids=["1cpu", "2cpus"])
def test_programs_render_what_the_reference_renders(kernel_path, monkeypatch, cpus):
    hits, mismatches = [], []
    compile_args = fetchprog.compile_args

    def checked(defn, ctx):
        program = compile_args(defn, ctx)

        def both():
            got, want = program(), F.render_args(defn, ctx)
            hits.append(defn.event)
            if got != want:
                mismatches.append((defn.event, got, want))
            return want

        return both

    monkeypatch.setattr(userprobes, "compile_args", checked)
    s = Session(output=Output(stream=io.StringIO(), color=False))
    s.execute("set trace-hits python")  # the programs run on the Python path (C hits: test_cfetch.py)
    if cpus != 1:
        s.execute(f"set cpus {cpus}")
        s.execute("reset")
    for line in EVENTS:
        s.execute(line)
    s.execute("run 300000")
    assert mismatches == []
    assert {e for e in hits} == set("abcdefgh")
    text = "\n".join(s.trace.lines())
    assert "bad=(fault)" in text and 'name="/etc/' in text and "c=" in text


def test_the_shell_uses_the_programs(kernel_path):
    """The trace of a probe event is the program's: same lines as the reference gives."""
    s = Session(output=Output(stream=io.StringIO(), color=False))
    s.execute(EVENTS[0])
    s.execute("run 150000")
    lines = s.trace.lines()
    assert lines and all('name="' in line for line in lines)

"""The same probe defined three ways gives the same values.

do_sys_open(int dfd, const char *filename, int flags, int mode) and its return value,
probed as an ftrace kprobe_events line (registers), as perf-probe names (DWARF), and
from a Python handler file (a kprobe reading registers, a jprobe receiving the
arguments, a kretprobe): one run, --json, and each event's values compared hit by hit.
"""
from __future__ import annotations

import json
import textwrap

HANDLERS = textwrap.dedent('''
    from kprobe_shell.handlers import kprobe, jprobe, kretprobe, read_string, retval, emit

    def s32(v):
        v &= 0xffffffff
        return v - (1 << 32) if v >> 31 else v

    @kprobe("do_sys_open")
    def py_regs(p, regs):
        emit(dfd=s32(regs.di), filename=read_string(regs.si), flags=s32(regs.dx), mode=s32(regs.cx))

    @jprobe("do_sys_open")
    def py_args(dfd, filename, flags, mode):
        emit(dfd=dfd, filename=read_string(filename), flags=flags, mode=mode)

    @kretprobe("do_sys_open", maxactive=20)
    def py_ret(ri, regs):
        emit(ret=retval())
''')


def test_line_dwarf_and_python_agree(tmp_path, run_shell):
    f = tmp_path / "same.py"
    f.write_text(HANDLERS)
    r = run_shell("--batch", "--json",
                  "-ex", "r20:line_ret do_sys_open ret=$retval:s64",
                  "-ex", "p:line do_sys_open dfd=%di:s32 filename=+0(%si):string flags=%dx:s32 mode=%cx:s32",
                  "-ex", "p:dwarf do_sys_open dfd filename:string flags mode",
                  "-ex", f"handlers {f}", "-ex", "run", tmp_home=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    traces = [o for o in map(json.loads, r.stdout.splitlines()) if o["type"] == "trace"]

    def values(event):
        return [(o["comm"], o["pid"], o["time_ns"], o["args"]) for o in traces if o["event"] == event]

    line = values("line")
    assert len(line) == 12
    assert values("dwarf") == line
    assert values("py_regs") == line
    assert values("py_args") == line
    assert values("py_ret") == values("line_ret")
    assert {a["filename"] for *_, a in line} >= {"/etc/motd", "/nonexistent", "/dev/sda"}
    assert -2 in [a["ret"] for *_, a in values("py_ret")]
    assert all(a["dfd"] == -100 for *_, a in line)  # AT_FDCWD, signed, every way

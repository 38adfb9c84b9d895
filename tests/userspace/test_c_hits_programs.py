"""A real program's system calls (`p:w sys_write fd=%di count=%dx`) traced in C and in Python (`set trace-hits`): the same
trace, trace.dat and counts, on 1 CPU (where the probe is jump-optimized)."""
from __future__ import annotations

import io

import pytest

from kprobe_shell.shell.output import Output
from kprobe_shell.shell.session import Session


def traced_run(program: str, mode: str, dat) -> tuple[str, bytes, int, dict]:
    out = io.StringIO()
    s = Session(output=Output(out, color=False))
    s.execute(f"set trace-hits {mode}")
    s.execute(f"exec {program} traced")
    s.execute("p:w sys_write fd=%di count=%dx")
    s.execute("p:wv sys_writev fd=%di vlen=%dx:u32")  # musl writes with writev
    s.execute("@bytes[comm, fd] = sum(count) on w")
    s.execute("@vec[comm, fd] = count() on wv")
    s.execute("run")
    s.execute(f"trace save {dat}")
    s.execute("maps")
    s.out.flush()
    recorded = dict(s.machine.kprobes.optimizer.c_hits.recorded)
    hits = (s.probes[1].obj.hits, s.probes[2].obj.hits)
    return out.getvalue().replace(str(dat), "FILE.dat"), dat.read_bytes(), hits, recorded


@pytest.mark.parametrize("libc", ["glibc", "musl"])
def test_sys_write_traced_in_c_as_in_python(build_program, tmp_path, libc):
    path = build_program("hello", libc)
    text_py, dat_py, hits_py, rec_py = traced_run(path, "python", tmp_path / "py.dat")
    text_c, dat_c, hits_c, rec_c = traced_run(path, "c", tmp_path / "c.dat")
    assert rec_py == {} and len(rec_c) == 2
    assert hits_c == hits_py and sum(hits_c) > 0
    assert text_c == text_py
    assert dat_c == dat_py
    assert "(sys_write" in text_c and ("@bytes[" in text_c or "@vec[" in text_c)

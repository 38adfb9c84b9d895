"""Files a program creates live in the guest's file system (a RAM file system): create,
truncate, append, exclusive create, holes, rename, unlink while open, mkdir/rmdir, and
close-on-exec across an exec.  The console is the native run's (run in an empty directory)."""
from __future__ import annotations

import subprocess

import pytest

from userprogs import LIBCS, program_output
from test_programs import run_programs
from kprobe_shell import Program


@pytest.mark.parametrize("libc", LIBCS)
def test_files_a_program_creates(build_program, libc, tmp_path):
    path = build_program("files", libc)
    m = run_programs(Program(path, [f"files-{libc}", f"/bin/files-{libc}"]))
    native = subprocess.run([path, path], cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, check=False).stdout.decode()
    out = program_output(m.console)
    assert out == native
    assert "the open file reads: still here after unlink\n" in out
    assert "after exec: fd 12 open\n" in out and "after exec: fd 3 closed\n" in out
    assert "300 files created, checked and removed: 900 of 900 steps\n" in out
    assert list(tmp_path.iterdir()) == []  # natively too, everything was removed


@pytest.mark.parametrize("libc", LIBCS)
def test_private_file_mappings(build_program, libc, tmp_path):
    path = build_program("mmapfile", libc)
    m = run_programs(Program(path, ["mmapfile"]))
    native = subprocess.run([path], cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, check=False).stdout.decode()
    out = program_output(m.console)
    assert out == native
    assert "file after writing the mapping: unchanged\n" in out and "at offset 8192: right\n" in out
    assert "not implemented" not in m.console

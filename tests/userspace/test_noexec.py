"""No-execute pages: code copied into a program's stack, heap or PROT_READ|PROT_WRITE
mapping does not run (SIGSEGV, as natively: 2.6.12 x86_64 maps data with _PAGE_NX);
PROT_EXEC mappings and mprotect(PROT_EXEC) do.  Native runs are the oracle; the code's
address differs between runs, so it is compared as a placeholder and checked against the
kernel's segfault line."""
from __future__ import annotations

import re

import pytest

from test_programs import native, run_programs
from userprogs import LIBCS, program_output
from kprobe_shell import Program

_ADDRESS = re.compile(r"0x[0-9a-f]+")


def _same_but_addresses(text: str) -> str:
    return _ADDRESS.sub("ADDR", text)


def _run(build_program, libc: str, mode: str, smp: int = 1):
    path = build_program("noexec", libc)
    m = run_programs(Program(path, ["noexec", mode]), **({"cpus": smp} if smp > 1 else {}))
    return m, path


@pytest.mark.parametrize("libc", LIBCS)
@pytest.mark.parametrize("mode", ["stack", "heap", "mmap"])
def test_a_call_into_data_is_a_segfault_with_error_15(build_program, libc, mode):
    m, path = _run(build_program, libc, mode)
    out = program_output(m.console)
    code = int(re.search(r"calling code .* at (0x[0-9a-f]+)\n", out).group(1), 16)
    # an instruction fetch (I/D, 16) by the user (4) from a present page (1)
    segfault = re.search(rf"noexec-{libc}\[2\]: segfault at ([0-9a-f]+) ip ([0-9a-f]{{16}}) "
                         r"sp [0-9a-f]{16} error 15\n", out)
    assert segfault, out
    assert int(segfault.group(1), 16) == int(segfault.group(2), 16) == code
    assert _same_but_addresses(out.replace(segfault.group(0), "")) == \
        _same_but_addresses(native([path, mode]))
    assert f"init: reaped pid 2 (noexec-{libc}), killed by signal 11\n" in m.console


@pytest.mark.parametrize("libc", LIBCS)
@pytest.mark.parametrize("mode", ["handler", "fork", "exec"])
def test_caught_forked_and_executable_mappings_match_the_native_run(build_program, libc, mode):
    m, path = _run(build_program, libc, mode)
    out = program_output(m.console)
    if mode == "fork":  # the child's segfault line is the kernel's, not the program's
        line = re.search(rf"noexec-{libc}\[3\]: segfault at [0-9a-f]+ ip [0-9a-f]{{16}} "
                         r"sp [0-9a-f]{16} error 15\n", out)
        assert line, out
        out = out.replace(line.group(0), "")
    assert _same_but_addresses(out) == _same_but_addresses(native([path, mode]))
    assert f"init: reaped pid 2 (noexec-{libc}), exit code 0\n" in m.console


def test_no_execute_holds_on_two_cpus(build_program):
    m, _ = _run(build_program, "glibc", "heap", smp=2)
    assert re.search(r"noexec-glibc\[2\]: segfault at [0-9a-f]+ ip [0-9a-f]{16} sp [0-9a-f]{16} "
                     r"error 15\n", m.console)

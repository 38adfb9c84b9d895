"""Kernel probes see a real program's system calls, and change nothing it computes."""
from __future__ import annotations

import io
import re
import shutil
import subprocess

import pytest

from userprogs import program_output
from kprobe_shell import Kprobe, Kretprobe, Machine, ProbeError, Program, StopReason
from kprobe_shell.shell.output import Output
from kprobe_shell.shell.session import Session

MODES = ["single-step", "boost", "optimize", "auto"]
STDIN_TEXT = b"alpha\nbeta\ngamma delta\n"


def native_write_count(argv: list[str], tmp_path) -> int:
    """write(2) calls of the program and its children, as strace counts them."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (Debian: apt-get install strace)")
    log = tmp_path / "strace.log"
    done = subprocess.run(["strace", "-f", "-qq", "-e", "trace=write", "-o", str(log), *argv],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    text = log.read_text() if log.exists() else ""
    if done.returncode != 0 and not text:
        pytest.skip("strace cannot trace here (ptrace not permitted?)")
    return len(re.findall(r"^\d+\s+write\(|^write\(", text, re.M))


@pytest.mark.parametrize("libc", ["glibc", "musl"])
def test_sys_write_hits_equal_the_native_write_count(build_program, tmp_path, libc):
    path = build_program("forkexec", libc)
    expected = native_write_count([path, path], tmp_path)
    m = Machine(programs=[Program(path, ["forkexec", f"/bin/forkexec-{libc}"])])
    kp = m.register_kprobe(Kprobe(symbol_name="sys_write", pre_handler=lambda p, regs: 0))
    assert m.run(max_insns=100_000_000).reason is StopReason.HALTED
    assert kp.hits == expected
    assert "exec child exited with 5\n" in m.console


def test_the_shell_traces_a_programs_writes(build_program):
    out = io.StringIO()
    s = Session(output=Output(out, color=False))
    s.execute(f"exec {build_program('hello', 'glibc')} traced")
    s.execute("p:w sys_write fd=%di count=%dx")
    s.execute("run")
    text = out.getvalue()
    assert re.search(r"hello-glibc-2 +\[000\] +[0-9.]+: w: \(sys_write\+0x0/0x[0-9a-f]+\) fd=0x1 count=0x2c\n", text), text
    assert "hello, world (2 arguments)\nargv[1] = traced\n" in s.machine.console


@pytest.fixture(scope="module")
def stdin_program(build_program, tmp_path_factory):
    stdin = tmp_path_factory.mktemp("probes") / "input.txt"
    stdin.write_bytes(STDIN_TEXT)
    return Program(build_program("stdin", "glibc"), ["stdin"], stdin=str(stdin))


@pytest.fixture(scope="module")
def reference_runs(stdin_program):
    """The program's run without probes on 1 and on 2 CPUs: (console, retired) by CPUs."""
    runs = {}
    for cpus in (1, 2):
        m = Machine(programs=[stdin_program], cpus=cpus)
        assert m.run(max_insns=100_000_000).reason is StopReason.HALTED
        runs[cpus] = m.console, m.retired
    return runs


def probe_syscalls_and_vfs(m: Machine, mode: str) -> tuple[list, list]:
    """A kretprobe on every sys_* function; a kprobe on every instruction of vfs_read
    and vfs_write."""
    m.kprobes.set_mode(mode)
    rets, kps = [], []
    for f in m.symbols.functions():
        if f.name.startswith("sys_") and f.size:
            try:
                rets.append(m.register_kretprobe(Kretprobe(symbol_name=f.name, handler=lambda ri, regs: 0)))
            except ProbeError:
                pass
    for name in ("vfs_read", "vfs_write"):
        for addr in m.kprobes.instruction_boundaries(m.symbols.get(name).address):
            kps.append(m.register_kprobe(Kprobe(addr=addr, pre_handler=lambda p, regs: 0)))
    return rets, kps


def test_two_cpus_change_nothing_the_program_writes(stdin_program, reference_runs):
    (one, _), (two, _) = reference_runs[1], reference_runs[2]
    assert "smp: 2 cpus online\n" in two
    assert program_output(one) == program_output(two)


@pytest.mark.parametrize("cpus", [1, 2])
@pytest.mark.parametrize("mode", MODES)
def test_probes_on_every_syscall_and_vfs_instruction_change_nothing(stdin_program, reference_runs, mode, cpus):
    m = Machine(programs=[stdin_program], cpus=cpus)
    rets, kps = probe_syscalls_and_vfs(m, mode)
    assert len(rets) > 40 and len(kps) > 20
    assert m.run(max_insns=100_000_000).reason is StopReason.HALTED
    assert (m.console, m.retired) == reference_runs[cpus]
    assert "3: GAMMA DELTA\n" in program_output(m.console)
    assert sum(r.kp.hits for r in rets) > 20 and all(k.hits > 0 for k in kps[:1])
    assert all(r.nmissed == 0 for r in rets)


def test_the_shell_inspects_a_program_in_a_system_call(build_program):
    """Stopped in sys_write: x reads the program's buffer through its page tables, tasks
    lists the process, bt shows the kernel frames down to system_call and the user rip."""
    out = io.StringIO()
    s = Session(output=Output(out, color=False))
    s.execute(f"exec {build_program('hello', 'glibc')} inspected")
    s.execute("break sys_write")
    s.execute("run")
    at = len(out.getvalue())
    for line in ("x/s $rsi", "tasks", "bt"):
        s.execute(line)
    text = out.getvalue()[at:]
    assert '"hello, world (2 arguments)\\x0aargv[1] = inspected\\x0a"' in text
    assert re.search(r"\*\s+2 hello-glibc\s+R\s+1 ", text)
    assert re.search(r"#0 .* in sys_write\+0x0/.*\n#1 .* in sys_user_write\+.*\n#2 .* in system_call\+.*\n"
                     r"#3 +0x\w+ in \w*write\+0x\w+/0x\w+ \[hello-glibc\] "
                     r"\(user mode, rsp 0x7fff\w+, from the task's pt_regs\)\n", text)
    user_rip = int(re.search(r"#3 +0x(\w+) in ", text).group(1), 16)
    assert s.machine.read(user_rip - 2, 2) == b"\x0f\x05"  # just after the program's syscall


def test_disas_names_the_programs_symbols(build_program):
    out = io.StringIO()
    s = Session(output=Output(out, color=False))
    path = build_program("hello", "glibc")
    s.execute(f"exec {path}")
    s.execute("break sys_write")
    s.execute("run")
    m = s.machine
    rip = m.userspace.user_frame()[0]
    at = len(out.getvalue())
    s.execute(f"disas 0x{rip - 2:x}")
    assert re.search(rf"0x0*{rip - 2:x} <\w+\+0x\w+ \[hello-glibc\]>: +0f 05 +syscall", out.getvalue()[at:])

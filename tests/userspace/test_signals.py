"""Signals as Linux delivers them: handlers on an rt_sigframe (SA_SIGINFO, SA_RESTORER,
rt_sigreturn with the registers and the FPU state), masks and pending signals, default
actions, kill(2) of another process and of a process group, SIGPIPE, SIGCHLD, restarting
or -EINTR, siglongjmp out of a SIGSEGV handler, and a stack overflow caught on a
sigaltstack.  The console is the native run's."""
from __future__ import annotations

import pytest

from userprogs import LIBCS, program_output
from test_programs import native
from kprobe_shell import Kprobe, Machine, Program, StopReason


@pytest.mark.parametrize("libc", LIBCS)
def test_signals_as_linux_delivers_them(build_program, libc):
    path = build_program("signals", libc)
    m = Machine(programs=[Program(path, ["signals"])])
    frames = m.register_kprobe(Kprobe(symbol_name="setup_rt_frame", pre_handler=lambda p, regs: 0))
    assert m.run(max_insns=400_000_000).reason is StopReason.HALTED
    out = program_output(m.console)
    assert out == native([path])
    assert "SIGSEGV 2 caught: si_addr 0x10, si_code 1\n" in out
    assert "read without SA_RESTART: -1 (Interrupted system call)\n" in out
    assert "(handlers ran: 1)\n" in out
    assert "SIGCHLD ignored: wait -> -1 (No child process" in out  # glibc adds an s
    assert "stack overflow caught: handler on the alternate stack 1, ss_flags 0\n" in out
    assert f"init: reaped pid 2 (signals-{libc}), exit code 0\n" in m.console
    assert frames.hits > 10


@pytest.mark.parametrize("mode", ["single-step", "boost", "optimize", "auto"])
def test_probes_on_every_syscall_change_nothing_for_signals(build_program, mode):
    """Kretprobes on every sys_* function (rt_sigreturn, rt_sigsuspend, kill... included) and
    kprobes on every instruction of vfs_read/vfs_write: the same bytes, the same count."""
    from test_program_probes import probe_syscalls_and_vfs

    program = Program(build_program("signals", "glibc"), ["signals"])
    plain = Machine(programs=[program])
    assert plain.run(max_insns=400_000_000).reason is StopReason.HALTED
    m = Machine(programs=[program])
    rets, _ = probe_syscalls_and_vfs(m, mode)
    assert m.run(max_insns=400_000_000).reason is StopReason.HALTED
    assert (m.console, m.retired) == (plain.console, plain.retired)
    hit = {r.kp.symbol_name for r in rets if r.kp.hits}
    assert {"sys_rt_sigreturn", "sys_rt_sigsuspend", "sys_kill", "sys_rt_sigaction", "sys_sigaltstack"} <= hit


@pytest.mark.parametrize("libc", LIBCS)
def test_real_interval_timers_on_the_virtual_clock(build_program, libc):
    path = build_program("itimer", libc)
    m = Machine(programs=[Program(path, ["itimer"])])
    assert m.run(max_insns=400_000_000).reason is StopReason.HALTED
    out = program_output(m.console)
    assert out == native([path])
    assert "interval: 4 alarms, interval 5000 us\n" in out and "child: killed by signal 14\n" in out

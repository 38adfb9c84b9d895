"""Debian's gdb attached to the machine: the habits of kernel debugging over QEMU's stub
(break, bt, finish, x/i, stepi, threads, watch, monitor, interrupt, detach), checked
against what the guest itself computed and printed."""
from __future__ import annotations

import re

from capstone import CS_ARCH_X86, CS_MODE_64, Cs
from capstone.x86 import X86_OP_MEM, X86_REG_RIP
from unicorn.x86_const import UC_X86_REG_RIP

from kprobe_shell.machine import Image

from gdbstub_helpers import slow_guest  # tests/gdbstub/ (pytest puts a test's directory on the path)


def _image(session) -> Image:
    return session.machine.image


def _insn_ending_at(image: Image, pc: int):
    """The instruction of the function holding pc that ends exactly at pc."""
    sym, _off = image.symbols.containing(pc - 1)
    cs = Cs(CS_ARCH_X86, CS_MODE_64)
    cs.detail = True
    for insn in cs.disasm(image.symbol_bytes(sym), sym.address):
        if insn.address + insn.size == pc:
            return insn
    raise AssertionError(f"no instruction ends at 0x{pc:x}")


def _memory_target(insn) -> int | None:
    for op in insn.operands:
        if op.type == X86_OP_MEM:
            if op.mem.base == X86_REG_RIP:
                return insn.address + insn.size + op.mem.disp
            if op.mem.base == 0 and op.mem.index == 0:
                return op.mem.disp & 0xFFFFFFFFFFFFFFFF
    return None


def test_break_bt_finish_stepi_watch_monitor_then_detach(stub):
    run = stub()
    image = _image(run.session)
    vfs_read = image.symbols["vfs_read"].address
    first = Cs(CS_ARCH_X86, CS_MODE_64).disasm(image.symbol_bytes(image.symbols["vfs_read"]), vfs_read)
    second_insn = next(first)
    out = run.gdb(
        "break vfs_read", "continue", "bt", "x/3i $pc", "stepi", "print/x $pc", "delete",
        "finish", "watch jiffies", "continue", "print/x $pc", "delete",
        "monitor probes", "monitor nosuchcommand", "detach")
    assert run.ended() == "gdb detached"
    # The breakpoint, with DWARF arguments, and the caller chain of the guest's read.
    assert re.search(r"Breakpoint 1, vfs_read \(file=.*count=(count@entry=)?160", out), out
    assert re.search(r"#1 +0x[0-9a-f]+ in sys_read \(fd=", out), out
    assert re.search(r"#2 +0x[0-9a-f]+ in cat_file \(who=.*\"opener1\"", out), out
    # x/3i: three instructions from the stop, the first at vfs_read.
    assert re.search(rf"=> 0x{vfs_read:x} <vfs_read>:\s+\S+", out), out
    assert len(re.findall(r"\n +0x[0-9a-f]+ <vfs_read\+\d+>:", out)) >= 2, out
    # stepi: exactly one instruction on.
    assert f"$1 = 0x{vfs_read + second_insn.size:x}" in out, out
    # finish: the value the guest then printed itself ("read /etc/motd: N bytes").
    returned = re.search(r"Value returned is \$\d+ = (\d+)", out)
    assert returned, out
    console = run.session.machine.console
    # The watchpoint: it fires after the instruction that wrote jiffies, and gdb sees
    # the old and new values.
    watched = re.search(r"Old value = (\d+)\s+New value = (\d+)", out)
    assert watched and int(watched.group(2)) == int(watched.group(1)) + 1, out
    pc = int(re.findall(r"\$\d+ = 0x([0-9a-f]+)", out)[-1], 16)
    writer = _insn_ending_at(image, pc)
    assert _memory_target(writer) == image.symbols["jiffies"].address, (writer.mnemonic, writer.op_str)
    # monitor: shell output comes back; a bad command says why, and gdb goes on.
    assert "No probes or breakpoints." in out
    assert "error: unknown command 'nosuchcommand'" in out
    assert "[Inferior 1 (Remote target) detached]" in out
    # Detached: the shell goes on from where gdb left the guest, to the end.
    run.session.execute("continue")
    assert "guest halted" in run.shell_output
    console = run.session.machine.console
    assert re.search(rf"\[opener1\] read /etc/motd: {returned.group(1)} bytes", console), console
    # gdb's stops, steps and watchpoint changed nothing the guest computed, nor its clock.
    from kprobe_shell.api import Machine

    alone = Machine(image.path)
    alone.run()
    assert (console, run.session.machine.retired) == (alone.console, alone.retired)


def test_two_cpus_are_two_threads(stub):
    run = stub(cpus=2)
    out = run.gdb("break vfs_read", "continue", "delete", "info threads", "thread 1", "print/x $pc",
                  "thread 2", "print/x $pc", "stepi", "print/x $pc", "thread 1", "print/x $pc", "detach")
    assert run.ended() == "gdb detached"
    threads = re.findall(r"Thread (\d+) \(CPU#(\d) \[(\w[\w ]*)\]", out)
    assert [(t, c) for t, c, _ in threads] == [("1", "0"), ("2", "1")], out
    m = run.session.machine
    pcs = [int(x, 16) for x in re.findall(r"\$\d+ = 0x([0-9a-f]+)", out)]
    # gdb reads each CPU's own registers; stepi steps the selected CPU alone.
    cpu0, cpu1, cpu1_stepped, cpu0_after = pcs
    assert [cpu0_after, cpu1_stepped] == [m.guest_address(cpu.uc.reg_read(UC_X86_REG_RIP)) for cpu in m.cpus], out
    assert cpu0_after == cpu0, out
    insn = next(Cs(CS_ARCH_X86, CS_MODE_64).disasm(m.kprobes.original_bytes(cpu1, 15), cpu1))
    if not insn.mnemonic.startswith(("j", "call", "ret")):
        assert cpu1_stepped == cpu1 + insn.size, (insn.mnemonic, out)
    assert cpu1_stepped != cpu1, out


def test_interrupt_a_running_guest_then_the_shell_goes_on(stub):
    run = stub()
    fast_again = slow_guest(run.session)
    # gdb's Ctrl-C: SIGINT to gdb while `continue` waits, which it sends as the 0x03 byte.
    # The timer starts when gdb has resumed the guest (gdb.events.cont), not before.
    timer = ("python import gdb, os, signal, threading; gdb.events.cont.connect(lambda event: "
             "threading.Timer(0.05, lambda: os.kill(os.getpid(), signal.SIGINT)).start())")
    out = run.gdb(timer, "continue", "print $pc", "detach")
    assert run.ended() == "gdb detached"
    assert "received signal SIGINT" in out, out
    assert not run.session.machine.halted
    fast_again()
    run.session.execute("continue")
    assert "minikernel: all tasks reaped, halting" in run.session.machine.console


def test_a_breakpoint_inside_a_guest_jprobe_handler_and_the_guest_computes_the_same(stub):
    import io

    from kprobe_shell.shell.output import Output
    from kprobe_shell.shell.session import Session

    run = stub("jprobe do_sys_open jdo_sys_open")
    out = run.gdb("break jdo_sys_open", "continue", "bt 2", "next", "continue", "delete", "detach")
    assert run.ended() == "gdb detached"
    hits = re.findall(r'Breakpoint 1, jdo_sys_open \(dfd=-100, filename=0x[0-9a-f]+ "([^"]+)"', out)
    assert hits == ["/etc/motd", "/etc/passwd"], out
    assert re.search(r"#1 +0x[0-9a-f]+ in sys_open \(filename=", out), out
    run.session.execute("continue")
    m = run.session.machine
    # The same run with no debugger: the same console, to the same instruction count.
    alone = Session(output=Output(io.StringIO(), color=False))
    alone.execute("jprobe do_sys_open jdo_sys_open")
    alone.execute("run")
    assert m.halted and (m.console, m.retired) == (alone.machine.console, alone.machine.retired)

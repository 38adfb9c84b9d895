"""gdb's data commands in the shell (print/FMT, output, frames, info args/locals, finish,
break if, condition, display, watch), against values the guest computed: registers and
memory read directly, the guest's own console."""
from __future__ import annotations

import io
import re
import struct
from pathlib import Path

import pytest

from kprobe_shell.shell.output import Output
from kprobe_shell.shell.registry import CommandError
from kprobe_shell.shell.session import Session


def _line_of(path: str, text: str) -> int:
    """The first line of the kernel source `path` that is `text` (the test reads the line
    the compiler recorded, so it must not depend on where fs.c has grown)."""
    source = Path(__file__).resolve().parents[2] / "guest_images" / "minikernel" / path
    return next(n for n, line in enumerate(source.read_text().splitlines(), 1) if line.strip() == text)


SYS_READ_CALL = _line_of("fs.c", "ret = vfs_read(file, buf, count, &pos);")


def _session(kernel_path) -> tuple[Session, io.StringIO]:
    buf = io.StringIO()
    return Session(output=Output(buf, color=False)), buf


def _run(s: Session, buf: io.StringIO, *lines: str) -> str:
    start = buf.tell()
    for line in lines:
        s.execute(line)
    return buf.getvalue()[start:]


@pytest.fixture
def at_vfs_read(kernel_path):
    s, buf = _session(kernel_path)
    _run(s, buf, "break vfs_read", "run")
    return s, buf


def test_print_variables_members_and_formats(at_vfs_read):
    s, buf = at_vfs_read
    m = s.machine
    rdi, rdx = m.reg("rdi"), m.reg("rdx")
    out = _run(s, buf, "print file", "p/x count", "print count", "p file->f_dentry->d_iname", "p count * 2 + 1",
               "p $1", "p $", "p $$2", "p/x $sp", "p/t 10", "p/o 8", "p/c 65", "p/x -1", "p/d (char)255",
               "p sizeof(struct file)", "p *(long *)$rsp", "p/a *(long *)$rsp", "output count")
    ret = m.read_u64(m.reg("rsp"))
    name = m.read(m.read_u64(rdi) + 0, 8)  # f_dentry is the first member
    assert out.splitlines() == [
        f"$1 = (struct file *) 0x{rdi:x} <file_pool>",
        f"$2 = 0x{rdx:x}",
        f"$3 = {rdx}",
        '$4 = "motd", \'\\000\' <repeats 19 times>',
        f"$5 = {rdx * 2 + 1}",
        f"$6 = (struct file *) 0x{rdi:x} <file_pool>",
        f"$7 = (struct file *) 0x{rdi:x} <file_pool>",   # $: the last value
        f"$8 = {rdx * 2 + 1}",                            # $$2: two back from the last ($5)
        f"$9 = 0x{m.reg('rsp'):x}",
        "$10 = 1010", "$11 = 010", "$12 = 65 'A'", "$13 = 0xffffffff", "$14 = -1",
        f"$15 = {_struct_file_size(m)}",
        f"$16 = {ret}",
        f"$17 = 0x{ret:x} <sys_read+58>",
        str(rdx),
    ]
    assert name  # the dentry pointer is readable


def _struct_file_size(machine) -> int:
    from kprobe_shell.tracing.structs import struct_layouts

    return struct_layouts(machine.image)["file"].size


def test_frames_args_locals_and_optimized_out(at_vfs_read):
    s, buf = at_vfs_read
    m = s.machine
    rdi, rsi, rdx, rcx = (m.reg(r) for r in ("rdi", "rsi", "rdx", "rcx"))
    out = _run(s, buf, "info args", "info locals")
    assert out.splitlines() == [f"file = 0x{rdi:x} <file_pool>", f"buf = 0x{rsi:x} <stack_pool+{rsi - m.symbols['stack_pool'].address}> \"\"",
                                f"count = {rdx}", f"pos = 0x{rcx:x} <stack_pool+{rcx - m.symbols['stack_pool'].address}>",
                                "ret = <optimized out>"]
    out = _run(s, buf, "up")
    assert out.splitlines()[0] == (f"#1  0x{m.read_u64(m.reg('rsp')):016x} in sys_read (fd=<optimized out>, "
                                   f"buf=0x{rsi:x} <stack_pool+{rsi - m.symbols['stack_pool'].address}> \"\", "
                                   f"count={rdx}) at fs.c:{SYS_READ_CALL}")
    assert out.splitlines()[1] == f"{SYS_READ_CALL}\t\tret = vfs_read(file, buf, count, &pos);"
    # sys_read's own local pos is where vfs_read's pos points
    out = _run(s, buf, "p &pos", "p pos", "p $rdi", "p $rbx")
    lines = out.splitlines()
    assert lines[0] == f"$1 = (loff_t *) 0x{rcx:x} <stack_pool+{rcx - m.symbols['stack_pool'].address}>"
    assert lines[1] == f"$2 = {struct.unpack('<q', m.read(rcx, 8))[0]}"
    assert lines[2] == "$3 = <not saved>"       # caller-saved: gone across the call
    assert lines[3] == f"$4 = {m.reg('rbx') if m.reg('rbx') < 1 << 63 else m.reg('rbx') - (1 << 64)}"
    out = _run(s, buf, "down", "frame")
    assert out.splitlines()[0].startswith("#0  vfs_read (file=")
    with pytest.raises(CommandError, match="Bottom \\(innermost\\) frame selected; you cannot go down."):
        s.execute("down")
    with pytest.raises(CommandError, match="No frame at level 99."):
        s.execute("frame 99")


def test_finish_prints_the_value_returned(at_vfs_read):
    s, buf = at_vfs_read
    s.execute("delete")
    out = _run(s, buf, "finish")
    lines = out.splitlines()
    assert lines[0].startswith("Run till exit from #0  vfs_read (file=0x")
    rax = s.machine.reg("rax")
    assert lines[-1] == f"Value returned is $1 = {rax}"
    assert re.match(r"0x[0-9a-f]{16} in sys_read \(fd=", lines[-3])
    assert lines[-2].startswith(f"{SYS_READ_CALL}\t")
    # the guest printed the same count of bytes read
    assert f"54 bytes" not in out or rax == 54


def test_break_if_and_condition(kernel_path):
    s, buf = _session(kernel_path)
    out = _run(s, buf, "break vfs_read if count > 1000", "run", "print count")
    assert "Breakpoint 1, vfs_read+0x0/0xe8" in out
    assert out.splitlines()[-1] == f"$1 = {s.machine.reg('rdx')}"
    assert s.machine.reg("rdx") > 1000
    out = _run(s, buf, "info breakpoints", "condition 1", "info breakpoints")
    assert "breakpoint if count > 1000" in out and "Breakpoint 1 now unconditional." in out
    with pytest.raises(CommandError, match='No symbol "nosuch" in current context.'):
        s.execute("condition 1 nosuch == 2")
    with pytest.raises(CommandError, match='No symbol "nosuch" in current context.'):
        s.execute("break rw_verify_area if nosuch == 2")


def test_display_shows_at_each_stop(at_vfs_read):
    s, buf = at_vfs_read
    out = _run(s, buf, "display count", "display/x $sp", "info display", "undisplay 2", "continue")
    lines = out.splitlines()
    assert lines[0] == f"1: count = {s.machine.reg('rdx')}" or lines[0].startswith("1: count = ")
    assert lines[1].startswith("2: /x $sp = 0x")
    assert "Auto-display expressions now in effect:" in out and "2:   y  /x $sp" in out
    assert lines[-1] == f"1: count = {s.machine.reg('rdx')}"
    with pytest.raises(CommandError, match="No display number 7."):
        s.execute("undisplay 7")


def test_watch_reports_old_and_new_values(kernel_path):
    s, buf = _session(kernel_path)
    out = _run(s, buf, "watch jiffies", "continue", "continue")
    assert out.startswith("Hardware watchpoint 1: jiffies\n")
    assert ("\n\nHardware watchpoint 1: jiffies\n\nOld value = 0\nNew value = 1\n"
            "do_timer_interrupt (regs=<optimized out>) at traps.c:94\n"
            "94\t\tupdate_process_times((regs->cs & 3) != 0);\n") in out
    assert "Old value = 1\nNew value = 2" in out
    assert struct.unpack("<Q", s.machine.read(s.machine.symbols["jiffies"].address, 8))[0] == 2
    with pytest.raises(CommandError, match="Cannot watch constant value `1'"):
        s.execute("watch 1")


def test_bad_expressions_are_one_clear_line(at_vfs_read):
    s, _buf = at_vfs_read
    for line, message in [("print nosuch", 'No symbol "nosuch" in current context.'),
                          ("print count +", "ends with an operator"),
                          ("p/q count", 'Undefined output format "q"'),
                          ("print 1/0", "Division by zero"),
                          ("print *count", "Attempt to take contents of a non-pointer value."),
                          ("print count = 3", "assignments are not supported"),
                          ("print file->nosuch", "There is no member named nosuch."),
                          ("print *(long *)0", "Cannot access memory at address 0x0"),
                          ("print $9", "History has not yet reached $9."),
                          ("print &count", "Attempt to take address of value not located in memory."),
                          ("print count @", "Invalid character '@' in expression.")]:
        with pytest.raises(CommandError) as info:
            s.execute(line)
        assert message in str(info.value), (line, str(info.value))
        assert "Traceback" not in str(info.value)


def test_breakpoint_inside_an_instruction_is_refused(kernel_path):
    s, _buf = _session(kernel_path)
    with pytest.raises(CommandError, match=r"Cannot insert breakpoint at 0x[0-9a-f]+: vfs_read\+0x1 is not an "
                                           r"instruction boundary \(nearest: vfs_read\+0x0, vfs_read\+0x4\)"):
        s.execute("break vfs_read+1")
    assert not s.probes


def test_threads_match_the_gdb_stub_numbering(at_vfs_read):
    s, buf = at_vfs_read
    out = _run(s, buf, "info threads")
    lines = out.splitlines()
    assert lines[1].startswith("* 1    CPU#0 [running] opener1-2") and "vfs_read (file=" in lines[1]
    assert any(re.search(r"Task init-1 \[sleeping\] +0x[0-9a-f]{16} in schedule \(\) at sched.c:\d+", l) for l in lines)
    number = next(l.split()[0] for l in lines[2:] if "init-1" in l)
    out = _run(s, buf, f"thread {number}", "p $pc")
    assert out.splitlines()[0] == f"[Switching to thread {number} (Task init-1)]"
    assert "<schedule+" in out.splitlines()[-1]


def test_batch_run_prints_gdb_lines(kernel_path, run_shell, tmp_path):
    script = tmp_path / "g.kps"
    script.write_text("break vfs_read\nrun\nprint count\np/x count\ninfo locals\nfinish\n")
    r = run_shell("--batch", "-x", str(script))
    assert r.returncode == 0, r.stderr
    assert "\n$1 = 160\n$2 = 0xa0\nret = <optimized out>\nRun till exit from #0  vfs_read (" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr


@pytest.mark.parametrize("mode", ["auto", "single-step"])
def test_breakpoint_in_a_guest_jprobe_handler_stops_there(kernel_path, mode):
    """gdb's breakpoints hit inside a jprobe handler; the shell's too, and the guest then
    computes what it computes without them (the same instruction count at the end)."""
    s, buf = _session(kernel_path)
    out = _run(s, buf, f"set kprobe-mode {mode}", "jprobe ip_queue_xmit jip_queue_xmit", "break jip_queue_xmit",
               "run", "info args")
    assert "Breakpoint 2, jip_queue_xmit+0x0/" in out
    skb = s.machine.symbols["skb_pool"].address
    assert out.splitlines()[-2:] == [f"skb = 0x{skb:x} <skb_pool>", "ipfragok = 0"]
    assert s.machine.kprobes.jprobes.active is not None  # stopped while the probe runs
    out = _run(s, buf, "continue", "delete 2", "continue")
    assert out.count("Breakpoint 2, jip_queue_xmit") == 1
    assert "[guest halted: hlt with interrupts off: the machine halted; 1144051 instructions]" in out
    assert s.probes[1].obj.hits == 10


def test_a_sleeping_tasks_frames_come_from_its_saved_context(at_vfs_read):
    s, buf = at_vfs_read
    m = s.machine
    lines = _run(s, buf, "info threads").splitlines()
    number = next(l.split()[0] for l in lines[2:] if "init-1" in l)
    init = next(t for t in m.tasks.all() if t.pid == 1)
    saved_rsp = m.read_u64(init.address + 32)  # thread.rsp: switch_to() pushed 6 registers, then returned
    out = _run(s, buf, f"thread {number}", "bt", "p $sp", "thread 1", "bt 1", "p $eflags")
    lines = out.splitlines()
    ret = m.read_u64(saved_rsp + 48)
    assert lines[3] == f"#0  0x{ret:016x} in {m.symbols.format(ret)}"   # the bt after the frame and its line
    assert f"$1 = (void *) 0x{saved_rsp + 56:x}" in out
    assert "#0  0x0000000000102c10 in vfs_read+0x0/0xe8" in lines  # thread 1: the CPU's own bt again
    flags = m.reg("eflags")
    assert lines[-1] == "$2 = [ " + "".join(n + " " for b, n in ((0, "CF"), (2, "PF"), (4, "AF"), (6, "ZF"), (7, "SF"),
                                                                (8, "TF"), (9, "IF"), (10, "DF"), (11, "OF"))
                                            if flags >> b & 1) + "]"


def test_p_is_print_unless_it_names_a_function_to_probe(at_vfs_read):
    s, buf = at_vfs_read
    rdx = s.machine.reg("rdx")
    out = _run(s, buf, "p count", "p count * 2", "p/x count", "p file->f_pos", "p 'A'", "p sizeof(long)")
    assert out.splitlines() == [f"$1 = {rdx}", f"$2 = {rdx * 2}", f"$3 = 0x{rdx:x}", "$4 = 0", "$5 = 65 'A'", "$6 = 8"]
    out = _run(s, buf, "p do_sys_open")  # ftrace's line: a probe on the function
    assert "Kprobe 2 at 0x" in out or "p_do_sys_open" in out
    assert any(up.kind == "k" for up in s.probes.values())


def test_x_takes_c_expressions_as_gdb_does(at_vfs_read):
    s, buf = at_vfs_read
    m = s.machine
    jiffies = m.symbols["jiffies"].address
    out = _run(s, buf, "x/s file->f_dentry->d_iname", "x/1gx &jiffies")
    lines = out.splitlines()
    assert lines[0].endswith('"motd"')
    assert lines[1] == f"0x{jiffies:x} <jiffies+0x0>:\t0x{m.read_u64(jiffies):016x}"


@pytest.mark.parametrize("mode", ["auto", "single-step"])
def test_the_cfi_unwinder_finds_the_frames_bt_finds(kernel_path, mode):
    """Two walks, one answer: bt's frame-pointer chain (tracing/stacks.py) and the frames
    gdb's DWARF unwinder finds from the CFI (used for threads not on the current CPU's
    stack), with a kretprobe's hijacked return address resolved in both."""
    from kprobe_shell.shell import frames
    from kprobe_shell.tracing.stacks import unwind

    s, buf = _session(kernel_path)
    _run(s, buf, f"set kprobe-mode {mode}", "kretprobe sys_read", "break rw_verify_area", "break vfs_read+4",
         "break do_timer_interrupt")
    m = s.machine
    compared = 0
    for _ in range(12):
        _run(s, buf, "continue")
        if m.halted:
            break
        cpu_thread = frames.threads(m)[m.cpu_id]
        cfi = [f.pc for f in frames.walk(m, frames.thread_registers(m, cpu_thread), 64, cpu_thread.task)]
        assert cfi == [pc for pc, _resolved in unwind(m)], m.symbols.format(m.rip)
        compared += 1
    assert compared == 12


def test_functions_and_pointers_to_them_spelled_as_gdb(at_vfs_read):
    s, buf = at_vfs_read
    m = s.machine
    read = m.symbols["generic_file_read"].address
    comm = m.symbols["init_task"].address + 128
    out = _run(s, buf, "print vfs_read", "p file->f_op->read", "p/x vfs_read", "print *vfs_read", "p &init_task.comm")
    sig = "(struct file *, char *, size_t, loff_t *)"
    assert out.splitlines() == [f"$1 = {{ssize_t {sig}}} 0x102c10 <vfs_read>",
                                f"$2 = (ssize_t (*){sig}) 0x{read:x} <generic_file_read>",
                                "$3 = 0x102c10",
                                f"$4 = {{ssize_t {sig}}} 0x102c10 <vfs_read>",
                                f"$5 = (char (*)[16]) 0x{comm:x} <init_task+128>"]

"""gdb and kprobes together, through `kprobe-shell --gdb`: gdb sees memory as it is (the
int3, the jmp), a gdb breakpoint on a probed instruction stops after the probe's handler
ran (kprobes' int3 notifier first, then the debugger's), and a kretprobe's hijacked return
address is in gdb's backtrace as kretprobe_trampoline, explained by `monitor instances`."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading

import pytest
from capstone import CS_ARCH_X86, CS_MODE_64, Cs

from kprobe_shell.kprobes.kretprobes import BOOSTER_OFFSET
from kprobe_shell.machine import Image
from kprobe_shell.machine.layout import STUB_PAGE

GDB = shutil.which("gdb")
GDB_TIMEOUT = 60

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _shell_with_gdb(*shell_args: str):
    """Start `kprobe-shell --batch ARGS --gdb 127.0.0.1:0`; (process, port) once it waits."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "kprobe_shell", "--batch", "--color", "off", *shell_args,
                             "--gdb", "127.0.0.1:0"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    killer = threading.Timer(GDB_TIMEOUT, proc.kill)
    killer.start()
    lines = []
    for line in proc.stdout:
        lines.append(line)
        waiting = re.search(r"Waiting for gdb on 127\.0\.0\.1:(\d+)", line)
        if waiting:
            return proc, int(waiting.group(1)), lines, killer
    killer.cancel()
    raise AssertionError("the shell never waited for gdb:\n" + "".join(lines))


def _gdb(port: int, *commands: str) -> str:
    argv = [GDB, "-batch", "-nx", "-ex", "set confirm off", "-ex", "set width 0",
            "-ex", f"target remote 127.0.0.1:{port}"]
    for command in commands:
        argv += ["-ex", command]
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=GDB_TIMEOUT)
    return done.stdout + done.stderr


@pytest.fixture
def gdb_installed(kernel_path):
    if GDB is None:
        pytest.skip("gdb is not installed (apt-get install gdb): these tests drive the real gdb")
    return kernel_path


def test_kretprobe_and_a_gdb_breakpoint_on_the_probed_instruction(gdb_installed):
    image = Image.load(gdb_installed)
    vfs_read = image.symbols["vfs_read"].address
    booster = STUB_PAGE + BOOSTER_OFFSET  # kprobe-mode auto: returns go through the booster
    first = next(Cs(CS_ARCH_X86, CS_MODE_64).disasm(image.symbol_bytes(image.symbols["vfs_read"]), vfs_read))
    proc, port, lines, killer = _shell_with_gdb("-ex", "kretprobe vfs_read")
    try:
        out = _gdb(port, "break vfs_read", "continue", "bt 2", "x/i $pc", "monitor instances", "monitor probes",
                   "monitor disas vfs_read", "stepi", "print/x $pc", "continue", "print/x $pc", "detach")
        rest, _ = proc.communicate(timeout=GDB_TIMEOUT)
    finally:
        killer.cancel()
        proc.kill()
    shell = "".join(lines) + rest
    assert proc.returncode == 0, shell
    assert "gdb detached; the shell takes over" in shell
    # kprobes first: at gdb's stop the kretprobe's entry handler has already taken an
    # instance and put the trampoline in the return address's stack slot.
    assert re.search(r"Breakpoint 1, vfs_read \(file=", out), out
    assert re.search(r"used=1\b", out), out
    assert re.search(rf"#1 +0x0*{booster:x} in kretprobe_trampoline \(\)", out), out
    instances = re.search(r"task opener1-2 .*\n +#0 probe 1 vfs_read: returns to (sys_read\+0x[0-9a-f]+)", out)
    assert instances and "now holds kretprobe_trampoline" in out, out
    # gdb reads memory as it is: the probe's int3 at the probed address; the shell says why.
    assert re.search(rf"=> 0x{vfs_read:x} <vfs_read>:\s+int3", out), out
    assert "int3 planted (cc over" in out
    # stepi finishes the probed instruction (its copy), one instruction in all.
    pcs = [int(x, 16) for x in re.findall(r"\$\d+ = 0x([0-9a-f]+)", out)]
    assert pcs == [vfs_read + first.size, vfs_read], out
    # And gdb's breakpoint stays with the probe: the second read stops there again.
    assert out.count("Breakpoint 1, vfs_read") == 2, out

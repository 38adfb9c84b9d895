"""On a machine that runs programs, the clock's block hook also delivers the ticks that
fall in the kernel (a system call, loading a program) through the IDT, without leaving
emu_start, when their frame goes to a task's kernel stack (see deliver_tick in _clock.c).
test_tick_placement.py compares every tick with the machine's own delivery; this checks
that the hook does deliver kernel ticks, with the frame Interrupts.deliver would push."""
from __future__ import annotations

import ctypes
import struct

from kprobe_shell import Machine, Program, StopReason

LOG_CAP = 10_000


def test_kernel_ticks_are_delivered_by_the_block_hook(build_program):
    path = build_program("hello", "glibc")
    m = Machine(programs=[Program(path, ["hello"])])
    stacks = m.image.symbols["stack_pool"]
    assert (m.cpu.icount.frame_lo, m.cpu.icount.frame_hi) == (stacks.address, stacks.end)
    log = (ctypes.c_uint64 * (2 * LOG_CAP))()
    m.cpu.icount.tick_log, m.cpu.icount.tick_log_cap = ctypes.addressof(log), LOG_CAP
    frames = []
    # The frame each kernel tick pushed, as the handler's first instruction (entry.S) sees it.
    m.add_code_hook(m.image.symbols["timer_interrupt"].address, lambda mm: frames.append(
        struct.unpack("<5Q", mm.read(mm.reg("rsp"), 40))))
    assert m.run(max_insns=100_000_000).reason is StopReason.HALTED
    ticks = [(log[2 * i], log[2 * i + 1]) for i in range(m.cpu.icount.tick_log_len)]
    kernel = [(clock, rip) for clock, rip in ticks if m.image.symbols.containing(rip) is not None]
    assert len(kernel) > 50, ticks[:10]
    kernel_frames = [f for f in frames if f[1] & 3 == 0]
    assert {rip for rip, *_ in kernel_frames} >= {rip for _clock, rip in kernel}
    for _rip, _cs, rflags, _rsp, _ss in kernel_frames:
        assert rflags & 0x200  # interrupts were on: the frame keeps the interrupted IF
    # The hook's ticks interrupted a task on its kernel stack (the idle task's, on the
    # boot stack, are the machine's to deliver).
    assert sum(stacks.address <= rsp < stacks.end for _rip, _cs, _fl, rsp, _ss in kernel_frames) >= len(kernel)


def test_one_block_hook_counts_the_kernel_and_user_code(build_program):
    """A program machine's clock counts the kernel's text and the user ranges through one
    block hook (unicorn walks every block hook at every block); the default kernel's
    counts its text alone."""
    from kprobe_shell.machine.userspace import USER_RANGES

    m = Machine(programs=[Program(build_program("hello", "glibc"), ["hello"])], cpus=2)
    for cpu in m.cpus:
        spans = [(s.lo, s.hi) for s in cpu.icount.spans[:cpu.icount.n_spans]]
        assert spans == [m.image.text_span, *USER_RANGES]
    assert Machine().cpu.icount.n_spans == 0

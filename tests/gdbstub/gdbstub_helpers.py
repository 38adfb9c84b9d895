"""Helpers for the gdb stub's tests."""
from __future__ import annotations

import time


def slow_guest(session):
    """Make the guest take seconds rather than tens of milliseconds to run to its end, so a
    test can interrupt it (or drop gdb) while it runs: a kprobe on the timer interrupt
    whose handler sleeps.  Returns the function that takes it away again."""
    from kprobe_shell.api import Kprobe

    probe = Kprobe("do_timer_interrupt", pre_handler=lambda p, regs: time.sleep(0.01))
    session.machine.register_kprobe(probe)
    return lambda: session.machine.unregister_kprobe(probe)

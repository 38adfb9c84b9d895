"""Port I/O: `out` goes to the clock's C hook, which hands only the serial console's and
the SMP start-up port's to Python (see Ports.install); the end-of-interrupt the kernel
writes at every tick costs no host transition."""
from __future__ import annotations

import pytest

from kprobe_shell import Machine, StopReason
from kprobe_shell.machine import devices
from kprobe_shell.machine.layout import SERIAL_PORT, SMP_STARTUP_PORT


def test_only_the_ports_that_do_something_reach_python(kernel_path, monkeypatch):
    seen = []
    on_out = devices.Ports.on_out

    def spy(self, port, size, value):
        seen.append(port)
        return on_out(self, port, size, value)

    monkeypatch.setattr(devices.Ports, "on_out", spy)
    m = Machine(cpus=2)
    assert m.run().reason is StopReason.HALTED
    assert set(seen) == {SERIAL_PORT, SMP_STARTUP_PORT}
    assert seen.count(SERIAL_PORT) == len(m.serial.data)
    assert "smp: 2 cpus online" in m.console


def test_a_console_listener_that_raises_stops_the_run_with_its_exception(kernel_path):
    m = Machine()

    def listener(line):
        if line.startswith(b"time.c"):
            raise ValueError("listener says no")

    m.serial.line_listeners.append(listener)
    with pytest.raises(ValueError, match="listener says no"):
        m.run()
    assert m.console.endswith("time.c: using the machine's instruction-count timer on vector 0x20\n")
    assert m.run().reason is StopReason.HALTED
    assert m.console.endswith("minikernel: all tasks reaped, halting\n")


def test_a_run_stopped_by_a_listeners_exception_resumes_as_if_never_stopped(kernel_path):
    """The `out` that wrote the line is followed in its block by instructions that had not
    run when the exception stopped the CPU: the count stops at rip, so the resumed run
    meets its ticks where an unstopped one does."""
    whole = Machine()
    whole.run()
    m = Machine()

    def listener(line):
        if line.startswith(b"time.c"):
            raise ValueError("listener says no")

    m.serial.line_listeners.append(listener)
    with pytest.raises(ValueError):
        m.run()
    stopped = (m.retired, m.rip)
    m.serial.line_listeners.remove(listener)
    again = Machine()
    again.run(stopped[0])
    assert (again.retired, again.rip) == stopped
    m.run()
    assert (m.console, m.retired) == (whole.console, whole.retired)

"""Faulting guests seen from the shell: the run stops with a report (the fault, rip as
sym+off, the task, the last probe hit), every inspection command still works, the guest
does not go on, and `reset` gives a fresh machine that runs the same way again.

Guest: tests/guests/faults.c; the test writes `fault_kind` before running.
"""
from __future__ import annotations

import io
import threading

import pytest

from kprobe_shell.shell.output import Output
from kprobe_shell.shell.registry import CommandError
from kprobe_shell.shell.session import Session

# kind: (words of the report, where rip is: a symbol the report names, or None for a bare address)
FAULTS = {
    1: ("read from unmapped memory at 0x10", "load_from+0x1/"),
    2: ("write to unmapped memory at 0x18", "store_to+0x0/"),
    3: ("execute from unmapped memory at 0x20000000", "0x20000000 (0x20000000)"),
    4: ("invalid opcode (#UD)", "do_ud2+0x1/"),
    5: ("divide error (#DE)", "do_div+0x5/"),
    6: ("(just below rsp: a stack overflow?)", "overflow+0x"),
    7: ("write to read-only memory at 0x", "store_to+0x0/"),
    10: ("triple fault: the timer interrupt (vector 0x20) cannot be delivered", "spin+0x0/"),
    11: ("execute from unmapped memory at 0x30000000", "0x30000000 (0x30000000)"),
}

#: Must succeed after any fault.
INSPECT = ["regs", "info registers", "bt", "tasks", "probes", "instances", "instances --all", "trace",
           "x/2gx good_value", "x/8xb load_from", "disas main", "disas load_from", "symbols do_*", "print $rsp",
           "show", "help bt"]
#: May refuse (rip or rsp can be unmapped after these faults), but only with a one-line error.
INSPECT_MAYBE = ["disas", "x/3i $rip", "x/4gx $rsp", "stepi", "nexti", "finish"]


@pytest.fixture(scope="module")
def faults_path(build_guest):
    return build_guest("faults", debug=True)


def start(path, kind):
    out = io.StringIO()
    s = Session(path, output=Output(out, color=False))
    s.execute("kprobe load_from")
    s.execute("kretprobe load_from")
    s.execute("p:stores store_to ptr=%di")
    s.machine.write(s.machine.symbols["fault_kind"].address, kind.to_bytes(8, "little"))
    return s, out


@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_fault_report_then_every_inspection_command_works(faults_path, kind):
    words, where = FAULTS[kind]
    s, out = start(faults_path, kind)
    s.execute("run")
    first = out.getvalue()
    report = [line for line in first.splitlines() if line.startswith("[fault: ")]
    assert len(report) == 1, first
    assert words in report[0] and f"; rip {where}" in report[0] and report[0].endswith("; task faults-g-1]")
    assert "\n[last probe hit: probe " in first
    assert "Traceback" not in first
    for line in INSPECT:
        s.execute(line)
    for line in INSPECT_MAYBE:
        try:
            s.execute(line)
        except CommandError as exc:
            assert len(str(exc).splitlines()) == 1
    with pytest.raises(CommandError, match="'reset' gives a fresh machine"):
        s.execute("run")
    with pytest.raises(CommandError, match="'reset' gives a fresh machine"):
        s.execute("continue")
    assert s.machine.kprobes.check_invariants() == []
    # A fresh machine runs the same way: the same output, word for word.
    s.execute("reset")
    s.machine.write(s.machine.symbols["fault_kind"].address, kind.to_bytes(8, "little"))
    out.truncate(0)
    out.seek(0)
    s.trace.clear()
    s.execute("run")
    second = out.getvalue()
    assert second == first[first.index(second.splitlines()[0]):][: len(second)]


def test_last_probe_hit_names_the_probe(faults_path):
    s, out = start(faults_path, 2)
    s.execute("run")
    assert "[last probe hit: probe 3 stores at store_to+0x0/" in out.getvalue()


def test_a_guest_that_never_halts_stops_at_the_budget(faults_path):
    s, out = start(faults_path, 9)
    s.execute("run 200000")
    assert "[stopped after the instruction budget at spin+0x0/0x2" in out.getvalue()
    s.execute("run 1000")  # it goes on, and stops again
    assert s.machine.retired == s.stop_event.time_ns
    for line in INSPECT:
        s.execute(line)


def test_ctrl_c_stops_a_guest_that_never_halts(faults_path):
    """Machine.request_stop from another thread: what the prompt's Ctrl-C calls."""
    s, out = start(faults_path, 9)
    timer = threading.Timer(0.3, s.machine.request_stop)
    timer.start()
    s.execute("run")
    timer.join()
    assert "[interrupted at spin+0x0/0x2 (0x" in out.getvalue()
    for line in INSPECT:
        s.execute(line)
    s.execute("run 1000")  # not final: the guest goes on after an interrupt
    assert "[stopped after the instruction budget" in out.getvalue()


def test_reset_gives_the_unfaulted_workload_back(faults_path):
    s, out = start(faults_path, 4)
    s.execute("run")
    s.execute("reset")
    s.execute("run")
    assert s.machine.console == "faults start\ngood=0xfeedface\nfaults end\n"
    assert s.probes[1].obj.hits == 1 and s.probes[2].obj.hits == 1


def test_a_fault_inside_a_guest_jprobe_handler_names_the_running_probe(build_guest):
    """The jprobe's handler runs in the guest; when it faults, no trace line names the
    probe, so the report says which probe was running."""
    out = io.StringIO()
    s = Session(build_guest("engine"), output=Output(out, color=False))
    s.execute("jprobe jtarget j_handler")
    s.machine.write(s.machine.symbols["j_handler"].address, b"\x0f\x0b")  # ud2
    s.execute("run")
    text = out.getvalue()
    assert "[fault: invalid opcode (#UD); rip j_handler+0x0/" in text
    assert "[while probe 1 at jtarget+0x0/" in text
    assert "was running (KPROBE_HIT_ACTIVE, inside its guest jprobe handler)]" in text
    for line in INSPECT[:8]:
        s.execute(line)

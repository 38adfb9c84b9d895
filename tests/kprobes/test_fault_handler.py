"""Faults of a probed instruction (tests/guests/faults.c): the probe's fault_handler is
called with the trap number; unhandled, the fault is reported where the guest put the
instruction (not in the slot where its copy ran)."""
from __future__ import annotations

import pytest

from kprobe_shell import HandlerError, Kprobe, Machine, StopReason
from kprobe_shell.machine.layout import EFLAGS_TF, INSN_SLOT_BASE, INSN_SLOT_END

MODES = ["single-step", "auto"]
# fault kind -> (probed label, trap number, message)
FAULTING = {
    1: ("p_fault", 14, "read from unmapped memory at 0x10"),
    2: ("p_store", 14, "write to unmapped memory at 0x18"),
    4: ("p_ud2", 6, "invalid opcode (#UD)"),
    5: ("p_div", 0, "divide error (#DE)"),
}


@pytest.fixture(scope="module")
def faults_path(build_guest):
    return build_guest("faults")


def boot(path, kind, mode="auto"):
    m = Machine(path)
    m.write(m.symbols["fault_kind"].address, kind.to_bytes(8, "little"))
    m.kprobes.set_mode(mode)
    return m


def in_slot_pages(addr):
    return INSN_SLOT_BASE <= addr < INSN_SLOT_END


def assert_reported_at_the_probe(m, ev, label, message):
    addr = m.symbols[label].address
    assert ev.reason is StopReason.FAULT
    assert ev.message == message
    assert ev.rip == addr == m.rip  # the original address, not the slot
    func, off = m.symbols.containing(addr)
    assert m.describe_stop(ev).startswith(f"fault: {message}, rip {func.name}+0x{off:x}/")
    assert m.kprobes.current_kprobe is None and m.kprobes.kprobe_status is None
    assert not m.eflags & EFLAGS_TF


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", sorted(FAULTING))
def test_fault_without_fault_handler_is_reported_at_the_probed_address(faults_path, kind, mode):
    label, _trapnr, message = FAULTING[kind]
    m = boot(faults_path, kind, mode)
    kp = Kprobe(symbol_name=label, pre_handler=lambda p, regs: 0)
    m.register_kprobe(kp)
    ev = m.run()
    assert_reported_at_the_probe(m, ev, label, message)
    assert kp.hits == (2 if label == "p_fault" else 1)  # p_fault also runs once without faulting
    assert m.kprobes.check_invariants() == []
    # The same fault as without the probe.
    plain = boot(faults_path, kind)
    pev = plain.run()
    assert (pev.message, pev.rip, plain.retired, plain.console) == (ev.message, ev.rip, m.retired, m.console)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", sorted(FAULTING))
def test_fault_handler_is_called_with_the_trap_number(faults_path, kind, mode):
    label, trapnr, message = FAULTING[kind]
    m = boot(faults_path, kind, mode)
    calls = []
    kp = Kprobe(symbol_name=label, fault_handler=lambda p, regs, nr: calls.append((p, nr, regs.rip)) or 0)
    m.register_kprobe(kp)
    assert kp.mode == "single-step"  # a fault_handler needs the probe running: no boost
    ev = m.run()
    assert [(p, nr) for p, nr, _ in calls] == [(kp, trapnr)]
    assert calls[0][2] == kp.slot  # the copy faulted, in the slot
    assert in_slot_pages(calls[0][2])
    assert_reported_at_the_probe(m, ev, label, message)  # returned 0: not handled
    assert kp.faults == 0  # a fault_handler that declines is not a handler error


@pytest.mark.parametrize("mode", MODES)
def test_fault_handler_that_fixes_the_fault_lets_the_guest_go_on(faults_path, mode):
    """fault_handler returns 1 after pointing rdi at a good variable: the load is retried
    and succeeds, and the guest runs to its end."""
    m = boot(faults_path, 1, mode)
    good = m.symbols["good_value"].address
    calls = []

    def fix(p, regs, trapnr):
        calls.append(trapnr)
        regs.rdi = good
        return 1

    kp = Kprobe(symbol_name="p_fault", fault_handler=fix)
    m.register_kprobe(kp)
    assert m.run().reason is StopReason.HALTED
    assert calls == [14]
    assert m.console == "faults start\ngood=0xfeedface\nloaded=0xfeedface\nfaults end\n"
    assert kp.hits == 2
    assert m.kprobes.check_invariants() == []
    # The guest's own clock: one instruction per instruction, the retried load included once.
    ok = boot(faults_path, 1)
    ok.write(ok.symbols["read_ptr"].address, good.to_bytes(8, "little"))
    ok.run()
    assert ok.console == m.console
    assert ok.retired == m.retired


def test_boosted_copy_that_faults_is_reported_at_the_probed_address(faults_path):
    for kind in (1, 2, 5):
        label, _trapnr, message = FAULTING[kind]
        m = boot(faults_path, kind, "auto")
        kp = Kprobe(symbol_name=label)  # no handlers: boosted
        m.register_kprobe(kp)
        assert kp.mode == "boost"
        ev = m.run()
        assert_reported_at_the_probe(m, ev, label, message)


def test_fault_handler_that_raises_is_reported(faults_path):
    m = boot(faults_path, 1)
    events = []
    m.kprobes.listeners.append(events.append)

    def bad(p, regs, trapnr):
        raise LookupError("fault handler bug")

    kp = Kprobe(symbol_name="p_fault", fault_handler=bad)
    m.register_kprobe(kp)
    ev = m.run()
    assert_reported_at_the_probe(m, ev, "p_fault", "read from unmapped memory at 0x10")
    errors = [e for e in events if isinstance(e, HandlerError)]
    assert len(errors) == 1 and errors[0].handler == "fault_handler"
    assert kp.faults == 1


def test_fault_handler_of_an_aggregate_child(faults_path):
    m = boot(faults_path, 1)
    calls = []
    with_fh = Kprobe(symbol_name="p_fault", pre_handler=lambda p, r: 0,
                     fault_handler=lambda p, regs, nr: calls.append((p, nr)) or 0)
    plain = Kprobe(symbol_name="p_fault")
    m.register_kprobe(with_fh)
    m.register_kprobe(plain)
    ev = m.run()
    assert calls == [(with_fh, 14)]
    assert_reported_at_the_probe(m, ev, "p_fault", "read from unmapped memory at 0x10")
    assert with_fh.hits == plain.hits == 2

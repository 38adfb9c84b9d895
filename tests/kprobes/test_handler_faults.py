"""Handlers that fail: raise, never return, or write nonsense into registers.

Each failure is reported as a HandlerError attributed to the probe (its fault count
grows), and what happens next is the handler-error policy: continue, disable the probe,
or stop the guest.  A handler that never returns is ended by the guard: after
handler-timeout seconds, or at once by Ctrl-C (Machine.request_stop).

Guest: tests/guests/engine.c (step_fn called 10 times, p_add inside it; jtarget 4 times).
"""
from __future__ import annotations

import threading
import time

import pytest

from harness import snapshot
from kprobe_shell import HandlerError, Jprobe, Kprobe, Kretprobe, Machine, StopReason
from kprobe_shell.kprobes.guard import HandlerInterrupted, HandlerTimeout
from kprobe_shell.kprobes.regs import RegisterWriteError

STEP_CALLS = 10
JCALLS = 4
MODES = ["single-step", "auto"]


@pytest.fixture
def m(engine_path):
    machine = Machine(engine_path)
    machine.errors = []
    machine.kprobes.listeners.append(lambda e: machine.errors.append(e) if isinstance(e, HandlerError) else None)
    return machine


def loop_forever(*args):
    while True:
        pass


def loop_swallowing(*args):
    """A loop that catches Exception: the guard's exceptions are BaseExceptions."""
    while True:
        try:
            while True:
                pass
        except Exception:  # noqa: BLE001
            continue


# ---------------------------------------------------------------------------- never returns
@pytest.mark.parametrize("handler", [loop_forever, loop_swallowing])
def test_looping_pre_handler_is_stopped_by_the_timeout(m, ref, handler):
    m.kprobes.guard.timeout = 0.1
    m.kprobes.handler_error_policy = "disable"
    kp = Kprobe(symbol_name="p_add", pre_handler=handler)
    m.register_kprobe(kp)
    t0 = time.monotonic()
    assert m.run().reason is StopReason.HALTED
    assert time.monotonic() - t0 < 5
    assert kp.faults == 1 and kp.hits == 1 and kp.disabled
    (err,) = m.errors
    assert isinstance(err.exception, HandlerTimeout)
    assert err.probe is kp and err.handler == "pre_handler"
    assert "ran past the handler-timeout" in str(err) and err.where.startswith(__file__)
    assert snapshot(m).diff(ref) == []
    assert m.kprobes.check_invariants() == []
    assert not m.kprobes.guard.running


@pytest.mark.parametrize("mode", MODES)
def test_timeout_with_policy_continue_charges_every_hit(m, ref, mode):
    m.kprobes.set_mode(mode)
    m.kprobes.guard.timeout = 0.05
    calls = []

    def slow_sometimes(p, regs):
        calls.append(1)
        if len(calls) in (2, 5):
            loop_forever()
        return 0

    kp = Kprobe(symbol_name="p_add", pre_handler=slow_sometimes)
    m.register_kprobe(kp)
    assert m.run().reason is StopReason.HALTED
    assert kp.hits == STEP_CALLS and kp.faults == 2
    assert [type(e.exception) for e in m.errors] == [HandlerTimeout, HandlerTimeout]
    assert snapshot(m).diff(ref) == []


def test_timeout_with_policy_stop_stops_the_guest(m, ref):
    m.kprobes.guard.timeout = 0.05
    m.kprobes.handler_error_policy = "stop"
    kp = Kprobe(symbol_name="p_add", pre_handler=loop_forever)
    m.register_kprobe(kp)
    ev = m.run()
    assert ev.reason is StopReason.HANDLER
    assert "pre_handler of <Kprobe p_add> ran past the handler-timeout" in ev.message
    assert kp.faults == 1
    m.unregister_kprobe(kp)
    assert m.run().reason is StopReason.HALTED
    assert snapshot(m).diff(ref) == []


@pytest.mark.parametrize("kind", ["kretprobe handler", "entry_handler", "jprobe entry", "post_handler"])
def test_every_kind_of_handler_is_guarded(m, ref, kind):
    m.kprobes.guard.timeout = 0.05
    m.kprobes.handler_error_policy = "disable"
    if kind == "kretprobe handler":
        probe = m.register_kretprobe(Kretprobe("jtarget", loop_forever))
    elif kind == "entry_handler":
        probe = m.register_kretprobe(Kretprobe("jtarget", None, entry_handler=loop_forever))
    elif kind == "jprobe entry":
        probe = m.register_jprobe(Jprobe("jtarget", loop_forever))
    else:
        probe = m.register_kprobe(Kprobe(symbol_name="p_add", post_handler=loop_forever))
    assert m.run().reason is StopReason.HALTED
    assert probe.faults == 1 and probe.disabled
    assert [type(e.exception) for e in m.errors] == [HandlerTimeout]
    assert m.errors[0].probe is probe
    # A return probe disabled with a call in flight still lets that call return.
    assert snapshot(m).diff(ref) == []
    assert m.kprobes.check_invariants() == []


def test_ctrl_c_ends_a_looping_handler_without_a_timeout(m, ref):
    """Machine.request_stop from another thread (the shell's Ctrl-C) raises inside the
    handler: the run stops as interrupted, the probe is charged, and the guest can go on."""
    m.kprobes.guard.timeout = None
    looped = []

    def loops_once(p, regs):
        if not looped:
            looped.append(1)
            loop_forever()
        return 0

    kp = Kprobe(symbol_name="p_add", pre_handler=loops_once)
    m.register_kprobe(kp)
    timer = threading.Timer(0.2, m.request_stop)
    timer.start()
    ev = m.run()
    timer.join()
    assert ev.reason is StopReason.INTERRUPTED
    assert kp.faults == 1 and not kp.disabled
    assert isinstance(m.errors[0].exception, HandlerInterrupted)
    assert "was interrupted by Ctrl-C" in str(m.errors[0])
    assert m.kprobes.check_invariants() == []
    assert m.run().reason is StopReason.HALTED
    assert kp.hits == STEP_CALLS
    assert snapshot(m).diff(ref) == []


def test_request_stop_with_no_handler_running_interrupts_nothing_else(m):
    assert not m.kprobes.guard.interrupt()
    m.request_stop()  # not running: the next run starts afresh
    assert m.run().reason is StopReason.HALTED


def test_a_handler_that_returns_late_is_not_hit_by_a_stale_timeout(m, ref):
    """Handlers that finish just around the deadline: the exception lands in the
    handler or nowhere, never in the engine (the guest's result stays right)."""
    m.kprobes.guard.timeout = 0.02

    def busy(p, regs):
        end = time.monotonic() + 0.02
        while time.monotonic() < end:
            pass
        return 0

    kp = Kprobe(symbol_name="p_add", pre_handler=busy)
    m.register_kprobe(kp)
    assert m.run().reason is StopReason.HALTED
    assert kp.hits == STEP_CALLS
    assert all(isinstance(e.exception, HandlerTimeout) for e in m.errors)
    assert kp.faults == len(m.errors)
    assert snapshot(m).diff(ref) == []


# ---------------------------------------------------------------------------- raises
@pytest.mark.parametrize("exc", [ValueError("bad"), SystemExit(3), KeyError("k"), RecursionError("deep")])
def test_any_exception_of_a_handler_is_charged_and_never_escapes(m, ref, exc):
    def raises(p, regs):
        raise exc

    kp = Kprobe(symbol_name="p_add", pre_handler=raises)
    m.register_kprobe(kp)
    assert m.run().reason is StopReason.HALTED
    assert kp.faults == STEP_CALLS == len(m.errors)
    assert m.errors[0].exception is exc
    assert snapshot(m).diff(ref) == []


def test_keyboard_interrupt_in_a_handler_stops_the_guest_not_the_program(m, ref):
    def ctrl_c(p, regs):
        raise KeyboardInterrupt

    kp = Kprobe(symbol_name="p_add", pre_handler=ctrl_c)
    m.register_kprobe(kp)
    assert m.run().reason is StopReason.INTERRUPTED
    assert kp.faults == 1
    m.unregister_kprobe(kp)
    assert m.run().reason is StopReason.HALTED
    assert snapshot(m).diff(ref) == []


# ---------------------------------------------------------------------------- nonsense registers
NONSENSE = [
    ("rip", 0, "rip = 0x0 is not executable memory of the guest"),
    ("rip", 0x20000000, "rip = 0x20000000 is not executable memory"),
    ("rip", "data", "is not executable memory"),  # mapped, but not code
    ("rsp", 0xDEAD0000, "rsp = 0xdead0000 is not mapped stack memory"),
    ("rsp", 0, "rsp = 0x0 is not mapped stack memory"),
    ("cs", 0x1234, "cs is a segment selector"),
    ("ss", 0, "ss is a segment selector"),
]


@pytest.mark.parametrize("reg, value, message", NONSENSE, ids=[f"{r}={v}" for r, v, _ in NONSENSE])
@pytest.mark.parametrize("policy", ["continue", "disable", "stop"])
def test_nonsense_register_writes_are_refused_and_charged(m, ref, reg, value, message, policy):
    if value == "data":
        value = m.symbols["some_data"].address
    m.kprobes.handler_error_policy = policy
    seen = {}

    def writes(p, regs):
        seen["before"] = m.registers()
        setattr(regs, reg, value)
        seen["reached"] = True  # never: the write raises
        return 0

    kp = Kprobe(symbol_name="p_add", pre_handler=writes)
    m.register_kprobe(kp)
    ev = m.run()
    assert "reached" not in seen
    err = m.errors[0]
    assert isinstance(err.exception, RegisterWriteError) and message in str(err.exception)
    assert err.probe is kp and err.where.startswith(__file__)
    if policy == "stop":
        assert ev.reason is StopReason.HANDLER and message in ev.message
        assert kp.faults == 1
        # The refused write changed nothing (the stop comes as the step begins: rip is in
        # the slot, TF set).
        now = m.registers()
        assert {k: v for k, v in now.items() if k not in ("rip", "eflags")} == {
            k: v for k, v in seen["before"].items() if k not in ("rip", "eflags")}
        assert m.reg(reg) != value
        m.kprobes.handler_error_policy = "continue"
        ev = m.run()
    assert ev.reason is StopReason.HALTED
    assert kp.faults == (1 if policy == "disable" else STEP_CALLS)
    assert kp.disabled == (policy == "disable")
    assert snapshot(m).diff(ref) == []
    assert m.kprobes.check_invariants() == []


def test_sensible_register_writes_still_work(m):
    """Skipping the probed instruction (rip to the next one, return 1) is allowed."""
    nxt = m.symbols["p_after"].address

    def skip_add(p, regs):
        regs.rip = nxt
        regs.rsp = regs.rsp  # rewriting a valid rsp is fine
        return 1

    kp = Kprobe(symbol_name="p_add", pre_handler=skip_add)
    m.register_kprobe(kp)
    assert m.run().reason is StopReason.HALTED
    assert kp.faults == 0
    assert m.console.startswith("s=0x0\ns=0x2\n")  # x * 2 instead of (x + 1) * 2


@pytest.mark.parametrize("mode", ["boost", "auto"])
def test_an_internal_handler_failure_is_a_bug_stop_not_a_crash(m, mode, monkeypatch):
    """The engine's own handlers (the trampoline's; in auto mode the kretprobe booster's)
    failing is a bug of the tool: the guest stops with StopReason.BUG and stays
    inspectable; nothing escapes run()."""
    def broken(*args):
        raise RuntimeError("engine bug")

    m.kprobes.set_mode(mode)
    rp = m.register_kretprobe(Kretprobe("jtarget", lambda ri, regs: 0))
    if mode == "boost":  # returns through the int3 trampoline
        m.kprobes.kretprobes.trampoline_probe.pre_handler = broken
        which = "pre_handler"
    else:  # returns through the booster's hooked ret: it fails as it makes the trampoline
        # probe current (kcb.current_kprobe = &trampoline_p), before any bookkeeping
        kcb_class = type(m.kprobes.ctlblks[0])
        slot = kcb_class.current_kprobe  # the slot's own descriptor

        def set_current(kcb, p):
            if p is m.kprobes.kretprobes.trampoline_probe:
                broken()
            slot.__set__(kcb, p)
        monkeypatch.setattr(kcb_class, "current_kprobe", property(slot.__get__, set_current))
        which = "booster"
    ev = m.run()
    assert ev.reason is StopReason.BUG and ev.is_final
    assert f"internal error in the engine's kretprobe_trampoline ({which}): RuntimeError: engine bug" in ev.message
    assert m.run() is ev
    assert m.registers()["rip"] == ev.rip


# ---------------------------------------------------------------------------- handlers that reach back
def _unregister_self_pre(m):
    def h(p, regs):
        m.unregister_kprobe(p)
    return m.register_kprobe(Kprobe(symbol_name="p_add", pre_handler=h))


def _unregister_self_post(m):
    def h(p, regs, flags):
        m.unregister_kprobe(p)
    return m.register_kprobe(Kprobe(symbol_name="p_add", post_handler=h))


def _unregister_other_child(m):
    other = m.register_kprobe(Kprobe(symbol_name="p_add"))
    return m.register_kprobe(Kprobe(symbol_name="p_add", pre_handler=lambda p, regs: m.unregister_kprobe(other)))


def _unregister_kretprobe_in_its_handler(m):
    rp = Kretprobe("jtarget", None)
    rp.handler = lambda ri, regs: m.unregister_kretprobe(rp)
    return m.register_kretprobe(rp)


def _unregister_jprobe_in_its_entry(m):
    jp = Jprobe("jtarget", lambda a, b: m.unregister_jprobe(jp))
    return m.register_jprobe(jp)


def _register_in_a_handler(m):
    return m.register_kprobe(Kprobe(symbol_name="p_add",
                                    pre_handler=lambda p, regs: m.register_kprobe(Kprobe(symbol_name="p_after"))))


def _run_in_a_handler(m):
    return m.register_kprobe(Kprobe(symbol_name="p_add", pre_handler=lambda p, regs: m.run(10)))


REACH_BACK = {
    "unregister itself (pre)": (_unregister_self_pre, "unregister_kprobe cannot be called from a probe handler"),
    "unregister itself (post)": (_unregister_self_post, "unregister_kprobe cannot be called from a probe handler"),
    "unregister another child of the aggregate": (_unregister_other_child, "cannot be called from a probe handler"),
    "unregister a kretprobe in its handler": (_unregister_kretprobe_in_its_handler, "cannot be called from a probe handler"),
    "unregister a jprobe in its entry": (_unregister_jprobe_in_its_entry, "cannot be called from a probe handler"),
    "register in a handler": (_register_in_a_handler, "register_kprobe cannot be called from a probe handler"),
    "run the machine in a handler": (_run_in_a_handler, "the guest is already running (run() called from a probe handler?)"),
}


@pytest.mark.parametrize("case", sorted(REACH_BACK))
def test_handlers_that_reach_back_into_the_engine_are_refused(m, ref, case):
    """Unregistering a probe from its own handler freed its slot under the step (a
    TypeError crash); run() from a handler deadlocked.  Now each is a handler error."""
    setup, message = REACH_BACK[case]
    probe = setup(m)
    assert m.run().reason is StopReason.HALTED
    assert m.errors and all(message in str(e.exception) for e in m.errors)
    assert probe.faults == len(m.errors)
    assert probe.registered
    assert snapshot(m).diff(ref) == []


def test_disabling_itself_from_a_handler_is_allowed(m, ref):
    kp = m.register_kprobe(Kprobe(symbol_name="p_add", pre_handler=lambda p, regs: m.disable_probe(p)))
    assert m.run().reason is StopReason.HALTED
    assert kp.hits == 1 and kp.disabled and not m.errors
    assert snapshot(m).diff(ref) == []

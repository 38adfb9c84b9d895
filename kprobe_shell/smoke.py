"""The kernel's kprobes smoke test (kernel/test_kprobes.c, 2008) on the bundled guest.

The kernel's test registers a probe, calls `kprobe_target(rand1)` (which returns
rand1 / div_factor), unregisters, and checks what the handlers saw.  The guest's
`smoke_test()` calls `kprobe_target(rand1)` and `kprobe_target2(rand1)` once, early in
init, with rand1 read from `smoke_rand1`; so each scenario here boots a fresh machine,
writes rand1, registers that scenario's probes, runs until smoke_test() is over (the
entry of fixup_selftest(), which init calls next), unregisters and checks, exactly as the
kernel's test does.  The handlers are the test's, in Python; the jprobe's is the guest's
own `jkprobe_target` (it stores its argument in `jprobe_seen_value`).

The summary lines are the kernel's: "Kprobe smoke test passed successfully", or
"BUG: Kprobe smoke test: N out of M tests failed" / "... N error(s) running handlers".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .api import Jprobe, Kprobe, Kretprobe, Machine
from .machine import StopReason

DIV_FACTOR = 3
#: Far more than init needs to finish smoke_test() (about 45k instructions).
SMOKE_BUDGET = 200_000
#: What the guest needs for the smoke test.
REQUIRED_SYMBOLS = ("kprobe_target", "kprobe_target2", "smoke_rand1", "fixup_selftest", "jkprobe_target",
                    "jprobe_seen_value", "div_factor")


class SmokeTestError(Exception):
    """The smoke test cannot run on this image or with this rand1."""


@dataclass
class ScenarioResult:
    name: str            # test_kprobe, test_kprobes, test_jprobe, test_kretprobe, test_kretprobes
    ok: bool             # registered and every handler ran
    details: str         # what the handlers saw
    handler_errors: list[str] = field(default_factory=list)  # wrong values seen inside handlers


def run_smoke_test(image: str, rand1: int | None = None, *, narrator: Callable[[str], None] | None = None,
                   timer_period: int | None = None) -> tuple[int, list[ScenarioResult]]:
    """Run every scenario; returns (rand1, results)."""
    probe = Machine(image, **({"timer_period": timer_period} if timer_period else {}))
    missing = [s for s in REQUIRED_SYMBOLS if s not in probe.symbols]
    if missing:
        raise SmokeTestError(f"this image has no {', '.join(missing)}: the smoke test needs the bundled minikernel")
    if rand1 is None:
        rand1 = _u32(probe, "smoke_rand1")  # the image's own: the same run every time
    if not DIV_FACTOR < rand1 < 1 << 32:
        raise SmokeTestError(f"rand1 must be a u32 greater than div_factor ({DIV_FACTOR}), as the kernel draws it")
    scenarios = (_test_kprobe, _test_kprobes, _test_jprobe, _test_kretprobe, _test_kretprobes)
    results = []
    for scenario in scenarios:
        m = Machine(image, **({"timer_period": timer_period} if timer_period else {}))
        m.write(m.symbols["smoke_rand1"].address, rand1.to_bytes(4, "little"))
        m.kprobes.narrator = narrator
        results.append(scenario(m, rand1))
    return rand1, results


def summary(results: list[ScenarioResult]) -> str:
    """The kernel's closing line."""
    errors = sum(not r.ok for r in results)
    handler_errors = sum(len(r.handler_errors) for r in results)
    if errors:
        return f"BUG: Kprobe smoke test: {errors} out of {len(results)} tests failed"
    if handler_errors:
        return f"BUG: Kprobe smoke test: {handler_errors} error(s) running handlers"
    return "Kprobe smoke test passed successfully"


# ---------------------------------------------------------------------- running one
def _u32(m: Machine, name: str) -> int:
    return int.from_bytes(m.read(m.symbols[name].address, 4), "little")


def _run_smoke(m: Machine) -> None:
    """Run init until smoke_test() is over: the entry of fixup_selftest(), its next call."""
    def done(machine):
        machine.stop_guest(machine.stop_event(StopReason.BREAKPOINT, "smoke_test() done"))

    hook = m.add_code_hook(m.symbols["fixup_selftest"].address, done)
    try:
        ev = m.run(SMOKE_BUDGET)
    finally:
        m.remove_hook(hook)
    if ev.reason is not StopReason.BREAKPOINT:
        raise SmokeTestError(f"the guest did not finish smoke_test(): {m.describe_stop(ev)}")


def _want(rand1: int, target: str) -> int:
    return rand1 // DIV_FACTOR + (1 if target == "kprobe_target2" else 0)


# ---------------------------------------------------------------------- the scenarios
def _test_kprobe(m: Machine, rand1: int) -> ScenarioResult:
    """pre sets preh_val = rand1 / div_factor; post checks it and sets posth_val."""
    st = {"preh_val": 0, "posth_val": 0}
    errors: list[str] = []

    def pre(p, regs):
        st["preh_val"] = rand1 // DIV_FACTOR
        return 0

    def post(p, regs, flags):
        if st["preh_val"] != rand1 // DIV_FACTOR:
            errors.append("incorrect value in post_handler")
        st["posth_val"] = st["preh_val"] + DIV_FACTOR

    kp = Kprobe("kprobe_target", pre_handler=pre, post_handler=post)
    m.register_kprobe(kp)
    _run_smoke(m)
    m.unregister_kprobe(kp)
    ok = st["preh_val"] != 0 and st["posth_val"] != 0
    return ScenarioResult("test_kprobe", ok,
                          f"kprobe_target: preh_val=0x{st['preh_val']:x} posth_val=0x{st['posth_val']:x}", errors)


def _test_kprobes(m: Machine, rand1: int) -> ScenarioResult:
    """register_kprobes(): one kprobe on each target, each must see its pre and post."""
    seen: dict[str, list[str]] = {}
    errors: list[str] = []

    def make(target: str) -> Kprobe:
        def pre(p, regs):
            if regs.rdi & 0xFFFFFFFF != rand1:
                errors.append(f"{target}: incorrect argument in pre_handler")
            seen.setdefault(target, []).append("pre")
            return 0

        def post(p, regs, flags):
            seen.setdefault(target, []).append("post")

        return Kprobe(target, pre_handler=pre, post_handler=post)

    kps = [make("kprobe_target"), make("kprobe_target2")]
    for kp in kps:
        m.register_kprobe(kp)
    _run_smoke(m)
    for kp in kps:
        m.unregister_kprobe(kp)
    ok = all(seen.get(kp.symbol_name) == ["pre", "post"] for kp in kps)
    return ScenarioResult("test_kprobes", ok, "; ".join(
        f"{kp.symbol_name}: {'+'.join(seen.get(kp.symbol_name, [])) or 'not hit'}" for kp in kps), errors)


def _test_jprobe(m: Machine, rand1: int) -> ScenarioResult:
    """The guest's jkprobe_target gets the probed call's argument and stores it."""
    jp = Jprobe("kprobe_target", "jkprobe_target")
    m.register_jprobe(jp)
    _run_smoke(m)
    m.unregister_jprobe(jp)
    jph_val = _u32(m, "jprobe_seen_value")
    errors = [] if jph_val in (0, rand1) else ["incorrect value in jprobe handler"]
    return ScenarioResult("test_jprobe", jph_val != 0,
                          f"jkprobe_target(value=0x{jph_val:x}) in the guest, rand1=0x{rand1:x}", errors)


def _kretprobe_scenario(m: Machine, rand1: int, targets: tuple[str, ...], name: str) -> ScenarioResult:
    krph_val: dict[str, int] = {}
    errors: list[str] = []

    def make(target: str) -> Kretprobe:
        def handler(ri, regs):
            ret = regs.rax & 0xFFFFFFFF  # regs_return_value(); the targets return u32
            if ret != _want(rand1, target):
                errors.append(f"{target}: incorrect value in kretprobe handler (0x{ret:x})")
            krph_val[target] = ret

        return Kretprobe(target, handler)

    rps = [make(t) for t in targets]
    for rp in rps:
        m.register_kretprobe(rp)
    _run_smoke(m)
    for rp in rps:
        m.unregister_kretprobe(rp)
    ok = all(t in krph_val for t in targets)
    return ScenarioResult(name, ok, "; ".join(
        f"{t} returned 0x{krph_val[t]:x} (want 0x{_want(rand1, t):x})" if t in krph_val else f"{t}: handler not called"
        for t in targets), errors)


def _test_kretprobe(m: Machine, rand1: int) -> ScenarioResult:
    return _kretprobe_scenario(m, rand1, ("kprobe_target",), "test_kretprobe")


def _test_kretprobes(m: Machine, rand1: int) -> ScenarioResult:
    return _kretprobe_scenario(m, rand1, ("kprobe_target", "kprobe_target2"), "test_kretprobes")

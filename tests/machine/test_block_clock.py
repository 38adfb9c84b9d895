"""The clock counts the text a translated block at a time (see _clock.c), and must still
be exact at every point where it is read or stops the guest.

The references here are independent of the block hook: unicorn's own instruction count
(`emu_start(count=k)`), a per-instruction Python hook, and the tick sequences that the
earlier per-instruction clock (a C hook on every guest instruction) produced.
"""
from __future__ import annotations

import hashlib
import json
import random
import threading
import time

import pytest
from unicorn import UC_HOOK_CODE

from kprobe_shell import Machine, StopReason
from kprobe_shell.machine.machine import UNTIL_NEVER
from tick_log import tick_log

#: Every timer tick of the bundled kernel's run, as (cpu, clock, rip), recorded with the
#: per-instruction clock this one replaced: (ticks, sha256 of the JSON list, final clocks).
#: 4080 of the 209 UP ticks' deliveries were retries with interrupts off, which the block
#: hook skips without stopping; the SMP runs also check the APs' start (an `out` in the
#: middle of a block).
PER_INSTRUCTION_CLOCK_TICKS = {
    1: (209, "e3adc9f715916e94", [1144051]),
    2: (365, "3c70eee97cafb49d", [991990, 991012]),
    4: (707, "c0e5bc29576a3ab6", [954681, 954012, 954012, 954012]),
}




@pytest.mark.parametrize("ncpus", [1, 2, 4])
def test_ticks_land_where_the_per_instruction_clock_put_them(kernel_path, ncpus):
    m = Machine(cpus=ncpus)  # the bundled UP kernel, or its SMP build
    log = tick_log(m)
    assert m.run().reason is StopReason.HALTED
    digest = hashlib.sha256(json.dumps(log).encode()).hexdigest()[:16]
    assert (len(log), digest, [c.icount.retired for c in m.cpus]) == PER_INSTRUCTION_CLOCK_TICKS[ncpus]


@pytest.fixture(scope="module")
def workload(build_guest):
    return build_guest("workload")


def unicorn_count_rip(path: str, k: int) -> int:
    """Where unicorn's own instruction counter stops after k instructions from boot (the
    guest has no timer vector, so the machine delivers nothing meanwhile)."""
    ref = Machine(path)
    ref.uc.emu_start(ref.rip, UNTIL_NEVER, count=k)
    return ref.rip


def test_budgets_stop_where_unicorns_own_count_stops(workload):
    """(The workload runs 9393 instructions.)  Most budgets end in the middle of a block: the block hook stops before it and the
    machine runs it again to the exact instruction."""
    rng = random.Random(7)
    for k in sorted(rng.sample(range(1, 9_300), 25)) + [1, 2, 3]:
        m = Machine(workload)
        assert m.run(k).reason is StopReason.BUDGET
        assert (m.retired, m.rip) == (k, unicorn_count_rip(workload, k)), k


def test_consecutive_budgets_add_up(workload):
    rng = random.Random(11)
    m = Machine(workload)
    total = 0
    for _ in range(40):
        step = rng.randint(1, 200)
        m.run(step)
        total += step
        assert m.retired == total
    assert m.rip == unicorn_count_rip(workload, total)


def per_instruction_clock(m: Machine) -> dict:
    """A Python hook on every instruction of the text: the count a per-instruction clock
    has, and its value each time an address runs."""
    state = {"count": 0, "at": {}}

    def count(_uc, address, _size, _data):
        state["count"] += 1
        state["at"].setdefault(address, []).append(state["count"])

    lo, hi = m.image.text_span
    m.uc.hook_add(UC_HOOK_CODE, count, None, lo, hi - 1)
    return state


def mid_block_addresses(m: Machine) -> list[int]:
    """Instructions that are not the first of their function: most run in the middle of
    a translated block."""
    out = []
    for f in m.symbols.functions():
        boundaries = m.kprobes.instruction_boundaries(f.address)
        out.extend(boundaries[2:4])
    return out


def test_code_hooks_in_the_middle_of_a_block_read_the_exact_clock(workload):
    ref = Machine(workload)
    reference = per_instruction_clock(ref)
    ref.run()
    m = Machine(workload)
    addresses = [a for a in mid_block_addresses(m) if a in reference["at"]]
    assert len(addresses) > 20
    seen = {a: [] for a in addresses}
    for a in addresses:
        m.add_code_hook(a, lambda mm, a=a: seen[a].append(mm.retired))
    m.run()
    assert m.retired == reference["count"]
    assert seen == {a: reference["at"][a] for a in addresses}


@pytest.mark.parametrize("kind", [1, 2, 4, 5, 7])
def test_a_fault_in_the_middle_of_a_block_counts_up_to_the_faulting_instruction(build_guest, kind):
    faults = build_guest("faults")
    runs = []
    for reference in (True, False):
        m = Machine(faults)
        m.write(m.symbols["fault_kind"].address, kind.to_bytes(8, "little"))
        state = per_instruction_clock(m) if reference else None
        assert m.run().reason is StopReason.FAULT
        runs.append((state["count"] if state else m.retired, m.rip))
    assert runs[0] == runs[1]


def test_stops_from_another_thread_leave_the_clock_exact(kernel_path):
    """Ctrl-C can land between the block hook (which counted the block) and the block's
    first instruction; however many stops, the run ends as an uninterrupted one does.
    The whole run takes a few tens of milliseconds: machines are run again until the
    stops add up to more than a handful, each compared with the uninterrupted run."""
    whole = Machine(kernel_path)
    whole.run()
    rng = random.Random(3)
    stops = 0
    for _attempt in range(20):
        m = Machine(kernel_path)
        done = threading.Event()

        def interrupter():
            while not done.is_set():
                time.sleep(rng.uniform(0.0002, 0.002))
                m.request_stop()

        t = threading.Thread(target=interrupter, daemon=True)
        t.start()
        try:
            while (ev := m.run()).reason is not StopReason.HALTED:
                assert ev.reason is StopReason.INTERRUPTED
                stops += 1
        finally:
            done.set()
            t.join()
        assert (m.console, m.retired) == (whole.console, whole.retired)
        if stops > 5:
            break
    assert stops > 5

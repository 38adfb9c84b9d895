"""Running guests: console, the exact instruction clock, budgets, determinism, faults, hlt."""
from __future__ import annotations

import random

import pytest

from harness import count_executions, instruction_boundaries, snapshot
from kprobe_shell import Machine, MachineError, StopReason

WORKLOAD_CONSOLE_HEAD = "workload start\nkprobe=0x"


@pytest.fixture(scope="module")
def workload(build_guest):
    return build_guest("workload")


@pytest.fixture(scope="module")
def faults(build_guest):
    return build_guest("faults")


@pytest.fixture(scope="module")
def reference(workload):
    """One complete run of the workload: (snapshot, stop event)."""
    m = Machine(workload)
    ev = m.run()
    return snapshot(m), ev


def with_kind(path, kind):
    m = Machine(path)
    m.write(m.symbols["fault_kind"].address, kind.to_bytes(8, "little"))
    return m


# ---------------------------------------------------------------------------- console, halt
def test_console_captures_the_serial_output(reference):
    snap, ev = reference
    assert ev.reason is StopReason.HALTED
    lines = snap.console.splitlines()
    assert lines[0] == "workload start"
    assert lines[1].startswith("kprobe=0x")
    assert "fib=0x90" in lines  # fib(12) == 144
    assert "hotel echo alpha golf charlie bravo foxtrot delta " in lines
    assert "seven=0x1f" in lines  # 1 - 2 + 3*4 + 5 - 6 + 7*3
    assert "RETURN PROBES, 2005" in lines
    assert snap.console.endswith("\n")


def test_console_line_listeners_get_each_line(workload):
    m = Machine(workload)
    lines = []
    m.serial.line_listeners.append(lines.append)
    m.run()
    assert b"".join(lines).decode() == m.console
    assert lines[0] == b"workload start\n"


def test_hlt_with_interrupts_off_halts(reference, workload):
    snap, ev = reference
    assert ev.reason is StopReason.HALTED and ev.is_final
    m = Machine(workload)
    start = m.symbols["_start"]
    assert m.run().reason is StopReason.HALTED
    # Stopped just past the hlt at the end of _start, IF clear.
    assert m.rip == start.address + start.size
    assert m.read(m.rip - 1, 1) == b"\xf4"
    assert not m.eflags & 0x200
    assert m.read_u64(m.symbols["exit_code"].address) == 0
    # A halted machine stays halted.
    again = m.run()
    assert again.reason is StopReason.HALTED and m.retired == snap.retired


def test_hlt_with_interrupts_on_but_no_timer_vector_halts(faults):
    m = with_kind(faults, 8)
    ev = m.run()
    assert ev.reason is StopReason.HALTED
    assert "no timer vector" in ev.message
    assert m.eflags & 0x200
    assert m.console == "faults start\ngood=0xfeedface\n"


# ---------------------------------------------------------------------------- the clock
def test_budget_stops_exactly(workload):
    m = Machine(workload)
    ev = m.run(1000)
    assert ev.reason is StopReason.BUDGET
    assert m.retired == 1000
    assert not ev.is_final
    ev = m.run(1)
    assert ev.reason is StopReason.BUDGET and m.retired == 1001
    ev = m.run(0)
    assert ev.reason is StopReason.BUDGET and m.retired == 1001


def test_budget_counts_the_instructions_that_ran(workload):
    """run(k) stops right after the k-th instruction: its rip is the k+1-th's address."""
    m = Machine(workload)
    trace = []
    m.add_code_hook(m.image.entry, lambda mm: trace.append(mm.retired))
    main = m.symbols["main"].address
    m.add_code_hook(main, lambda mm: trace.append(mm.retired))
    m.run()
    assert trace[:2] == [1, 2]  # _start's call is instruction 1, main's first is 2
    m2 = Machine(workload)
    m2.run(1)
    assert m2.rip == main and m2.retired == 1


def test_run_in_pieces_equals_one_run(reference, workload):
    whole, _ = reference
    rng = random.Random(1234)
    m = Machine(workload)
    pieces = 0
    while True:
        ev = m.run(rng.randint(1, 900))
        pieces += 1
        if ev.reason is StopReason.HALTED:
            break
        assert ev.reason is StopReason.BUDGET
    assert pieces > 5
    assert snapshot(m).diff(whole) == []


def test_tiny_budgets_step_one_instruction_at_a_time(reference, workload):
    whole, _ = reference
    m = Machine(workload)
    m.run(2000)
    for i in range(300):
        assert m.run(1).reason is StopReason.BUDGET
        assert m.retired == 2001 + i
    assert m.run().reason is StopReason.HALTED
    assert snapshot(m).diff(whole) == []


def test_retired_counts_every_instruction(reference, workload):
    """The clock equals the number of instruction executions an address hook sees."""
    whole, _ = reference
    m = Machine(workload)
    counts = count_executions(m, instruction_boundaries(m))
    m.run()
    assert sum(counts.values()) == m.retired == whole.retired
    assert counts[m.image.entry] == 1
    assert counts[m.symbols["putc_"].address] == len(m.console)  # every byte goes through putc_


def test_timer_period_does_not_change_a_guest_without_interrupts(reference, workload):
    whole, _ = reference
    m = Machine(workload, timer_period=101)
    m.run()
    assert snapshot(m).diff(whole) == []
    with pytest.raises(MachineError):
        Machine(workload, timer_period=10)


def test_hlt_on_the_last_instruction_of_a_budget_or_timer_period_halts(reference, workload):
    """A hlt that is exactly the deadline-th instruction is still a hlt, not a deadline
    stop after which the next run would go on past the hlt."""
    whole, _ = reference
    total = whole.retired
    m = Machine(workload)
    ev = m.run(total)
    assert ev.reason is StopReason.HALTED and m.retired == total
    assert m.run().reason is StopReason.HALTED
    assert snapshot(m).diff(whole) == []
    divisors = [d for d in range(100, total + 1) if total % d == 0]
    for period in divisors[:3] + [total]:
        m = Machine(workload, timer_period=period)
        assert m.run().reason is StopReason.HALTED, period
        assert snapshot(m).diff(whole) == [], period


def test_budget_stop_after_an_instruction_ending_in_f4_is_not_a_hlt(tmp_path):
    import guestbuild

    src = tmp_path / "f4.c"
    src.write_text(
        '#include "guest.h"\n'
        'u64 f4fn(void);\n'
        'ASM_FUNC(f4fn, "    mov $0xf4, %al\\n" PROBE(after_f4) "    ret\\n");\n'
        'int main(void) { for (int i = 0; i < 40; i++) putc_(46); f4fn(); puts_("done\\n"); return 0; }\n'
    )
    path = str(guestbuild.compile_guest(src, tmp_path / "f4.elf"))
    m = Machine(path)
    after = m.symbols["after_f4"].address
    assert m.read(after - 2, 2) == b"\xb0\xf4"
    clocks = []
    m.add_code_hook(after, lambda mm: clocks.append(mm.retired))
    m.run()
    assert m.console == "." * 40 + "done\n" and len(clocks) == 1
    k = clocks[0] - 1  # stop right after the mov, before the ret
    assert k >= 100
    for period in (None, k):
        m = Machine(path) if period is None else Machine(path, timer_period=k)
        ev = m.run(k)
        assert ev.reason is StopReason.BUDGET and m.rip == after and m.retired == k
        assert m.run().reason is StopReason.HALTED
        assert m.console == "." * 40 + "done\n"


def test_two_runs_are_identical(workload):
    a, b = Machine(workload), Machine(workload)
    a.run()
    b.run()
    sa, sb = snapshot(a), snapshot(b)
    assert sa.console.encode() == sb.console.encode()
    assert sa.memory == sb.memory
    assert sa.diff(sb) == []
    assert sa.retired == sb.retired > 5000


def test_registers_and_memory_accessors(workload):
    m = Machine(workload)
    regs = m.registers()
    assert list(regs) == [
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "eflags",
    ]
    assert regs["rip"] == m.image.entry and regs["eflags"] & 0x200 == 0
    m.set_reg("r12", -1)
    assert m.reg("r12") == 0xFFFFFFFFFFFFFFFF
    addr = m.symbols["checksum"].address
    m.write_u64(addr, 0x1122334455667788)
    assert m.read(addr, 8) == bytes.fromhex("8877665544332211")
    assert m.read_u64(addr) == 0x1122334455667788


def test_guest_sees_memory_written_before_the_run(workload, reference):
    """Writing guest data changes what the guest computes (the sort input here)."""
    m = Machine(workload)
    items = m.symbols["items"].address
    m.write(items, (100).to_bytes(4, "little"))  # items[0].key: 42 -> 100, "delta" sorts last
    m.run()
    assert "hotel echo alpha golf charlie bravo foxtrot delta " in m.console
    m2 = Machine(workload)
    m2.write(items, (0).to_bytes(4, "little"))  # 42 -> 0: "delta" sorts first
    m2.run()
    assert "delta hotel echo alpha golf charlie bravo foxtrot " in m2.console


# ---------------------------------------------------------------------------- faults
FAULTS = {
    # kind: (message, where: label the rip is at, or an address, fault address)
    1: ("read from unmapped memory at 0x10", "p_fault", 0x10),
    2: ("write to unmapped memory at 0x18", "p_store", 0x18),
    3: ("execute from unmapped memory at 0x20000000", 0x20000000, 0x20000000),
    4: ("invalid opcode (#UD)", "p_ud2", None),
    5: ("divide error (#DE)", "p_div", None),
}


@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_faults_are_reported_where_they_happen(faults, kind):
    message, where, fault_address = FAULTS[kind]
    m = with_kind(faults, kind)
    ev = m.run()
    assert ev.reason is StopReason.FAULT and ev.is_final
    assert ev.message == message
    assert ev.fault_address == fault_address
    if isinstance(where, str):
        label = m.symbols[where].address
        assert ev.rip == label == m.rip
        func, off = m.symbols.containing(label)
        assert m.symbols.format(ev.rip) == f"{func.name}+0x{off:x}/0x{func.size:x}"
        assert off > 0 or where == "p_store"
    else:
        assert ev.rip == where
    assert ev.task == "faults-1"
    assert m.console == "faults start\ngood=0xfeedface\n"
    assert f"rip {m.symbols.format(ev.rip)}" in m.describe_stop(ev)
    # A faulted machine does not go on.
    assert m.run() is ev


def test_fault_formats_as_sym_plus_offset(faults):
    m = with_kind(faults, 5)
    ev = m.run()
    size = m.symbols["do_div"].size
    assert m.symbols.format(ev.rip) == f"do_div+0x5/0x{size:x}"


def test_stack_overflow_by_unbounded_recursion(faults):
    m = with_kind(faults, 6)
    ev = m.run()
    assert ev.reason is StopReason.FAULT
    assert ev.message.startswith("write to unmapped memory at ")
    assert "stack overflow" in ev.message
    assert m.symbols.format(ev.rip).startswith("overflow+")
    # The whole boot stack was used up: the fault is just below its base.
    from kprobe_shell.machine.layout import BOOT_STACK_BASE

    assert ev.fault_address == BOOT_STACK_BASE - 8
    assert m.reg("rsp") == BOOT_STACK_BASE


def test_write_to_read_only_data(faults):
    m = with_kind(faults, 7)
    ev = m.run()
    assert ev.reason is StopReason.FAULT
    assert ev.message == f"write to read-only memory at 0x{m.symbols['ro_value'].address:x}"
    assert ev.rip == m.symbols["p_store"].address


def test_no_fault_runs_to_the_end(faults):
    m = with_kind(faults, 0)
    assert m.run().reason is StopReason.HALTED
    assert m.console == "faults start\ngood=0xfeedface\nfaults end\n"


def test_fault_stops_the_clock_at_the_faulting_instruction(faults):
    """The faulting instruction is the last one counted: a budget one short stops before it."""
    m = with_kind(faults, 5)
    m.run()
    n = m.retired
    m2 = with_kind(faults, 5)
    assert m2.run(n - 1).reason is StopReason.BUDGET
    assert m2.rip == m2.symbols["p_div"].address
    assert m2.run().reason is StopReason.FAULT and m2.retired == n


def test_triple_fault_when_the_interrupt_frame_cannot_be_pushed(faults):
    """A timer gate, but rsp in unmapped memory: the CPU cannot deliver the tick (#PF,
    then #DF, then shutdown).  The machine reports it instead of raising MachineError."""
    m = with_kind(faults, 10)
    ev = m.run()
    assert ev.reason is StopReason.FAULT and ev.is_final and ev.details["triple_fault"]
    assert ev.message.startswith("triple fault: the timer interrupt (vector 0x20) cannot be delivered: "
                                 "its frame would go to 0x2fffffd8 (rsp 0x30000000)")
    assert ev.rip == m.symbols["spin"].address and m.reg("rsp") == 0x30000000
    assert m.run() is ev


def test_timer_gate_into_unmapped_memory_faults_at_the_handler(faults):
    m = with_kind(faults, 11)
    ev = m.run()
    assert ev.reason is StopReason.FAULT
    assert ev.message == "execute from unmapped memory at 0x30000000" and ev.rip == 0x30000000


def test_a_guest_that_never_halts_is_stopped_by_budget_or_request(faults):
    import threading

    m = with_kind(faults, 9)
    ev = m.run(100_000)
    assert ev.reason is StopReason.BUDGET and ev.rip == m.symbols["spin"].address
    timer = threading.Timer(0.2, m.request_stop)
    timer.start()
    ev = m.run()
    timer.join()
    assert ev.reason is StopReason.INTERRUPTED and not ev.is_final
    assert m.run(10).reason is StopReason.BUDGET


def test_a_stop_just_past_a_hlt_reached_by_a_jump_is_not_a_hlt(kernel_path):
    """cpu_idle jumps to the instruction after its `sti; hlt`: a stop there (a budget,
    Ctrl-C) left rip just past a hlt it had not executed, and the machine took the idle
    loop's `cli`-time flags for a halt with interrupts off, ending the run."""
    whole = Machine(kernel_path)
    whole.run()
    m = Machine(kernel_path)
    m.run(40100)
    assert m.read(m.rip, 2) == b"\xeb\x1f"  # cpu_idle's jmp to the instruction after its hlt
    ev = m.run(1)
    assert ev.reason is StopReason.BUDGET
    assert m.read(m.rip - 1, 1) == b"\xf4" and not m.reg("eflags") & 0x200
    ev = m.run()
    assert ev.reason is StopReason.HALTED and (m.console, m.retired) == (whole.console, whole.retired)

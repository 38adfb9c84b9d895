"""Engine invariants beyond the table's own (KprobeEngine.check_invariants calls these).

- Instruction slots: every slot handed out is either free or owned by a registered probe,
  never both, none lost; a free slot holds nothing but int3s (a stale jump traps).
- Return probes: every instance is in exactly one place: its probe's free list, or its
  probe's used list *and* its task's bucket of kretprobe_inst_table; registered probes
  are in the manager's list and their kprobe is registered.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .x86 import BREAKPOINT_INSTRUCTION

if TYPE_CHECKING:
    from .core import KprobeEngine


def slot_invariants(engine: "KprobeEngine") -> list[str]:
    slots = engine.slots
    problems = []
    owned, free = set(slots.owner), set(slots._free)
    if len(free) != len(slots._free):
        problems.append("a slot is on the free list twice")
    both = owned & free
    if both:
        problems.append(f"slots both free and owned: {', '.join(hex(s) for s in sorted(both))}")
    handed_out = set(range(slots.base, slots._next, slots.size))
    lost = handed_out - owned - free
    if lost:
        problems.append(f"slots neither free nor owned (leaked): {', '.join(hex(s) for s in sorted(lost))}")
    for slot in sorted(free - owned):
        if engine.machine.read(slot, slots.size) != bytes([BREAKPOINT_INSTRUCTION]) * slots.size:
            problems.append(f"free slot 0x{slot:x} does not hold int3s")
    return problems


def kretprobe_invariants(engine: "KprobeEngine") -> list[str]:
    mgr = engine.kretprobes
    problems = []
    in_table = {id(ri): ri for bucket in mgr.kretprobe_inst_table for ri in bucket}
    for rp in mgr.kretprobes:
        if rp.manager is not mgr or not rp.kp.registered:
            problems.append(f"{rp!r} is listed but not registered")
        used = {id(ri) for ri in rp.used_instances}
        for ri in rp.used_instances:
            if id(ri) not in in_table:
                problems.append(f"{ri!r} is in use but in no task's bucket")
            if ri.rp is not rp:
                problems.append(f"{ri!r} is in the used list of {rp!r}")
        for ri in rp.free_instances:
            if id(ri) in in_table or id(ri) in used:
                problems.append(f"{ri!r} is free and in use at once")
    for ri in in_table.values():
        if ri.rp is not None and all(ri is not u for u in ri.rp.used_instances):
            problems.append(f"{ri!r} is in a task's bucket but not in its probe's used list")
    return problems


def extra_invariants(engine: "KprobeEngine") -> list[str]:
    return slot_invariants(engine) + kretprobe_invariants(engine)

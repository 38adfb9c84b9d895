"""Hits recorded in C: the jump-optimized entries and the kretprobe booster's returns
that record without Python.

The detour entries' hook is _hit.c's hit_hook (tracing/_hit.c).  For an entry whose
probes are all C-recordable it does what optimized_callback and their handlers would do,
probe by probe in the aggregate's order (kprobe_handler's bookkeeping; for an event, its
fetch program, filter and record in the trace ring; for a kretprobe's entry,
make_lone_kretprobe_entry's steps on the instance table of _kstate.c); every other entry,
and any hit that finds a probe running (a stop asked for never reaches it: the clock
stops first), goes to optimized_callback (fastpath.py), the Python path.  The booster's
hook is _hit.c's booster_hook (CReturns): a return whose kretprobe's return event is
C-recordable is handled there, every other by the Python booster.

A probe is C-recordable when whoever made its handler says how to record it in C
(Kprobe.c_record or Kretprobe.c_record, a CRecord: the shell sets it for its own trace
handlers, see shell/crecord.py) and nothing else runs at its hit: no narration
(`explain`), one CPU, the engine's C path on (KprobeEngine.c_hits), the handler it was
made for still the probe's handler, no post_handler; a kretprobe's entry, no
entry_handler and a mode that plants the booster.
The tables are rebuilt (refresh) whenever what decides it can change: before every run,
and when a probe is optimized or unoptimized.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from unicorn.unicorn_py3.unicorn import uclib

from ..machine.clock import NS_PER_INSN, ICount
from ..machine.registers import REGISTERS
from ..machine.tasks import PSEUDO_TASK_ADDR
from ..tracing import _hit
from . import _kstate
from .fastpath import make_kretprobe_entry_failed
from .types import BOOSTED_MODES

if TYPE_CHECKING:
    from .kretprobes import KretprobeManager
    from .optimize import KprobeOptimizer

def _address(fn) -> int:
    return ctypes.cast(fn, ctypes.c_void_p).value or 0


_hit.init(_address(uclib.uc_reg_read), _address(uclib.uc_mem_read),
          _address(uclib.uc_vmem_read) if getattr(uclib, "uc_vmem_read", None) is not None else 0,
          _address(uclib.uc_reg_write), _address(uclib.uc_mem_write), REGISTERS["rsp"])

#: The C tool hooks of the detour entries and of the kretprobe booster.
HIT_HOOK = _hit.hook_address()
BOOSTER_HOOK = _hit.booster_hook_address()


def hit_env(machine) -> tuple:
    """What _hit.c reads of machine at a hit besides the CPU (its env_of): CPU 0's clock,
    and where the current task is."""
    cpu0 = machine.cpus[0]
    lay = machine.tasks.layout
    pseudo = machine.tasks.pseudo
    return (cpu0.clock.retired_addr, NS_PER_INSN, ctypes.addressof(cpu0.icount) + ICount.vmem.offset,
            REGISTERS["gs_base"], lay["off_comm"] if lay else -1, lay["off_pid"] if lay else -1,
            pseudo.comm.encode("latin-1", "replace"), pseudo.pid, PSEUDO_TASK_ADDR)


#: A map line's key part or value that is not an argument (_hit.c's SRC_*).
MAP_COMM, MAP_PID, MAP_CPU, MAP_NONE = -1, -2, -3, -100
#: The most key parts a map line recorded in C has (_hit.c's MAX_KEY_PARTS).
MAX_KEY_PARTS = 8


@dataclass(frozen=True)
class CRecord:
    """How a probe's hit is recorded in C: its event's id (the record's common_type), the
    trace ring's handle, the fetch program (tracing/cfetch.py), the pre_handler it
    stands for (the probe goes back to Python if its pre_handler is replaced), and the
    map lines it feeds (cmaps.h), each (BpfMap, its handle, the line's object with a
    `skipped` count, the key parts' sources, the value's source: an argument's index,
    or MAP_COMM, MAP_PID, MAP_CPU, MAP_NONE).  CHits keeps it, and so what it names,
    while the C table uses it."""

    event_id: int
    ring: int
    program: bytes
    handler: Callable
    maps: tuple = ()
    ring_owner: object = None  # what keeps the ring alive while the table points into it


def run_program(program: bytes, machine, comm: str, pid: int) -> tuple[bytes, int, bool]:
    """One fetch and filter of `program` on machine's CPU now, as a hit makes them: (the
    record after trace_entry and the ips, the bit mask of faulted arguments, accepted by
    the filter).  For the tests."""
    vmem = machine.userspace is not None
    data, faults, ok = _hit.run_program(program, machine.uch, int(vmem), comm.encode("latin-1", "replace"), pid)
    return data, faults, bool(ok)


def register_id(name: str) -> int | None:
    """unicorn's id of a canonical register read in C as one 64-bit value."""
    return REGISTERS.get(name)


class CHits:
    """The optimizer's table of C-recordable detour entries (_hit.c's hit_table)."""

    def __init__(self, optimizer: "KprobeOptimizer", entry_base: int, entry_size: int, nentries: int,
                 fallback: Callable[[int], None]):
        self.optimizer = optimizer
        self.fallback = fallback  # kept alive here: the table borrows it (and CPU 0's kcb, which the engine keeps)
        self.table, self.address = _hit.new_table(
            entry_base, entry_size, nentries, hit_env(optimizer.machine),
            _kstate.current_kprobe_address(optimizer._kcb), fallback)
        kretprobes = optimizer.engine.kretprobes
        self.entry_failed = make_kretprobe_entry_failed(kretprobes)  # the table borrows it
        _hit.set_kretprobes(self.table, kretprobes._table, kretprobes.booster, self.entry_failed)
        self.recorded: dict[int, int] = {}  # probed address -> detour entry, recorded in C now
        self._in_table: dict = {}

    def install(self, hook: int, begin: int, end: int) -> None:
        """hook (a C function) as every CPU's tool hook on [begin, end], with this table as
        its data (see _clock.c's tool_hook); the table lives as long as the optimizer."""
        from ..machine import MachineError

        for cpu in self.optimizer.machine.cpus:
            if not cpu.clock.add_tool_hook(begin, end, None, c_hook=(hook, self.address)):
                raise MachineError("the clock's tool hook slots are full")

    def refresh(self) -> None:
        """Make the table say which entries record in C, from the probes as they are now."""
        _hit.clear(self.table)
        self.recorded = {}
        self._in_table = {}  # detour entry -> what the table borrows there (probes, maps, map lines)
        if self._in_c():
            for op in self.optimizer.active.values():
                self._set(op)

    def update(self, op) -> None:
        """op was just optimized or unoptimized: say again how its entry alone records (a
        whole refresh at each of thousands of optimizations would be quadratic)."""
        _hit.drop(self.table, op.entry)
        self._in_table.pop(op.entry, None)
        if self.recorded.get(op.addr) == op.entry:
            del self.recorded[op.addr]
        if op.active and self._in_c():
            self._set(op)

    def _in_c(self) -> bool:
        engine = self.optimizer.engine
        return engine.c_hits and engine.narrator is None and self.optimizer.machine.ncpus == 1

    def _set(self, op) -> None:
        """op's entry records in C when every probe at it can."""
        probes = op.kp.active_children() if op.is_aggr else [op.kp]
        ways = [self._c_way(p) for p in probes]
        if not probes or None in ways:
            return
        self._in_table[op.entry] = list(zip(probes, ways))
        for p, way in zip(probes, ways):
            if way == "kretprobe":
                rp = p._owner
                _hit.set_kretprobe_entry(self.table, op.entry, p, ctypes.addressof(p.c_hits), rp._rp_id,
                                         ctypes.addressof(rp.c_nmissed), p.addr)
            else:
                _hit.set_probe(self.table, op.entry, p, ctypes.addressof(p.c_hits), p.addr, way.event_id,
                               way.ring, way.program, way.maps)
        self.recorded[op.addr] = op.entry

    def _c_way(self, p) -> "CRecord | str | None":
        """How p's hit runs in C: its CRecord (an event), "kretprobe" (a kretprobe's entry,
        fastpath.make_lone_kretprobe_entry's steps), or None (the Python path).  A
        kretprobe's entry does when its returns record in C and it has no entry_handler,
        in the modes that plant the booster."""
        if p.disabled or p.post_handler is not None:
            return None
        owner = getattr(p, "_owner", None)
        if getattr(owner, "kind", None) == "r":
            rec = owner.c_record
            if (rec is None or owner.handler is not rec.handler or owner.entry_handler is not None
                    or not p.engine_pre_handler or owner.manager is None
                    or self.optimizer.engine.mode not in BOOSTED_MODES):
                return None
            return "kretprobe"
        rec = getattr(p, "c_record", None)
        if rec is None or p.fast_entry is not None or p.pre_handler is not rec.handler:
            return None
        return rec


class CReturns:
    """The kretprobe booster's C hook (_hit.c's booster_hook) and its table of the return
    probes whose return events record in C.

    A kretprobe's return records in C when whoever made its handler says how (its
    c_record, a CRecord for the handler), that handler is still its handler, and nothing
    else can run at the return: the engine's C path and inline fast paths on, no
    narration, one CPU.  Every other return, and any return the C hook does not take (see
    booster_hook), runs the Python booster (fastpath.make_kretprobe_booster)."""

    def __init__(self, manager: "KretprobeManager", fallback: Callable[[int], None],
                 push_failed: Callable[[int], None]):
        self.manager = manager
        self._kept = (fallback, push_failed)  # the table borrows them
        self.table, self.address = _hit.new_ret_table(
            hit_env(manager.machine), manager._table, manager.trampoline, manager.booster, fallback, push_failed)
        self.recorded: dict[int, int] = {}  # kretprobe's number in the InstanceTable -> its function
        self._in_table: list = []

    def install(self) -> None:
        """The C hook on the booster's `ret`, on every CPU (the table lives as long as the
        manager, which holds it)."""
        from ..machine import MachineError

        booster = self.manager.booster
        for cpu in self.manager.machine.cpus:
            if not cpu.clock.add_tool_hook(booster, booster, None, c_hook=(BOOSTER_HOOK, self.address)):
                raise MachineError("the clock's tool hook slots are full")

    def refresh(self) -> None:
        """Make the table say which return probes record in C, from the probes as they are now."""
        manager = self.manager
        engine = manager.engine
        _hit.clear_rets(self.table)
        self.recorded = {}
        self._in_table = []
        if (not engine.c_hits or engine.narrator is not None or not engine.inline_fast_paths
                or manager.machine.ncpus > 1):
            return
        for rp in manager.kretprobes:
            rec = getattr(rp, "c_record", None)
            if rec is None or rp.handler is not rec.handler:
                continue
            self._in_table.append((rp, rec))
            _hit.set_ret(self.table, rp._rp_id, ctypes.addressof(rp.c_hits), rp.addr, rec.event_id, rec.ring,
                         rec.program, rec.maps)
            self.recorded[rp._rp_id] = rp.addr

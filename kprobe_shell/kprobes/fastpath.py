"""The probe hit's fast paths, each an inlined copy of a reference path.

The kernel's hot paths are written once; here the common case of three of them is
inlined (Python charges for every call and attribute lookup), and each inlined copy
names the function it mirrors, which stays the reference: it handles every case, and
narration (`explain on`) always takes it.

- make_kretprobe_booster: the kretprobe booster's return, mirroring
  KretprobeManager.trampoline_probe_handler (_run_return_handlers, recycle_rp_inst);
- optimized_callback: the jump-optimized entry, mirroring KprobeEngine.kprobe_handler;
- make_lone_kretprobe_entry: a lone kretprobe's entry at an optimized address,
  mirroring KretprobeManager._arch_prepare_kretprobe_hit.

KprobeEngine.fast_paths = False sends every hit through the reference paths instead
(nothing is jump-optimized, the booster walks with _run_return_handlers);
tests/kprobes/test_fastpath_differential.py runs the engine's workloads both ways.

This module and regs.py are the only ones that reach the machine's C accessors.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ..machine import MachineError, capi
from ..machine.registers import REGISTERS
from ._kstate import F_RET_ADDR, F_RP
from .narrate import BoosterReturned, OptimizedHit, OptimizedMissed
from .types import BOOSTED_MODES, KprobeStatus

if TYPE_CHECKING:
    from .kretprobes import Kretprobe, KretprobeManager

# The C accessors themselves, bound once for the hot paths (Machine's wrappers cost a Python
# call each; their error messages are kept below).
_exchange_top_of_stack, _push_u64 = capi.exchange_top_of_stack, capi.push_u64
_UcAccessError = capi.AccessError
_REG_RSP = REGISTERS["rsp"]
_HIT_ACTIVE = KprobeStatus.HIT_ACTIVE

__all__ = ["make_booster_push_failed", "make_kretprobe_booster", "make_kretprobe_entry_failed",
           "make_lone_kretprobe_entry", "optimized_callback"]


def make_kretprobe_booster(manager: "KretprobeManager") -> Callable[[int], None]:
    """Mirrors KretprobeManager.trampoline_probe_handler (its walk, _run_return_handlers,
    and recycle_rp_inst inlined for the common case of one instance).

    kretprobe_booster, the hook on the booster's `ret` (a fast hook: called from C,
    so nothing may escape), with the manager's constants in closure cells: it runs on
    every return of a probed function."""
    engine, machine = manager.engine, manager.machine
    smp, kcb0, fixed_task, tasks = manager._smp, manager._kcb0, manager._fixed_task, machine.tasks
    trampoline, booster, trampoline_probe = manager.trampoline, manager.booster, manager.trampoline_probe
    table, instances, rps = manager._table, manager._instances, manager._rps
    first, get, recycle = table.first, table.get, table.recycle
    shown_ip, regs, call = manager._shown_ip, manager._regs, engine._call
    run_return_handlers = manager._run_return_handlers

    def kretprobe_booster(_address) -> None:
        """Run the return handlers as the trampoline probe (current_kprobe, regs->ip =
        &kretprobe_trampoline, as the kernel's booster), then push the real return
        address for the `ret` to take."""
        try:
            if smp:
                if engine._kprobe_lock_held_elsewhere():
                    # SMP, the 2005 serialisation: return handlers run under kprobe_lock,
                    # which another CPU holds (a jprobe handler, an in-place step).  Return
                    # through the int3 trampoline instead, whose trap waits for the lock
                    # (kprobe_handler); the instances do not care which way they are reached.
                    machine.set_reg("rip", trampoline)
                    return
                kcb = engine.kcb  # the returning CPU's kprobe_ctlblk, looked up once
            else:
                kcb = kcb0
            task = fixed_task or tasks.current_address()
            saved, saved_status = kcb.current_kprobe, kcb.kprobe_status
            kcb.current_kprobe = trampoline_probe
            kcb.kprobe_status = _HIT_ACTIVE
            shown_ip[0] = trampoline
            i = first(task, 1)  # the head of the task's bucket, if it is the task's
            ri = instances[i] if i >= 0 else None
            if (ri is not None and engine.narrator is None and engine.inline_fast_paths
                    and (orig_ret_address := get(i, F_RET_ADDR)) != trampoline and orig_ret_address != booster):
                # The common case: one call of one probed function returns, its instance
                # at the head of the task's bucket.  _run_return_handlers' steps for it.
                number = get(i, F_RP)
                if number >= 0:
                    rp = rps[number]
                    rp.python_hits += 1
                    if rp.handler is not None:
                        call(rp.kp, "handler", rp.handler, ri, regs)
                        orig_ret_address = get(i, F_RET_ADDR)  # read after the handler, as the kernel does
                recycle(i)
            else:
                orig_ret_address = run_return_handlers(task, regs)
            shown_ip[0] = None
            kcb.current_kprobe, kcb.kprobe_status = saved, saved_status
            if not orig_ret_address:
                manager._no_instance_bug(task, ri if ri is not None and ri.bucket is None else
                                         manager._last_consumed)
                return
            if machine.pending_stop is not None:
                # Stopping before the `ret`: resuming here would run the handlers again.
                machine.set_reg("rip", orig_ret_address)
                return
            try:  # machine.push_u64 without its Python frame
                _push_u64(machine.uch, _REG_RSP, orig_ret_address)
            except _UcAccessError:
                raise MachineError("cannot push: the stack is not mapped") from None
            if engine.narrator is not None:
                engine.narrate(BoosterReturned(orig_ret_address))
        except BaseException as exc:  # noqa: BLE001 - an engine bug: a BUG stop, as the trampoline's
            shown_ip[0] = None
            try:
                engine._handler_failed(trampoline_probe, "booster", exc)
            except BaseException as exc2:  # noqa: BLE001 - nothing may escape a C hook
                machine.hook_failed(exc2)

    return kretprobe_booster


def make_booster_push_failed(manager: "KretprobeManager") -> Callable[[int], None]:
    """What the kretprobe booster does when the real return address cannot be pushed (the
    stack is not mapped), for the C booster (_hit.c's booster_hook) to call: the failure
    the Python booster reports."""
    engine, machine = manager.engine, manager.machine

    def push_failed(_address) -> None:
        try:
            engine._handler_failed(manager.trampoline_probe, "booster",
                                   MachineError("cannot push: the stack is not mapped"))
        except BaseException as exc:  # noqa: BLE001 - nothing may escape a C hook
            machine.hook_failed(exc)

    return push_failed


def make_kretprobe_entry_failed(manager: "KretprobeManager") -> Callable[[int], None]:
    """What a kretprobe's entry in C (_hit.c's kretprobe_entry) calls, with the probed
    address, when the return address cannot be replaced: the failure the Python entry
    reports (its instance is back on its free list already)."""
    engine, machine = manager.engine, manager.machine

    def entry_failed(address) -> None:
        try:
            rp = next(rp for rp in manager.kretprobes if rp.addr == address)
            engine._handler_failed(rp.kp, "pre_handler",
                                   MachineError("cannot exchange the top of the stack: not mapped"))
        except BaseException as exc:  # noqa: BLE001 - nothing may escape a C hook
            machine.hook_failed(exc)

    return entry_failed


def make_lone_kretprobe_entry(manager: "KretprobeManager", rp: "Kretprobe") -> Callable:
    """Mirrors KretprobeManager._arch_prepare_kretprobe_hit (through kprobe_handler's
    bookkeeping: nmissed while a probe runs, hits).

    The entry of rp when it is alone at a jump-optimized address (optimized_callback
    calls it instead of the general path): pre_handler_kretprobe with no entry_handler
    runs nothing of the user's, so nothing can see current_kprobe, regs or rip, and
    the hit is only the bookkeeping of _arch_prepare_kretprobe_hit (the same steps,
    in the same order), with every constant in a closure cell.  With an entry_handler
    or narration it defers to the general path."""
    engine, machine, p = manager.engine, manager.machine, rp.kp
    table, instances, fixed_task, tasks = manager._table, manager._instances, manager._fixed_task, machine.tasks
    take, add, number = table.take, table.add, rp._rp_id
    booster = manager.booster

    def fast_entry(kcb) -> bool:
        if rp.entry_handler is not None or engine.narrator is not None or engine.mode not in BOOSTED_MODES:
            return False
        if kcb.current_kprobe is not None:
            engine._inc_nmissed(p)
            return True
        p.python_hits += 1
        i = take(number)
        if i < 0:
            rp.python_nmissed += 1
            return True
        try:
            task = fixed_task or tasks.current_address()
            ri = instances[i]
            if ri.data:
                ri.data.clear()
            try:
                stack_slot, ret_addr = _exchange_top_of_stack(machine.uch, _REG_RSP, booster)
            except _UcAccessError:
                table.untake(i)
                raise MachineError("cannot exchange the top of the stack: not mapped") from None
            add(i, task, ret_addr, stack_slot)
        except BaseException as exc:  # noqa: BLE001 - as KprobeEngine._call
            engine._handler_failed(p, "pre_handler", exc)
        return True

    return fast_entry


def optimized_callback(self, address) -> None:
    """Mirrors KprobeEngine.kprobe_handler (with _ss_probe: the copies run in the detour
    buffer instead of the slot); KprobeOptimizer.optimized_callback is this function.

    A hit: the CPU is at the detour entry (the guest ran `jmp` at the probed address).

    Mirrors the kernel's optimized_callback: a hit while another probe runs only counts
    nmissed; else the probe runs with current_kprobe set and the handlers see
    rip = addr + 1, as after an int3.  Returning lets the CPU run the copies.
    (A fast hook: called from ctypes, so nothing may escape; see add_fast_code_hook.)"""
    try:
        op = self._by_entry.get(address)
        if op is None or not op.active:
            return  # unoptimized since the jump was taken: the copies still do the work
        engine = self.engine
        p = op.kp
        # This CPU's kprobe_ctlblk: only ever CPU 0's (nothing is optimized on SMP, see
        # wanted()), so it is looked up once, at construction.
        kcb = self._kcb
        fast = p.fast_entry
        if fast is not None and fast(kcb):
            # A lone kretprobe (see KretprobeManager._make_fast_entry).
            if self.machine.pending_stop is not None:
                self.machine.set_reg("rip", op.buffer)  # its failure stops before the `jmp`
            return
        if kcb.current_kprobe is not None:
            engine._inc_nmissed(p)
            if engine.narrator is not None:
                engine.narrate(OptimizedMissed(op.addr))
            return
        kcb.current_kprobe = p
        kcb.kprobe_status = _HIT_ACTIVE
        machine = self.machine
        shown_ip = self._shown_ip
        shown_ip[0] = op.addr + 1
        writes = machine.rip_writes
        pre = p.pre_handler
        regs = self._regs
        handled = 0
        if op.is_aggr:
            handled = pre(p, regs)
        else:
            p.python_hits += 1
            if pre is not None:
                if p.engine_pre_handler:
                    # A kretprobe's entry: engine code that guards the user's
                    # entry_handler itself (and reports its own failures as _call).
                    handled = pre(p, regs)
                else:
                    handled = engine._call(p, "pre_handler", pre, p, regs)
        shown_ip[0] = None
        if handled:
            # The handler took over (a jprobe): it is done unless it waits for its
            # break_handler (jprobe_return), exactly as on the int3 path.
            taker = p.curr if op.is_aggr else p
            if taker is None or taker.break_handler is None:
                kcb.current_kprobe = None
                kcb.kprobe_status = None
        else:
            kcb.current_kprobe = None
            kcb.kprobe_status = None
            if machine.rip_writes != writes:
                # A handler wrote rip but did not say it took over: the int3 path steps
                # the instruction anyway (rip = slot), so the copies run here too.
                machine.set_reg("rip", op.buffer)
        if machine.pending_stop is not None and machine.rip_writes == writes:
            # The guest stops before the entry `jmp` ran; resuming there would call the
            # handlers a second time.  Resume in the copies instead.
            machine.set_reg("rip", op.buffer)
        if engine.narrator is not None:
            engine.narrate(OptimizedHit(op.addr, op.entry, op.buffer))
    except BaseException as exc:  # noqa: BLE001 - an engine bug: stop the guest, raise from run()
        self.machine.hook_failed(exc)

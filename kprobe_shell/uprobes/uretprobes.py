"""uretprobes: the return address on the user stack swapped for the trampoline, and the
per-task return instances (kernel/events/uprobes.c: prepare_uretprobe,
handle_trampoline, cleanup_return_instances; arch/x86's arch_uretprobe_is_alive).

At a hit, the word at rsp (the return address: the probe is at the function's entry) is
swapped for the trampoline, slot 0 of the process's "[uprobes]" page, and a return
instance keeps the real one, with rsp (ri->stack).  When a probed function calls another
in tail position, the address found is the trampoline already: that instance is
`chained` and keeps the first caller's address.

longjmp.  A longjmp past probed functions leaves their instances behind, their frames
gone.  Linux drops them by stack pointer: at the next hijack (cleanup_return_instances:
every instance whose ri->stack is below the new rsp is dead), and at the trampoline
(handle_trampoline: if the instance after this chain's is not alive at this rsp, the
chain was left by longjmp: its return handlers are not called and the walk goes on).

Exit.  A task that execs or exits with instances pending frees them (uprobe_free_utask),
its return handlers never called; the depth limit (MAX_URETPROBE_DEPTH) and maxactive
omit an instance (nmissed), the function runs unhijacked.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .types import MAX_URETPROBE_DEPTH, ReturnInstance, UprobeEntry, UprobeTask, Uretprobe

if TYPE_CHECKING:
    from .core import UprobeEngine
    from .xol import XolArea

#: arch_uretprobe_is_alive's contexts.
RP_CHECK_CALL, RP_CHECK_CHAIN_CALL, RP_CHECK_RET = "call", "chain call", "ret"


def arch_uretprobe_is_alive(ri: ReturnInstance, ctx: str, rsp: int) -> bool:
    if ctx == RP_CHECK_CALL:  # rsp was just decremented by the call
        return rsp < ri.stack
    return rsp <= ri.stack


class UretprobeState:
    """The engine's return-probe half."""

    def __init__(self, engine: "UprobeEngine") -> None:
        self.engine = engine

    def prepare_uretprobe(self, entry: UprobeEntry, utask: UprobeTask) -> None:
        engine = self.engine
        machine, userspace = engine.machine, engine.machine.userspace
        rets = [c for c in entry.consumers if isinstance(c, Uretprobe) and not c.disabled]
        mine = sum(1 for ri in utask.return_instances if ri.entry is entry)
        if utask.depth >= MAX_URETPROBE_DEPTH or any(mine >= c.maxactive for c in rets):
            for c in rets:
                c.nmissed += 1
            if engine.narrator is not None:
                from .narrate import UretprobeOmitted

                engine.narrate(UretprobeOmitted(entry.program.describe(entry.vaddr), utask.depth))
            return
        area = engine.get_xol_area(engine.current_exe()[0])
        rsp = machine.reg("rsp")
        orig = int.from_bytes(userspace.read_virtual(rsp, 8), "little")
        chained = orig == area.trampoline
        self.cleanup_return_instances(utask, chained, rsp)
        if chained:
            if not utask.return_instances:
                return  # Linux: "handle tail call", an impossible state: no hijack
            orig = utask.return_instances[-1].orig_ret_vaddr
        userspace.write_virtual(rsp, area.trampoline.to_bytes(8, "little"))
        ri = ReturnInstance(entry, entry.vaddr, rsp, orig, chained, utask.pid, utask.comm)
        utask.return_instances.append(ri)
        if engine.narrator is not None:
            from .narrate import ReturnHijacked

            engine.narrate(ReturnHijacked(entry.program.describe(entry.vaddr), rsp, ri.orig_ret_vaddr, chained,
                                          utask.depth))
        for c in rets:
            if c.entry_handler is not None:
                engine.call(c, "entry_handler", c.entry_handler, ri, engine.regs)

    def cleanup_return_instances(self, utask: UprobeTask, chained: bool, rsp: int) -> None:
        ctx = RP_CHECK_CHAIN_CALL if chained else RP_CHECK_CALL
        stack = utask.return_instances
        while stack and not arch_uretprobe_is_alive(stack[-1], ctx, rsp):
            stack.pop()

    def handle_trampoline(self, area: "XolArea") -> bool:
        """The int3 at the trampoline: the handlers of the instances this return ends."""
        engine = self.engine
        machine = engine.machine
        utask = engine.utasks.get(engine.current_task())
        if utask is None or not utask.return_instances:
            return False  # Linux: "handle uretprobe, sending SIGILL": the kernel's SIGTRAP here
        stack = utask.return_instances
        rsp = machine.reg("rsp")
        handled = dropped = 0
        while True:
            chain_end = _find_next_ret_chain(stack)
            nxt = stack[chain_end - 1] if chain_end > 0 else None
            valid = nxt is None or arch_uretprobe_is_alive(nxt, RP_CHECK_RET, rsp)
            machine.set_reg("rip", stack[-1].orig_ret_vaddr)
            while len(stack) > chain_end:
                ri = stack.pop()
                if valid:
                    self._handle_uretprobe_chain(ri)
                    handled += 1
                else:
                    dropped += 1
            if valid or not stack:
                break
        if engine.narrator is not None:
            from .narrate import TrampolineReturn

            engine.narrate(TrampolineReturn(utask.comm, utask.pid, machine.rip, handled, dropped))
        return True

    def _handle_uretprobe_chain(self, ri: ReturnInstance) -> None:
        engine = self.engine
        for c in ri.entry.consumers:
            if isinstance(c, Uretprobe) and not c.disabled and c.handler is not None:
                engine.call(c, "handler", c.handler, ri, engine.regs)

    def free_utask(self, utask: UprobeTask) -> None:
        """uprobe_free_utask: pending instances go with the task, handlers not called."""
        utask.return_instances.clear()

    def dup_utask(self, parent: UprobeTask, task) -> UprobeTask:
        child = UprobeTask(task.address, task.pid, parent.comm)
        child.return_instances = [ReturnInstance(ri.entry, ri.func, ri.stack, ri.orig_ret_vaddr, ri.chained,
                                                 task.pid, parent.comm) for ri in parent.return_instances]
        return child


def _find_next_ret_chain(stack: list[ReturnInstance]) -> int:
    """find_next_ret_chain: the length the stack has once the innermost chain (the
    instance on top and those it is chained to) is popped."""
    i = len(stack) - 1
    while stack[i].chained:
        i -= 1
    return i

"""What `instances` and `stack` show of uprobes: the user return instances of each task,
and the user stack slots that hold the uretprobe trampoline."""
from __future__ import annotations

from ..machine.userspace import USER_RANGES


def uprobe_engine(machine):
    """The machine's uprobes engine if it has been made (a probe was registered), else None."""
    return machine.__dict__.get("_uprobes")


def is_user_stack(machine) -> bool:
    rsp = machine.reg("rsp")
    return machine.userspace is not None and any(lo <= rsp < hi for lo, hi in USER_RANGES)


def render_user_instances(session) -> tuple[list[str], list[dict]]:
    """Each task's return instances (struct return_instance), innermost first."""
    engine = uprobe_engine(session.machine)
    if engine is None:
        return [], []
    out = session.out
    lines, data = [], []
    for utask in sorted(engine.utasks.values(), key=lambda u: u.pid):
        if not utask.return_instances:
            continue
        lines.append(out.style(f"uprobe_task of {utask.comm}-{utask.pid} (task_struct 0x{utask.task:x}): "
                               f"{utask.depth} return instance(s), depth limit 64", "header"))
        for depth, ri in enumerate(reversed(utask.return_instances)):
            prog = ri.entry.program
            names = ", ".join(c.name or repr(c) for c in ri.entry.consumers) or "(unregistered)"
            chained = " chained (tail call: shares the return address below)" if ri.chained else ""
            lines.append(f"  #{depth} {prog.describe(ri.func)} [{prog.name}] ({names}): returns to "
                         f"{prog.describe(ri.orig_ret_vaddr)} (0x{ri.orig_ret_vaddr:x}); stack slot "
                         f"0x{ri.stack:x} holds the trampoline{chained}")
            data.append({"pid": utask.pid, "function": prog.describe(ri.func), "ret_addr": ri.orig_ret_vaddr,
                         "stack_slot": ri.stack, "chained": ri.chained})
    return lines, data


def render_user_stack(session, count: int) -> tuple[list[str], list[dict]]:
    """The user stack from rsp: the slots a uretprobe hijacked marked with their instance."""
    m = session.machine
    out = session.out
    rsp = m.reg("rsp")
    engine = uprobe_engine(m)
    owners = {}
    task = m.tasks.current()
    if engine is not None:
        for utask in engine.utasks.values():
            if task is not None and utask.pid == task.pid:
                owners = {ri.stack: ri for ri in utask.return_instances}
    who = f"{task.label} (user stack)" if task else "the user stack"
    lines = [out.style(f"Stack of {who}: rsp 0x{rsp:x}; up to {count} slot(s) of 8 bytes", "header")]
    data = []
    for i in range(count):
        addr = rsp + 8 * i
        try:
            value = int.from_bytes(m.userspace.read_virtual(addr, 8), "little")
        except Exception:  # noqa: BLE001 - the top of the stack
            break
        ri = owners.get(addr)
        if ri is not None:
            text = out.style(f"uretprobe trampoline ([uprobes] page): hijacked by {ri.entry.program.describe(ri.func)}, "
                             f"really returns to {ri.entry.program.describe(ri.orig_ret_vaddr)}", "planted")
        else:
            text = m.symbols.format(value) if m.symbols.format(value) != f"0x{value:x}" else ""
        mark = "<- rsp" if i == 0 else ""
        lines.append(f"  rsp{8 * i:+#06x}  0x{addr:016x}: 0x{value:016x}  {mark:<7} {text}".rstrip())
        data.append({"addr": addr, "value": value, "hijacked": ri is not None})
    return lines, data

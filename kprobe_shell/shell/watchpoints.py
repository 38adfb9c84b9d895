"""gdb's watch, rwatch and awatch for the shell, on the machine's data watchpoints
(machine/debug.py: a memory hook on the watched bytes only).

The hook stops the guest at the accessing instruction before it completes; the stop is
then finished as x86 reports a data breakpoint (a trap after the instruction): the
instruction is run alone, and gdb's report is made from the bytes before and after it.
A `watch` whose write leaves the value as it was goes on silently, as gdb's does.
"""
from __future__ import annotations

from ..machine import StopReason
from ..tracing.cvalue import Value
from .gdbvalues import context, frame_line, gdb_state, printer, selected_frame, source_line

#: gdb's names of the three kinds, by the access they stop on.
TITLES = {"write": "Hardware watchpoint", "read": "Hardware read watchpoint",
          "access": "Hardware access (read/write) watchpoint"}


def create_watchpoint(session, up):
    """(Re)plant a watchpoint UserProbe (kind w) on the session's machine."""
    m = session.machine
    spec = up.spec
    access = spec["access"]
    state = gdb_state(session)

    def on_access(is_write: bool, address: int, size: int) -> bool:
        if not up.enabled or state.watch_muted or state.watch_hit is not None:
            return False
        state.watch_hit = up
        return True

    up.obj = m.debug.add_memory_watch(up.addr, up.addr + spec["size"], reads=access in ("read", "access"),
                                      writes=access in ("write", "access"), callback=on_access)
    spec["old"] = m.read(up.addr, spec["size"])  # a fresh machine (reset) starts from its own value
    return session.probes.add(up)


def breakpoint_details(up) -> str:
    """The Details column of `probes` for a breakpoint or watchpoint."""
    if up.kind == "w":
        text = f"{up.spec['access']} watchpoint {up.location} ({up.spec['size']} bytes)"
    else:
        text = "breakpoint" if up.kind == "b" else "temporary"
    cond = up.spec.get("condition")
    return f"{text} if {cond}" if cond else text


def finish_watch_stop(session, event):
    """After the guest stopped at a watched access: run that instruction, then report as
    gdb does (Old value/New value, or Value).  Returns (event, go on running?)."""
    state = gdb_state(session)
    up, state.watch_hit = state.watch_hit, None
    m = session.machine
    spec = up.spec
    before = m.read(up.addr, spec["size"])
    is_write = event.details["watch"][0]
    state.watch_muted = True
    try:
        with session.run_lock:
            after = m.debug.run_alone(m.cpu_id, 1)
    finally:
        state.watch_muted = False
    session.stop_event = after
    if after.reason is not StopReason.BUDGET:
        return after, False  # the instruction itself faulted or the guest halted: that is the news
    now = m.read(up.addr, spec["size"])
    old = spec.get("old", before)
    if is_write and now == old and spec["access"] == "write":
        return after, True   # gdb's watch stops on a change of value only
    up.hits += 1
    spec["old"] = now
    ctx = context(session)
    show = printer(ctx).value
    t = spec["ctype"]
    lines = ["", f"{TITLES[spec['access']]} {up.number}: {up.location}", ""]
    if is_write and now != old:
        lines += [f"Old value = {show(Value(t, old, up.addr))}", f"New value = {show(Value(t, now, up.addr))}"]
    else:
        lines.append(f"Value = {show(Value(t, now, up.addr))}")
    frame = selected_frame(session)
    lines += [frame_line(session, frame)[4:]] + [line for line in [source_line(session, frame)] if line]
    after.reason, after.message = StopReason.BREAKPOINT, f"watchpoint {up.number}"
    after.details["watchpoint_report"] = "\n".join(lines)
    return after, False

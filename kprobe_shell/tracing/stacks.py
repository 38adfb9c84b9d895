"""Stacks with trace events, and the trace as folded stacks and as a Chrome trace.

The stack of a hit is taken as ftrace's `stacktrace` option takes it on a kernel with frame
pointers: the probed address, then the return address of each frame along the rbp chain
(at a function's first instruction, before `push %rbp`, the caller's return address is
still at rsp).  A kretprobe replaces return addresses with its trampoline (or the booster's
stub); each such slot is resolved through the task's kretprobe instances, newest first, as
trampoline_probe_handler would resolve them, so no stack names kretprobe_trampoline.

`trace save --format folded` writes one line per distinct stack, root first, with its count
(Brendan Gregg's flamegraph.pl input); `--format chrome` writes the Chrome Trace Event
format (Perfetto, speedscope, chrome://tracing): a track per task, return-probe entry and
return pairs as nested slices, other hits as instants, and a lane per CPU.
"""
from __future__ import annotations

import json
from collections import Counter

from ..kprobes.narrate import StackFrameResolved
from ..machine import MachineError
from .trace import StackedTraceEvent


def _resolve(mgr, task: int, ret: int, hijacked: int) -> tuple[int, bool]:
    if mgr.is_trampoline(ret):
        real = mgr.real_return_address(task, hijacked)
        if real is not None:
            return real, True
    return ret, False


def unwind(machine, limit: int = 64, at_return: bool = False, ip: int | None = None) -> list[tuple[int, bool]]:
    """(address, resolved) frames of the current task by the frame-pointer chain; resolved
    frames held kretprobe_trampoline and show the real return address.

    `at_return`: the CPU stands in a kretprobe's trampoline, its handler running: the
    function has returned, its instance (the newest) holds where to, and the frame chain
    goes on from the caller's rbp.  `ip`: where the hit is (a probe's address), when the
    CPU is elsewhere (a jump-optimized probe's detour) or one byte on (past an int3).

    The registers are read as handlers see them (struct pt_regs)."""
    m = machine
    mgr = m.kprobes.kretprobes
    regs = m.kprobes.regs
    task = m.tasks.current_address()
    rbp = regs.rbp
    hijacked = 0
    if at_return:
        real = mgr.real_return_address(task, 0)
        frames = [(real if real is not None else regs.rip, real is not None)]
        hijacked = 1
    else:
        ip = regs.rip if ip is None else ip
        frames = [(ip, False)]
        # At a function's first instructions the frame is not built yet: the return address is at rsp.
        sym = m.symbols.containing(ip)
        if sym is not None and sym[1] <= 1:
            try:
                ret = m.read_u64(regs.rsp + (8 if sym[1] == 1 else 0))
            except MachineError:
                ret = 0
            # Only a return address into the image (or the trampoline) is a frame: _start's
            # "return address" is 0 or stack garbage.
            if ret and (m.image.is_text(ret) or mgr.is_trampoline(ret)):
                frames.append(_resolve(mgr, task, ret, hijacked))
                hijacked += frames[-1][1]
    seen = set()
    while rbp and len(frames) < limit and rbp not in seen:
        seen.add(rbp)
        try:
            ret = m.read_u64(rbp + 8)
            rbp = m.read_u64(rbp)
        except MachineError:
            break
        if not ret or not m.image.is_text(ret) and not mgr.is_trampoline(ret):
            break
        frame = _resolve(mgr, task, ret, hijacked)
        hijacked += frame[1]
        frames.append(frame)
    return frames


# ---------------------------------------------------------------------- recording
class StackRecorder:
    """ftrace's stacktrace option and per-event trigger for a session's trace events.

    While neither is set the session's emit_trace is its own method, untouched: a traced
    hit pays nothing.  While one is, emit_trace is this recorder's, which takes the stack
    of the hits that want one and hands the event on."""

    def __init__(self, session):
        self.session = session
        self.all_events = False        # set trace-stack on
        self.events: set[str] = set()  # trigger EVENT stacktrace
        self._names: dict[int, str] = {}

    def update(self) -> None:
        s = self.session
        if self.all_events or self.events:
            s.emit_trace = self.emit_trace
        else:
            s.__dict__.pop("emit_trace", None)

    def emit_trace(self, ev, up=None) -> None:
        if self.all_events or ev.event in self.events:
            ev = StackedTraceEvent.of(ev, self.stack(ev.kind == "r", up.addr if up is not None and ev.kind != "r" else None))
        type(self.session).emit_trace(self.session, ev, up)

    def stack(self, at_return: bool, ip: int | None) -> tuple[str, ...]:
        m = self.session.machine
        mgr = m.kprobes.kretprobes
        rip = m.kprobes.regs.rip
        at_return = at_return and (mgr.is_trampoline(rip) or mgr.is_trampoline(rip - 1))
        frames = unwind(m, at_return=at_return, ip=ip)
        names = self._names
        out = []
        for depth, (addr, resolved) in enumerate(frames):
            text = names.get(addr)
            if text is None:
                text = names[addr] = m.symbols.format(addr)
            out.append(text)
            if resolved and m.kprobes.narrator is not None:
                m.kprobes.narrate(StackFrameResolved(depth, addr))
        return tuple(out)


# ---------------------------------------------------------------------- folded stacks
def _function(frame: str) -> str:
    return frame.partition("+")[0]


def folded(events) -> str:
    """One line per distinct stack, root first (`caller;callee COUNT`), the most frequent first."""
    counts = Counter(";".join(_function(f) for f in reversed(ev.stack)) for ev in events if ev.stack)
    return "".join(f"{stack} {n}\n" for stack, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# ---------------------------------------------------------------------- Chrome Trace Event JSON
TASKS_PID, CPUS_PID = 1, 2  # two "processes": the tasks' tracks, the CPUs' lanes


def _us(ns: int) -> float:
    """Chrome traces count microseconds; the virtual clock's nanoseconds are kept as decimals."""
    return round(ns / 1000, 3)


def _entry_function(ev) -> str | None:
    """The function a kprobe hit enters (its probe sits on the first byte), else None."""
    where = ev.where
    return where.partition("+")[0] if "+0x0/" in where and "<-" not in where else None


def chrome_trace(events) -> dict:
    """The trace as a Chrome Trace Event document: per task, each return probe's
    return closes the newest open entry of its function, entries left open are closed
    where their parent closes (or at the end) and marked unfinished."""
    out: list[dict] = []
    open_by_task: dict[int, list[tuple[str, object]]] = {}
    returns = {ev.where.rpartition(" <- ")[2] for ev in events if ev.kind == "r"}
    tasks: dict[int, str] = {}
    last_ns = 0

    def close_unfinished(stack, upto: int, end_ns: int) -> None:
        while len(stack) > upto:
            name, start = stack.pop()
            out.append({"name": name, "ph": "X", "pid": TASKS_PID, "tid": start.pid, "ts": _us(start.time_ns),
                        "dur": _us(end_ns - start.time_ns), "cat": "function",
                        "args": {"entry": start.event + ":" + start.args, "unfinished": True}})

    for ev in events:
        ts = _us(ev.time_ns)
        last_ns = max(last_ns, ev.time_ns)
        tasks[ev.pid] = ev.comm
        out.append({"name": ev.event, "ph": "i", "s": "t", "pid": CPUS_PID, "tid": ev.cpu, "ts": ts,
                    "args": {"task": f"{ev.comm}-{ev.pid}"}})
        stack = open_by_task.setdefault(ev.pid, [])
        func = _entry_function(ev)
        if func is not None and func in returns:
            stack.append((func, ev))
            continue
        if ev.kind == "r":
            func = ev.where.rpartition(" <- ")[2]
            at = next((i for i in range(len(stack) - 1, -1, -1) if stack[i][0] == func), None)
            if at is not None:
                _name, start = stack[at]
                close_unfinished(stack, at + 1, ev.time_ns)
                stack.pop()
                out.append({"name": func, "ph": "X", "pid": TASKS_PID, "tid": ev.pid, "ts": _us(start.time_ns),
                            "dur": _us(ev.time_ns - start.time_ns), "cat": "function",
                            "args": {"entry": start.event + ":" + start.args, "return": ev.event + ":" + ev.args}})
                continue
        out.append({"name": ev.event, "ph": "i", "s": "t", "pid": TASKS_PID, "tid": ev.pid, "ts": ts,
                    "args": {"where": ev.where, "args": ev.args.strip(), **({"stack": list(ev.stack)} if ev.stack else {})}})
    for stack in open_by_task.values():
        close_unfinished(stack, 0, last_ns)
    meta = [{"name": "process_name", "ph": "M", "pid": TASKS_PID, "args": {"name": "tasks"}},
            {"name": "process_name", "ph": "M", "pid": CPUS_PID, "args": {"name": "CPUs"}}]
    meta += [{"name": "thread_name", "ph": "M", "pid": TASKS_PID, "tid": pid, "args": {"name": f"{comm}-{pid}"}}
             for pid, comm in sorted(tasks.items())]
    meta += [{"name": "thread_name", "ph": "M", "pid": CPUS_PID, "tid": cpu, "args": {"name": f"CPU {cpu}"}}
             for cpu in sorted({ev.cpu for ev in events})]
    return {"traceEvents": meta + out, "displayTimeUnit": "ns"}


def chrome_json(events) -> str:
    return json.dumps(chrome_trace(events), indent=None, separators=(",", ":")) + "\n"

"""Python handler files: probes written as Python functions, loaded with `handlers FILE.py`.

    # opens.py
    from kprobe_shell.handlers import (kprobe, kretprobe, jprobe, comm, read_string, read_struct,
                                       retval, emit, count, hist, Kprobe)

    @kprobe("do_sys_open")
    def on_open(p, regs):
        name = read_string(regs.si)
        emit(filename=name, flags=regs.dx & 0xffffffff)
        count("opens", key=comm())

    @kretprobe("do_sys_open", maxactive=4)
    def on_return(ri, regs):
        hist("fd", retval())

    @jprobe("ip_queue_xmit")
    def on_xmit(skb, ipfragok):            # the probed call's arguments, by position
        sk = read_struct(skb, "struct sk_buff")
        emit(len=sk.len)

    def init(machine):                      # optional, like a module's init function
        machine.register_kprobe(Kprobe("do_fork", pre_handler=...))

The signatures are the kernel's: a kprobe handler gets (p, regs), a kretprobe handler and
its entry handler (ri, regs), a jprobe's function the probed arguments.  Helpers that read
the guest (read_string, read_struct, current, comm ...) work anywhere in a handler;
`emit` writes one ftrace-format trace line under the probe's event name, and count/hist/...
update bpftrace-style maps that the shell prints with `maps` and when the guest halts.

Each probe of a file is a numbered probe of the shell (`probes`), counted and listed like
any other, re-created on `reset`/`load`; loading the file again replaces its probes.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable

from .kprobes.core import Kprobe
from .kprobes.jprobes import Jprobe
from .kprobes.kretprobes import Kretprobe
from .tracing.maps import MapError, MapStore
from .tracing.structs import StructError, StructView, layout_from_offsets, struct_layouts

__all__ = [
    "HandlerUsageError", "ProbeRequest",
    "kprobe", "kretprobe", "jprobe",
    "current", "comm", "pid", "cpu", "retval", "symbol",
    "read_bytes", "read_int", "read_u8", "read_u16", "read_u32", "read_u64", "read_string", "read_struct",
    "emit",
    "count", "hist", "lhist", "avg", "stats", "sum_", "min_", "max_",
    "Kprobe", "Jprobe", "Kretprobe", "StructError", "MapError",
]


class HandlerUsageError(Exception):
    """A helper used where it makes no sense (emit() outside a handler, a bad decorator)."""


# ---------------------------------------------------------------------- what a file asks for
@dataclass
class ProbeRequest:
    """One probe a handler file asked for, kept so it can be registered again after reset."""

    kind: str                       # k (kprobe), j (jprobe), r (kretprobe), u (uprobe), ur (uretprobe)
    target: str                     # "do_fork", "do_sys_open+0x4", "0x1027d0"
    handler: Callable | None        # k: pre_handler; j: the entry; r: the return handler
    where: str                      # "FILE:LINE" of the decorator or register_* call
    name: str | None = None         # the event name (default: the function's name)
    maxactive: int = 0
    entry_handler: Callable | None = None
    post_handler: Callable | None = None
    fault_handler: Callable | None = None
    obj: object = None              # the user's own Kprobe/Jprobe/Kretprobe (register_* calls)

    @property
    def default_name(self) -> str:
        fn = self.handler or self.entry_handler
        name = getattr(fn, "__name__", "") if fn is not None else ""
        if not name.isidentifier() or name == "<lambda>":
            base = self.target.split("+")[0].strip()
            name = f"{'r' if self.kind == 'r' else 'p'}_{base}" if base.isidentifier() else f"probe_{self.kind}"
        return name


class _Collector:
    """The requests of the file being loaded, in the order they were made."""

    def __init__(self, path: str):
        self.path = path
        self.requests: list[ProbeRequest] = []


_collecting: list[_Collector] = []


def _caller_where(depth: int = 2) -> str:
    frame = sys._getframe(depth)
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def _record(req: ProbeRequest) -> None:
    if _collecting:
        _collecting[-1].requests.append(req)


def _target_text(target) -> str:
    if isinstance(target, bool) or not isinstance(target, (str, int)):
        raise HandlerUsageError(
            f"a probe target is a symbol, 'symbol+offset' or an address, not {type(target).__name__}"
            " (write @kprobe(\"do_fork\"), with the parentheses)")
    return hex(target) if isinstance(target, int) else target


def _decorator(kind: str, target, **kw):
    text = _target_text(target)
    where = _caller_where(3)

    def deco(fn: Callable) -> Callable:
        if not callable(fn):
            raise HandlerUsageError(f"@{_KIND_WORD[kind]}(...) decorates a function, not {fn!r}")
        req = ProbeRequest(kind, text, fn, where, **kw)
        fn.__dict__.setdefault("__probe_requests__", []).append(req)
        _record(req)
        return fn

    return deco


_KIND_WORD = {"k": "kprobe", "j": "jprobe", "r": "kretprobe", "u": "uprobe", "ur": "uretprobe"}


def kprobe(target, *, name: str | None = None, post_handler: Callable | None = None,
           fault_handler: Callable | None = None):
    """@kprobe("sym"), @kprobe("sym+0x4"), @kprobe(0x1027d0): the function is the pre_handler,
    called as fn(p, regs) when the int3 is hit (return non-zero only if you changed rip)."""
    return _decorator("k", target, name=name, post_handler=post_handler, fault_handler=fault_handler)


def kretprobe(target, *, maxactive: int = 0, entry_handler: Callable | None = None, name: str | None = None):
    """@kretprobe("sym", maxactive=N, entry_handler=fn): the function runs at each return as
    fn(ri, regs); entry_handler(ri, regs) runs at the call and may stash data in ri.data.
    maxactive 0 means the kernel's default (max(10, 2*NR_CPUS)); calls beyond it are missed."""
    if isinstance(maxactive, bool) or not isinstance(maxactive, int) or maxactive < 0:
        raise HandlerUsageError(f"maxactive must be an integer >= 0, not {maxactive!r}")
    return _decorator("r", target, maxactive=maxactive, entry_handler=entry_handler, name=name)


def jprobe(target, *, name: str | None = None):
    """@jprobe("sym"): the function is entered with the probed call's arguments by position
    (named and typed from DWARF when the image has it), like a jprobe handler with the
    function's own prototype.  Its return value is ignored (jprobe_return())."""
    return _decorator("j", target, name=name)


def uprobe(target: str, *, name: str | None = None):
    """@uprobe("./prog:func"), @uprobe("./prog:func+0x4"), @uprobe("./prog:0x1136") (a file
    offset): the function runs as fn(up, regs) at each hit in any process running the
    program, before the probed instruction (regs.rip is the probed address)."""
    return _decorator("u", target, name=name)


def uretprobe(target: str, *, maxactive: int = 64, entry_handler: Callable | None = None, name: str | None = None):
    """@uretprobe("./prog:func"): fn(ri, regs) at each return (ri.ret_addr, ri.func, ri.pid;
    regs.rax the value); entry_handler(ri, regs) at the call.  maxactive (1-64) caps the
    probe's return instances per task; 64 is Linux's MAX_URETPROBE_DEPTH per task."""
    if isinstance(maxactive, bool) or not isinstance(maxactive, int) or not 1 <= maxactive <= 64:
        raise HandlerUsageError(f"maxactive must be an integer from 1 to 64, not {maxactive!r}")
    return _decorator("ur", target, maxactive=maxactive, entry_handler=entry_handler, name=name)


class MachineProxy:
    """The `machine` a file's init(machine) gets: register_* record probes of the file (all
    registered together, or none), everything else is the session's current machine."""

    def __init__(self, session, collector: _Collector):
        self._session = session
        self._collector = collector

    def _add(self, kind: str, obj) -> object:
        where = _caller_where(3)
        kp = obj.kp if kind != "k" else obj
        if kp.symbol_name is not None:
            target = kp.symbol_name + (f"+0x{kp.offset:x}" if kp.offset else "")
        elif kp.addr is not None:
            target = hex(kp.addr)
        else:
            raise HandlerUsageError("a probe needs symbol_name or addr")
        if kind == "k":
            req = ProbeRequest("k", target, obj.pre_handler, where, name=obj.name, post_handler=obj.post_handler,
                               fault_handler=obj.fault_handler, obj=obj)
        elif kind == "j":
            if not callable(obj.entry):
                raise HandlerUsageError("a handler file's jprobe needs a Python callable as entry "
                                        "(guest handlers: use the shell's `jprobe SYM HANDLER`)")
            req = ProbeRequest("j", target, obj.entry, where, name=obj.name, obj=obj)
        else:
            req = ProbeRequest("r", target, obj.handler, where, name=obj.name, maxactive=obj.requested_maxactive,
                               entry_handler=obj.entry_handler, obj=obj)
        self._collector.requests.append(req)
        return obj

    def register_kprobe(self, p: Kprobe) -> Kprobe:
        return self._add("k", p)

    def register_jprobe(self, jp: Jprobe) -> Jprobe:
        return self._add("j", jp)

    def register_kretprobe(self, rp: Kretprobe) -> Kretprobe:
        return self._add("r", rp)

    def register(self, probe):
        kind = "j" if isinstance(probe, Jprobe) else "r" if isinstance(probe, Kretprobe) else "k"
        return self._add(kind, probe)

    def __getattr__(self, name: str):
        if name in ("run", "stop_guest", "request_stop"):
            # The file is being loaded between two commands: the guest is not the file's to run.
            raise HandlerUsageError(f"init(machine) cannot call machine.{name}(): use the shell's run/continue")
        return getattr(self._session.machine, name)


# ---------------------------------------------------------------------- the hit being handled
@dataclass
class HitContext:
    session: object
    up: object = None          # the shell's UserProbe (None while the file loads)
    ri: object = None          # the kretprobe instance in a return handler
    maps: MapStore | None = None
    extra: dict = field(default_factory=dict)

    @property
    def machine(self):
        return self.session.machine


_hits: list[HitContext] = []


def _ctx(what: str, need_probe: bool = False) -> HitContext:
    if not _hits or (need_probe and _hits[-1].up is None):
        raise HandlerUsageError(f"{what}() works inside a probe handler of a file loaded with `handlers`")
    return _hits[-1]


class active:
    """Context manager: helpers inside refer to this session (and probe, if any)."""

    def __init__(self, ctx: HitContext):
        self.ctx = ctx

    def __enter__(self):
        _hits.append(self.ctx)
        return self.ctx

    def __exit__(self, *exc):
        _hits.pop()
        return False


class collecting:
    """Context manager: decorators and register_* calls inside record into a collector."""

    def __init__(self, path: str):
        self.collector = _Collector(path)

    def __enter__(self) -> _Collector:
        _collecting.append(self.collector)
        return self.collector

    def __exit__(self, *exc):
        _collecting.pop()
        return False


# ---------------------------------------------------------------------- helpers: the guest
def current():
    """The current task (comm, pid, address) — `current` in the kernel."""
    return _ctx("current").machine.tasks.current()


def comm() -> str:
    t = current()
    return t.comm if t else ""


def pid() -> int:
    t = current()
    return t.pid if t else -1


def cpu() -> int:
    t = current()
    return t.cpu if t else 0


def retval() -> int:
    """In a kretprobe handler: the return value (rax), signed as a C long."""
    rax = _ctx("retval").machine.reg("rax")
    return rax - (1 << 64) if rax >> 63 else rax


def symbol(addr: int) -> str:
    """An address as sym+0xoff/0xsize, as ftrace's %pS and the `symbol` fetch type."""
    return _ctx("symbol").machine.symbols.format(addr)


def read_bytes(addr: int, size: int) -> bytes:
    return _ctx("read_bytes").machine.read(addr, size)


def read_int(addr: int, size: int = 8, signed: bool = False) -> int:
    if size not in (1, 2, 4, 8):
        raise HandlerUsageError(f"read_int size is 1, 2, 4 or 8, not {size}")
    return int.from_bytes(read_bytes(addr, size), "little", signed=signed)


def read_u8(addr: int) -> int:
    return read_int(addr, 1)


def read_u16(addr: int) -> int:
    return read_int(addr, 2)


def read_u32(addr: int) -> int:
    return read_int(addr, 4)


def read_u64(addr: int) -> int:
    return read_int(addr, 8)


def read_string(addr: int, limit: int = 256) -> str:
    """The NUL-terminated string at addr (at most limit-1 bytes, like ftrace's :string)."""
    raw = _ctx("read_string").machine.read_cstring(addr, limit)
    return raw[: limit - 1].decode("utf-8", errors="backslashreplace")


def read_struct(addr: int, type_name: str | None = None, *, fields: dict | None = None) -> StructView:
    """The struct at addr: `read_struct(p, "struct file")` lays it out from DWARF;
    `read_struct(p, fields={"len": (32, "u32"), "name": (0, "string")})` by offsets
    (types u8..u64, s8..s64, ptr, string, charN) when the image has no DWARF."""
    machine = _ctx("read_struct").machine
    if fields is not None:
        return StructView(machine, layout_from_offsets(fields), addr)
    if not type_name:
        raise HandlerUsageError('read_struct needs a type ("struct file") or fields={...}')
    layouts = struct_layouts(machine.image)
    name = type_name.strip()
    for prefix in ("struct ", "union "):
        if name.startswith(prefix):
            name = name[len(prefix):].strip()
    if name not in layouts:
        if not layouts:
            raise StructError(f"the image has no DWARF: give the layout with read_struct(addr, fields={{...}})")
        import difflib

        close = difflib.get_close_matches(name, list(layouts), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise StructError(f"no struct '{name}' in the image's debug info{hint}")
    return StructView(machine, layouts[name], addr, layouts)


# ---------------------------------------------------------------------- helpers: output
def _format_field(value) -> str:
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, bytes):
        return '"' + value.decode("utf-8", errors="backslashreplace") + '"'
    if value is None:
        return "(fault)"
    return str(value)


def _plain(value):
    """What --json, filters and map lines see of an emitted field: ints and strings as
    they are, bytes decoded, anything else (a struct view, a list) as its text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return str(value)


def emit(*text, **fields) -> None:
    """One trace line for this hit, in ftrace's format under the probe's event name:
    emit(filename=name, flags=f) -> `... on_open: (do_sys_open+0x0/0xba) filename="/etc/motd" flags=32768`.
    Positional text goes first, as is; fields are name=value (strings quoted).  The fields
    are also the event's values in --json output and for `@map[...] = ... on EVENT`."""
    ctx = _ctx("emit", need_probe=True)
    session, up = ctx.session, ctx.up
    parts = [str(t) for t in text] + [f"{k}={_format_field(v)}" for k, v in fields.items()]
    args = "".join(" " + p for p in parts)
    values = {k: _plain(v) for k, v in fields.items()}
    from .shell.probe_handlers import trace_event

    session.emit_trace(trace_event(session, up, hit_where(ctx), args, values), up)


def hit_where(ctx: HitContext) -> str:
    """ftrace's (sym+off/size) of an entry hit, or (return site <- function) of a return."""
    machine = ctx.machine
    fmt = machine.symbols.format
    if ctx.up.kind in ("u", "ur"):  # uprobe_events' lines: (0x401136), (0x4011a0 <- 0x401136)
        return f"0x{ctx.ri.ret_addr:x} <- 0x{ctx.ri.func:x}" if ctx.ri is not None else f"0x{ctx.up.addr:x}"
    if ctx.ri is not None:
        func = machine.symbols.containing(ctx.up.addr)[0].name
        return f"{fmt(ctx.ri.ret_addr)} <- {func}"
    return fmt(ctx.up.addr)


# ---------------------------------------------------------------------- helpers: maps
def _maps(what: str) -> MapStore:
    ctx = _ctx(what, need_probe=True)
    return ctx.session.maps


def count(name: str, key=None) -> None:
    """@name[key] = count(): one more for this key (key: a value, a tuple of them, or None)."""
    _maps("count").update(name, "count", key)


def sum_(name: str, value: int, key=None) -> None:
    """@name[key] = sum(value)."""
    _maps("sum").update(name, "sum", key, value)


def min_(name: str, value: int, key=None) -> None:
    _maps("min").update(name, "min", key, value)


def max_(name: str, value: int, key=None) -> None:
    _maps("max").update(name, "max", key, value)


def avg(name: str, value: int, key=None) -> None:
    _maps("avg").update(name, "avg", key, value)


def stats(name: str, value: int, key=None) -> None:
    """@name[key] = stats(value): count, average and total."""
    _maps("stats").update(name, "stats", key, value)


def hist(name: str, value: int, key=None) -> None:
    """@name[key] = hist(value): power-of-2 histogram."""
    _maps("hist").update(name, "hist", key, value)


def lhist(name: str, value: int, min: int, max: int, step: int, key=None) -> None:  # noqa: A002
    """@name[key] = lhist(value, min, max, step): linear histogram."""
    store = _maps("lhist")
    store.update(name, "lhist", key, value, MapStore.check_lhist(min, max, step))


# bpftrace's own names, for `from kprobe_shell import handlers as h; h.sum(...)`; not in
# __all__ so that `import *` does not shadow Python's builtins in a handler file.
sum = sum_  # noqa: A001
min = min_  # noqa: A001
max = max_  # noqa: A001

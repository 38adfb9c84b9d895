"""The user's probes and breakpoints: numbering, creation, deletion.

`kprobe`, `kretprobe`, `jprobe`, `break`, kprobe_events lines and handler files each make
a UserProbe; this module numbers them (gdb style: one sequence for probes and
breakpoints, never reused), registers them on the machine, re-creates them on a fresh
machine after `reset`/`load`, and deletes them.  The command modules only parse.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..numbers import NumberError, parse_int
from .. import handlers as H
from ..api import Jprobe, Kprobe, Kretprobe, ProbeError, Uprobe, Uretprobe
from ..kprobes.core import boundary_refusal
from ..machine import StopReason
from ..machine.abi import ABI_ARG_REGISTERS
from ..tracing import fetch as F
from ..tracing.fetchprog import compile_args
from ..tracing.probe_events import (ProbeEventDef, ProbeEventError, default_event_name, is_uprobe_point,
                                    parse_probe_event)
from ..uprobes.types import MAX_URETPROBE_DEPTH
from .probe_handlers import (MachineFetchContext, first_args, in_hit_context, make_jprobe_trace_entry,
                             make_kprobe_handler, make_kprobe_post_handler, make_kretprobe_handler,
                             make_uprobe_handler, make_uretprobe_handler, pre_handler_of)
from .crecord import compile_for_c
from .registry import CommandError

if TYPE_CHECKING:
    from .session import Session


@dataclass
class UserProbe:
    """A numbered entry of `probes`: a probe or a breakpoint and what the user attached to it."""

    number: int
    kind: str               # k, j, r (probes), b (breakpoint), t (temporary breakpoint), w (watchpoint)
    location: str           # as the user wrote it
    addr: int
    obj: object = None      # Kprobe / Jprobe / Kretprobe, or the hook handle of a breakpoint
    event: str = ""
    spec: dict = field(default_factory=dict)  # how to re-create it after reset/load
    commands: list[str] = field(default_factory=list)
    silent: bool = False
    hits: int = 0           # breakpoints count here; probes count on their kprobe
    enabled: bool = True
    #: A kprobe's C program (crecord.py; bytes), or why its hits stay in Python (str).
    c_program: bytes | str = "not the shell's trace handler"

    @property
    def is_breakpoint(self) -> bool:
        """A breakpoint or a watchpoint: it stops the guest, it traces nothing."""
        return self.kind in ("b", "t", "w")


class UserProbes(dict):
    """Probe number -> UserProbe, and the next number to give (numbers are never reused)."""

    def __init__(self) -> None:
        super().__init__()
        self.next_number = 1

    def add(self, up: UserProbe) -> UserProbe:
        """Number `up` (unless it keeps its number, re-created after reset) and file it."""
        if not up.number:
            up.number = self.next_number
            self.next_number += 1
        self[up.number] = up
        if hasattr(up.obj, "number"):
            up.obj.number = up.number
            kp = getattr(up.obj, "kp", None)
            if kp is not None:
                kp.number = up.number
        return up

    def lookup(self, text: str) -> UserProbe:
        """The probe or breakpoint a user names by number (`3`, `#3`, `$3`)."""
        try:
            n = parse_int(text.lstrip("#$"))
        except NumberError:
            raise CommandError(f"'{text[:40]}' is not a probe number") from None
        if n not in self:
            have = ", ".join(str(k) for k in sorted(self)) or "none"
            raise CommandError(f"no probe or breakpoint number {n} (existing: {have})")
        return self[n]

    def sorted(self) -> list[UserProbe]:
        return [self[n] for n in sorted(self)]


# ---------------------------------------------------------------------- creating probes
#: `kprobe FUNC`'s event: no arguments (its record is trace_entry and __probe_ip).
_NO_ARGS = ProbeEventDef(kind="p", group="kprobes", event="")

def new_probe(session: Session, kind: str, location: str, point: tuple[str | None, int, int],
              spec: dict) -> UserProbe:
    """A probe (k, j, r) or breakpoint (b, t) at LOCATION, already parsed into
    (symbol, offset, address), registered and numbered."""
    sym, off, addr = point
    spec.update(symbol=sym, offset=off, addr=addr)
    if kind == "r" and off:
        raise CommandError("a return probe goes on a function's entry: no offset")
    if kind == "j" and off:
        raise CommandError(f"a jprobe goes on a function's entry (offset 0), not {sym}+0x{off:x}")
    up = UserProbe(number=0, kind=kind, location=location, addr=addr, spec=spec,
                   event=unique_event_name(session, default_event_name("r" if kind == "r" else "p", sym, off, addr)))
    if kind in ("b", "t"):
        if not session.machine.image.is_text(addr):
            raise CommandError(f"0x{addr:x} is not in the image's text")
        why = boundary_refusal(session.machine.kprobes, addr)
        if why is not None:  # an int3 there would change the instruction it lands in
            raise CommandError(f"Cannot insert breakpoint at 0x{addr:x}: {why}")
        return _create_breakpoint(session, up)
    try:
        return create_from_spec(session, up)
    except ProbeError as exc:
        raise CommandError(str(exc)) from None


def create_from_spec(session, up: UserProbe) -> UserProbe:
    """(Re)create a user probe on the session's machine from its spec."""
    m = session.machine
    spec = up.spec
    kind = up.kind
    if kind in ("b", "t"):
        return _create_breakpoint(session, up)
    if kind == "w":
        from .watchpoints import create_watchpoint

        return create_watchpoint(session, up)
    if spec.get("request") is not None:
        return create_handler_probe(session, up)
    if spec.get("line"):
        return create_probe_event(session, spec["line"], number=up.number, commands=up.commands, silent=up.silent,
                                  maxactive=spec.get("maxactive"))
    sym, off = spec.get("symbol"), spec.get("offset", 0)
    addr = spec.get("addr")
    if kind == "k":
        obj = Kprobe(sym, off, addr=None if sym else addr)
        up.obj = obj
        obj.pre_handler = make_kprobe_handler(session, up)
        if spec.get("post"):
            obj.post_handler = make_kprobe_post_handler(session, up)
        else:
            up.c_program = compile_for_c(m, _NO_ARGS)
        m.register_kprobe(obj)
    elif kind == "j":
        entry = spec["entry"]
        if entry == "-":
            obj = Jprobe(sym, make_jprobe_trace_entry(session, up), addr=None if sym else addr)
        else:
            obj = Jprobe(sym, entry, addr=None if sym else addr)
        up.obj = obj
        m.register_jprobe(obj)
    elif kind == "r":
        obj = Kretprobe(sym, None, spec.get("maxactive", 0), addr=None if sym else addr, unsafe=spec.get("unsafe", False))
        up.obj = obj
        obj.handler = make_kretprobe_handler(session, up)
        m.register_kretprobe(obj)
    else:
        raise CommandError(f"unknown probe kind {kind}")
    up.addr = obj.addr
    if not up.enabled:
        m.disable_probe(obj)
    return session.probes.add(up)


def _create_breakpoint(session, up: UserProbe) -> UserProbe:
    m = session.machine

    def on_break(machine):
        if session._skip_break_once == up.addr:
            session._skip_break_once = None
            return
        if not up.enabled or _inside_probe_machinery(machine):
            return
        if up.spec.get("condition") and not condition_holds(session, up):
            return
        up.hits += 1
        if session._stop_at_break is not None:
            return  # two breakpoints on one address: the first one reports the stop
        machine.clock.uncount_current()  # the instruction runs after we continue, counted then
        session._stop_at_break = up
        machine.stop_guest(machine.stop_event(StopReason.BREAKPOINT, f"breakpoint {up.number}"))

    up.obj = m.add_code_hook(up.addr, on_break)
    return session.probes.add(up)


def _inside_probe_machinery(machine) -> bool:
    """A probe is being handled and the CPU is in the engine's own steps (an in-place
    single-step, the trampoline): not the guest's code.  A guest jprobe handler is guest
    code, and a breakpoint in it stops there, as gdb's do."""
    engine = machine.kprobes
    return engine.kprobe_running() and engine.jprobes.active is None


def condition_holds(session, up: UserProbe) -> bool:
    """gdb's `break LOC if COND`, evaluated in the frame that reached LOC; a condition that
    cannot be evaluated stops the guest and says why, as gdb does."""
    from .gdbvalues import condition_at_stop

    try:
        return condition_at_stop(session, up.spec["condition"])
    except CommandError as exc:
        session.out.print(f"Error in testing condition for breakpoint {up.number}:\n{exc}")
        return True


# ---------------------------------------------------------------------- kprobe_events lines
def _dwarf_resolver(image):
    """perf probe's by-name arguments: DWARF parameter -> its ABI location at entry (the
    kernel's, or a uprobe's program's own debug info)."""

    def resolve(symbol: str, name: str):
        params = image.parameters
        if not params and image.dwarf_error:
            return image.dwarf_error + ": name arguments by register (%di, ...)"
        if not params:
            return "the image has no DWARF debug info: name arguments by register (%di, ...)"
        plist = params.get(symbol)
        if plist is None:
            return f"no debug info for function '{symbol}'"
        for p in plist:
            if p.name == name:
                if p.index < len(ABI_ARG_REGISTERS):
                    return F.Register(ABI_ARG_REGISTERS[p.index])
                return F.Deref(8 * (p.index - len(ABI_ARG_REGISTERS) + 1), F.Register("rsp"))
        have = ", ".join(p.name for p in plist) or "none"
        return f"'{symbol}' has no parameter '{name}' (parameters: {have})"

    return resolve


def _dwarf_types(image, defn) -> None:
    """An untyped by-name argument takes its C type from DWARF, as perf probe does."""
    plist = {p.name: p for p in image.parameters.get(defn.symbol or "", [])}
    for arg in defn.args:
        p = plist.get(arg.text.split(":")[0].split("=")[-1])
        if p is None or ":" in arg.text or p.is_string:
            continue
        if p.type.endswith("*"):
            continue
        name = f"{'s' if p.signed else 'u'}{8 * p.size}"
        if name in F.FETCH_TYPES:
            arg.type = F.FETCH_TYPES[name]


# ---------------------------------------------------------------------- event names
# Event names are unique, as ftrace enforces: a default name already taken gets _1, _2 ...
# (perf probe's get_new_event_name); an explicit one that is taken is refused.
def event_taken(session, event: str, number: int = 0) -> bool:
    """Whether a probe other than NUMBER has EVENT (breakpoints trace nothing: no event)."""
    return any(up.event == event and up.number != number and not up.is_breakpoint
               for up in session.probes.values())


def unique_event_name(session, event: str, number: int = 0) -> str:
    """EVENT if free, else EVENT_1, EVENT_2 ... (NUMBER: the probe being re-created)."""
    if not event_taken(session, event, number):
        return event
    i = 1
    while event_taken(session, f"{event}_{i}", number):
        i += 1
    return f"{event}_{i}"


def with_event_name(line: str, event: str) -> str:
    """A kprobe_events line with EVENT named explicitly in its head (its group kept)."""
    head, _, rest = line.partition(" ")
    kind, colon, name = head.partition(":")
    group = name.partition("/")[0] + "/" if colon and "/" in name else ""
    return f"{kind}:{group}{event} {rest}"


def create_probe_event(session: Session, line: str, *, number: int = 0, commands=None, silent=False,
                       maxactive: int | None = None) -> UserProbe:
    m = session.machine
    image = _uprobe_image(m, line) or m.image
    try:
        defn = parse_probe_event(line, resolve_param=_dwarf_resolver(image))
    except ProbeEventError as exc:
        raise CommandError(str(exc)) from None
    if defn.kind == "-":
        raise CommandError("internal: delete handled by the caller")
    if ":" not in line.split()[0]:
        # A default name already taken gets a new one, as perf probe names a second probe.
        event = unique_event_name(session, defn.event, number)
        if event != defn.event:
            line = with_event_name(line, event)
            defn.event = event
    for up in session.probes.values():
        if up.event == defn.event and up.number != number:
            raise CommandError(f"event '{defn.group}/{defn.event}' already exists (probe {up.number}); "
                               f"remove it first with -:{defn.event}")
    _dwarf_types(image, defn)
    is_return = defn.kind == "r"
    ctx = MachineFetchContext(m, is_return)
    program = compile_args(defn, ctx)  # fetch.render_args's text and values, compiled once

    def render(regs):
        return program()

    condition = None
    if defn.filter is not None:
        def condition(values):
            return F.match_filter(defn, ctx, values)

    if defn.is_uprobe:
        return _create_uprobe_event(session, defn, line, render, condition, number=number, commands=commands,
                                    silent=silent, maxactive=maxactive)
    if defn.symbol is not None:
        if defn.symbol not in m.symbols:
            raise CommandError(m.symbols.unknown_message(defn.symbol))
        addr = m.symbols[defn.symbol].address + defn.offset
        location = defn.symbol + (f"+0x{defn.offset:x}" if defn.offset else "")
    else:
        addr = defn.address
        location = f"0x{addr:x}"
    up = UserProbe(number=number, kind="r" if is_return else "k", location=location, addr=addr,
                   event=defn.event, spec={"line": line}, commands=list(commands or []), silent=silent)
    try:
        if is_return:
            obj = Kretprobe(defn.symbol, None, defn.maxactive, addr=None if defn.symbol else addr)
            up.obj = obj
            obj.handler = make_kretprobe_handler(session, up, render, condition)
            up.c_program = compile_for_c(m, defn)
            m.register_kretprobe(obj)
        else:
            obj = Kprobe(defn.symbol, defn.offset, addr=None if defn.symbol else addr)
            up.obj = obj
            obj.pre_handler = make_kprobe_handler(session, up, render, condition)
            up.c_program = compile_for_c(m, defn)
            m.register_kprobe(obj)
    except ProbeError as exc:
        raise CommandError(str(exc)) from None
    up.addr = obj.addr
    _describe_event(up, defn)
    return session.probes.add(up)


# ---------------------------------------------------------------------- uprobes
def uprobe_of_request(req: H.ProbeRequest, name: str = "") -> Uprobe:
    """The Uprobe or Uretprobe a handler file's @uprobe/@uretprobe asks for (its place read
    by the uprobe_events parser: PATH:FUNC[+OFF] or PATH:OFFSET)."""
    try:
        defn = parse_probe_event(f"p {req.target}")
    except ProbeEventError as exc:
        raise CommandError(str(exc)) from None
    if not defn.is_uprobe:
        raise CommandError(f"'{req.target}' is not a uprobe place: PATH:FUNC[+OFF] or PATH:OFFSET, "
                           "PATH with a slash (./prog)")
    place = dict(symbol_name=defn.symbol, symbol_offset=defn.offset) if defn.symbol else dict(offset=defn.address)
    if req.kind == "ur":
        return Uretprobe(defn.path, **place, maxactive=req.maxactive, name=name)
    return Uprobe(defn.path, **place, name=name)


def _uprobe_image(machine, line: str):
    """The program's ELF (its DWARF names the arguments) when line is a uprobe's."""
    words = line.split()
    if len(words) < 2 or not is_uprobe_point(words[1]):
        return None
    try:
        return machine.uprobes.program(words[1].rpartition(":")[0]).image
    except ProbeError as exc:
        raise CommandError(str(exc)) from None


def _register_user_probe(session, up: UserProbe, obj) -> None:
    """Register a Uprobe or Uretprobe for up: refused as a CommandError, placed at its vaddr."""
    up.obj = obj
    try:
        session.machine.register_uprobe(obj)
    except ProbeError as exc:
        raise CommandError(str(exc)) from None
    up.addr = obj.vaddr


def _describe_event(up: UserProbe, defn) -> None:
    """What a probe event keeps of its definition: its kprobe_events/uprobe_events line and
    the filter ftrace keeps in the event's own filter file; the fields `@map[...] =
    f(FIELD) on EVENT` may name (string or number); their types, which `trace save
    FILE.dat` defines."""
    up.spec["filter"] = str(defn.filter) if defn.filter is not None else ""
    up.spec["definition"] = defn.listing() + (f" if {up.spec['filter']}" if up.spec["filter"] else "")
    up.spec["fields"] = {a.name: "str" if a.type.kind in ("string", "char") else "int" for a in defn.args}
    up.spec["types"] = {a.name: str(a.type) for a in defn.args}


def _create_uprobe_event(session, defn, line: str, render, condition, *, number: int, commands, silent,
                         maxactive: int | None) -> UserProbe:
    """A uprobe_events line (or `uprobe`/`uretprobe`): a Uprobe or Uretprobe whose handler
    writes ftrace's uprobe line: `(0x401136)`, or `(0x4011a0 <- 0x401136)` on return."""
    is_return = defn.kind == "r"
    where = f"{defn.symbol}+0x{defn.offset:x}" if defn.symbol else f"0x{defn.address:x}"
    location = f"{defn.path}:{where}"
    kind = "ur" if is_return else "u"
    up = UserProbe(number=number, kind=kind, location=location, addr=0, event=defn.event,
                   spec={"line": line}, commands=list(commands or []), silent=silent)
    if maxactive is not None:
        up.spec["maxactive"] = maxactive
    place = dict(symbol_name=defn.symbol, symbol_offset=defn.offset) if defn.symbol else dict(offset=defn.address)
    if is_return:
        obj = Uretprobe(defn.path, **place, maxactive=maxactive or MAX_URETPROBE_DEPTH, name=defn.event)
        obj.handler = make_uretprobe_handler(session, up, render, condition)
    else:
        obj = Uprobe(defn.path, **place, name=defn.event)
        obj.handler = make_uprobe_handler(session, up, render, condition)
    _register_user_probe(session, up, obj)
    _describe_event(up, defn)
    return session.probes.add(up)


# ---------------------------------------------------------------------- handler files
def create_handler_probe(session, up: UserProbe) -> UserProbe:
    """Register (or, after reset/load, register again) one probe of a handler file."""
    m = session.machine
    spec = up.spec
    req: H.ProbeRequest = spec["request"]
    sym, off, addr = spec["symbol"], spec["offset"], spec["addr"]
    if sym is not None:
        if sym not in m.symbols:
            raise CommandError(m.symbols.unknown_message(sym))
        addr = m.symbols[sym].address + off
    # The user's own object (init(machine) + register_*) is registered the first time;
    # after reset/load a fresh one is built from the same handlers.
    obj = req.obj if (req.obj is not None and not spec.get("_obj_taken")) else None
    spec["_obj_taken"] = True
    where = dict(addr=None if sym else addr)
    if up.kind in ("u", "ur"):
        obj = uprobe_of_request(req, up.event)
        if up.kind == "u":
            obj.handler = pre_handler_of(session, up, req.handler)
        else:
            obj.handler = in_hit_context(session, up, req.handler, returns=True, commands=True)
            obj.entry_handler = in_hit_context(session, up, req.entry_handler) if req.entry_handler else None
        _register_user_probe(session, up, obj)
        return session.probes.add(up)
    if up.kind == "k":
        if obj is None:
            obj = Kprobe(sym, off, **where, name=up.event)
        obj.pre_handler = pre_handler_of(session, up, req.handler) if req.handler else None
        obj.post_handler = in_hit_context(session, up, req.post_handler) if req.post_handler else None
        obj.fault_handler = in_hit_context(session, up, req.fault_handler) if req.fault_handler else None
        up.obj = obj
        m.register_kprobe(obj)
    elif up.kind == "j":
        entry = in_hit_context(session, up, first_args(req.handler), commands=True)
        if obj is None:
            obj = Jprobe(sym, entry, **where, name=up.event)
        obj.entry = entry
        up.obj = obj
        m.register_jprobe(obj)
    else:
        handler = in_hit_context(session, up, req.handler, returns=True, commands=True) if req.handler else None
        entry = in_hit_context(session, up, req.entry_handler) if req.entry_handler else None
        if obj is None:
            obj = Kretprobe(sym, handler, req.maxactive, **where, entry_handler=entry, name=up.event)
        obj.handler, obj.entry_handler = handler, entry
        up.obj = obj
        m.register_kretprobe(obj)
    up.addr = obj.addr
    if not up.enabled:
        m.disable_probe(obj)
    return session.probes.add(up)


# ---------------------------------------------------------------------- describing and deleting
def describe_new(session, up: UserProbe) -> None:
    if up.kind in ("u", "ur"):
        obj = up.obj
        what = "Uretprobe" if up.kind == "ur" else "Uprobe"
        extra = f" maxactive={obj.maxactive}" if up.kind == "ur" else ""
        session.out.print(f"{what} {up.number} at 0x{up.addr:x}: {obj.program.describe(up.addr)} "
                          f"[{obj.program.name}, file offset 0x{obj.offset:x}] {up.event}{extra}")
        return
    what = {"k": "Kprobe", "j": "Jprobe", "r": "Kretprobe", "b": "Breakpoint", "t": "Temporary breakpoint"}[up.kind]
    others = [o for o in sorted(session.probes.values(), key=lambda o: o.number)
              if o.addr == up.addr and o is not up and o.is_breakpoint == up.is_breakpoint]
    if others:
        nums = ", ".join(str(o.number) for o in others)
        if up.is_breakpoint:
            session.out.print(f"Note: breakpoint {nums} also set at 0x{up.addr:x}.")
        else:
            session.out.print(f"Note: probe {nums} also at 0x{up.addr:x}: the probes share the address "
                              "(an aggregate kprobe runs each one's handlers).")
    extra = ""
    if up.kind == "r":
        extra = f" maxactive={up.obj.maxactive}"
    if up.kind == "j":
        extra = f" -> {up.obj.entry_label}"
    session.out.print(f"{what} {up.number} at 0x{up.addr:x}: {session.machine.symbols.format(up.addr)}{extra}")


def why_not_optimized(m, up) -> str | None:
    """Why the optimizer left a user probe as an int3 probe (None: optimized or n/a)."""
    if up.is_breakpoint or up.addr in m.kprobes.optimizer.active:
        return None
    entry = m.kprobes.get_kprobe(up.addr)
    return entry.optimize_refusal if entry is not None else None


def delete_user_probe(session, up: UserProbe) -> None:
    m = session.machine
    if up.is_breakpoint:
        m.remove_hook(up.obj)
    else:
        try:
            m.unregister(up.obj)
        except ProbeError as exc:  # e.g. `delete` in a probe's own commands (mid-hit)
            raise CommandError(str(exc)) from None
    session.probes.pop(up.number, None)
    session.drop_aggregations(up.number)

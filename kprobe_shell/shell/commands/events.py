"""Probe definitions in ftrace's kprobe_events language, typed at the prompt.

    p:myprobe do_sys_open dfd=%di filename=+0(%si):string flags=%dx:x32
    r4 do_sys_open $retval:s64
    p do_sys_open filename:string flags          (perf-probe style names, from DWARF)
    -:myprobe
"""
from __future__ import annotations

from ...api import Kprobe, Kretprobe, ProbeError
from ...machine import MachineError
from ...machine.image import ABI_ARG_REGISTERS
from ...tracing import fetch as F
from ...tracing.probe_events import ProbeEventError, parse_probe_event
from ..registry import CommandError, command
from ..session import UserProbe
from .probes import _describe_new, delete_user_probe, make_kprobe_handler, make_kretprobe_handler


class MachineFetchContext:
    """The FetchContext of the tracing module, read from the machine at a probe hit."""

    def __init__(self, machine, is_return: bool):
        self.machine = machine
        self.is_return = is_return

    def reg(self, name: str) -> int:
        from ...kprobes.regs import canonical_register

        return self.machine.reg(canonical_register(name) or name)

    def read_mem(self, addr: int, size: int) -> bytes:
        try:
            return self.machine.read(addr, size)
        except MachineError:
            raise F.FetchFault(addr) from None

    def symbol_address(self, name: str) -> int:
        return self.machine.symbols.lookup(name).address

    def symbolize(self, addr: int) -> str:
        return self.machine.symbols.format(addr)

    def comm(self) -> str:
        t = self.machine.tasks.current()
        return t.comm if t else ""

    def pid(self) -> int:
        t = self.machine.tasks.current()
        return t.pid if t else -1

    def retval(self) -> int:
        return self.machine.reg("rax")


def _dwarf_resolver(machine):
    """perf probe's by-name arguments: DWARF parameter -> its ABI location at entry."""

    def resolve(symbol: str, name: str):
        params = machine.image.parameters
        if not params and machine.image.dwarf_error:
            return machine.image.dwarf_error + ": name arguments by register (%di, ...)"
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


def _dwarf_types(machine, defn) -> None:
    """An untyped by-name argument takes its C type from DWARF, as perf probe does."""
    plist = {p.name: p for p in machine.image.parameters.get(defn.symbol or "", [])}
    for arg in defn.args:
        p = plist.get(arg.text.split(":")[0].split("=")[-1])
        if p is None or ":" in arg.text or p.is_string:
            continue
        if p.type.endswith("*"):
            continue
        name = f"{'s' if p.signed else 'u'}{8 * p.size}"
        if name in F.FETCH_TYPES:
            arg.type = F.FETCH_TYPES[name]


def create_probe_event(session, line: str, *, number: int = 0, commands=None, silent=False) -> UserProbe:
    m = session.machine
    try:
        defn = parse_probe_event(line, resolve_param=_dwarf_resolver(m))
    except ProbeEventError as exc:
        raise CommandError(str(exc)) from None
    if defn.kind == "-":
        raise CommandError("internal: delete handled by the caller")
    for up in session.probes.values():
        if up.event == defn.event and up.number != number:
            raise CommandError(f"event '{defn.group}/{defn.event}' already exists (probe {up.number}); "
                               f"remove it first with -:{defn.event}")
    _dwarf_types(m, defn)
    is_return = defn.kind == "r"
    ctx = MachineFetchContext(m, is_return)

    def render(regs):
        return F.render_args(defn, ctx)

    condition = None
    if defn.filter is not None:
        def condition(values):
            return F.match_filter(defn, ctx, values)

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
            m.register_kretprobe(obj)
        else:
            obj = Kprobe(defn.symbol, defn.offset, addr=None if defn.symbol else addr)
            up.obj = obj
            obj.pre_handler = make_kprobe_handler(session, up, render, condition)
            m.register_kprobe(obj)
    except ProbeError as exc:
        raise CommandError(str(exc)) from None
    up.addr = obj.addr
    up.spec["definition"] = defn.listing()
    # What `@map[...] = f(FIELD) on EVENT` may name: each argument, string or number.
    up.spec["fields"] = {a.name: "str" if a.type.kind in ("string", "char") else "int" for a in defn.args}
    return session.add_user_probe(up)


@command("probe-event", repeatable=False, group="probes", aliases=("kprobe_events",), args=("location", "text"),
         summary="define a probe in ftrace's kprobe_events language (p ..., r ..., -:EVENT)",
         usage="p[:[GRP/]EVENT] SYM[+offs]|ADDR [FETCHARGS] [if FILTER]\n"
               "       r[MAXACTIVE][:[GRP/]EVENT] SYM [FETCHARGS] [if FILTER]\n       -:[GRP/]EVENT",
         example="p do_sys_open dfd=%di filename=+0(%si):string flags=%dx:x32\n"
                 "p do_sys_open filename:string flags\nr do_sys_open $retval:s64\n"
                 "p:opens do_sys_open name=+0(%si):string if name ~ \"/etc/*\"\n-:opens")
def cmd_probe_event(session, rest: str):
    """Exactly the ftrace kprobe_events syntax. FETCHARGS: %REG, @ADDR, @SYM[+|-offs],
$stackN, $stack, $argN (entry only), $retval (return only), $comm, +|-OFFS(FETCHARG),
NAME=FETCHARG, FETCHARG:TYPE (u8..u64, s8..s64, x8..x64, string, symbol; default x64).
Parameters can be named as in perf probe when the image has DWARF. A trailing
`if EXPR` keeps only hits where EXPR holds (==, !=, <, >, <=, >=, ~ glob, &&, ||, !).
Errors point at the offending character and register nothing."""
    line = rest.strip()
    if line.startswith("-:"):
        try:
            defn = parse_probe_event(line)
        except ProbeEventError as exc:
            raise CommandError(str(exc)) from None
        for up in list(session.probes.values()):
            if up.event == defn.event:
                delete_user_probe(session, up)
                session.out.print(f"Deleted {up.number} ({defn.group}/{defn.event})")
                return None
        raise CommandError(f"no event '{defn.event}' (see 'probes')")
    up = create_probe_event(session, line)
    _describe_new(session, up)
    session.out.print(f"  {up.spec['definition']}")
    return {"number": up.number, "event": up.event, "addr": up.addr}

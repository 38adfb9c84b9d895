"""Probe definitions in ftrace's kprobe_events language, typed at the prompt.

    p:myprobe do_sys_open dfd=%di filename=+0(%si):string flags=%dx:x32
    r4 do_sys_open $retval:s64
    p do_sys_open filename:string flags          (perf-probe style names, from DWARF)
    -:myprobe
"""
from __future__ import annotations

import re

from ...tracing.perf_probe import is_perf_syntax
from ...tracing.probe_events import ProbeEventError, parse_probe_event
from ..registry import REGISTRY, CommandError, command
from ..userprobes import create_probe_event, delete_user_probe, describe_new


@command("probe-event", repeatable=False, group="probes", aliases=("kprobe_events", "p"), args=("location", "text"),
         summary="define a probe in ftrace's kprobe_events language (p ..., r ..., -:EVENT)",
         usage="p[:[GRP/]EVENT] SYM[+offs]|ADDR [FETCHARGS] [if FILTER]\n"
               "       r[MAXACTIVE][:[GRP/]EVENT] SYM [FETCHARGS] [if FILTER]\n       -:[GRP/]EVENT",
         example="p do_sys_open dfd=%di filename=+0(%si):string flags=%dx:x32\n"
                 "p do_sys_open filename:string flags\nr do_sys_open $retval:s64\n"
                 "p:opens do_sys_open name=+0(%si):string if name ~ \"/etc/*\"\n-:opens\n"
                 "p fs.c:305 this.len nd->dentry->d_inode\np 'do_*' $params")
def cmd_probe_event(session, rest: str):
    """Exactly the ftrace kprobe_events syntax. FETCHARGS: %REG, @ADDR, @SYM[+|-offs],
$stackN, $stack, $argN (entry only), $retval (return only), $comm, +|-OFFS(FETCHARG),
NAME=FETCHARG, FETCHARG:TYPE (u8..u64, s8..s64, x8..x64, string, symbol; default x64).
Parameters can be named as in perf probe when the image has DWARF. A trailing
`if EXPR` keeps only hits where EXPR holds (==, !=, <, >, <=, >=, ~ glob, &&, ||, !).
Errors point at the offending character and register nothing. A place PATH:OFFSET (a file
offset, as uprobe_events) or PATH:FUNC[+OFF], PATH a program with a slash (./prog), makes
a uprobe or uretprobe on that program's code ('help uprobe'). perf probe's language
works here too ('help probe'): FUNC:RLN, SRC:LINE, FUNC;PATTERN, locals and members
(VAR->m.m, VAR[i]), $vars, $params, and wildcards (p 'do_*' ...: one probe per match)."""
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
    word, _, point = line.partition(" ")
    if word == "p" and _names_a_value(session, point.strip()):
        from .gdbdata import cmd_print

        return cmd_print(session, point.strip())
    if is_perf_syntax(line):
        # perf probe's language: the `probe` command compiles it into lines of this one.
        return REGISTRY.lookup("probe").func(session, line)
    up = create_probe_event(session, line)
    describe_new(session, up)
    session.out.print(f"  {up.spec['definition']}")
    return {"number": up.number, "event": up.event, "addr": up.addr}


def _names_a_value(session, text: str) -> bool:
    """`p NAME ...` where NAME is no function to probe: gdb's print of an expression
    (`p count`, `p jiffies`, `p count * 2`), which a kprobe_events line could not mean."""
    m = re.match(r"[A-Za-z_]\w*(?=$|[\s.+*/%<>=!&|^-])", text)
    if m is None:
        return False
    sym = session.machine.symbols.get(m.group())
    if sym is not None:
        return not session.machine.image.is_text(sym.address)
    # Neither a symbol: a variable of the selected frame or a global, else a probe's typo.
    from ..gdbvalues import context

    try:
        return not session.machine.halted and context(session).has_variable(m.group())
    except Exception:  # noqa: BLE001 - no frame to look in: the probe line's own error
        return False

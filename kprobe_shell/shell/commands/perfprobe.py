"""Probes placed where the source says (perf probe's language), listings, and wildcards.

    probe -L do_sys_open                 the probe-able lines, numbered as perf numbers them
    probe -V sum_list:5                  the variables available there, with their types
    probe 'sum_list:5 total it->st.sum'  a probe per address line 5 maps to
    p 'do_*' $params                     a wildcard: one probe per function, skips summarised
    kretprobe sys_*                      the same for the kprobe/kretprobe commands

Every definition is compiled (tracing/perf_probe.py) into ordinary kprobe_events lines,
so the probes it makes are kprobe_events probes like any other.
"""
from __future__ import annotations

import re

from ...machine.dwarf_locations import DwarfLocationError, debug_info, type_name
from ...tracing.perf_probe import PerfProbeError, parse_point, split_line, source_lines, translate
from ..registry import CommandError, command
from ..userprobes import create_probe_event, delete_user_probe, describe_new, unique_event_name, with_event_name
from .wildcards import is_wildcard, place_each

_KPROBE_EVENTS_HEAD = re.compile(r"(p|r\d*)(:\S+)?")


# ---------------------------------------------------------------------- definitions
def define(session, line: str) -> list[dict]:
    """A p/r line in perf probe's language: every probe it names, each announced."""
    try:
        perf = split_line(line)
    except PerfProbeError as exc:
        raise CommandError(str(exc)) from None
    func = perf.point.function
    if func is not None and is_wildcard(func):
        # One name for many functions: the first takes it, the others _1, _2 ...
        return place_each(session, func, lambda name: _define_at(session, line, [name], rename_taken=True),
                          (PerfProbeError, DwarfLocationError))
    return _define_at(session, line, None)


def _define_at(session, line: str, functions: list[str] | None, rename_taken: bool = False) -> list[dict]:
    m = session.machine
    try:
        lines = translate(debug_info(m.image), m.symbols, line, functions)
    except (PerfProbeError, DwarfLocationError) as exc:
        raise CommandError(str(exc)) from None
    made, next_number = [], session.probes.next_number
    try:
        for site, text, explicit in lines:
            event = text.split()[0].partition(":")[2].partition("/")[2]
            if not explicit or rename_taken:
                text = with_event_name(text, unique_event_name(session, event))
            made.append((site, create_probe_event(session, text)))
    except CommandError:
        for _, up in made:  # all of a definition's probes, or none of them
            delete_user_probe(session, up)
        session.probes.next_number = next_number
        raise
    for site, up in made:
        up.spec["perf"] = line
        describe_new(session, up)
        session.out.print(f"  {up.spec['definition']}")
    return [{"number": up.number, "event": up.event, "addr": up.addr, "line": site.line} for site, up in made]


# ---------------------------------------------------------------------- listings
def list_lines(session, spec: str) -> list[dict]:
    """perf probe -L FUNC: the function's source, probe-able lines numbered from its
    declaration (0), the others blank (show_line_range)."""
    info = _info(session)
    point = _parse(spec)
    if point.function is None:
        raise CommandError("usage: probe -L FUNC")
    try:
        fn = info.function(point.function)
    except DwarfLocationError as exc:
        raise CommandError(str(exc)) from None
    lines = info.function_lines(fn)
    source = source_lines(info, fn.decl_file)
    if source is None:
        raise CommandError(f"cannot find the source file {fn.decl_file}")
    last = max([_closing_brace(source, fn.decl_line), *lines])
    out = session.out
    out.print(f"<{fn.name}@{fn.decl_file}:0>", "header")
    data = []
    for number in range(fn.decl_line, min(last, len(source)) + 1):
        text = source[number - 1]
        if number in lines:
            out.print(f"{number - fn.decl_line:>7}  {text}")
            data.append({"line": number - fn.decl_line, "source_line": number, "addresses": lines[number]})
        else:
            out.print(f"         {text}")
    return data


def _closing_brace(source: list[str], first: int) -> int:
    """The line that closes the body opened at or after line FIRST (perf shows it all)."""
    depth, opened = 0, False
    for number in range(first, len(source) + 1):
        text = source[number - 1]
        depth += text.count("{") - text.count("}")
        opened = opened or "{" in text
        if opened and depth <= 0:
            return number
    return first


def list_variables(session, spec: str) -> list[dict]:
    """perf probe -V POINT: for each address the point names, the variables with a
    location there (type, name); the ones without are listed as optimized out."""
    info = _info(session)
    m = session.machine
    try:
        perf = split_line("p " + spec)
        sites = translate(info, m.symbols, "p " + spec)
    except (PerfProbeError, DwarfLocationError) as exc:
        raise CommandError(str(exc)) from None
    out = session.out
    out.print(f"Available variables at {perf.point.text}", "header")
    data = []
    for site, _, _ in sites:
        out.print(f"        @<{site.function}+{site.offset}>")
        fn = info.function(site.function)
        for var in info.variables_at(fn, site.addr):
            try:
                info.location(fn, var, site.addr)
                state = "available"
            except DwarfLocationError as exc:
                state = "optimized out" if "optimized out" in str(exc) else "unsupported location"
            shown = f"{type_name(var.type_die)}\t{var.name}"
            out.print(f"                {shown}" + ("" if state == "available" else f"\t({state} at this point)"))
            data.append({"addr": site.addr, "name": var.name, "type": type_name(var.type_die), "state": state})
    return data


def _info(session):
    info = debug_info(session.machine.image)
    if not info.available:
        raise CommandError("the image has no DWARF debug info (build it with -g)")
    return info


def _parse(spec: str):
    try:
        return parse_point(spec.strip().strip("'\""))
    except PerfProbeError as exc:
        raise CommandError(str(exc)) from None


@command("probe", repeatable=False, group="probes", args=("location", "text"),
         summary="perf probe's language: probe by source line, variable and member; -L/-V listings",
         usage="probe [-a] [[GRP:]EVENT=]POINT [ARG...] [if FILTER]\n"
               "       probe -L FUNC\n       probe -V POINT\n"
               "       probe -x PATH FUNC[+OFF|%return] [ARG...]\n"
               "  POINT  FUNC[@SRC][:RLN|+OFF|%return|;PATTERN] | SRC:LINE | SRC;PATTERN\n"
               "  ARG    [NAME=]VAR[->m|.m|[i]...][:TYPE] | @GLOBAL... | $vars | $params | FETCHARG",
         example="probe -L sum_list\nprobe -V sum_list:5\nprobe sum_list:5 total it->st.sum it->vals[2]\n"
                 "probe 'do_sys_open;*fd = *' fd\np do_sys_open:3 $vars\np 'do_*' $params\n"
                 "kretprobe sys_*")
def cmd_probe(session, rest: str):
    """perf probe's point and argument language over the image's DWARF. FUNC:RLN counts
lines from FUNC's declaration, as `probe -L FUNC` numbers them; SRC:LINE is a line of
SRC. A line becomes one probe at every address the line table maps it to (a loop's
condition, code the compiler duplicated). Arguments name parameters and locals, read
through their DWARF location (location lists included: a register in one range, the stack
in another), members (->, .), array elements ([i]), @GLOBAL variables; $vars and
$params take every one available. Types default to the C type's (s32, u64, x64 for
pointers, bitfields as b<w>@<o>/<c>); :string reads a char pointer or array. A variable
without a location at the address is refused in perf's words ("Perhaps it has been
optimized out"). Each probe is compiled to a kprobe_events line (shown), in group
'probe', named FUNC, FUNC_L<RLN>, FUNC__return; a name already taken gets _1, _2 ...
(an explicit name that is taken is refused). A FUNC with * ? [ places one probe per
matching function; the ones refused are skipped and summarised by reason. The same
language works after `p`/`r` (p sum_list:5 total). `-x PATH FUNC[+OFF|%return] [ARG...]` puts
a uprobe (or uretprobe) on a program's function instead, as `perf probe -x` does."""
    text = rest.strip()
    if not text:
        raise CommandError("usage: probe [-a] POINT [ARG...] | probe -L FUNC | probe -V POINT")
    option, _, arg = text.partition(" ")
    try:
        if option == "-L":
            return list_lines(session, arg)
        if option == "-V":
            return list_variables(session, arg.strip().strip("'\""))
    except DwarfLocationError as exc:  # debug info that cannot be read at all
        raise CommandError(str(exc)) from None
    if option == "-a":
        text = arg.strip()
    if option == "-x":
        return _probe_exec(session, arg)
    if text.startswith("-"):
        raise CommandError(f"unknown option '{option}' (-a, -L, -V, -x)")
    if len(text) > 1 and text[0] in "'\"" and text[-1] == text[0]:
        text = text[1:-1]  # perf probe 'FUNC:3 var' takes the definition as one word
    if _KPROBE_EVENTS_HEAD.fullmatch(text.split()[0]):
        return define(session, text)  # a p/r line of the kprobe_events command, in perf's language
    kind = "r" if re.search(r"%return\b", text.split()[0]) else "p"
    return define(session, f"{kind} {text}")


def _probe_exec(session, text: str):
    """perf probe -x PATH FUNC[+OFF|%return] [ARG...]: a uprobe on the program's function."""
    words = text.split()
    if len(words) < 2:
        raise CommandError("usage: probe -x PATH FUNC[+OFF|%return] [ARG...]")
    path, point, args = words[0], words[1], words[2:]
    kind = "r" if point.endswith("%return") else "p"
    point = point.removesuffix("%return")
    if "/" not in path:
        path = "./" + path
    up = create_probe_event(session, " ".join([kind, f"{path}:{point}", *args]))
    describe_new(session, up)
    session.out.print(f"  {up.spec['definition']}")
    return {"number": up.number, "event": up.event, "addr": up.addr}

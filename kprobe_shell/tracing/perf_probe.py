"""perf probe's language, compiled to kprobe_events lines.

The syntax is perf-probe(1)'s (tools/perf/Documentation/perf-probe.txt):

  [[GRP:]EVENT=]POINT [ARG ...] [if FILTER]

  POINT  FUNC[@SRC][:RLN|+OFF|%return|;PATTERN]
         SRC:ALN | SRC;PATTERN
  ARG    [NAME=]EXPR[:TYPE]
  EXPR   VAR | VAR->member | VAR.member | VAR[i] (chained) | @GLOBAL[...chain]
         $vars | $params | and every kprobe_events fetch arg (%REG, $retval, +8(%di) ...)

RLN counts from the line that declares FUNC (perf's `probe -L` numbering), ALN is the
line in SRC; both map through the DWARF line table to every address where a statement of
that line begins, one probe each.  PATTERN is a glob matched against the function's
source lines.  A FUNC with * ? or [ is a wildcard: one probe per matching function.

Like perf, everything is translated into the ftrace kprobe_events language (one line per
address) before a probe exists: a local in a register becomes %REG, on the stack
+OFF(%sp) from the call frame information, a member chain nested +OFF(...) loads.  So
each probe is an ordinary kprobe_events probe: text, JSON and maps see the same fields.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from ..machine.dwarf_locations import (
    DebugInfo,
    DwarfLocationError,
    Location,
    array_count,
    find_member,
    is_signed,
    member_type,
    pointee,
    same_file,
    strip_type,
    type_name,
    type_size,
)
from ..numbers import NumberError, is_decimal, parse_c_ulong
from .fetch import Deref, FetchArg, Immediate, Memory, Register, Symbol
from .probe_events import is_uprobe_point

__all__ = ["PerfProbeError", "PerfPoint", "Site", "is_perf_syntax", "parse_point", "translate", "resolve_sites"]

#: The group perf probe puts its events in.
PERF_GROUP = "probe"
_GLOB = re.compile(r"[*?\[]")
_CHAIN = re.compile(r"(->|\.)([A-Za-z_]\w*)|\[([0-9]+)\]")
_VAR = re.compile(r"[A-Za-z_]\w*")
_PASS_THROUGH = "%$+-\\"  # kprobe_events fetch args start with one of these
_INNER_NAME = re.compile(r"(?<=\()([A-Za-z_]\w*)(?=\))")  # +0(filename): a name's value inside a load


class PerfProbeError(Exception):
    """A definition the debug info cannot place; the message says why (perf's words)."""


@dataclass
class PerfPoint:
    function: str | None = None
    file: str | None = None
    line: int | None = None        # absolute line in FILE
    rel_line: int | None = None    # FUNC:RLN
    offset: int = 0
    is_return: bool = False
    pattern: str | None = None
    text: str = ""


@dataclass
class Site:
    """One address a point resolves to, with its function."""

    addr: int
    function: str
    offset: int
    name: str                      # perf's event name base for this site
    line: int | None = None


@dataclass
class PerfLine:
    """A definition split into its parts: [EVENT=]POINT ARGS [if FILTER]."""

    kind: str                      # 'p' or 'r' (from the head or %return)
    maxactive: str = ""
    event: str | None = None
    group: str | None = None
    point: PerfPoint = field(default_factory=PerfPoint)
    args: list[str] = field(default_factory=list)
    filter: str = ""


# ---------------------------------------------------------------------- recognising the language
def is_perf_syntax(line: str) -> bool:
    """True when a p/r line uses something only perf probe's language has."""
    words = line.split()
    if len(words) < 2:
        return False
    point = words[1].strip("'\"")
    if is_uprobe_point(point):
        return False  # uprobe_events' PATH:OFFSET / PATH:FUNC[+OFF]
    if "=" in point or _GLOB.search(point) or any(c in point for c in ":@;"):
        return True
    # Past a function's entry its parameters are no longer where the ABI put them: a name
    # there is read through its DWARF location.
    past_entry = bool(re.search(r"\+(0[xX]0*[1-9a-fA-F]|0*[1-9])", point))
    for word in words[2:]:
        if word == "if":
            break
        expr = word.partition("=")[2] if "=" in word.split(":")[0] else word
        expr = expr.split(":")[0]
        if expr in ("$vars", "$params") or "->" in expr or "[" in expr:
            return True
        if "." in expr and _VAR.match(expr.lstrip("@")):
            return True
        if past_entry and (_VAR.fullmatch(expr) or _INNER_NAME.search(expr)):
            return True
    return False


def split_line(line: str) -> PerfLine:
    """p|r[MAXACTIVE][:[GRP/]EVENT] [[GRP:]EVENT=]POINT ARGS [if FILTER]; the definition
    after the head may be quoted as one word, as a shell passes it to perf probe."""
    head, _, body = line.strip().partition(" ")
    body = body.strip()
    if len(body) > 1 and body[0] in "'\"" and body[-1] == body[0]:
        body = body[1:-1]
    words = [head] + body.split()
    head = words[0]
    kind = "r" if head[0] == "r" else "p"
    maxactive = re.match(r"r([0-9]*)", head).group(1) if kind == "r" else ""
    group = event = None
    if ":" in head:
        name = head.partition(":")[2]
        group, slash, event = name.partition("/")
        if not slash:
            group, event = None, group
    rest = words[1:]
    point_text = rest[0].strip("'\"") if rest else ""
    if "=" in point_text:  # perf's [[GRP:]EVENT=]POINT
        name, _, point_text = point_text.partition("=")
        group2, colon, event2 = name.partition(":")
        event, group = (event2, group2) if colon else (group2, group)
    args, filt = [], ""
    for i, word in enumerate(rest[1:], start=1):
        if word == "if":
            filt = " ".join(rest[i:])
            break
        args.append(word)
    point = parse_point(point_text)
    if point.is_return:
        kind = "r"
    return PerfLine(kind, maxactive, event, group, point, args, filt)


def parse_point(text: str) -> PerfPoint:
    """FUNC[@SRC][:RLN|+OFF|%return|;PATTERN] or SRC:ALN or SRC;PATTERN."""
    point = PerfPoint(text=text)
    if not text:
        raise PerfProbeError("Missing probe point: FUNC[@SRC][:RLN|+OFF|%return|;PATTERN] or SRC:LINE")
    body, semi, pattern = text.partition(";")
    if semi:
        if not pattern:
            raise PerfProbeError(f"No pattern after ';' in '{text}'")
        point.pattern = pattern
    body, pct, suffix = body.partition("%")
    if pct:
        if suffix != "return":
            raise PerfProbeError(f"Unknown suffix '%{suffix}' in '{text}' (only %return)")
        point.is_return = True
    body, colon, line = body.partition(":")
    body, plus, offset = body.partition("+")
    head, at, src = body.partition("@")
    if at:
        point.file = src or None
    if _looks_like_file(head) and not at:
        point.file = head
    else:
        point.function = head or None
    if colon:
        if not is_decimal(line):
            raise PerfProbeError(f"Invalid line number '{line}' in '{text}'")
        if point.function is None:
            point.line = int(line)
        else:
            point.rel_line = int(line)
    if plus:
        # perf reads it with strtoul(.., 0): 0x hex, a leading 0 octal, else decimal.
        try:
            point.offset = parse_c_ulong(offset) if re.fullmatch(r"0[xX][0-9a-fA-F]+|[0-9]+", offset) else None
        except NumberError as exc:
            raise PerfProbeError(f"Invalid offset '+{offset[:40]}' in '{text[:80]}': {exc}") from None
        if point.offset is None:
            raise PerfProbeError(f"Invalid offset '+{offset[:40]}' in '{text[:80]}'")
    _check_point(point)
    return point


def _looks_like_file(head: str) -> bool:
    return "/" in head or bool(re.search(r"\.[chsS]$", head))


def _check_point(p: PerfPoint) -> None:
    extras = [x for x in (p.rel_line is not None or p.line is not None, p.offset != 0, p.is_return,
                          p.pattern is not None) if x]
    if len(extras) > 1:
        raise PerfProbeError(f"'{p.text}': use one of :LINE, +OFF, %return or ;PATTERN")
    if p.function is None and p.file is None:
        raise PerfProbeError(f"'{p.text}': name a function or a source file before ':LINE' or ';PATTERN'")
    if p.function is None and p.line is None and p.pattern is None:
        raise PerfProbeError(f"'{p.text}': a source file needs :LINE or ;PATTERN")
    if p.function is None and (p.offset or p.is_return):
        raise PerfProbeError(f"'{p.text}': +OFF and %return go after a function name")


# ---------------------------------------------------------------------- points -> addresses
def resolve_sites(info: DebugInfo, symbols, point: PerfPoint, functions: list[str] | None = None) -> list[Site]:
    """Every address POINT names.  FUNCTIONS: the names a wildcard FUNC matched."""
    if point.function is None:
        return _file_sites(info, symbols, point)
    names = functions if functions is not None else [point.function]
    sites: list[Site] = []
    for name in names:
        sites.extend(_function_sites(info, symbols, point, name))
    return sites


def _function_sites(info: DebugInfo, symbols, point: PerfPoint, name: str) -> list[Site]:
    if point.rel_line is None and point.pattern is None:
        sym = symbols.get(name)
        if sym is None:
            raise PerfProbeError(symbols.unknown_message(name))
        suffix = "__return" if point.is_return else (f"_{point.offset}" if point.offset else "")
        return [Site(sym.address + point.offset, name, point.offset, name + suffix)]
    if name not in info.functions and symbols.get(name) is None:
        raise PerfProbeError(symbols.unknown_message(name))
    fn = _dwarf_function(info, name, point.file)
    if point.pattern is not None:
        lines = sorted(line for line in info.function_lines(fn) if _matches(info, fn.decl_file, line, point.pattern))
        if not lines:
            raise PerfProbeError(f"no line of {name} matches the pattern '{point.pattern}'")
    else:
        lines = [fn.decl_line + point.rel_line]
    sites = []
    for line in lines:
        # Every address of the line, the copies inlined into callers included (as perf).
        sites.extend(_line_sites(info, symbols, fn.decl_file, line, f"{name}_L{line - fn.decl_line}"))
    if not sites:
        raise PerfProbeError(f"line {point.rel_line} of {name} ({fn.decl_file}:{lines[0]}) has no "
                             f"instructions: see 'probe -L {name}' for the probe-able lines")
    return sites


def _line_sites(info: DebugInfo, symbols, file: str | None, line: int, name: str) -> list[Site]:
    sites = []
    for addr in info.line_addresses(file, line):
        hit = symbols.containing(addr)
        if hit is not None:
            sites.append(Site(addr, hit[0].name, hit[1], name, line))
    return sites


def _file_sites(info: DebugInfo, symbols, point: PerfPoint) -> list[Site]:
    if point.pattern is not None:
        rows = [r for r in info.lines if same_file(r.file, point.file)]
        lines = sorted({r.line for r in rows if _matches(info, r.file, r.line, point.pattern)})
    else:
        lines = [point.line]
    sites = []
    for line in lines:
        for site in _line_sites(info, symbols, point.file, line, ""):
            site.name = f"{site.function}_L{line}"
            sites.append(site)
    if not sites:
        raise PerfProbeError(f"no instructions for {point.file}:{point.line if point.pattern is None else point.pattern} "
                             "in the line table")
    return sites


def _dwarf_function(info: DebugInfo, name: str, file: str | None):
    try:
        fn = info.function(name)
    except DwarfLocationError as exc:
        raise PerfProbeError(str(exc)) from None
    if file is not None and (fn.decl_file is None or not same_file(fn.decl_file, file)):
        raise PerfProbeError(f"'{name}' is not defined in {file} (it is in {fn.decl_file})")
    return fn


def _matches(info: DebugInfo, file: str | None, line: int, pattern: str) -> bool:
    text = source_line(info, file, line)
    return text is not None and fnmatch.fnmatchcase(text.strip(), pattern)


def source_line(info: DebugInfo, file: str | None, line: int) -> str | None:
    lines = source_lines(info, file)
    return lines[line - 1] if lines is not None and 0 < line <= len(lines) else None


def source_lines(info: DebugInfo, file: str | None) -> list[str] | None:
    path = info.source_path(file) if file else None
    if path is None:
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read().splitlines()


# ---------------------------------------------------------------------- arguments -> fetch args
@dataclass(frozen=True)
class _Value:
    """A C value being compiled: FETCH denotes its address (in_memory) or the value itself."""

    fetch: FetchArg
    in_memory: bool
    type_die: object   # a DIE, or ("bitfield", width, bit offset, container bytes)


def compile_args(info: DebugInfo, site: Site, args: list[str], is_return: bool) -> list[str]:
    """Each perf ARG at SITE as kprobe_events NAME=FETCHARG:TYPE text."""
    fn = None
    out: list[str] = []
    for arg in args:
        name, expr, type_text = _split_arg(arg)
        if expr in ("$vars", "$params"):
            fn = fn or _dwarf_function(info, site.function, None)
            out.extend(_all_variables(info, fn, site, params_only=expr == "$params"))
            continue
        if expr[:1] in "+-" and _INNER_NAME.search(expr):
            fn = fn or _dwarf_function(info, site.function, None)
            out.append(_inner_names(info, fn, site.addr, arg))
            continue
        if expr[:1] in _PASS_THROUGH or (expr.startswith("@") and not _typed_global(info, expr)):
            out.append(arg)  # the kprobe_events language itself
            continue
        if is_return:
            raise PerfProbeError(f"'{expr}': a return probe sees no locals; use $retval")
        fn = fn or _dwarf_function(info, site.function, None)
        value, last = _variable_chain(info, fn, site.addr, expr)
        fetch, ftype = _finish(value, type_text, expr)
        out.append(f"{name or _fresh_name(last, out)}={fetch}:{ftype}")
    return out


def _fresh_name(name: str, made: list[str]) -> str:
    """A field named after its last member, made unique (prev->pid, prev->parent->pid)."""
    used = {arg.partition("=")[0] for arg in made}
    fresh, i = name, 1
    while fresh in used:
        fresh, i = f"{name}_{i}", i + 1
    return fresh


def _inner_names(info: DebugInfo, fn, addr: int, arg: str) -> str:
    """+OFF(NAME) -> +OFF(where NAME's value is at ADDR): a register, a stack slot's load."""
    def value_of(match) -> str:
        value = _local_or_global(info, fn, addr, match.group(1))
        return str(value.fetch)  # as an inner fetch, a memory location loads the 8-byte value

    return _INNER_NAME.sub(value_of, arg)


def _typed_global(info: DebugInfo, expr: str) -> bool:
    """@NAME of a variable the debug info knows: typed and named from DWARF."""
    m = _VAR.match(expr, 1)
    return m is not None and info.global_variable(m.group()) is not None


def _split_arg(arg: str) -> tuple[str | None, str, str | None]:
    name, expr = None, arg
    head = arg.split(":")[0]
    if "=" in head:
        name, _, expr = arg.partition("=")
    expr, colon, type_text = expr.partition(":")
    return name, expr, (type_text if colon else None)


def _all_variables(info: DebugInfo, fn, site: Site, params_only: bool) -> list[str]:
    """$vars / $params: every one with a location here and a type a fetch can hold (as perf)."""
    out = []
    for var in info.variables_at(fn, site.addr):
        if params_only and not var.is_param:
            continue
        try:
            loc = info.location(fn, var, site.addr)
            fetch, ftype = _finish(_start(loc, var.type_die), None, var.name)
        except (DwarfLocationError, PerfProbeError):
            continue
        out.append(f"{var.name}={fetch}:{ftype}")
    return out


def _variable_chain(info: DebugInfo, fn, addr: int, expr: str) -> tuple[_Value, str]:
    is_global = expr.startswith("@")
    body = expr[1:] if is_global else expr
    m = _VAR.match(body)
    if m is None:
        raise PerfProbeError(f"Invalid argument '{expr}': expected VAR, VAR->member, VAR[i] or $vars")
    name, chain = m.group(), body[m.end():]
    value = _global(info, name) if is_global else _local_or_global(info, fn, addr, name)
    last, pos = name, 0
    while pos < len(chain):
        step = _CHAIN.match(chain, pos)
        if step is None:
            raise PerfProbeError(f"Invalid argument '{expr}': unexpected '{chain[pos:]}'")
        arrow, member, index = step.groups()
        if index is not None:
            value = _element(value, int(index), expr)
        else:
            value = _member(value, arrow == "->", member, expr)
            last = member
        pos = step.end()
    return value, last


def _local_or_global(info: DebugInfo, fn, addr: int, name: str) -> _Value:
    for var in info.variables_at(fn, addr):
        if var.name == name:
            try:
                return _start(info.location(fn, var, addr), var.type_die)
            except DwarfLocationError as exc:
                raise PerfProbeError(str(exc)) from None
    try:
        return _global(info, name)
    except PerfProbeError:
        have = ", ".join(v.name for v in info.variables_at(fn, addr)) or "none"
        raise PerfProbeError(f"Failed to find '{name}' in {fn.name} at this address "
                             f"(variables in scope: {have})") from None


def _global(info: DebugInfo, name: str) -> _Value:
    var = info.global_variable(name)
    if var is None:
        raise PerfProbeError(f"no global variable '{name}' in the debug info")
    return _Value(Symbol(name), True, var[0])  # @NAME, as ftrace spells a global


def _start(loc: Location, type_die) -> _Value:
    if loc.kind == "reg":
        return _Value(Register(loc.reg), False, type_die)
    if loc.kind == "mem":
        return _Value(Deref(loc.offset, Register(loc.reg)), True, type_die)
    if loc.kind == "addr":
        return _Value(Memory(loc.offset), True, type_die)
    return _Value(Immediate(loc.offset), False, type_die)


def _shift(fetch: FetchArg, delta: int) -> FetchArg:
    """The address DELTA bytes further on, folded into the last load's offset."""
    if isinstance(fetch, Deref):
        return Deref(fetch.offset + delta, fetch.inner)
    if isinstance(fetch, Memory):
        return Memory(fetch.address + delta)
    if isinstance(fetch, Symbol):
        return Symbol(fetch.name, fetch.offset + delta)
    raise PerfProbeError("internal: not an address")


def _member(value: _Value, arrow: bool, name: str, expr: str) -> _Value:
    t = strip_type(value.type_die)
    if arrow:
        if t is None or t.tag != "DW_TAG_pointer_type":
            raise PerfProbeError(f"'{expr}': '->{name}' needs a pointer, not {type_name(value.type_die)}; use '.'")
        # An address fetch used as an inner fetch loads the 8-byte pointer stored there.
        base = Deref(0, value.fetch)
        target = pointee(value.type_die)
    else:
        if t is not None and t.tag == "DW_TAG_pointer_type":
            raise PerfProbeError(f"'{expr}': '.{name}' on a pointer ({type_name(value.type_die)}); use '->'")
        if not value.in_memory:
            raise PerfProbeError(f"'{expr}': the struct is held in a register here: its members have no address")
        base, target = value.fetch, value.type_die
    found = find_member(target, name)
    if found is None:
        raise PerfProbeError(f"'{expr}': {type_name(target)} has no member '{name}'")
    offset, member = found
    return _bitfield(_Value(_shift(base, offset), True, member_type(member)), member)


def _element(value: _Value, index: int, expr: str) -> _Value:
    t = strip_type(value.type_die)
    if t is not None and t.tag == "DW_TAG_array_type":
        if not value.in_memory:
            raise PerfProbeError(f"'{expr}': the array is held in a register here")
        elem = member_type(t)
        count = array_count(t)
        if count is not None and index >= count:
            raise PerfProbeError(f"'{expr}': index {index} is past the end ({type_name(value.type_die)})")
        return _Value(_shift(value.fetch, index * type_size(elem)), True, elem)
    if t is not None and t.tag == "DW_TAG_pointer_type":
        elem = pointee(value.type_die)
        return _Value(Deref(index * type_size(elem), value.fetch), True, elem)
    raise PerfProbeError(f"'{expr}': [{index}] needs an array or a pointer, not {type_name(value.type_die)}")


def _bitfield(value: _Value, member) -> _Value:
    """A bitfield member: ftrace's b<width>@<offset>/<container> on its container word."""
    bits = member.attributes.get("DW_AT_bit_size")
    if bits is None:
        return value
    container = type_size(value.type_die) or 4
    start = member.attributes.get("DW_AT_data_bit_offset")
    start = start.value if start is not None else 0
    words = start // (container * 8)
    shifted = _shift(value.fetch, words * container) if words else value.fetch
    return _Value(shifted, True, ("bitfield", bits.value, start - words * container * 8, container))


def _finish(value: _Value, type_text: str | None, expr: str) -> tuple[FetchArg, str]:
    """The fetch arg and its type name: the user's :TYPE, else the C type's."""
    t = value.type_die
    if isinstance(t, tuple):  # a bitfield member
        _, width, offset, container = t
        return value.fetch, type_text or f"b{width}@{offset}/{container * 8}"
    base = strip_type(t)
    if type_text in ("string", "ustring"):
        if base is not None and base.tag == "DW_TAG_array_type" and value.in_memory:
            return value.fetch, type_text
        return Deref(0, value.fetch), type_text
    if base is not None and base.tag in ("DW_TAG_structure_type", "DW_TAG_union_type", "DW_TAG_array_type"):
        raise PerfProbeError(f"'{expr}' is {type_name(t)}: name a member or an element "
                             "(VAR.member, VAR->member, VAR[i])")
    if type_text:
        return value.fetch, type_text
    if base is None or base.tag == "DW_TAG_pointer_type":
        return value.fetch, "x64"
    size = type_size(t)
    if size not in (1, 2, 4, 8):
        return value.fetch, "x64"
    return value.fetch, f"{'s' if is_signed(t) else 'u'}{size * 8}"


# ---------------------------------------------------------------------- the whole line
def translate(info: DebugInfo, symbols, line: str, functions: list[str] | None = None) -> list[tuple[Site, str, bool]]:
    """One kprobe_events line per address the definition names: (site, line, explicit name?)."""
    perf = split_line(line)
    if not info.available and perf.point.function is None:
        raise PerfProbeError("the image has no DWARF debug info: probe by symbol and register")
    point = perf.point
    if perf.kind == "r" and (point.offset or point.line is not None or point.rel_line is not None or point.pattern):
        raise PerfProbeError(f"'{point.text}': a return probe goes on a function's entry (FUNC%return)")
    sites = resolve_sites(info, symbols, point, functions)
    out = []
    group = perf.group or PERF_GROUP
    for i, site in enumerate(sites):
        event = perf.event if perf.event else re.sub(r"\W", "_", site.name)  # foo.isra.0 -> foo_isra_0
        if perf.event and len(sites) > 1:
            event = f"{perf.event}_{i}" if i else perf.event
        where = site.function + (f"+{site.offset}" if site.offset else "")
        args = compile_args(info, site, perf.args, perf.kind == "r")
        head = f"{perf.kind}{perf.maxactive}:{group}/{event}"
        text = " ".join([head, where, *args] + ([perf.filter] if perf.filter else []))
        out.append((site, text, perf.event is not None))
    return out

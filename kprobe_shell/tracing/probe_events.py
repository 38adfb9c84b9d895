"""Parser for the ftrace kprobe_events language.

The language is the one documented in the Linux kernel source tree at
Documentation/trace/kprobetrace.rst ("Kprobe-based Event Tracing",
https://docs.kernel.org/trace/kprobetrace.html); error messages follow the
ERRORS table of kernel/trace/trace_probe.h, made more specific.

Synopsis::

  p[:[GRP/]EVENT] SYM[+offs]|MEMADDR [FETCHARGS] [if FILTER]  : kprobe
  r[MAXACTIVE][:[GRP/]EVENT] SYM[+0] [FETCHARGS] [if FILTER]  : return probe
  p[:[GRP/]EVENT] SYM[+0]%return [FETCHARGS] [if FILTER]      : return probe
  -:[GRP/]EVENT                                               : delete

  GRP        group name, "kprobes" if omitted
  EVENT      event name; default "p_SYM_OFFS" / "r_SYM_0" / "p_0xADDR"
  MAXACTIVE  kretprobe instances (0 = default, at most 4096)
  [MOD:]SYM  module symbols are not supported by the emulator

FETCHARGS, space separated, at most 128::

  %REG           register: ax bx cx dx si di bp sp ip flags r8..r15 cs ss
                 orig_ax (ftrace's x86_64 names), also rax/eax... spellings
  @ADDR          memory at ADDR
  @SYM[+|-offs]  memory at SYM +|- offs
  $stackN        Nth word of the stack (N >= 0); $stack: the stack address
  $argN          Nth function argument (N >= 1), function-entry probes only
  $retval        return value, return probes only
  $comm          current task comm (type string)
  +|-[u]OFFS(FETCHARG)  memory at FETCHARG +|- OFFS (nests)
  \\IMM, \\"str"   immediate value / string
  NAME=FETCHARG  names the argument (default argN, N = position from 1)
  FETCHARG:TYPE  u8..u64 s8..s64 x8..x64 (default x64), char, string,
                 ustring, symbol, or a bitfield b<width>@<offset>/<container>
  name[:TYPE]    perf-probe style parameter, resolved by resolve_param()
                 (also inside a dereference, +0(name), when resolve_param is given)

Numbers are read like the kernel's kstrtoul(..., 0): 0x.. is hex, a leading
0 means octal, anything else decimal.

Filters (an extension of this tool): a trailing ``if EXPR`` where EXPR uses
argument names, $comm/comm and $pid/common_pid, comparisons == != < <= > >=,
the glob match ``~ "pat*"``, ``!``, ``&&``, ``||`` and parentheses.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Callable, Union

from ..numbers import LIMIT, NumberError, is_decimal, parse_c_ulong
from .fetch import (
    DEFAULT_TYPE,
    FETCH_TYPES,
    Arg,
    Comm,
    Deref,
    FetchArg,
    FetchType,
    ImmString,
    Immediate,
    Memory,
    NamedParam,
    REGISTER_ALIASES,
    Register,
    RetVal,
    StackAddr,
    StackEntry,
    Symbol,
    bitfield_type,
    default_type,
    is_memory_fetch,
)

__all__ = [
    "ArgDef",
    "Filter",
    "ProbeEventDef",
    "ProbeEventError",
    "parse_probe_event",
]

# Limits from kernel/trace/trace_probe.h and trace_kprobe.c.
MAX_TRACE_ARGS = 128
MAX_ARGSTR_LEN = 63
MAX_ARG_NAME_LEN = 32
MAX_EVENT_NAME_LEN = 64
KRETPROBE_MAXACTIVE_MAX = 4096
PARAM_MAX_STACK = 2048  # THREAD_SIZE (16 KiB) / sizeof(long)
MAX_DEREF_DEPTH = 14  # FETCH_INSN_MAX (16) minus the base op and the store op
# A filter is parsed and evaluated recursively: bound its nesting and its size.
MAX_FILTER_DEPTH = 32
MAX_FILTER_TERMS = 128
DEFAULT_GROUP = "kprobes"
#: uprobe_events' group when the line names none (trace_uprobe.c: UPROBE_EVENT_SYSTEM).
UPROBE_GROUP = "uprobes"

# Field names every probe event already has (trace_probe.c).
RESERVED_FIELD_NAMES = (
    "common_type", "common_flags", "common_preempt_count", "common_pid",
    "common_tgid", "__probe_ip", "__probe_ret_ip", "__probe_func",
)

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IDENT_CHAR = re.compile(r"[A-Za-z0-9_]")
# Kernel symbols may carry compiler suffixes such as "foo.isra.0" or "bar.cold".
_KSYM = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*")
_BITFIELD = re.compile(r"b([0-9]+)@([0-9]+)/([0-9]+)")

ResolveParam = Callable[[Union[str, None], str], Union[FetchArg, str]]


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

class ProbeEventError(Exception):
    """A malformed probe definition, reported like ftrace's error_log.

    ``position`` is the 0-based index in ``line`` of the offending character
    (``len(line)`` or one past the last token when something is missing).
    """

    def __init__(self, message: str, line: str = "", position: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line
        self.position = position

    def __str__(self) -> str:
        lines = [f"parse error: {self.message}"]
        if self.line:
            lines.append("  " + self.line)
            if self.position is not None:
                lines.append("  " + _caret_padding(self.line, self.position) + "^")
        return "\n".join(lines)


def _caret_padding(line: str, position: int) -> str:
    # Keep tabs so the caret lines up under tab-indented text.
    prefix = line[:position]
    return "".join(c if c == "\t" else " " for c in prefix) + " " * (position - len(prefix))


# --------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------

@dataclass
class ArgDef:
    name: str
    fetch: FetchArg
    type: FetchType
    text: str  # the argument as written, including any NAME=

    @property
    def body(self) -> str:
        """The text after NAME=, as ftrace keeps it (probe_arg.comm)."""
        name, eq, body = self.text.partition("=")
        return body if eq else self.text


@dataclass
class ProbeEventDef:
    kind: str  # 'p', 'r' or '-'
    group: str
    event: str
    symbol: str | None = None
    offset: int = 0
    address: int | None = None
    maxactive: int = 0
    args: list[ArgDef] = field(default_factory=list)
    filter: Filter | None = None
    text: str = ""
    #: A uprobe's program (uprobe_events' PATH:OFFSET, perf probe's PATH:FUNC[+OFF]):
    #: then `address` is the file offset, or symbol+offset names a function of PATH.
    path: str | None = None

    @property
    def is_return(self) -> bool:
        return self.kind == "r"

    @property
    def is_uprobe(self) -> bool:
        return self.path is not None

    def listing(self) -> str:
        """The line ftrace shows for this probe in kprobe_events."""
        head = self.kind + (str(self.maxactive) if self.is_return and self.maxactive else "")
        out = f"{head}:{self.group}/{self.event}"
        if self.kind == "-":
            return out
        if self.path is not None:  # uprobe_events: PATH:0x%016lx, or perf's PATH:FUNC+OFF
            where = f"0x{self.address:016x}" if self.symbol is None else self.symbol + (
                f"+{self.offset}" if self.offset else "")
            out += f" {self.path}:{where}"
        elif self.symbol is None:
            out += f" 0x{self.address:016x}"
        elif self.offset:
            out += f" {self.symbol}+{self.offset}"
        else:
            out += f" {self.symbol}"
        return out + "".join(f" {arg.name}={arg.body}" for arg in self.args)


# --------------------------------------------------------------------------
# Tokens and numbers
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Token:
    text: str
    pos: int  # index of text[0] in the line

    @property
    def end(self) -> int:
        return self.pos + len(self.text)


def _tokenize(line: str) -> list[_Token]:
    # ftrace splits commands with argv_split(): whitespace, no quoting.
    return [_Token(m.group(), m.start()) for m in re.finditer(r"\S+", line)]


def _parse_ulong(text: str) -> int | None:
    """kstrtoul(text, 0): 0x hex, leading-0 octal, else decimal; None if bad."""
    try:
        return parse_c_ulong(text)
    except NumberError:
        return None


def _parse_long(text: str) -> int | None:
    """kstrtol(text, 0): like _parse_ulong with an optional sign."""
    negative = text.startswith("-")
    value = _parse_ulong(text[1:] if negative else text)
    if value is None or value >= 1 << 63:
        return None
    return -value if negative else value


def _first_bad_char(name: str, pattern: re.Pattern) -> int:
    """Index of the first character that stops ``name`` matching ``pattern``."""
    match = pattern.match(name)
    return match.end() if match else 0


# --------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class _ProbeSite:
    """What fetch-argument rules depend on: where the probe sits."""

    is_return: bool
    at_function_entry: bool  # SYM or SYM+0: $argN is meaningful
    symbol: str | None


def parse_probe_event(line: str, *, resolve_param: ResolveParam | None = None) -> ProbeEventDef:
    """Parse one kprobe_events line; raise ProbeEventError if malformed.

    ``resolve_param(symbol, name)`` turns a perf-style parameter name into a
    FetchArg (or returns an error message string).  Without it, such
    arguments stay as NamedParam for the caller to resolve.
    """
    return _Parser(line, resolve_param).parse()


class _Parser:
    def __init__(self, line: str, resolve_param: ResolveParam | None):
        self.line = line
        self.resolve_param = resolve_param
        self.tokens = _tokenize(line)

    def error(self, message: str, position: int | None) -> ProbeEventError:
        return ProbeEventError(message, self.line, position)

    # ---- the command ------------------------------------------------------

    def parse(self) -> ProbeEventDef:
        if not self.tokens:
            raise self.error("Empty probe definition", 0)
        head = self.tokens[0]
        if head.text[0] == "-":
            return self.parse_delete(head)
        if head.text[0] not in "pr":
            raise self.error(
                f"Unknown probe type '{head.text[0]}': expected p (kprobe), "
                "r (return probe) or -: (delete)", head.pos)
        kind, maxactive, group, event = self.parse_head(head)
        words, filter_start = self.split_filter()
        if len(words) < 2:
            raise self.error("Missing probe point: expected SYM[+offs] or MEMADDR",
                             words[-1].end + 1)
        path = None
        if is_uprobe_point(words[1].text):
            path, symbol, offset, address = self.parse_uprobe_point(words[1])
            is_return_suffix = False
            if maxactive:
                raise self.error("uprobe_events takes no MAXACTIVE (uretprobes have per-task instances)",
                                 head.pos + 1)
            if group == DEFAULT_GROUP and "/" not in head.text:
                group = UPROBE_GROUP
        else:
            symbol, offset, address, is_return_suffix = self.parse_probe_point(words[1], kind)
        if is_return_suffix:
            kind = "r"
        if event is None:
            event = (default_uprobe_event_name(kind, path, symbol, offset, address) if path is not None
                     else default_event_name(kind, symbol, offset, address))
        site = _ProbeSite(kind == "r", symbol is not None and offset == 0, symbol)
        args = self.parse_args(words[2:], site)
        probe_filter = None
        if filter_start is not None:
            probe_filter = _FilterParser(self.line, filter_start, args).parse()
        return ProbeEventDef(kind, group, event, symbol, offset, address, maxactive,
                             args, probe_filter, self.line, path)

    def split_filter(self) -> tuple[list[_Token], int | None]:
        """Tokens before a trailing ``if``, and where the filter text starts."""
        for index, token in enumerate(self.tokens[1:], start=1):
            if token.text == "if":
                return self.tokens[:index], token.end
        return self.tokens, None

    def parse_delete(self, head: _Token) -> ProbeEventDef:
        if not head.text.startswith("-:"):
            raise self.error("Delete needs an event name: -:[GRP/]EVENT", head.pos + 1)
        if len(self.tokens) > 1:
            raise self.error("'-:' (delete) takes no probe point, arguments or filter",
                             self.tokens[1].pos)
        group, event = self.parse_event_name(head.text[2:], head.pos + 2)
        return ProbeEventDef("-", group, event, text=self.line)

    def parse_head(self, head: _Token) -> tuple[str, int, str, str | None]:
        """p[:[GRP/]EVENT] or r[MAXACTIVE][:[GRP/]EVENT]."""
        kind = head.text[0]
        rest, colon, name = head.text[1:].partition(":")
        maxactive = 0
        if rest:
            if not is_decimal(rest[0]):
                raise self.error(
                    f"Invalid probe type '{kind}{rest}': expected p[:[GRP/]EVENT] or "
                    "r[MAXACTIVE][:[GRP/]EVENT]", head.pos + 1)
            if kind == "p":
                raise self.error("Maxactive is only for return probes (r[MAXACTIVE])",
                                 head.pos + 1)
            maxactive = self.parse_maxactive(rest, head.pos + 1)
        if not colon:
            return kind, maxactive, DEFAULT_GROUP, None
        group, event = self.parse_event_name(name, head.pos + 2 + len(rest))
        return kind, maxactive, group, event

    def parse_maxactive(self, text: str, pos: int) -> int:
        value = _parse_ulong(text)
        if value is None:
            shown = text if len(text) <= 24 else text[:24] + "..."
            raise self.error(f"Invalid maxactive number '{shown}'", pos)
        if value > KRETPROBE_MAXACTIVE_MAX:
            raise self.error(f"Maxactive is too big (max {KRETPROBE_MAXACTIVE_MAX})", pos)
        return value

    def parse_event_name(self, text: str, pos: int) -> tuple[str, str]:
        """[GRP/]EVENT, both following the rules for C identifiers."""
        group = DEFAULT_GROUP
        group_text, slash, event = text.partition("/")
        if slash:
            if not group_text:
                raise self.error("Group name is not specified before '/'", pos)
            if len(group_text) >= MAX_EVENT_NAME_LEN:
                raise self.error(f"Group name is too long (max {MAX_EVENT_NAME_LEN - 1})", pos)
            self.check_identifier(group_text, pos, "Group name")
            group = group_text
            pos += len(group_text) + 1
        else:
            event = group_text
        if not event:
            raise self.error("Event name is not specified", pos)
        if len(event) > MAX_EVENT_NAME_LEN:
            raise self.error(f"Event name is too long (max {MAX_EVENT_NAME_LEN})", pos)
        self.check_identifier(event, pos, "Event name")
        return group, event

    def check_identifier(self, name: str, pos: int, what: str) -> None:
        bad = _first_bad_char(name, _IDENT)
        if bad < len(name):
            raise self.error(
                f"{what} must follow the same rules as C identifiers: "
                f"unexpected '{name[bad]}'", pos + bad)

    # ---- the probe point --------------------------------------------------

    def parse_probe_point(self, token: _Token, kind: str):
        """SYM[+offs][%return] or MEMADDR -> (symbol, offset, address, %return?)."""
        text, pos = token.text, token.pos
        if ":" in text:
            raise self.error(
                "Module symbols (MOD:SYM) are not supported: probe a symbol of the "
                "kernel image", pos)
        text, is_return_suffix = self.strip_return_suffix(text, pos)
        is_return = kind == "r" or is_return_suffix
        address = _parse_ulong(text)
        if address is not None:
            return None, 0, address, is_return_suffix
        split = _find_sign(text)
        symbol, offset_text = text[:split], text[split:]
        bad = _first_bad_char(symbol, _KSYM)
        if not symbol or bad < len(symbol):
            raise self.error(f"Invalid probed address or symbol '{text}'", pos + bad)
        offset = self.parse_probe_offset(offset_text, pos + split)
        if is_return and offset != 0:
            raise self.error(
                "Return probe must be on a function entry: offset must be 0",
                pos + split)
        return symbol, offset, None, is_return_suffix

    def parse_uprobe_point(self, token: _Token):
        """PATH:OFFSET (uprobe_events: a file offset) or PATH:FUNC[+OFF] (perf probe)
        -> (path, symbol, offset, file offset)."""
        path, _colon, where = token.text.rpartition(":")
        pos = token.pos + len(path) + 1
        if not where:
            raise self.error("Missing the offset after PATH: (PATH:OFFSET or PATH:FUNC[+OFF])", pos)
        if where.startswith(("+", "-")):
            raise self.error(f"Invalid uprobe offset '{where}': expected a number or a function name", pos)
        address = _parse_ulong(where)
        if address is not None:
            return path, None, 0, address
        split = _find_sign(where)
        symbol, offset_text = where[:split], where[split:]
        bad = _first_bad_char(symbol, _KSYM)
        if not symbol or bad < len(symbol):
            raise self.error(f"Invalid uprobe offset or function '{where}'", pos + bad)
        return path, symbol, self.parse_probe_offset(offset_text, pos + split), None

    def strip_return_suffix(self, text: str, pos: int) -> tuple[str, bool]:
        percent = text.find("%")
        if percent < 0:
            return text, False
        if text[percent:] != "%return":
            raise self.error(
                f"Invalid probed address suffix '{text[percent:]}' (only %return)",
                pos + percent)
        return text[:percent], True

    def parse_probe_offset(self, text: str, pos: int) -> int:
        if not text:
            return 0
        offset = _parse_long(text)
        if offset is None or not is_decimal(text[1:2]):
            raise self.error(f"Invalid probe offset '{text}': expected +NUMBER", pos)
        if offset < 0:
            raise self.error("Probe offset must not be negative", pos)
        if offset >= 1 << 32:
            raise self.error("Probe offset is too big", pos)
        return offset

    # ---- fetch arguments ----------------------------------------------------

    def parse_args(self, tokens: list[_Token], site: _ProbeSite) -> list[ArgDef]:
        if len(tokens) > MAX_TRACE_ARGS:
            raise self.error(f"Too many arguments (max {MAX_TRACE_ARGS})",
                             tokens[MAX_TRACE_ARGS].pos)
        args: list[ArgDef] = []
        for index, token in enumerate(tokens):
            arg = self.parse_arg(token, index, site)
            self.check_arg_name_free(arg.name, args, token.pos)
            args.append(arg)
        return args

    def parse_arg(self, token: _Token, index: int, site: _ProbeSite) -> ArgDef:
        """[NAME=]FETCHARG[:TYPE]."""
        name, body, body_pos = self.split_arg_name(token)
        if not body:
            raise self.error("No argument expression after '='", body_pos)
        if len(body) > MAX_ARGSTR_LEN:
            raise self.error(f"Argument expression is too long (max {MAX_ARGSTR_LEN} "
                             "characters)", body_pos)
        expr, colon, type_text = body.partition(":")
        fetch = self.parse_fetcharg(expr, body_pos, site, depth=0)
        type_pos = body_pos + len(expr) + 1
        ftype = self.parse_type(type_text if colon else None, type_pos, fetch, expr)
        if isinstance(fetch, NamedParam):
            name = name or fetch.name  # perf probe names args after the variable
            fetch = self.resolve(fetch, ftype, site, body_pos)
        return ArgDef(name or f"arg{index + 1}", fetch, ftype, token.text)

    def split_arg_name(self, token: _Token) -> tuple[str | None, str, int]:
        name, eq, body = token.text.partition("=")
        if not eq:
            return None, token.text, token.pos
        if not name:
            raise self.error("Argument name is not specified before '='", token.pos)
        if len(name) > MAX_ARG_NAME_LEN:
            raise self.error(f"Argument name is too long (max {MAX_ARG_NAME_LEN})",
                             token.pos)
        self.check_identifier(name, token.pos, "Argument name")
        return name, body, token.pos + len(name) + 1

    def check_arg_name_free(self, name: str, args: list[ArgDef], pos: int) -> None:
        if name in RESERVED_FIELD_NAMES:
            raise self.error(f"Argument name '{name}' is reserved", pos)
        if any(arg.name == name for arg in args):
            raise self.error(f"Argument name '{name}' is already used", pos)

    def parse_fetcharg(self, text: str, pos: int, site: _ProbeSite, depth: int) -> FetchArg:
        if not text:
            raise self.error("Missing fetch argument", pos)
        if "(" not in text and ")" in text:
            raise self.error("Unbalanced parentheses: unexpected ')'", pos + text.index(")"))
        first = text[0]
        if first == "$":
            return self.parse_var(text, pos, site)
        if first == "%":
            return self.parse_register(text, pos)
        if first == "@":
            return self.parse_memory(text, pos)
        if first in "+-":
            return self.parse_deref(text, pos, site, depth)
        if first == "\\":
            return self.parse_immediate(text, pos)
        return self.parse_param_name(text, pos, depth, site)

    def parse_var(self, text: str, pos: int, site: _ProbeSite) -> FetchArg:
        """$retval, $stack, $stackN, $argN, $comm."""
        var = text[1:]
        if var == "retval":
            if not site.is_return:
                raise self.error("$retval is only available on return probes", pos)
            return RetVal()
        if var == "comm":
            return Comm()
        if var == "stack":
            return StackAddr()
        if var.startswith("stack") and is_decimal(var[5:]):
            return StackEntry(self.parse_var_number(var[5:], pos + 6, "stack"))
        if var.startswith("arg") and is_decimal(var[3:]):
            return self.parse_arg_var(var[3:], pos, site)
        raise self.error(
            f"Invalid $-variable '{text}': expected $retval, $stack, $stackN, "
            "$argN or $comm", pos)

    def parse_arg_var(self, digits: str, pos: int, site: _ProbeSite) -> Arg:
        if site.is_return:
            raise self.error(
                "$argN is not available on return probes: arguments only exist at "
                "function entry", pos)
        if not site.at_function_entry:
            raise self.error(
                "$argN is only available on a function entry probe (SYM or SYM+0)", pos)
        n = self.parse_var_number(digits, pos + 4, "argument")
        if n == 0:
            raise self.error("Invalid argument number $arg0: arguments count from 1",
                             pos + 4)
        return Arg(n)

    def parse_var_number(self, digits: str, pos: int, what: str) -> int:
        n = int(digits, 10)
        if n > PARAM_MAX_STACK:
            raise self.error(f"Invalid {what} number {n} (max {PARAM_MAX_STACK})", pos)
        return n

    def parse_register(self, text: str, pos: int) -> Register:
        canonical = REGISTER_ALIASES.get(text[1:])
        if canonical is None:
            raise self.error(f"Invalid register name '{text}'", pos)
        return Register(canonical)

    def parse_memory(self, text: str, pos: int) -> FetchArg:
        """@ADDR or @SYM[+|-offs]."""
        rest = text[1:]
        if not rest:
            raise self.error("Missing address or symbol after '@'", pos + 1)
        if is_decimal(rest[0]):
            address = _parse_ulong(rest)
            if address is None:
                raise self.error(f"Invalid memory address '{rest}'", pos + 1)
            return Memory(address)
        if rest[0] == "+":
            raise self.error("File offsets (@+OFFS) are only available with uprobes",
                             pos + 1)
        split = _find_sign(rest)
        symbol, offset_text = rest[:split], rest[split:]
        bad = _first_bad_char(symbol, _KSYM)
        if bad < len(symbol):
            raise self.error(f"Invalid symbol name '{symbol}'", pos + 1 + bad)
        offset = _parse_long(offset_text) if offset_text else 0
        if offset is None or (offset_text and not is_decimal(offset_text[1:2])):
            raise self.error(f"Invalid symbol offset '{offset_text}'", pos + 1 + split)
        return Symbol(symbol, offset)

    def parse_deref(self, text: str, pos: int, site: _ProbeSite, depth: int) -> Deref:
        """+|-[u]OFFS(FETCHARG)."""
        user = text[1:2] == "u"
        offset_start = 2 if user else 1
        paren = text.find("(")
        if paren < 0:
            raise self.error("Dereference needs a brace: +|-OFFS(FETCHARG)", pos)
        offset_text = text[offset_start:paren]
        offset = _parse_ulong(offset_text) if is_decimal(offset_text[:1]) else None
        if offset is None:
            raise self.error(f"Invalid dereference offset '{offset_text}'",
                             pos + offset_start)
        close = _matching_paren(text, paren)
        if close is None:
            raise self.error("Dereference brace is not closed: missing ')'", pos + len(text))
        if close != len(text) - 1:
            extra = text[close + 1]
            message = ("Unbalanced parentheses: unexpected ')'" if extra == ")"
                       else f"Unexpected '{text[close + 1:]}' after dereference")
            raise self.error(message, pos + close + 1)
        if depth >= MAX_DEREF_DEPTH:
            raise self.error(f"Dereference is nested too deeply (max {MAX_DEREF_DEPTH})", pos)
        inner_pos = pos + paren + 1
        inner = self.parse_fetcharg(text[paren + 1:close], inner_pos, site, depth + 1)
        if isinstance(inner, (Comm, ImmString)):
            raise self.error(f"{text[paren + 1:close]} can not be dereferenced", inner_pos)
        return Deref(-offset if text[0] == "-" else offset, inner, user)

    def parse_immediate(self, text: str, pos: int) -> FetchArg:
        """\\IMM or \\"string"."""
        rest = text[1:]
        if rest.startswith('"'):
            if len(rest) < 2 or not rest.endswith('"'):
                raise self.error("Immediate string is not closed with '\"'", pos + len(text))
            return ImmString(rest[1:-1])
        value = _parse_long(rest) if rest[:1] in ("-", "+") else _parse_ulong(rest)
        if value is None or not is_decimal(rest.lstrip("+-")[:1]):
            raise self.error(f"Invalid immediate value '{rest}'", pos + 1)
        return Immediate(value)

    def parse_param_name(self, text: str, pos: int, depth: int, site: _ProbeSite) -> FetchArg:
        """A perf-probe style parameter name, or garbage."""
        if not _IDENT.match(text):
            raise self.error(
                f"Invalid fetch argument '{text}': expected %REG, @ADDR, @SYM, $var, "
                "+|-OFFS(FETCHARG), \\IMM or a parameter name", pos)
        bad = _first_bad_char(text, _IDENT)
        if bad < len(text):
            raise self.error(f"Invalid fetch argument: unexpected '{text[bad]}'", pos + bad)
        if depth > 0 and self.resolve_param is None:
            raise self.error(
                f"Parameter name '{text}' can not be dereferenced: perf-style names "
                "must be a whole argument", pos)
        if depth > 0:  # +0(filename): the name's value, resolved from the debug info now
            return self.resolve(NamedParam(text), DEFAULT_TYPE, site, pos)
        return NamedParam(text)

    def resolve(self, param: NamedParam, ftype: FetchType, site: _ProbeSite,
                pos: int) -> FetchArg:
        if self.resolve_param is None:
            return param
        if site.symbol is None:
            raise self.error(f"Parameter '{param.name}' needs a symbol probe point", pos)
        result = self.resolve_param(site.symbol, param.name)
        if isinstance(result, str):
            raise self.error(result, pos)
        if not isinstance(result, FetchArg):
            raise TypeError(f"resolve_param returned {result!r}, not a FetchArg or str")
        if ftype.kind == "string" and not is_memory_fetch(result):
            # perf probe does the same: `name:string` reads what name points to.
            result = Deref(0, result)
        return result

    # ---- types --------------------------------------------------------------

    def parse_type(self, text: str | None, pos: int, fetch: FetchArg, expr: str) -> FetchType:
        if text is None:
            return default_type(fetch)
        if not text:
            raise self.error("Type is not specified after ':'", pos)
        if "[" in text:
            raise self.error("Array types (TYPE[N]) are not supported", pos + text.index("["))
        ftype = self.lookup_type(text, pos)
        if isinstance(fetch, (Comm, ImmString)) and ftype.kind != "string":
            raise self.error(f"{expr} can only be fetched as a string, not {text}", pos)
        if ftype.kind == "string" and not isinstance(fetch, NamedParam) \
                and not is_memory_fetch(fetch):
            raise self.error(
                f"'{text}' type needs a memory argument, not {expr}: use "
                f"+0({expr}):{text} to read the string it points to", pos)
        return ftype

    def lookup_type(self, text: str, pos: int) -> FetchType:
        if text in FETCH_TYPES:
            return FETCH_TYPES[text]
        if text.startswith("b") and is_decimal(text[1:2]):
            return self.parse_bitfield(text, pos)
        raise self.error(
            f"Unknown type '{text}': expected u8..u64, s8..s64, x8..x64, char, "
            "string, ustring, symbol or b<width>@<offset>/<container>", pos)

    def parse_bitfield(self, text: str, pos: int) -> FetchType:
        match = _BITFIELD.fullmatch(text)
        if not match:
            raise self.error(
                f"Invalid bitfield '{text}': expected b<bit-width>@<bit-offset>/"
                "<container-size>", pos)
        width, offset, container = (int(g) for g in match.groups())
        if container not in (8, 16, 32, 64):
            raise self.error(f"Invalid bitfield container size {container}: "
                             "expected 8, 16, 32 or 64", pos + match.start(3))
        if width == 0 or width + offset > container:
            raise self.error(f"Bitfield b{width}@{offset} does not fit in "
                             f"{container} bits", pos)
        return bitfield_type(width, offset, container // 8)


def _find_sign(text: str) -> int:
    """Index of the first '+' or '-' (strpbrk), or len(text)."""
    found = [i for i in (text.find("+"), text.find("-")) if i >= 0]
    return min(found) if found else len(text)


def _matching_paren(text: str, open_index: int) -> int | None:
    depth = 0
    for index in range(open_index, len(text)):
        if text[index] == "(":
            depth += 1
        elif text[index] == ")":
            depth -= 1
            if depth == 0:
                return index
    return None


def is_uprobe_point(text: str) -> bool:
    """PATH:... with a slash in PATH (./prog:main, /bin/true:0x4a0): a uprobe's place.
    (Without the slash, MOD:SYM is a kernel module's symbol, which kprobe_events refuses;
    a C source, fs/namei.c:305, is perf probe's SRC:LINE.)"""
    path, colon, _where = text.strip("'\"").rpartition(":")
    return bool(colon) and "/" in path and not path.endswith((".c", ".h", ".S", ".s"))


def default_uprobe_event_name(kind: str, path: str, symbol: str | None, offset: int,
                              address: int | None) -> str:
    """trace_uprobe.c's default: p_<file name up to its first '.'>_0x<offset> (perf probe
    names a function's probe after the function)."""
    if symbol is not None:
        return default_event_name(kind, symbol, offset, None)
    base = re.sub(r"[^A-Za-z0-9_]", "_", path.rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0]) or "prog"
    return f"{kind}_{base}_0x{address:x}"


def default_event_name(kind: str, symbol: str | None, offset: int,
                        address: int | None) -> str:
    """The event name of a probe defined without one: ftrace's "%c_%s_%ld" / "%c_0x%p"
    (trace_kprobe.c), sanitized and truncated.  Every probe the shell makes is named here."""
    if symbol is not None:
        name = f"{kind}_{symbol}_{offset}"
    else:
        name = f"{kind}_0x{address:016x}"
    name = re.sub(r"[^A-Za-z0-9_]", "_", name)  # sanitize_event_name()
    return name[:MAX_EVENT_NAME_LEN - 1]  # snprintf into a MAX_EVENT_NAME_LEN buffer


# --------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------

class _Node:
    def evaluate(self, values: dict) -> object:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class FieldRef(_Node):
    """A name in a filter; ``key`` is where its value lives in the values dict."""

    name: str
    key: str
    kind: str  # 'int' or 'str'

    def evaluate(self, values: dict) -> object:
        try:
            return values[self.key]
        except KeyError:
            raise KeyError(f"filter needs a value for {self.key!r}") from None

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Literal(_Node):
    value: int | str

    @property
    def kind(self) -> str:
        return "str" if isinstance(self.value, str) else "int"

    def evaluate(self, values: dict) -> object:
        return self.value

    def __str__(self) -> str:
        return f'"{self.value}"' if self.kind == "str" else str(self.value)


_COMPARE = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "~": lambda a, b: fnmatch.fnmatchcase(a, b),
}


@dataclass(frozen=True)
class Compare(_Node):
    op: str
    left: FieldRef | Literal
    right: FieldRef | Literal

    def evaluate(self, values: dict) -> bool:
        left, right = self.left.evaluate(values), self.right.evaluate(values)
        if left is None or right is None:  # a faulted fetch matches nothing
            return False
        return _COMPARE[self.op](left, right)

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"


@dataclass(frozen=True)
class Not(_Node):
    operand: _Node

    def evaluate(self, values: dict) -> bool:
        return not self.operand.evaluate(values)

    def __str__(self) -> str:
        return f"!({self.operand})"


@dataclass(frozen=True)
class BoolOp(_Node):
    op: str  # '&&' or '||'
    left: _Node
    right: _Node

    def evaluate(self, values: dict) -> bool:
        if self.op == "&&":
            return bool(self.left.evaluate(values)) and bool(self.right.evaluate(values))
        return bool(self.left.evaluate(values)) or bool(self.right.evaluate(values))

    def __str__(self) -> str:
        return f"({self.left} {self.op} {self.right})"


@dataclass(frozen=True)
class Filter:
    """The parsed ``if EXPR`` of a probe definition."""

    text: str
    expr: _Node

    def evaluate(self, values: dict) -> bool:
        """``values``: argument name -> value, plus "$comm" and "$pid"
        (fetch.filter_values() builds it); a None value never matches."""
        return bool(self.expr.evaluate(values))

    def __str__(self) -> str:
        return self.text


_FILTER_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>-?[0-9]\w*)
  | (?P<name>\$?[A-Za-z_]\w*)
  | (?P<op>&&|\|\||==|!=|<=|>=|<|>|~|!|\(|\))
""", re.VERBOSE)

_COMPARISON_OPS = ("==", "!=", "<", "<=", ">", ">=", "~")


@dataclass(frozen=True)
class _FilterToken:
    kind: str  # 'string', 'number', 'name', 'op' or 'end'
    text: str
    pos: int


class _FilterParser:
    """Recursive descent: or := and ('||' and)*; and := unary ('&&' unary)*;
    unary := '!' unary | '(' or ')' | comparison."""

    def __init__(self, line: str, start: int, args: list[ArgDef]):
        self.line = line
        self.start = start
        self.fields = _filter_fields(args)
        self.tokens = self.tokenize()
        self.index = 0
        self.depth = 0  # '(' and '!' open: the parser and the evaluator recurse on each
        self.terms = 0

    def error(self, message: str, position: int) -> ProbeEventError:
        return ProbeEventError(message, self.line, position)

    def tokenize(self) -> list[_FilterToken]:
        tokens = []
        pos = self.start
        while pos < len(self.line):
            match = _FILTER_TOKEN.match(self.line, pos)
            if match is None:
                raise self.unexpected_char(pos)
            if match.lastgroup != "space":
                tokens.append(_FilterToken(match.lastgroup, match.group(), pos))
            pos = match.end()
        tokens.append(_FilterToken("end", "", len(self.line.rstrip()) + 1))
        return tokens

    def unexpected_char(self, pos: int) -> ProbeEventError:
        char = self.line[pos]
        if char == '"':
            return self.error("Unterminated string in filter", pos)
        hints = {"=": "; use '=='", "&": "; use '&&'", "|": "; use '||'"}
        return self.error(f"Unexpected character '{char}' in filter{hints.get(char, '')}",
                          pos)

    def peek(self) -> _FilterToken:
        return self.tokens[self.index]

    def take(self) -> _FilterToken:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def parse(self) -> Filter:
        if self.peek().kind == "end":
            raise self.error("No filter rule after 'if'", self.peek().pos)
        expr = self.parse_or()
        token = self.peek()
        if token.kind != "end":
            if token.text == ")":
                raise self.error("Unbalanced parentheses in filter: unexpected ')'",
                                 token.pos)
            raise self.error(f"Unexpected '{token.text}' in filter: expected '&&' or '||'",
                             token.pos)
        return Filter(self.line[self.start:].strip(), expr)

    def parse_or(self) -> _Node:
        node = self.parse_and()
        while self.peek().text == "||":
            self.take()
            node = BoolOp("||", node, self.parse_and())
        return node

    def parse_and(self) -> _Node:
        node = self.parse_unary()
        while self.peek().text == "&&":
            self.take()
            node = BoolOp("&&", node, self.parse_unary())
        return node

    def parse_unary(self) -> _Node:
        token = self.peek()
        if token.kind == "op" and token.text in ("!", "("):
            self.depth += 1
            if self.depth > MAX_FILTER_DEPTH:
                raise self.error(f"Filter nested too deeply (max {MAX_FILTER_DEPTH} '(' and '!')", token.pos)
            try:
                return self.parse_nested(token)
            finally:
                self.depth -= 1
        return self.parse_comparison()

    def parse_nested(self, token: _FilterToken) -> _Node:
        self.take()
        if token.text == "!":
            return Not(self.parse_unary())
        node = self.parse_or()
        if self.peek().text != ")":
            raise self.error("Unbalanced parentheses in filter: '(' is never closed", token.pos)
        self.take()
        return node

    def parse_comparison(self) -> _Node:
        self.terms += 1
        if self.terms > MAX_FILTER_TERMS:
            raise self.error(f"Too many terms in predicate expression (max {MAX_FILTER_TERMS})",
                             self.peek().pos)
        left = self.parse_operand()
        op = self.peek()
        if op.kind != "op" or op.text not in _COMPARISON_OPS:
            return self.truth_test(left)
        self.take()
        right = self.parse_operand()
        self.check_comparison(left, op, right)
        return Compare(op.text, left, right)

    def truth_test(self, operand: FieldRef | Literal) -> _Node:
        """A bare integer operand means "!= 0", like C and bpftrace."""
        if operand.kind != "int":
            raise self.error(f"'{operand}' is a string: compare it with ==, != or ~",
                             self.peek().pos)
        return Compare("!=", operand, Literal(0))

    def check_comparison(self, left, op: _FilterToken, right) -> None:
        if op.text == "~":
            if left.kind != "str" or not (isinstance(right, Literal) and right.kind == "str"):
                raise self.error("Glob match '~' needs a string field and a quoted "
                                 'pattern, e.g. comm ~ "open*"', op.pos)
            return
        if left.kind != right.kind:
            raise self.error(f"Type mismatch in filter: '{left}' is {_kind_name(left)} "
                             f"but '{right}' is {_kind_name(right)}", op.pos)
        if left.kind == "str" and op.text not in ("==", "!="):
            raise self.error(f"Operator '{op.text}' can not compare strings: "
                             "use ==, != or ~", op.pos)

    def parse_operand(self) -> FieldRef | Literal:
        token = self.take()
        if token.kind == "name":
            return self.field(token)
        if token.kind == "number":
            return Literal(self.number(token))
        if token.kind == "string":
            return Literal(re.sub(r"\\(.)", r"\1", token.text[1:-1]))
        if token.kind == "end":
            raise self.error("Unexpected end of filter: expected a field or a value",
                             token.pos)
        raise self.error(f"Unexpected '{token.text}' in filter: expected a field or a value",
                         token.pos)

    def field(self, token: _FilterToken) -> FieldRef:
        known = self.fields.get(token.text)
        if known is None:
            names = ", ".join(sorted(self.fields))
            raise self.error(f"Unknown field '{token.text}' in filter (known: {names})",
                             token.pos)
        key, kind = known
        return FieldRef(token.text, key, kind)

    def number(self, token: _FilterToken) -> int:
        text = token.text
        digits = text.lstrip("-")
        if re.fullmatch(r"0[xX][0-9a-fA-F]+|[0-9]+", digits) is None:
            raise self.error(f"Invalid number '{text}' in filter", token.pos)
        hex_digits = digits[:2].lower() == "0x"
        significant = (digits[2:] if hex_digits else digits).lstrip("0")
        value = int(significant or "0", 16 if hex_digits else 10) if len(significant) <= 20 else LIMIT
        if value >= LIMIT:
            raise self.error("Numeric constant too large in filter", token.pos)
        return -value if text.startswith("-") else value


def _filter_fields(args: list[ArgDef]) -> dict[str, tuple[str, str]]:
    """Names a filter may use -> (key in the values dict, 'int' | 'str')."""
    fields = {
        "$comm": ("$comm", "str"), "comm": ("$comm", "str"),
        "$pid": ("$pid", "int"), "common_pid": ("$pid", "int"),
    }
    for arg in args:  # an argument called comm wins over the task comm
        kind = "str" if arg.type.kind in ("string", "char") else "int"
        fields[arg.name] = (arg.name, kind)
    return fields


def _kind_name(operand: FieldRef | Literal) -> str:
    return "a string" if operand.kind == "str" else "an integer"

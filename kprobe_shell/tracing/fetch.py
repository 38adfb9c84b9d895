"""Fetch arguments: what a kprobe event records, and how it is printed.

This module is the runtime half of the kprobe_events language described in
the Linux kernel's Documentation/trace/kprobetrace.rst ("Kprobe-based Event
Tracing"); the parser lives in :mod:`kprobe_shell.tracing.probe_events`.

A fetch argument (``FetchArg``) is a small tree that mirrors ftrace's fetch
instructions (kernel/trace/trace_probe.c):

    %REG            -> Register("rdi")
    @ADDR           -> Memory(0xffffffff81a00000)
    @SYM[+|-offs]   -> Symbol("jiffies", 0)      (address resolved at fetch time)
    $stackN/$stack  -> StackEntry(n) / StackAddr()
    $argN           -> Arg(n)                    (x86_64 SysV: rdi rsi rdx rcx r8 r9, then stack)
    $retval         -> RetVal()
    $comm           -> Comm()
    +|-OFFS(ARG)    -> Deref(offset, inner)      (nests: +8(+0(%di)))
    \\IMM / \\"str"  -> Immediate(value) / ImmString(text)
    bare name       -> NamedParam("filename")    (perf-probe style, resolved from DWARF elsewhere)

Memory-shaped arguments (@ADDR, @SYM, +OFFS(...)) denote an *address*; the
type decides what is read there, exactly like ftrace replaces the last
dereference with a typed store (FETCH_OP_ST_MEM / FETCH_OP_ST_STRING).
That is why ``+0(%di):string`` reads the string %di points to, and why
``:string`` is refused on a bare register.

Printing follows ftrace's print_type functions: u* as %u, s* as %d of the
sign-extended value, x* as 0x%x of the truncated value (no zero padding),
``symbol`` as %pS (sym+0x1c/0x40), string as "..." and a faulting fetch as
``(fault)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol, Union

if TYPE_CHECKING:  # pragma: no cover - import only for type hints (avoids a cycle)
    from .probe_events import ProbeEventDef

__all__ = [
    "ARG_REGISTERS",
    "Arg",
    "CANONICAL_REGISTERS",
    "Comm",
    "DEFAULT_TYPE",
    "Deref",
    "FETCH_TYPES",
    "FetchArg",
    "FetchContext",
    "FetchFault",
    "FetchType",
    "ImmString",
    "Immediate",
    "MAX_STRING_SIZE",
    "Memory",
    "NamedParam",
    "REGISTER_ALIASES",
    "Register",
    "RetVal",
    "STRING_TYPE",
    "StackAddr",
    "StackEntry",
    "Symbol",
    "UnresolvedParamError",
    "bitfield_type",
    "decode_string",
    "default_type",
    "evaluate",
    "filter_values",
    "format_value",
    "is_memory_fetch",
    "match_filter",
    "python_value",
    "read_string",
    "render_args",
]

MASK64 = (1 << 64) - 1
PAGE_SIZE = 4096

# ftrace copies at most MAX_STRING_SIZE (PATH_MAX = 4096) bytes including the
# terminating NUL.  We cap lower so one runaway pointer cannot flood a trace
# line; the truncation behaviour (keep size-1 bytes) is the kernel's.
MAX_STRING_SIZE = 256


# --------------------------------------------------------------------------
# x86_64 registers
# --------------------------------------------------------------------------

# Canonical names are what FetchContext.reg() receives.
CANONICAL_REGISTERS = (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
    "rip", "eflags", "cs", "ss", "orig_rax",
)

# ftrace's spelling of each canonical register: the pt_regs member names that
# regs_query_register_offset() accepts on x86_64.  Used to print %REG back.
_FTRACE_REGISTER_NAMES = {
    "rax": "ax", "rbx": "bx", "rcx": "cx", "rdx": "dx",
    "rsi": "si", "rdi": "di", "rbp": "bp", "rsp": "sp",
    "rip": "ip", "eflags": "flags", "orig_rax": "orig_ax",
    "cs": "cs", "ss": "ss",
    **{f"r{n}": f"r{n}" for n in range(8, 16)},
}


def _build_register_aliases() -> dict[str, str]:
    aliases = {ftrace: canonical for canonical, ftrace in _FTRACE_REGISTER_NAMES.items()}
    # Friendlier spellings ftrace itself does not accept on x86_64.  The
    # 32-bit names map to the whole 64-bit register: use :u32/:x32 to narrow.
    for canonical in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "rip"):
        aliases[canonical] = canonical
        aliases["e" + canonical[1:]] = canonical
    aliases.update({"rflags": "eflags", "eflags": "eflags", "orig_rax": "orig_rax"})
    return aliases


# Every register spelling accepted after '%', mapped to its canonical name.
REGISTER_ALIASES: dict[str, str] = _build_register_aliases()

# System V AMD64 calling convention, as regs_get_kernel_argument() uses it.
ARG_REGISTERS = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")


# --------------------------------------------------------------------------
# Fetch types
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class FetchType:
    """How a fetched value is stored and printed (ftrace's ``struct fetch_type``).

    ``size`` is the number of bytes read from memory (the container size for
    a bitfield, 0 for the variable-length string types).  ``kind`` is one of
    'int' (u*/s*, decimal), 'hex' (x*), 'string' (string/ustring), 'symbol',
    'char' or 'bitfield'.
    """

    name: str
    size: int
    signed: bool
    kind: str
    bit_width: int = 0
    bit_offset: int = 0

    @property
    def bits(self) -> int:
        return self.size * 8

    def __str__(self) -> str:
        return self.name


def _basic_types() -> dict[str, FetchType]:
    types: dict[str, FetchType] = {}
    for size in (1, 2, 4, 8):
        bits = size * 8
        types[f"u{bits}"] = FetchType(f"u{bits}", size, False, "int")
        types[f"s{bits}"] = FetchType(f"s{bits}", size, True, "int")
        types[f"x{bits}"] = FetchType(f"x{bits}", size, False, "hex")
    types["string"] = FetchType("string", 0, False, "string")
    types["ustring"] = FetchType("ustring", 0, False, "string")  # user memory: same here
    types["symbol"] = FetchType("symbol", 8, False, "symbol")  # alias of u64, printed %pS
    types["char"] = FetchType("char", 1, False, "char")
    return types


# Every named type accepted after ':' (bitfields are built by bitfield_type()).
FETCH_TYPES: dict[str, FetchType] = _basic_types()
DEFAULT_TYPE = FETCH_TYPES["x64"]  # ftrace's default on 64-bit kernels
STRING_TYPE = FETCH_TYPES["string"]


def bitfield_type(bit_width: int, bit_offset: int, container_bytes: int) -> FetchType:
    """``b<bit-width>@<bit-offset>/<container-size>``: printed unsigned decimal."""
    return FetchType(
        f"b{bit_width}@{bit_offset}/{container_bytes * 8}",
        container_bytes, False, "bitfield", bit_width, bit_offset,
    )


# --------------------------------------------------------------------------
# Fetch arguments
# --------------------------------------------------------------------------

class FetchArg:
    """Base class of every fetch argument; ``str()`` gives ftrace syntax back."""

    __slots__ = ()


@dataclass(frozen=True)
class Register(FetchArg):
    name: str  # canonical: rax..r15, rip, rsp, rbp, eflags, cs, ss, orig_rax

    def __str__(self) -> str:
        return "%" + _FTRACE_REGISTER_NAMES.get(self.name, self.name)


@dataclass(frozen=True)
class Memory(FetchArg):
    address: int

    def __str__(self) -> str:
        return f"@0x{self.address:x}"


@dataclass(frozen=True)
class Symbol(FetchArg):
    """@SYM[+|-offs]: like ftrace, the symbol is looked up when fetching."""

    name: str
    offset: int = 0

    def __str__(self) -> str:
        return f"@{self.name}{_signed_offset(self.offset)}"


@dataclass(frozen=True)
class StackEntry(FetchArg):
    n: int

    def __str__(self) -> str:
        return f"$stack{self.n}"


@dataclass(frozen=True)
class StackAddr(FetchArg):
    def __str__(self) -> str:
        return "$stack"


@dataclass(frozen=True)
class Arg(FetchArg):
    n: int  # 1-based, like $argN

    def __str__(self) -> str:
        return f"$arg{self.n}"


@dataclass(frozen=True)
class RetVal(FetchArg):
    def __str__(self) -> str:
        return "$retval"


@dataclass(frozen=True)
class Comm(FetchArg):
    def __str__(self) -> str:
        return "$comm"


@dataclass(frozen=True)
class Deref(FetchArg):
    """+|-[u]OFFS(FETCHARG): the address ``inner + offset``."""

    offset: int
    inner: FetchArg
    user: bool = False  # the 'u' prefix; one address space in the emulator

    def __str__(self) -> str:
        sign = "-" if self.offset < 0 else "+"
        user = "u" if self.user else ""
        return f"{sign}{user}{abs(self.offset)}({self.inner})"


@dataclass(frozen=True)
class Immediate(FetchArg):
    value: int

    def __str__(self) -> str:
        return f"\\{self.value}"


@dataclass(frozen=True)
class ImmString(FetchArg):
    text: str

    def __str__(self) -> str:
        return f'\\"{self.text}"'


@dataclass(frozen=True)
class NamedParam(FetchArg):
    """A perf-probe style parameter name, to be resolved from debug info."""

    name: str

    def __str__(self) -> str:
        return self.name


def _signed_offset(offset: int) -> str:
    if offset > 0:
        return f"+{offset}"
    if offset < 0:
        return f"-{-offset}"
    return ""


# Arguments that denote an address rather than a value.  ftrace ends these
# with a typed memory store, so they are the only ones a string can come from.
_ADDRESS_FETCHES = (Memory, Symbol, Deref)


def is_memory_fetch(fetch: FetchArg) -> bool:
    """True if ``:string`` is valid on ``fetch`` (ftrace's BAD_STRING rule)."""
    return isinstance(fetch, _ADDRESS_FETCHES + (Immediate, Comm, ImmString))


def default_type(fetch: FetchArg) -> FetchType:
    """The type ftrace uses when none is given: string for $comm, else x64."""
    if isinstance(fetch, (Comm, ImmString)):
        return STRING_TYPE
    return DEFAULT_TYPE


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------

class FetchFault(Exception):
    """A fetch touched unmapped memory (or an unknown symbol).

    FetchContext.read_mem raises it; ftrace prints such a value as (fault).
    """

    def __init__(self, address: int | None = None, message: str | None = None):
        self.address = address
        if message is None:
            message = "fault" if address is None else f"fault at 0x{address:x}"
        super().__init__(message)


class UnresolvedParamError(LookupError):
    """A NamedParam reached evaluation: parse with resolve_param= to fix."""


class FetchContext(Protocol):
    """What the evaluator needs from the (emulated) CPU at a probe hit."""

    is_return: bool

    def reg(self, name: str) -> int: ...
    def read_mem(self, addr: int, size: int) -> bytes: ...  # raises FetchFault
    def symbol_address(self, name: str) -> int: ...  # raises KeyError
    def symbolize(self, addr: int) -> str: ...
    def comm(self) -> str: ...
    def pid(self) -> int: ...
    def retval(self) -> int: ...


Value = Union[int, bytes, None]


def evaluate(fetch: FetchArg, ctx: FetchContext, ftype: FetchType | None = None) -> int | bytes:
    """Fetch the raw value ftrace would store in the trace record.

    Integers come back unsigned and truncated to the type's size (bitfields
    already extracted); string types come back as ``bytes`` without the NUL.
    ``ftype`` defaults to ftrace's default for ``fetch`` (x64, or string for
    $comm).  Raises FetchFault when memory or a symbol cannot be read.
    """
    if ftype is None:
        ftype = default_type(fetch)
    if ftype.kind == "string":
        return _fetch_string(fetch, ctx)
    if isinstance(fetch, _ADDRESS_FETCHES):
        raw = _read_uint(ctx, _address(fetch, ctx), ftype.size)
    else:
        raw = _value(fetch, ctx)
    return _store(raw, ftype)


def _value(fetch: FetchArg, ctx: FetchContext) -> int:
    """The 64-bit value of a fetch, as ftrace computes it before storing."""
    match fetch:
        case Register(name):
            return ctx.reg(name) & MASK64
        case StackAddr():
            return ctx.reg("rsp") & MASK64
        case StackEntry(n):
            # regs_get_kernel_stack_nth(): the Nth word above the stack pointer.
            return _read_uint(ctx, ctx.reg("rsp") + 8 * n, 8)
        case Arg(n):
            return _function_argument(ctx, n)
        case RetVal():
            return ctx.retval() & MASK64
        case Immediate(value):
            return value & MASK64
        case Memory() | Symbol() | Deref():
            return _read_uint(ctx, _address(fetch, ctx), 8)
        case NamedParam(name):
            raise UnresolvedParamError(
                f"parameter {name!r} was never resolved; "
                "pass resolve_param= to parse_probe_event()"
            )
    raise TypeError(f"{fetch} has no integer value")


def _function_argument(ctx: FetchContext, n: int) -> int:
    """$argN at function entry: six registers, then the caller's stack.

    At entry [rsp] holds the return address, so argument 7 is at rsp+8.
    """
    if n <= len(ARG_REGISTERS):
        return ctx.reg(ARG_REGISTERS[n - 1]) & MASK64
    slot = n - len(ARG_REGISTERS)
    return _read_uint(ctx, ctx.reg("rsp") + 8 * slot, 8)


def _address(fetch: FetchArg, ctx: FetchContext) -> int:
    """The address a memory-shaped fetch denotes (before the final load)."""
    match fetch:
        case Memory(address):
            return address & MASK64
        case Symbol(name, offset):
            try:
                base = ctx.symbol_address(name)
            except KeyError:
                raise FetchFault(None, f"unknown symbol {name!r}") from None
            return (base + offset) & MASK64
        case Deref(offset, inner):
            return (_value(inner, ctx) + offset) & MASK64
        case Immediate(value):  # \IMM:string reads at that address
            return value & MASK64
    raise TypeError(f"{fetch} does not denote an address")


def _read_uint(ctx: FetchContext, addr: int, size: int) -> int:
    data = ctx.read_mem(addr & MASK64, size)
    if len(data) != size:  # a short read means the tail was not mapped
        raise FetchFault(addr & MASK64)
    return int.from_bytes(data, "little")


def _store(raw: int, ftype: FetchType) -> int:
    """Truncate to the type's size; bitfields are shifted and masked.

    Bit offsets count from the least significant bit of the (little-endian)
    container, as __parse_bitfield_probe_arg()'s shift pair does.
    """
    raw &= (1 << ftype.bits) - 1
    if ftype.kind == "bitfield":
        return (raw >> ftype.bit_offset) & ((1 << ftype.bit_width) - 1)
    return raw


def _fetch_string(fetch: FetchArg, ctx: FetchContext) -> bytes:
    if isinstance(fetch, Comm):
        return ctx.comm().encode()[: MAX_STRING_SIZE - 1]
    if isinstance(fetch, ImmString):
        return fetch.text.encode()[: MAX_STRING_SIZE - 1]
    if isinstance(fetch, _ADDRESS_FETCHES + (Immediate,)):
        return read_string(ctx, _address(fetch, ctx))
    raise TypeError(f"{fetch} is not a memory argument; a string needs an address")


def read_string(ctx: FetchContext, addr: int, max_size: int = MAX_STRING_SIZE) -> bytes:
    """Read a NUL-terminated string like strncpy_from_kernel_nofault().

    At most ``max_size - 1`` bytes are kept; running into unmapped memory
    before the NUL faults the whole string (ftrace prints "(fault)").
    """
    out = bytearray()
    limit = max_size - 1
    while len(out) < limit:
        # Read page-sized chunks; only fall back to bytes near a hole.
        chunk_len = min(limit - len(out), PAGE_SIZE - addr % PAGE_SIZE)
        try:
            chunk = ctx.read_mem(addr, chunk_len)
        except FetchFault:
            chunk = _read_bytes_until_nul(ctx, addr, chunk_len)
        nul = chunk.find(0)
        if nul >= 0:
            out += chunk[:nul]
            return bytes(out)
        out += chunk
        addr = (addr + len(chunk)) & MASK64
    return bytes(out)


def _read_bytes_until_nul(ctx: FetchContext, addr: int, count: int) -> bytes:
    out = bytearray()
    for i in range(count):
        byte = ctx.read_mem((addr + i) & MASK64, 1)  # a fault here propagates
        out += byte
        if byte == b"\0":
            break
    return bytes(out)


# --------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------

def _sign_extend(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def python_value(value: Value | FetchFault, ftype: FetchType) -> int | str | None:
    """The value as Python sees it for filters and JSON.

    Signed types are sign-extended, strings and chars decoded, symbols and
    everything else stay unsigned ints; a fault becomes None.
    """
    if value is None or isinstance(value, FetchFault):
        return None
    if ftype.kind == "string":
        return decode_string(value)
    if ftype.kind == "char":
        return chr(value & 0xFF)
    if ftype.signed:
        return _sign_extend(value, ftype.bits)
    if ftype.kind == "bitfield":
        return value
    return value & ((1 << ftype.bits) - 1)


def decode_string(raw: bytes) -> str:
    # ftrace prints the bytes as they are; keep non-UTF-8 bytes visible.
    return raw.decode("utf-8", errors="backslashreplace")


def format_value(
    value: Value | FetchFault,
    ftype: FetchType,
    symbolize: Callable[[int], str] | None = None,
) -> str:
    """Format a raw value the way ftrace's print_type_* functions do.

    ``symbolize`` turns an address into "sym+0x1c/0x40" for the symbol
    type (FetchContext.symbolize); without it addresses print as hex.
    """
    if value is None or isinstance(value, FetchFault):
        return "(fault)"
    if ftype.kind == "string":
        return f'"{decode_string(value)}"'
    if ftype.kind == "char":
        return f"'{chr(value & 0xFF)}'"
    if ftype.kind == "symbol":
        value &= MASK64
        return symbolize(value) if symbolize else f"0x{value:x}"
    if ftype.kind == "hex":
        return f"0x{value & ((1 << ftype.bits) - 1):x}"
    return str(python_value(value, ftype))


def render_args(defn: "ProbeEventDef", ctx: FetchContext) -> tuple[str, dict]:
    """Fetch and print every argument of a probe hit.

    Returns the ftrace argument text (" name=value name2=value2", with the
    leading space ftrace's print_fmt has) and a dict name -> python_value().
    """
    parts = []
    values: dict[str, int | str | None] = {}
    for arg in defn.args:
        try:
            raw: Value = evaluate(arg.fetch, ctx, arg.type)
        except FetchFault:
            raw = None
        parts.append(f" {arg.name}={format_value(raw, arg.type, ctx.symbolize)}")
        values[arg.name] = python_value(raw, arg.type)
    return "".join(parts), values


def filter_values(values: dict, ctx: FetchContext) -> dict:
    """Argument values plus the "$comm" and "$pid" keys a Filter may use."""
    return {**values, "$comm": ctx.comm(), "$pid": ctx.pid()}


def match_filter(defn: "ProbeEventDef", ctx: FetchContext, values: dict) -> bool:
    """True if the event has no filter or its filter accepts this hit."""
    if defn.filter is None:
        return True
    return defn.filter.evaluate(filter_values(values, ctx))

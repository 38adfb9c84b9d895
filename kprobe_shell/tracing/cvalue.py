"""C values of the guest, typed from DWARF, and printed the way gdb prints them.

A `CType` says what bytes mean (an int of some size and sign, a pointer, an array, a
struct ...); a `Value` is a type with its bytes, where they came from (memory, a register)
or why there are none (optimized out, a register the caller did not save).  `format_value`
is gdb's `print` rendering: `(struct file *) 0x104000 <files>`, `{f_mode = 1, f_pos = 0}`,
`"init", '\\000' <repeats 11 times>`, with the print formats /x /d /u /o /t /c /a /s /z.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..machine.dwarf_locations import array_count, child_dies, find_member, member_type, strip_type

#: gdb's `set print elements` and `set print repeats` defaults.
PRINT_ELEMENTS = 200
REPEAT_THRESHOLD = 10

FORMAT_LETTERS = "xduotacsz"


class EvalError(Exception):
    """An expression gdb would refuse; the message is gdb's where gdb has one."""


@dataclass(frozen=True)
class CType:
    kind: str                 # void int bool char enum ptr array struct union func
    size: int
    name: str = ""            # the C name (a typedef's name when the value was declared with it)
    signed: bool = False
    target: "CType | None" = field(default=None, compare=False)  # ptr/array element/func's return
    count: int | None = None  # array
    die: object = field(default=None, compare=False)             # struct/union/enum members
    params: tuple = field(default=(), compare=False)             # func: its parameters' types

    @property
    def is_scalar(self) -> bool:
        return self.kind in ("int", "bool", "char", "enum", "ptr")

    def spell(self) -> str:
        """The type as gdb writes it: `struct file *`, `char [16]`, `void (*)(void)`."""
        if self.kind == "ptr":
            inner = self.target or VOID
            if inner.kind == "func":
                return f"{(inner.target or VOID).spell()} (*){inner.arguments()}"
            if inner.kind == "array":
                return f"{(inner.target or VOID).spell()} (*)[{inner.count if inner.count is not None else ''}]"
            text = inner.spell()
            return text + ("*" if text.endswith("*") else " *")
        if self.kind == "array":
            return f"{(self.target or VOID).spell()} [{self.count if self.count is not None else ''}]"
        if self.kind == "func":
            return self.name or f"{(self.target or VOID).spell()} {self.arguments()}"
        return self.name or "void"

    def arguments(self) -> str:
        """A function type's parameter list as gdb writes it: `(struct file *, char *)`."""
        if self.params is None:
            return "()"
        return "(" + (", ".join(p.spell() for p in self.params) or "void") + ")"


VOID = CType("void", 1, "void")
INT = CType("int", 4, "int", True)
UINT = CType("int", 4, "unsigned int")
LONG = CType("int", 8, "long", True)
ULONG = CType("int", 8, "unsigned long")
CHAR = CType("char", 1, "char", True)
CODE_PTR = CType("ptr", 8, target=CType("func", 1, target=VOID, params=None))
DATA_PTR = CType("ptr", 8, target=VOID)

#: C's own type words, for casts when the debug info has no such base type.
BUILTIN_TYPES = {
    "char": CHAR, "signed char": CHAR, "unsigned char": CType("char", 1, "unsigned char"),
    "short": CType("int", 2, "short", True), "unsigned short": CType("int", 2, "unsigned short"),
    "int": INT, "signed": INT, "signed int": INT, "unsigned": UINT, "unsigned int": UINT,
    "long": LONG, "long int": LONG, "long long": LONG, "signed long": LONG,
    "unsigned long": ULONG, "unsigned long long": ULONG, "long unsigned int": ULONG, "void": VOID,
    "_Bool": CType("bool", 1, "_Bool"),
}


def pointer_to(t: CType) -> CType:
    return CType("ptr", 8, target=t)


def ctype_of(die, depth: int = 0) -> CType:
    """The CType of a DWARF type DIE (None is void)."""
    if die is None:
        return VOID
    if depth > 16:
        raise EvalError("the debug info's type chain is too deep")
    tag = die.tag
    name = _name(die)
    if tag == "DW_TAG_typedef":
        under = ctype_of(_type(die), depth + 1)
        return CType(under.kind, under.size, name or under.name, under.signed, under.target, under.count, under.die)
    if tag in ("DW_TAG_const_type", "DW_TAG_volatile_type", "DW_TAG_restrict_type", "DW_TAG_atomic_type"):
        return ctype_of(_type(die), depth + 1)
    if tag == "DW_TAG_pointer_type":
        return pointer_to(ctype_of(_type(die), depth + 1))
    if tag == "DW_TAG_array_type":
        elem = ctype_of(_type(die), depth + 1)
        count = array_count(die)
        return CType("array", elem.size * (count or 0), target=elem, count=count)
    if tag in ("DW_TAG_structure_type", "DW_TAG_union_type"):
        word = "struct" if tag == "DW_TAG_structure_type" else "union"
        return CType(word, _byte_size(die), f"{word} {name or '{...}'}", die=die)
    if tag == "DW_TAG_enumeration_type":
        return CType("enum", _byte_size(die) or 4, f"enum {name or '{...}'}", True, die=die)
    if tag == "DW_TAG_unspecified_type":  # an assembly function's return type
        return CType("void", 1, name or "void")
    if tag == "DW_TAG_subroutine_type":
        return CType("func", 1, target=ctype_of(_type(die), depth + 1), params=function_parameters(die, depth))
    if tag == "DW_TAG_base_type":
        enc = die.attributes.get("DW_AT_encoding")
        enc = enc.value if enc is not None else 5
        size = _byte_size(die)
        if enc == 2:  # DW_ATE_boolean
            return CType("bool", size, name)
        if enc in (6, 8) and size == 1:  # DW_ATE_signed_char, DW_ATE_unsigned_char
            return CType("char", 1, name, enc == 6)
        if enc == 4:  # DW_ATE_float: shown as its bytes' integer, gdb's /x view
            return CType("int", size, name, False)
        return CType("int", size, name, enc in (5, 6))
    return CType("int", _byte_size(die) or 8, name or "?")


def function_parameters(die, depth: int = 0) -> tuple | None:
    """The parameter types of a function or function type DIE (None: unprototyped)."""
    if "DW_AT_prototyped" not in die.attributes:
        return None
    return tuple(ctype_of(_type(c), depth + 1) for c in child_dies(die) if c.tag == "DW_TAG_formal_parameter")


def _type(die):
    return die.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in die.attributes else None


def _name(die) -> str:
    attr = die.attributes.get("DW_AT_name")
    return attr.value.decode(errors="replace") if attr is not None else ""


def _byte_size(die) -> int:
    attr = die.attributes.get("DW_AT_byte_size")
    return attr.value if attr is not None and isinstance(attr.value, int) else 0


@dataclass
class Value:
    """A typed value: its bytes, and its address when it lives in memory."""

    type: CType
    data: bytes = b""
    address: int | None = None
    register: str | None = None
    missing: str = ""          # "optimized out" or "not saved": no bytes at all

    @classmethod
    def of_int(cls, t: CType, n: int) -> "Value":
        return cls(t, (n & ((1 << (8 * t.size)) - 1)).to_bytes(t.size, "little"))

    def as_int(self) -> int:
        if self.missing:
            raise EvalError(f"value has been {self.missing}" if self.missing == "optimized out"
                            else f"value is {self.missing}")
        if self.type.kind in ("struct", "union", "array", "func", "void"):
            if self.type.kind == "func" and self.address is not None:
                return self.address
            raise EvalError(f"a {self.type.spell()} is not a number")
        return int.from_bytes(self.data[: self.type.size], "little", signed=self.type.signed)


def members(t: CType):
    """(name, offset, member DIE) of a struct or union, in order."""
    for member in child_dies(strip_type(t.die)) if t.die is not None else ():
        if member.tag != "DW_TAG_member":
            continue
        loc = member.attributes.get("DW_AT_data_member_location")
        offset = loc.value if loc is not None and isinstance(loc.value, int) else 0
        yield _name(member), offset, member


def member_value(v: Value, name: str) -> Value:
    """v.name: a member of a struct or union value (in anonymous members too)."""
    if v.type.kind not in ("struct", "union"):
        raise EvalError(f"Attempt to extract a component of a value that is not a structure.")
    found = find_member(v.type.die, name)
    if found is None:
        raise EvalError(f"There is no member named {name}.")
    offset, member = found
    t = ctype_of(member_type(member))
    if v.missing:
        return Value(t, missing=v.missing)
    bits = member.attributes.get("DW_AT_bit_size")
    if bits is not None:
        return _bitfield(v, t, offset, member, bits.value)
    data = v.data[offset: offset + t.size]
    return Value(t, data, v.address + offset if v.address is not None else None)


def _bitfield(v: Value, t: CType, offset: int, member, width: int) -> Value:
    start = member.attributes.get("DW_AT_data_bit_offset")
    if start is not None:
        bit = start.value
    else:  # DWARF 2-4: counted from the container's most significant bit
        old = member.attributes.get("DW_AT_bit_offset")
        bit = offset * 8 + t.size * 8 - (old.value if old else 0) - width
    whole = int.from_bytes(v.data, "little")
    n = (whole >> bit) & ((1 << width) - 1)
    if t.signed and n >> (width - 1):
        n -= 1 << width
    return Value.of_int(t, n)


# ---------------------------------------------------------------------- printing
class Printer:
    """gdb's value printer for one print command: FMT applies to every scalar in the value."""

    def __init__(self, read, symbolize, fmt: str = ""):
        self.read = read              # read(addr, n) -> bytes (raises EvalError)
        self.symbolize = symbolize    # symbolize(addr) -> "name+off" or ""
        self.fmt = fmt

    def top(self, v: Value) -> str:
        """print's rendering: a pointer says its type first, `(char *)` excepted."""
        if v.missing:
            return f"<{v.missing}>"
        t = v.type
        if t.kind == "ptr" and not self.fmt and not self._is_char_ptr(t):
            return f"({t.spell()}) {self.value(v)}"
        if t.kind == "func" and not self.fmt:
            where = self._symbol(v.address or 0)
            return f"{{{t.spell()}}} 0x{v.address or 0:x}{where}"
        return self.value(v)

    def value(self, v: Value) -> str:
        if v.missing:
            return f"<{v.missing}>"
        kind = v.type.kind
        if kind in ("struct", "union"):
            parts = [f"{name or '<anonymous>'} = {self.value(member_value(v, name)) if name else '{...}'}"
                     for name, _off, _m in members(v.type)]
            return "{" + ", ".join(parts) + "}"
        if kind == "array":
            return self._array(v)
        if kind == "void":
            return "void"
        if kind == "func":
            if self.fmt:  # /x on a function: its address
                return format_scalar(v.address or 0, CType("ptr", 8), self.fmt, self.symbolize)
            return f"{{{v.type.spell()}}} 0x{v.address or 0:x}{self._symbol(v.address or 0)}"
        n = v.as_int()
        if self.fmt and self.fmt != "s":
            return format_scalar(n, v.type, self.fmt, self.symbolize)
        return self._natural(n, v)

    def _natural(self, n: int, v: Value) -> str:
        t = v.type
        if t.kind == "ptr":
            if self._is_char_ptr(t):
                return f"0x{n:x}{self._symbol(n)}" + (f" {self._string(n)}" if n else "")
            return f"0x{n:x}{self._symbol(n)}"
        if t.kind == "char":
            return f"{n} {char_literal(n & 0xFF)}"
        if t.kind == "bool":
            return {0: "false", 1: "true"}.get(n, str(n))
        if t.kind == "enum":
            return enumerator(t, n)
        if t.name == "i386_eflags":
            return eflags_text(n)
        return str(n)

    @staticmethod
    def _is_char_ptr(t: CType) -> bool:
        return t.kind == "ptr" and t.target is not None and t.target.kind == "char"

    def _symbol(self, addr: int) -> str:
        where = self.symbolize(addr)
        return f" <{where}>" if where else ""

    def _string(self, addr: int) -> str:
        try:
            raw = self.read(addr, PRINT_ELEMENTS + 1)
        except EvalError:
            raw = b""
            for i in range(PRINT_ELEMENTS + 1):  # up to where memory ends
                try:
                    raw += self.read(addr + i, 1)
                except EvalError:
                    if not raw:
                        return f"<error: Cannot access memory at address 0x{addr:x}>"
                    break
        text, nul, _ = raw.partition(b"\0")
        return quoted(text[:PRINT_ELEMENTS]) + ("..." if not nul and len(text) > PRINT_ELEMENTS else "")

    def _array(self, v: Value) -> str:
        elem = v.type.target or VOID
        count = v.type.count or 0
        if elem.kind == "char" and self.fmt in ("", "s"):
            return char_array(v.data[:count])
        items = [self.value(Value(elem, v.data[i * elem.size:(i + 1) * elem.size],
                                  v.address + i * elem.size if v.address is not None else None))
                 for i in range(min(count, PRINT_ELEMENTS))]
        text = ", ".join(repeats(items))
        return "{" + text + ("..." if count > PRINT_ELEMENTS else "") + "}"


def repeats(items: list[str]) -> list[str]:
    """Runs longer than gdb's repeat threshold as `X <repeats N times>`."""
    out, i = [], 0
    while i < len(items):
        j = i
        while j < len(items) and items[j] == items[i]:
            j += 1
        if j - i > REPEAT_THRESHOLD:
            out.append(f"{items[i]} <repeats {j - i} times>")
        else:
            out.extend(items[i:j])
        i = j
    return out


def char_array(raw: bytes) -> str:
    """A char array as gdb prints it: one trailing NUL dropped, long runs as repeats."""
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    if not raw:
        return '""'
    parts, run, i = [], b"", 0
    while i < len(raw):
        j = i
        while j < len(raw) and raw[j] == raw[i]:
            j += 1
        if j - i > REPEAT_THRESHOLD:
            if run:
                parts.append(quoted(run))
                run = b""
            parts.append(f"{char_literal(raw[i])} <repeats {j - i} times>")
        else:
            run += raw[i:j]
        i = j
    if run:
        parts.append(quoted(run))
    return ", ".join(parts)


_ESCAPES = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 27: "\\033"}


def _escape(c: int, quote: str) -> str:
    if c in _ESCAPES:
        return _ESCAPES[c]
    if chr(c) in (quote, "\\"):
        return "\\" + chr(c)
    if 32 <= c < 127:
        return chr(c)
    return f"\\{c:03o}"


def quoted(raw: bytes) -> str:
    return '"' + "".join(_escape(c, '"') for c in raw) + '"'


def char_literal(c: int) -> str:
    return "'" + _escape(c & 0xFF, "'") + "'"


#: gdb's i386_eflags flag names, by bit.
EFLAGS_BITS = ((0, "CF"), (2, "PF"), (4, "AF"), (6, "ZF"), (7, "SF"), (8, "TF"), (9, "IF"), (10, "DF"), (11, "OF"))


def eflags_text(n: int) -> str:
    """`[ IF ZF ]`, as gdb prints $eflags."""
    return "[ " + "".join(name + " " for bit, name in EFLAGS_BITS if n >> bit & 1) + "]"


def enumerator(t: CType, n: int) -> str:
    for child in child_dies(strip_type(t.die)) if t.die is not None else ():
        if child.tag == "DW_TAG_enumerator" and child.attributes["DW_AT_const_value"].value == n:
            return _name(child)
    return str(n)


def format_scalar(n: int, t: CType, fmt: str, symbolize) -> str:
    """One integer in a print format (gdb's print_scalar_formatted)."""
    bits = 8 * t.size
    u = n & ((1 << bits) - 1)
    if fmt == "x":
        return f"0x{u:x}"
    if fmt == "z":
        return f"0x{u:0{t.size * 2}x}"
    if fmt == "d":
        return str(u - (1 << bits) if u >> (bits - 1) else u)
    if fmt == "u":
        return str(u)
    if fmt == "o":
        return f"0{u:o}" if u else "0"
    if fmt == "t":
        return f"{u:b}"
    if fmt == "c":
        c = u & 0xFF
        return f"{c - 256 if c > 127 else c} {char_literal(c)}"
    if fmt == "a":
        where = symbolize(u)
        return f"0x{u:x}" + (f" <{where}>" if where else "")
    return str(n)

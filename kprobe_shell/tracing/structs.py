"""C structs in guest memory, laid out from DWARF (or from offsets the user gives).

    f = read_struct(addr, "struct file")          # DWARF: every member by name
    f.f_flags, f.f_dentry.d_iname, f.f_pos        # ints, nested structs, char arrays as str
    sk = read_struct(addr, fields={"len": (32, "u32"), "data": (80, "ptr")})   # by offsets

Members are read when accessed (a probe handler usually wants two fields of a big
struct); pointers come back as integers, and a pointer to a struct can be followed with
``.deref("f_dentry")``.  Layouts are read once per image from its DWARF.
"""
from __future__ import annotations

import struct as _struct
from dataclasses import dataclass

from ..machine.dwarf import children, iter_dies, read_guarded, strip_qualifiers

__all__ = ["Member", "StructLayout", "StructError", "StructView", "struct_layouts", "layout_from_offsets"]

_INT_FORMATS = {(1, False): "<B", (1, True): "<b", (2, False): "<H", (2, True): "<h",
                (4, False): "<I", (4, True): "<i", (8, False): "<Q", (8, True): "<q"}


class StructError(Exception):
    """An unknown struct or member, or a type that cannot be read."""


class NoSuchMember(StructError, AttributeError):
    """A member the struct does not have: an AttributeError too, so hasattr() and
    getattr(view, name, default) work on struct views as on any Python object."""


@dataclass(frozen=True)
class Member:
    name: str
    offset: int
    kind: str            # int, ptr, struct, chars (char array), bytes (other arrays), enum
    size: int
    signed: bool = False
    struct: str = ""     # kind struct: its name; kind ptr to a struct: the pointee's name


@dataclass
class StructLayout:
    name: str
    size: int
    members: dict[str, Member]


# ---------------------------------------------------------------------- from DWARF
def struct_layouts(image) -> dict[str, StructLayout]:
    """Every named struct of the image's DWARF (cached on the image)."""
    cached = image.__dict__.get("_struct_layouts")
    if cached is None:
        cached = read_guarded(image, _read_layouts, "struct layouts unavailable")
        image.__dict__["_struct_layouts"] = cached
    return cached


def _read_layouts(elf_bytes: bytes) -> dict[str, StructLayout]:
    layouts: dict[str, StructLayout] = {}
    for die in iter_dies(elf_bytes):
        if die.tag not in ("DW_TAG_structure_type", "DW_TAG_union_type"):
            continue
        attrs = die.attributes
        if "DW_AT_name" not in attrs or "DW_AT_declaration" in attrs or "DW_AT_byte_size" not in attrs:
            continue
        name = attrs["DW_AT_name"].value.decode(errors="replace")
        if name in layouts:
            continue
        members = {}
        for child in children(die):
            if child.tag != "DW_TAG_member" or "DW_AT_name" not in child.attributes:
                continue
            m = _member(child)
            if m is not None:
                members[m.name] = m
        layouts[name] = StructLayout(name, attrs["DW_AT_byte_size"].value, members)
    return layouts


def _type_of(die):
    return die.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in die.attributes else None


def _strip(t):
    return strip_qualifiers(t, _type_of)


def _name_of(t) -> str:
    a = t.attributes.get("DW_AT_name") if t is not None else None
    return a.value.decode(errors="replace") if a else ""


def _member(die) -> Member | None:
    name = die.attributes["DW_AT_name"].value.decode(errors="replace")
    loc = die.attributes.get("DW_AT_data_member_location")
    if loc is None:
        offset = 0  # union members
    elif isinstance(loc.value, int):
        offset = loc.value
    else:  # DW_OP_plus_uconst N, as older compilers emit it
        offset = loc.value[-1] if loc.value else 0
    if "DW_AT_bit_size" in die.attributes:
        return None  # bitfields: use the b<width>@<offset>/<size> fetch type instead
    t = _strip(_type_of(die))
    if t is None:
        return None
    tag = t.tag
    if tag == "DW_TAG_pointer_type":
        pointee = _strip(_type_of(t))
        target = _name_of(pointee) if pointee is not None and pointee.tag == "DW_TAG_structure_type" else ""
        return Member(name, offset, "ptr", 8, struct=target)
    if tag in ("DW_TAG_base_type", "DW_TAG_enumeration_type"):
        size = t.attributes["DW_AT_byte_size"].value
        enc = t.attributes.get("DW_AT_encoding")
        signed = tag == "DW_TAG_enumeration_type" or (enc is not None and enc.value in (5, 6))
        return Member(name, offset, "int", size, signed)
    if tag in ("DW_TAG_structure_type", "DW_TAG_union_type"):
        return Member(name, offset, "struct", t.attributes.get("DW_AT_byte_size").value if
                      "DW_AT_byte_size" in t.attributes else 0, struct=_name_of(t))
    if tag == "DW_TAG_array_type":
        elem = _strip(_type_of(t))
        count = 0
        for sub in children(t):
            if sub.tag == "DW_TAG_subrange_type":
                if "DW_AT_count" in sub.attributes:
                    count = sub.attributes["DW_AT_count"].value
                elif "DW_AT_upper_bound" in sub.attributes:
                    count = sub.attributes["DW_AT_upper_bound"].value + 1
                break
        esize = elem.attributes["DW_AT_byte_size"].value if elem is not None and "DW_AT_byte_size" in elem.attributes else 8
        is_char = elem is not None and elem.tag == "DW_TAG_base_type" and esize == 1
        return Member(name, offset, "chars" if is_char else "bytes", count * esize)
    return None


# ---------------------------------------------------------------------- by offsets
_OFFSET_TYPES = {
    "u8": ("int", 1, False), "u16": ("int", 2, False), "u32": ("int", 4, False), "u64": ("int", 8, False),
    "s8": ("int", 1, True), "s16": ("int", 2, True), "s32": ("int", 4, True), "s64": ("int", 8, True),
    "ptr": ("ptr", 8, False),
}


def layout_from_offsets(fields: dict) -> StructLayout:
    """{"name": (offset, "u32"|"s64"|"ptr"|"string"|"charN")}: a layout without DWARF.

    "string" reads the C string a pointer member points to; "charN" an inline array."""
    members = {}
    end = 0
    for name, spec in fields.items():
        try:
            offset, tname = spec
            offset = int(offset)
        except (TypeError, ValueError):
            raise StructError(f"field {name!r}: expected (offset, type), got {spec!r}") from None
        if tname in _OFFSET_TYPES:
            kind, size, signed = _OFFSET_TYPES[tname]
            m = Member(name, offset, kind, size, signed)
        elif tname == "string":
            m = Member(name, offset, "string", 8)
        elif isinstance(tname, str) and tname.startswith("char") and tname[4:].isdigit():
            m = Member(name, offset, "chars", int(tname[4:]))
        else:
            raise StructError(f"field {name!r}: unknown type {tname!r} "
                              f"(one of {', '.join(_OFFSET_TYPES)}, string, charN)")
        members[name] = m
        end = max(end, offset + m.size)
    return StructLayout("<offsets>", end, members)


# ---------------------------------------------------------------------- the view
class StructView:
    """A struct at an address of guest memory; members are read when accessed."""

    __slots__ = ("_machine", "_layout", "_addr", "_layouts")

    def __init__(self, machine, layout: StructLayout, addr: int, layouts: dict | None = None):
        object.__setattr__(self, "_machine", machine)
        object.__setattr__(self, "_layout", layout)
        object.__setattr__(self, "_addr", addr)
        object.__setattr__(self, "_layouts", layouts or {})

    @property
    def address(self) -> int:
        return self._addr

    def __getattr__(self, name: str):
        m = self._layout.members.get(name)
        if m is None:
            have = ", ".join(self._layout.members) or "none"
            raise NoSuchMember(f"struct {self._layout.name} has no member '{name}' (members: {have})")
        return self._read(m)

    def __getitem__(self, name: str):
        return self.__getattr__(name)

    def __setattr__(self, name, value):
        raise StructError("struct views are read-only: write guest memory with regs.write()")

    def _read(self, m: Member):
        addr = self._addr + m.offset
        machine = self._machine
        if m.kind in ("int", "ptr"):
            fmt = _INT_FORMATS.get((m.size, m.signed))
            if fmt is None:
                return int.from_bytes(machine.read(addr, m.size), "little", signed=m.signed)
            return _struct.unpack(fmt, machine.read(addr, m.size))[0]
        if m.kind == "chars":
            return machine.read(addr, m.size).split(b"\0", 1)[0].decode("utf-8", errors="replace")
        if m.kind == "string":
            ptr = _struct.unpack("<Q", machine.read(addr, 8))[0]
            return machine.read_cstring(ptr).decode("utf-8", errors="replace") if ptr else None
        if m.kind == "struct":
            inner = self._layouts.get(m.struct)
            if inner is None:
                raise StructError(f"no layout for struct {m.struct}")
            return StructView(machine, inner, addr, self._layouts)
        return machine.read(addr, m.size)

    def deref(self, name: str) -> "StructView | None":
        """Follow a pointer member to the struct it points to (None for NULL)."""
        m = self._layout.members.get(name)
        if m is None or m.kind != "ptr" or not m.struct:
            raise StructError(f"'{name}' is not a pointer to a struct of struct {self._layout.name}")
        ptr = self._read(m)
        if not ptr:
            return None
        return StructView(self._machine, self._layouts[m.struct], ptr, self._layouts)

    def as_dict(self) -> dict:
        """Every scalar member (ints, pointers, char arrays)."""
        return {n: self._read(m) for n, m in self._layout.members.items() if m.kind in ("int", "ptr", "chars", "string")}

    def __repr__(self) -> str:
        return f"<struct {self._layout.name} at 0x{self._addr:x}>"

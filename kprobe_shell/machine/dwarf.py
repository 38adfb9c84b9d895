"""Function parameters from DWARF (names and C types), as perf probe reads them.

Only what probing needs: for each function, its formal parameters in order with a C
spelling of the type, the value's size and signedness, and whether it is a string
(char pointer).  Locations come from the x86_64 ABI at the function's first instruction,
which is where entry probes, jprobes and kretprobe entries look at them.

Debug info is untrusted input: a type chain that loops (a const whose type is the typedef
that names it) or a corrupt section must not hang or break an unrelated command.  As gdb
does ("DWARF Error: ... [in module FILE]"), read_guarded() reads it when first needed,
reports the first problem once, and drops what it could not read.
"""
from __future__ import annotations

import io

from elftools.elf.elffile import ELFFile

from .abi import ABI_ARG_REGISTERS, Parameter  # noqa: F401 (ABI_ARG_REGISTERS: re-exported)

#: Longest typedef/const/volatile chain followed; C code nests a handful, a loop never ends.
MAX_QUALIFIER_CHAIN = 64


class DwarfError(Exception):
    """The debug info is inconsistent (a type that refers to itself, a DIE walk that
    does not advance); the message says where."""


def read_guarded(image, reader, lost: str) -> dict:
    """reader(elf_bytes), or {} when the image's DWARF is broken: the problem is noted on
    the image (reported once) with what is `lost` ("argument names unavailable")."""
    try:
        return reader(image._elf_bytes)
    except DwarfError as exc:
        detail = str(exc)
    except Exception as exc:  # noqa: BLE001 - pyelftools raises a dozen kinds on corrupt input
        detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    image.note_dwarf_error(f"DWARF error in {image.path}: {detail}; {lost}")
    return {}


def iter_dies(elf_bytes: bytes):
    """Every DIE of every compilation unit, refusing a walk longer than .debug_info has
    bytes (each DIE takes at least one; more means the walk goes round in circles)."""
    elf = ELFFile(io.BytesIO(elf_bytes))
    if not elf.has_dwarf_info():
        return
    info = elf.get_section_by_name(".debug_info")
    budget = (info["sh_size"] if info is not None else 0) + 1
    for cu in elf.get_dwarf_info().iter_CUs():
        for die in cu_dies(cu):
            budget -= 1
            if budget < 0:
                raise DwarfError(".debug_info: the DIE walk does not advance")
            yield die


_SIBLING_REFS = ("DW_FORM_ref1", "DW_FORM_ref2", "DW_FORM_ref4", "DW_FORM_ref8", "DW_FORM_ref_udata")


def check_cu(cu) -> None:
    """Refuse a compilation unit whose DIE tree pyelftools would walk in a circle.

    A unit's DIEs lie one after another; pyelftools jumps over a child's subtree through
    its DW_AT_sibling, so a sibling that points at or before the child sends every walk
    (iter_children, iter_DIEs) round forever.  One pass in file order checks that each
    sibling points forward inside the unit; the DIEs it parses are the ones pyelftools
    caches and reuses, so the check costs a loop, not a second parse.  Checked once per
    unit."""
    if getattr(cu, "_kps_checked", False):
        return
    end = cu.cu_offset + cu.size
    offset = cu.cu_die_offset
    while offset < end:
        die = cu.get_DIE_from_refaddr(offset)
        if die.size <= 0:
            raise DwarfError(f".debug_info: the DIE at 0x{offset:x} has no size")
        sibling = die.attributes.get("DW_AT_sibling") if die.has_children else None
        if sibling is not None:
            target = (sibling.value + cu.cu_offset if sibling.form in _SIBLING_REFS else
                      sibling.value if sibling.form == "DW_FORM_ref_addr" else None)
            if target is None or not offset < target <= end:
                raise DwarfError(f"the DW_AT_sibling of DIE 0x{offset:x} ({die.tag}) points at 0x{target or 0:x}, "
                                 f"not past it inside its unit")
        offset += die.size
    cu._kps_checked = True


def children(die):
    """die's children, once its unit is known not to walk in a circle (check_cu)."""
    check_cu(die.cu)
    return die.iter_children()


def cu_dies(cu):
    """Every DIE of one compilation unit (checked first: check_cu)."""
    check_cu(cu)
    return cu.iter_DIEs()


def strip_qualifiers(t, type_of):
    """The type under typedefs, const and volatile (type_of(die) follows DW_AT_type)."""
    for _ in range(MAX_QUALIFIER_CHAIN):
        if t is None or t.tag not in ("DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type"):
            return t
        t = type_of(t)
    raise DwarfError(f"the type at DIE 0x{t.offset:x} ({t.tag}) refers to itself")


def read_parameters(elf_bytes: bytes) -> dict[str, list[Parameter]]:
    result: dict[str, list[Parameter]] = {}
    for die in iter_dies(elf_bytes):
        if die.tag != "DW_TAG_subprogram" or "DW_AT_name" not in die.attributes:
            continue
        if "DW_AT_declaration" in die.attributes:
            continue
        name = die.attributes["DW_AT_name"].value.decode(errors="replace")
        params = []
        for child in children(die):
            if child.tag != "DW_TAG_formal_parameter":
                continue
            pname = child.attributes.get("DW_AT_name")
            spelling, size, signed, is_string = _describe_type(child)
            params.append(
                Parameter(
                    index=len(params),
                    name=pname.value.decode(errors="replace") if pname else f"arg{len(params) + 1}",
                    type=spelling,
                    size=size,
                    signed=signed,
                    is_string=is_string,
                )
            )
        # Keep the definition that has parameters (abstract origins of inlined copies lack them).
        if params or name not in result:
            result[name] = params
    return result


def _type_die(die):
    if "DW_AT_type" not in die.attributes:
        return None
    return die.get_DIE_from_attribute("DW_AT_type")


def _describe_type(die) -> tuple[str, int, bool, bool]:
    """(C spelling, size in bytes, signed, is a char pointer) of die's DW_AT_type."""
    t = _type_die(die)
    spelling = _spell(t)
    size, signed = _size_and_sign(t)
    return spelling, size, signed, _is_char_pointer(t)


def _strip_qualifiers(t):
    return strip_qualifiers(t, _type_die)


def _size_and_sign(t) -> tuple[int, bool]:
    base = _strip_qualifiers(t)
    if base is None:
        return 8, False
    if base.tag == "DW_TAG_pointer_type":
        return 8, False
    size = base.attributes["DW_AT_byte_size"].value if "DW_AT_byte_size" in base.attributes else 8
    signed = False
    if base.tag == "DW_TAG_base_type":
        enc = base.attributes.get("DW_AT_encoding")
        # DW_ATE_signed (5) and DW_ATE_signed_char (6)
        signed = enc is not None and enc.value in (5, 6)
    elif base.tag == "DW_TAG_enumeration_type":
        signed = True
    return size, signed


def _is_char_pointer(t) -> bool:
    base = _strip_qualifiers(t)
    if base is None or base.tag != "DW_TAG_pointer_type":
        return False
    pointee = _strip_qualifiers(_type_die(base))
    if pointee is None or pointee.tag != "DW_TAG_base_type":
        return False
    return pointee.attributes["DW_AT_byte_size"].value == 1


def _spell(t, depth: int = 0) -> str:
    if t is None:
        return "void"
    if depth > 8:
        return "..."
    name = t.attributes.get("DW_AT_name")
    tag = t.tag
    if tag == "DW_TAG_pointer_type":
        return _spell(_type_die(t), depth + 1) + " *"
    if tag == "DW_TAG_const_type":
        return "const " + _spell(_type_die(t), depth + 1)
    if tag == "DW_TAG_volatile_type":
        return "volatile " + _spell(_type_die(t), depth + 1)
    label = name.value.decode(errors="replace") if name else "<anon>"
    if tag == "DW_TAG_structure_type":
        return "struct " + label
    if tag == "DW_TAG_union_type":
        return "union " + label
    if tag == "DW_TAG_enumeration_type":
        return "enum " + label
    if tag == "DW_TAG_subroutine_type":
        return "void (*)()"
    return label

"""Where the source says: DWARF line tables, variables in scope, and their locations.

What perf probe reads from debug info (tools/perf/util/probe-finder.c), read here with
pyelftools:

- the line table: every address a source line maps to, as perf's die_walk_lines() keeps
  them (statement rows only, one address per run of the same line);
- the variables in scope at an address: the function's parameters and locals, the
  lexical blocks and inlined copies whose ranges hold the address, innermost first;
- a variable's location at that address, from its location expression or location list
  (DW_OP_reg*, DW_OP_breg*, DW_OP_fbreg with the frame base, DW_OP_addr, constants),
  with the frame base's DW_OP_call_frame_cfa resolved through the call frame information
  (.debug_frame) to "register + offset", as perf's convert_variable_location() does;
- types: members with their offsets, array elements, sizes and signedness.

Nothing here knows about probes: tracing/perf_probe.py turns these facts into fetch args.
"""
from __future__ import annotations

import bisect
import io
import os
from dataclasses import dataclass

from elftools.dwarf.descriptions import describe_reg_name
from elftools.dwarf.dwarf_expr import DWARFExprParser
from elftools.dwarf.locationlists import BaseAddressEntry, LocationParser
from elftools.elf.elffile import ELFFile

from . import dwarf

#: DWARF register numbers of x86_64 (the psABI's table), in the tracing module's names.
DWARF_REGISTERS = ("rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp",
                   "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip")

#: perf's words when a variable has no location at the probed address (on one line).
OPTIMIZED_OUT = ("Failed to find the location of the '{0}' variable at this address. "
                 "Perhaps it has been optimized out. "
                 "Use 'probe -V' to list the variables available at a probe point.")
#: perf's words for a location it cannot turn into a fetch (a computed value).
UNSUPPORTED = "Sorry, we don't support this variable location yet ('{0}': {1})."


class DwarfLocationError(Exception):
    """A variable, line or function the debug info cannot place (the message says why)."""


def child_dies(die):
    """die's children (dwarf.children), a corrupt tree refused as a DwarfLocationError."""
    try:
        return dwarf.children(die)
    except dwarf.DwarfError as exc:
        raise DwarfLocationError(f"DWARF error: {exc}") from None


def _cu_dies(cu):
    try:
        return dwarf.cu_dies(cu)
    except dwarf.DwarfError as exc:
        raise DwarfLocationError(f"DWARF error: {exc}") from None


class OptimizedOut(DwarfLocationError):
    """The variable exists here but has no location at this address (gdb's
    "<optimized out>")."""


@dataclass(frozen=True)
class Location:
    """Where a value is at one address: in a register ("reg"), in memory at register +
    offset ("mem"), at a fixed address ("addr"), or a constant ("const")."""

    kind: str
    reg: str | None = None
    offset: int = 0


@dataclass
class Function:
    name: str
    die: object
    cu: object
    low_pc: int
    high_pc: int
    decl_file: str | None
    decl_line: int


@dataclass(frozen=True)
class LineRow:
    address: int
    file: str
    line: int


@dataclass
class Variable:
    name: str
    die: object          # the DIE holding DW_AT_location (the concrete one)
    type_die: object     # None for void
    is_param: bool
    scope_depth: int = 0


class DebugInfo:
    """The DWARF of one image, read lazily: functions, line tables, scopes and CFI."""

    def __init__(self, elf_bytes: bytes, image_dir: str = "."):
        self.elf = ELFFile(io.BytesIO(elf_bytes))
        self.image_dir = image_dir
        self.dwarf = self.elf.get_dwarf_info() if self.elf.has_dwarf_info() else None
        self._functions: dict[str, Function] | None = None
        self._globals: dict[str, tuple] | None = None
        self._lines: list[LineRow] | None = None
        self._cfa_rows: list[tuple[int, int, str, int]] | None = None
        self._unwind_rows: list[tuple[int, int, str, int, dict]] | None = None
        self._by_address: list[tuple[int, int, str]] | None = None
        self._types: dict | None = None
        self._loc_parser = None
        self._expr_parser = None

    @property
    def available(self) -> bool:
        return self.dwarf is not None

    # ------------------------------------------------------------------ functions
    @property
    def functions(self) -> dict[str, Function]:
        if self._functions is None:
            self._functions = {}
            for cu in self.dwarf.iter_CUs() if self.dwarf else ():
                for die in _cu_dies(cu):
                    fn = self._function_of(die, cu)
                    if fn is not None:
                        self._add_function(fn)
        return self._functions

    def _function_of(self, die, cu) -> Function | None:
        """A function with code of its own, or (low_pc = high_pc = 0) one that only
        exists inlined into its callers."""
        if die.tag != "DW_TAG_subprogram" or "DW_AT_declaration" in die.attributes:
            return None
        origin = _origin(die)
        name = _attr_str(origin, "DW_AT_name")
        line = origin.attributes.get("DW_AT_decl_line")
        if name is None:
            return None
        low, high_attr = die.attributes.get("DW_AT_low_pc"), die.attributes.get("DW_AT_high_pc")
        if low is None or high_attr is None:
            if "DW_AT_inline" not in die.attributes:
                return None
            low = high = 0
        else:
            low = low.value
            high = high_attr.value if high_attr.form == "DW_FORM_addr" else low + high_attr.value
        return Function(name, die, cu, low, high, self._decl_file(origin, cu), line.value if line else 0)

    def _add_function(self, fn: Function) -> None:
        known = self._functions.get(fn.name)
        if known is None or (known.high_pc == 0 and fn.high_pc):
            self._functions[fn.name] = fn  # the copy with code wins over the inline-only one

    def function(self, name: str) -> Function:
        fn = self.functions.get(name)
        if fn is None:
            raise DwarfLocationError(f"no debug info for function '{name}'")
        return fn

    def function_at(self, addr: int) -> Function | None:
        """The function whose code holds ADDR (the innermost out-of-line one)."""
        if self._by_address is None:
            self._by_address = sorted((f.low_pc, f.high_pc, f.name) for f in self.functions.values() if f.high_pc)
        i = bisect.bisect_right(self._by_address, (addr, float("inf"), "")) - 1
        if i >= 0 and self._by_address[i][0] <= addr < self._by_address[i][1]:
            return self.functions[self._by_address[i][2]]
        return None

    def type_named(self, name: str):
        """The DIE of the type C code names NAME ("long int", "size_t", "struct file"),
        or None; gdb's short spellings ("long", "unsigned") are matched too."""
        if self._types is None:
            self._types = {}
            for die in self._top_level_dies():
                self._add_type(die)
        return self._types.get(name)

    def _top_level_dies(self):
        """The DIEs right under each compilation unit: its types, globals and functions."""
        for cu in self.dwarf.iter_CUs() if self.dwarf else ():
            yield from child_dies(cu.get_top_DIE())

    def _add_type(self, die) -> None:
        prefix = _TYPE_PREFIXES.get(die.tag)
        if prefix is None or "DW_AT_declaration" in die.attributes:
            return
        name = _attr_str(die, "DW_AT_name")
        if name is not None:
            self._types.setdefault(prefix + name, die)

    def _decl_file(self, die, cu) -> str | None:
        attr = die.attributes.get("DW_AT_decl_file")
        if attr is None:
            return None
        return self._file_name(cu, attr.value)

    def _file_name(self, cu, index: int) -> str | None:
        program = self.dwarf.line_program_for_CU(cu)
        if program is None:
            return None
        entries = program["file_entry"]
        version = program.header.version
        slot = index if version >= 5 else index - 1
        if not 0 <= slot < len(entries):
            return None
        entry = entries[slot]
        name = entry.name.decode(errors="replace")
        dirs = program["include_directory"]
        dslot = entry.dir_index if version >= 5 else entry.dir_index - 1
        if 0 <= dslot < len(dirs) and not os.path.isabs(name):
            name = os.path.join(dirs[dslot].decode(errors="replace"), name)
        return os.path.normpath(name)

    def global_variable(self, name: str):
        """(type DIE, address) of a variable with a static address, or None."""
        if self._globals is None:
            self._globals = {}
            for die in self._top_level_dies():
                self._add_global(die)
        return self._globals.get(name)

    def _add_global(self, die) -> None:
        if die.tag != "DW_TAG_variable" or "DW_AT_location" not in die.attributes:
            return
        loc = die.attributes["DW_AT_location"]
        if loc.form != "DW_FORM_exprloc" or not loc.value or loc.value[0] != 0x03:  # DW_OP_addr
            return
        origin = _origin(die)
        name = _attr_str(origin, "DW_AT_name")
        if name is not None and name not in self._globals:
            self._globals[name] = (_type_of(origin), int.from_bytes(bytes(loc.value[1:9]), "little"))

    # ------------------------------------------------------------------ lines
    @property
    def lines(self) -> list[LineRow]:
        """Statement rows of every line table, one per run of the same line (sorted)."""
        if self._lines is None:
            rows: list[LineRow] = []
            for cu in self.dwarf.iter_CUs() if self.dwarf else ():
                rows.extend(self._cu_lines(cu))
            self._lines = sorted(set(rows), key=lambda r: (r.address, r.file, r.line))
        return self._lines

    def _cu_lines(self, cu) -> list[LineRow]:
        program = self.dwarf.line_program_for_CU(cu)
        if program is None:
            return []
        rows, previous = [], None
        for entry in program.get_entries():
            state = entry.state
            if state is None:
                continue
            if state.end_sequence:
                previous = None
                continue
            if not state.is_stmt:
                continue
            key = (state.file, state.line)
            if key == previous:
                continue  # perf's die_walk_lines: the same line again is the same probe point
            previous = key
            rows.append(LineRow(state.address, self._file_name(cu, state.file) or "?", state.line))
        return rows

    def line_addresses(self, file: str | None, line: int, within: Function | None = None) -> list[int]:
        """Every address where a statement of FILE:LINE begins (inside WITHIN if given)."""
        out = []
        for row in self.lines:
            if row.line != line or (file is not None and not same_file(row.file, file)):
                continue
            if within is not None and not within.low_pc <= row.address < within.high_pc:
                continue
            out.append(row.address)
        return sorted(set(out))

    def line_at(self, addr: int) -> LineRow | None:
        """The statement row ADDR belongs to (the last one at or before it)."""
        rows = self.lines
        i = bisect.bisect_right(rows, addr, key=lambda r: r.address) - 1
        return rows[i] if i >= 0 else None

    def function_lines(self, fn: Function) -> dict[int, list[int]]:
        """Line number -> addresses, for the lines of FN's own file inside FN (for an
        inline-only function: its lines wherever it was inlined, up to the next function
        declared in its file)."""
        result: dict[int, list[int]] = {}
        end = self._next_declaration(fn)
        for row in self.lines:
            if fn.decl_file is not None and not same_file(row.file, fn.decl_file):
                continue
            inside = fn.low_pc <= row.address < fn.high_pc if fn.high_pc else fn.decl_line <= row.line < end
            if inside:
                result.setdefault(row.line, []).append(row.address)
        return result

    def _next_declaration(self, fn: Function) -> float:
        later = [f.decl_line for f in self.functions.values()
                 if f.decl_file == fn.decl_file and f.decl_line > fn.decl_line]
        return min(later, default=float("inf"))

    def source_path(self, file: str) -> str | None:
        """The source file on this machine: as recorded, else next to the image."""
        for candidate in (file, os.path.join(self.image_dir, file), os.path.join(self.image_dir, os.path.basename(file))):
            if os.path.isfile(candidate):
                return candidate
        return None

    # ------------------------------------------------------------------ variables
    def variables_at(self, fn: Function, addr: int) -> list[Variable]:
        """Parameters and locals in scope at ADDR, innermost scope first; shadowed names dropped."""
        found: list[Variable] = []
        self._collect(fn.die, addr, 0, found)
        found.sort(key=lambda v: -v.scope_depth)
        seen, result = set(), []
        for var in found:
            if var.name not in seen:
                seen.add(var.name)
                result.append(var)
        return sorted(result, key=lambda v: (not v.is_param, v.scope_depth, v.die.offset))

    def _collect(self, scope, addr: int, depth: int, found: list[Variable]) -> None:
        for child in child_dies(scope):
            tag = child.tag
            if tag in ("DW_TAG_formal_parameter", "DW_TAG_variable"):
                origin = _origin(child)
                name = _attr_str(origin, "DW_AT_name")
                if name is not None:
                    found.append(Variable(name, child, _type_of(origin), tag == "DW_TAG_formal_parameter", depth))
            elif tag in ("DW_TAG_lexical_block", "DW_TAG_inlined_subroutine") and self._in_ranges(child, addr):
                self._collect(child, addr, depth + 1, found)

    def _in_ranges(self, die, addr: int) -> bool:
        attrs = die.attributes
        if "DW_AT_low_pc" in attrs and "DW_AT_high_pc" in attrs:
            low = attrs["DW_AT_low_pc"].value
            high = attrs["DW_AT_high_pc"]
            end = high.value if high.form == "DW_FORM_addr" else low + high.value
            # An inlined call the compiler folded away has an empty range at one address.
            return low <= addr < end or low == end == addr
        if "DW_AT_ranges" in attrs:
            ranges = self.dwarf.range_lists()
            rnglist = ranges.get_range_list_at_offset(attrs["DW_AT_ranges"].value, cu=die.cu) \
                if ranges is not None else []
            base = die.cu.get_top_DIE().attributes.get("DW_AT_low_pc")
            base = base.value if base else 0
            for entry in rnglist:
                if hasattr(entry, "begin_offset"):
                    absolute = getattr(entry, "is_absolute", False)
                    start = entry.begin_offset + (0 if absolute else base)
                    end = entry.end_offset + (0 if absolute else base)
                    if start <= addr < end:
                        return True
                elif hasattr(entry, "base_address"):
                    base = entry.base_address
        return False

    # ------------------------------------------------------------------ locations
    def location(self, fn: Function, var: Variable, addr: int) -> Location:
        """Where VAR is at ADDR; raises DwarfLocationError in perf's words when nowhere."""
        attr = var.die.attributes.get("DW_AT_location")
        if attr is None:
            if "DW_AT_const_value" in var.die.attributes:
                return Location("const", offset=var.die.attributes["DW_AT_const_value"].value)
            raise OptimizedOut(OPTIMIZED_OUT.format(var.name))
        expr = self._expression_at(attr, var.die, addr)
        if expr is None:
            raise OptimizedOut(OPTIMIZED_OUT.format(var.name))
        return self._decode(expr, fn, var.name, addr)

    def _expression_at(self, attr, die, addr: int) -> list | None:
        if self._loc_parser is None:
            self._loc_parser = LocationParser(self.dwarf.location_lists())
        parsed = self._loc_parser.parse_from_attribute(attr, die.cu.header.version, die)
        if hasattr(parsed, "loc_expr"):
            return parsed.loc_expr
        base = die.cu.get_top_DIE().attributes.get("DW_AT_low_pc")
        base = base.value if base else 0
        for entry in parsed:
            if isinstance(entry, BaseAddressEntry):
                base = entry.base_address
                continue
            start = entry.begin_offset + (0 if entry.is_absolute else base)
            end = entry.end_offset + (0 if entry.is_absolute else base)
            if start <= addr < end:
                return entry.loc_expr
        return None

    def _decode(self, expr: list, fn: Function, name: str, addr: int) -> Location:
        if self._expr_parser is None:
            self._expr_parser = DWARFExprParser(self.dwarf.structs)
        ops = self._expr_parser.parse_expr(expr)
        if not ops:
            raise OptimizedOut(OPTIMIZED_OUT.format(name))
        op, args = ops[0].op_name, ops[0].args
        rest = [o.op_name for o in ops[1:]]
        if any(o.op_name in ("DW_OP_entry_value", "DW_OP_GNU_entry_value") for o in ops):
            # The value of a register at the function's entry, since overwritten: gone here.
            raise OptimizedOut(OPTIMIZED_OUT.format(name))
        if rest == ["DW_OP_stack_value"] and (op.startswith("DW_OP_lit") or op.startswith("DW_OP_const")):
            value = int(op[9:]) if op.startswith("DW_OP_lit") else args[0]
            return Location("const", offset=value)
        if rest:
            raise DwarfLocationError(UNSUPPORTED.format(name, _describe_ops(ops)))
        if op.startswith("DW_OP_reg") and op != "DW_OP_regx":
            return Location("reg", _register(int(op[9:])))
        if op == "DW_OP_regx":
            return Location("reg", _register(args[0]))
        if op.startswith("DW_OP_breg") and op != "DW_OP_bregx":
            return Location("mem", _register(int(op[10:])), args[0])
        if op == "DW_OP_fbreg":
            reg, offset = self._frame_base(fn, name, addr)
            return Location("mem", reg, offset + args[0])
        if op == "DW_OP_addr":
            return Location("addr", offset=args[0])
        raise DwarfLocationError(UNSUPPORTED.format(name, _describe_ops(ops)))

    def _frame_base(self, fn: Function, name: str, addr: int) -> tuple[str, int]:
        attr = fn.die.attributes.get("DW_AT_frame_base")
        if attr is None:
            raise DwarfLocationError(UNSUPPORTED.format(name, "its function has no frame base"))
        ops = self._expr_parser.parse_expr(attr.value)
        if len(ops) == 1 and ops[0].op_name == "DW_OP_call_frame_cfa":
            return self.cfa(addr)
        if len(ops) == 1 and ops[0].op_name.startswith("DW_OP_breg"):
            return _register(int(ops[0].op_name[10:])), ops[0].args[0]
        raise DwarfLocationError(UNSUPPORTED.format(name, "frame base " + _describe_ops(ops)))

    def cfa(self, addr: int) -> tuple[str, int]:
        """The canonical frame address at ADDR as (register, offset), from .debug_frame."""
        rows = self._cfa_table()
        i = bisect.bisect_right(rows, (addr, float("inf"))) - 1
        if i < 0 or not rows[i][0] <= addr < rows[i][1]:
            raise DwarfLocationError(f"no call frame information covers 0x{addr:x}")
        return rows[i][2], rows[i][3]

    def _cfa_table(self) -> list[tuple[int, int, str, int]]:
        """(start, end, register, offset) rows of every FDE, sorted by start."""
        if self._cfa_rows is None:
            self._cfa_rows = sorted((start, stop, _register(cfa.reg), cfa.offset)
                                    for start, stop, cfa, _row in self._cfi_rows())
        return self._cfa_rows

    def _cfi_rows(self):
        """(start, stop, CFA rule, row) of every row of every FDE in .debug_frame whose CFA
        is a register plus an offset."""
        entries = self.dwarf.CFI_entries() if self.dwarf and self.dwarf.has_CFI() else []
        for fde in entries:
            if "initial_location" not in fde.header:
                continue
            end = fde.header["initial_location"] + fde.header["address_range"]
            table = fde.get_decoded().table
            for i, row in enumerate(table):
                cfa = row.get("cfa")
                if cfa is not None and cfa.reg is not None:
                    yield row["pc"], table[i + 1]["pc"] if i + 1 < len(table) else end, cfa, row


    def unwind_row(self, addr: int) -> tuple[str, int, dict[str, int]] | None:
        """How to find the caller's registers at ADDR, from .debug_frame: (CFA register,
        CFA offset, {register: where it is saved, as an offset from the CFA}); the
        return address is one of them ("rip").  None where no FDE covers ADDR."""
        if self._unwind_rows is None:
            rows = []
            for start, stop, cfa, row in self._cfi_rows():
                if not 0 <= cfa.reg < len(DWARF_REGISTERS):
                    continue
                saved = {DWARF_REGISTERS[n]: rule.arg for n, rule in row.items()
                         if isinstance(n, int) and 0 <= n < len(DWARF_REGISTERS) and rule.type == "OFFSET"}
                rows.append((start, stop, DWARF_REGISTERS[cfa.reg], cfa.offset, saved))
            self._unwind_rows = sorted(rows, key=lambda r: (r[0], r[1]))
        rows = self._unwind_rows
        i = bisect.bisect_right(rows, addr, key=lambda r: r[0]) - 1
        if i < 0 or not rows[i][0] <= addr < rows[i][1]:
            return None
        return rows[i][2], rows[i][3], rows[i][4]


# ---------------------------------------------------------------------- types
_TYPE_PREFIXES = {"DW_TAG_base_type": "", "DW_TAG_typedef": "", "DW_TAG_structure_type": "struct ",
                  "DW_TAG_union_type": "union ", "DW_TAG_enumeration_type": "enum "}


def _origin(die):
    """The DIE that carries name and type: an inlined or out-of-line copy's abstract origin."""
    for _ in range(4):
        for key in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if key in die.attributes:
                die = die.get_DIE_from_attribute(key)
                break
        else:
            return die
    return die


def _attr_str(die, key: str) -> str | None:
    attr = die.attributes.get(key)
    return attr.value.decode(errors="replace") if attr is not None else None


def _type_of(die):
    return die.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in die.attributes else None


def strip_type(t):
    """Through typedefs and qualifiers to the type that says what the bytes are."""
    for _ in range(16):
        if t is None or t.tag not in ("DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type",
                                      "DW_TAG_restrict_type", "DW_TAG_atomic_type"):
            return t
        t = _type_of(t)
    return t


def pointee(t):
    return _type_of(strip_type(t))


def type_size(t) -> int:
    base = strip_type(t)
    if base is None:
        return 0
    if base.tag == "DW_TAG_pointer_type":
        return 8
    if base.tag == "DW_TAG_array_type":
        count = array_count(base)
        return (count or 0) * type_size(_type_of(base))
    attr = base.attributes.get("DW_AT_byte_size")
    return attr.value if attr is not None else 0


def array_count(t) -> int | None:
    for sub in child_dies(strip_type(t)):
        if sub.tag == "DW_TAG_subrange_type":
            if "DW_AT_count" in sub.attributes:
                return sub.attributes["DW_AT_count"].value
            if "DW_AT_upper_bound" in sub.attributes:
                return sub.attributes["DW_AT_upper_bound"].value + 1
    return None


def is_signed(t) -> bool:
    base = strip_type(t)
    if base is None:
        return False
    if base.tag == "DW_TAG_enumeration_type":
        return True
    enc = base.attributes.get("DW_AT_encoding")
    return base.tag == "DW_TAG_base_type" and enc is not None and enc.value in (5, 6)  # DW_ATE_signed(_char)


def find_member(t, name: str):
    """The member NAME of a struct/union type (looking into anonymous members) -> (offset, DIE)."""
    base = strip_type(t)
    if base is None or base.tag not in ("DW_TAG_structure_type", "DW_TAG_union_type"):
        return None
    for member in child_dies(base):
        if member.tag != "DW_TAG_member":
            continue
        loc = member.attributes.get("DW_AT_data_member_location")
        offset = loc.value if loc is not None and isinstance(loc.value, int) else 0
        mname = _attr_str(member, "DW_AT_name")
        if mname == name:
            return offset, member
        if mname is None:
            inner = find_member(_type_of(member), name)
            if inner is not None:
                return offset + inner[0], inner[1]
    return None


def member_type(member):
    return _type_of(member)


def type_name(t, depth: int = 0) -> str:
    """perf's spelling of a type (die_get_typename): "struct item*", "long int", "char[16]"."""
    if t is None:
        return "void"
    if depth > 8:
        return "..."
    tag = t.tag
    if tag == "DW_TAG_pointer_type":
        return type_name(_type_of(t), depth + 1) + "*"
    if tag in ("DW_TAG_const_type", "DW_TAG_volatile_type"):
        return tag[7:-5] + " " + type_name(_type_of(t), depth + 1)
    if tag == "DW_TAG_array_type":
        count = array_count(t)
        return f"{type_name(_type_of(t), depth + 1)}[{count if count is not None else ''}]"
    prefix = {"DW_TAG_structure_type": "struct ", "DW_TAG_union_type": "union ",
              "DW_TAG_enumeration_type": "enum "}.get(tag, "")
    if tag == "DW_TAG_subroutine_type":
        return "(function_type)"
    return prefix + (_attr_str(t, "DW_AT_name") or "(unnamed)")


def same_file(recorded: str, wanted: str) -> bool:
    """SRC as perf matches it: the whole recorded path, or a tail of it at a '/'."""
    recorded, wanted = os.path.normpath(recorded), os.path.normpath(wanted)
    return recorded == wanted or recorded.endswith("/" + wanted) or os.path.basename(recorded) == wanted


def _register(number: int) -> str:
    if 0 <= number < len(DWARF_REGISTERS):
        return DWARF_REGISTERS[number]
    raise DwarfLocationError(f"DWARF register {number} ({describe_reg_name(number, 'x64')}) cannot be fetched")


def _describe_ops(ops) -> str:
    return "; ".join(op.op_name + (" " + " ".join(str(a) for a in op.args) if op.args else "") for op in ops)


# ---------------------------------------------------------------------- one DebugInfo per image
_CACHE: dict[int, tuple[bytes, DebugInfo]] = {}
_CACHE_SIZE = 4


def debug_info(image) -> DebugInfo:
    """The image's DebugInfo, built once per image contents: reading DWARF takes a second
    or two on the bundled kernel, and `reset`/`load` of the same file reuse it."""
    raw = image._elf_bytes
    key = hash(raw)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == raw:
        return hit[1]
    info = DebugInfo(raw, os.path.dirname(os.path.abspath(image.path)))
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = (raw, info)
    return info

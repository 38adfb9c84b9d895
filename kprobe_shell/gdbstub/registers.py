"""The register file gdb sees, and the target description (target.xml) that names it.

The numbering is gdb's for i386:x86-64 with the features org.gnu.gdb.i386.core, .sse and
.segments (gdb's features/i386/64bit-core.xml, 64bit-sse.xml, 64bit-segments.xml): 0-15 the
general registers in gdb's order (rax rbx rcx rdx rsi rdi rbp rsp r8-r15), 16 rip, 17 eflags,
18-23 cs ss ds es fs gs, 24-31 st0-st7, 32-39 the x87 control registers, 40-55 xmm0-xmm15,
56 mxcsr, 57 fs_base, 58 gs_base.  `g` sends them in that order, each little-endian.
"""
from __future__ import annotations

from dataclasses import dataclass

from unicorn import x86_const as X


@dataclass(frozen=True)
class GdbRegister:
    name: str
    bitsize: int
    type: str
    uc_id: int | None  # None: gdb's x87 pointer registers unicorn does not model (read as 0)
    group: str = ""

    @property
    def size(self) -> int:
        return self.bitsize // 8


def _table() -> tuple[GdbRegister, ...]:
    regs = []
    for name in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
                 "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"):
        kind = "data_ptr" if name in ("rbp", "rsp") else "int64"
        regs.append(GdbRegister(name, 64, kind, getattr(X, f"UC_X86_REG_{name.upper()}")))
    regs.append(GdbRegister("rip", 64, "code_ptr", X.UC_X86_REG_RIP))
    regs.append(GdbRegister("eflags", 32, "i386_eflags", X.UC_X86_REG_EFLAGS))
    for seg in ("cs", "ss", "ds", "es", "fs", "gs"):
        regs.append(GdbRegister(seg, 32, "int32", getattr(X, f"UC_X86_REG_{seg.upper()}")))
    for i in range(8):
        regs.append(GdbRegister(f"st{i}", 80, "i387_ext", getattr(X, f"UC_X86_REG_FP{i}")))
    x87 = {"fctrl": X.UC_X86_REG_FPCW, "fstat": X.UC_X86_REG_FPSW, "ftag": X.UC_X86_REG_FPTAG}
    for name in ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"):
        regs.append(GdbRegister(name, 32, "int", x87.get(name), "float"))
    for i in range(16):
        regs.append(GdbRegister(f"xmm{i}", 128, "vec128", getattr(X, f"UC_X86_REG_XMM{i}")))
    regs.append(GdbRegister("mxcsr", 32, "i386_mxcsr", X.UC_X86_REG_MXCSR, "vector"))
    regs.append(GdbRegister("fs_base", 64, "int", X.UC_X86_REG_FS_BASE))
    regs.append(GdbRegister("gs_base", 64, "int", X.UC_X86_REG_GS_BASE))
    return tuple(regs)


REGISTERS = _table()
RIP = 16
FEATURES = (("org.gnu.gdb.i386.core", 0, 40), ("org.gnu.gdb.i386.sse", 40, 57),
            ("org.gnu.gdb.i386.segments", 57, 59))

_EFLAGS_FIELDS = (("CF", 0), ("", 1), ("PF", 2), ("AF", 4), ("ZF", 6), ("SF", 7), ("TF", 8), ("IF", 9),
                  ("DF", 10), ("OF", 11), ("NT", 14), ("RF", 16), ("VM", 17), ("AC", 18), ("VIF", 19),
                  ("VIP", 20), ("ID", 21))
_MXCSR_FIELDS = (("IE", 0), ("DE", 1), ("ZE", 2), ("OE", 3), ("UE", 4), ("PE", 5), ("DAZ", 6), ("IM", 7),
                 ("DM", 8), ("ZM", 9), ("OM", 10), ("UM", 11), ("PM", 12), ("FZ", 15))
_VEC128 = (("v4_float", "v4f", "ieee_single", 4), ("v2_double", "v2d", "ieee_double", 2),
           ("v16_int8", "v16i8", "int8", 16), ("v8_int16", "v8i16", "int16", 8),
           ("v4_int32", "v4i32", "int32", 4), ("v2_int64", "v2i64", "int64", 2))


def _flags(id_: str, fields) -> list[str]:
    lines = [f'  <flags id="{id_}" size="4">']
    lines += [f'    <field name="{name}" start="{bit}" end="{bit}"/>' for name, bit in fields]
    return lines + ["  </flags>"]


def target_xml() -> str:
    """The target description gdb reads with qXfer:features:read:target.xml."""
    out = ['<?xml version="1.0"?>', '<!DOCTYPE target SYSTEM "gdb-target.dtd">', "<target>",
           "<architecture>i386:x86-64</architecture>"]
    for feature, first, last in FEATURES:
        out.append(f'<feature name="{feature}">')
        if feature.endswith("core"):
            out += _flags("i386_eflags", _EFLAGS_FIELDS)
        if feature.endswith("sse"):
            out += [f'  <vector id="{vid}" type="{t}" count="{n}"/>' for _f, vid, t, n in _VEC128]
            out.append('  <union id="vec128">')
            out += [f'    <field name="{f}" type="{vid}"/>' for f, vid, _t, _n in _VEC128]
            out += ['    <field name="uint128" type="uint128"/>', "  </union>"]
            out += _flags("i386_mxcsr", _MXCSR_FIELDS)
        for number in range(first, last):
            reg = REGISTERS[number]
            group = f' group="{reg.group}"' if reg.group else ""
            out.append(f'  <reg name="{reg.name}" bitsize="{reg.bitsize}" type="{reg.type}" '
                       f'regnum="{number}"{group}/>')
        out.append("</feature>")
    out.append("</target>")
    return "\n".join(out) + "\n"


def read_register(uc, number: int) -> bytes:
    """Register number of a CPU (its unicorn instance), as gdb's bytes."""
    reg = REGISTERS[number]
    if reg.uc_id is None:
        return bytes(reg.size)
    value = uc.reg_read(reg.uc_id)
    if reg.bitsize == 80:
        mantissa, exponent = value
        return mantissa.to_bytes(8, "little") + (exponent & 0xFFFF).to_bytes(2, "little")
    return (value & ((1 << reg.bitsize) - 1)).to_bytes(reg.size, "little")


def write_register(uc, number: int, data: bytes) -> None:
    """Set a register from gdb's bytes; registers unicorn does not model ignore the write."""
    reg = REGISTERS[number]
    if reg.uc_id is None:
        return
    if reg.bitsize == 80:
        uc.reg_write(reg.uc_id, (int.from_bytes(data[:8], "little"), int.from_bytes(data[8:10], "little")))
        return
    uc.reg_write(reg.uc_id, int.from_bytes(data, "little"))

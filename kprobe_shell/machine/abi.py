"""The x86_64 SysV calling convention, as far as probes need it: where a function finds
its arguments at its first instruction.  DWARF (dwarf.py) names and types the
parameters; this says where each one is."""
from __future__ import annotations

from dataclasses import dataclass

#: Argument registers of the x86_64 SysV ABI, in order; the 7th argument is on the stack.
ABI_ARG_REGISTERS = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")


@dataclass(frozen=True)
class Parameter:
    """A function parameter as DWARF describes it, located by the ABI at function entry."""

    index: int  # 0-based position in the prototype
    name: str
    type: str  # C spelling, e.g. "const char *"
    size: int  # bytes of the value
    signed: bool
    is_string: bool  # char * / const char *: fetch as a string

    @property
    def location(self) -> str:
        """Where the value is at the first instruction of the function."""
        if self.index < len(ABI_ARG_REGISTERS):
            return "%" + ABI_ARG_REGISTERS[self.index]
        return f"+{8 * (self.index - len(ABI_ARG_REGISTERS) + 1)}(%rsp)"

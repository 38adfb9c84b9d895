"""What memory holds at a probed address now: the fact the slot figure and the notebook's
slot table both show (no drawing here, so the HTML needs no drawing library)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Planted:
    raw: bytes            # the bytes at the probed address that the probe wrote (or the original one)
    what: str             # int3, jmp, or original
    text: str             # one sentence for a reader


def planted_at(machine, addr: int, original: bytes, mode: str) -> Planted:
    now = machine.read(addr, 5)
    if now[0] == 0xCC and original[0] != 0xCC:
        return Planted(now[:1], "int3", f"int3 planted over {original[0]:02x}: the CPU traps to do_int3")
    if mode == "optimized" and now[0] == 0xE9:
        target = (addr + 5 + int.from_bytes(now[1:5], "little", signed=True)) & 0xFFFFFFFFFFFFFFFF
        return Planted(now, "jmp", f"jmp rel32 to the detour at 0x{target:x} (optimized: no trap)")
    return Planted(now[:1], "original", "the original byte: the probe is not armed")

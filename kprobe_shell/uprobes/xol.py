"""The execute-out-of-line area and the x86 half of the step (arch/x86/kernel/uprobes.c).

Each process that hits a uprobe gets one page mapped into its own address space, the
"[uprobes]" area of xol_add_vma: at the last page of user space (Linux asks
get_unmapped_area for TASK_SIZE - PAGE_SIZE first, and gets it), user-executable, not
writable by the program.  Its first slot holds the uretprobe trampoline, an int3; the
others are the slots a task borrows to single-step a copy of the probed instruction
(xol_get_insn_slot), UPROBE_XOL_SLOT_BYTES each.

The page is the machine's (a pool above the programs' files area, which the kernel's
allocator never hands out).  Linux's xol vma is VM_DONTCOPY: the kernel's fork here
copies every user page, so the page is taken out of the parent's tables while dup_mmap
copies them (the kernel does exactly the work it does unprobed), and the child gets a
page of its own after, trampoline included, as Linux's dup_xol_work gives it one.  When
the address space goes (mmput), uprobe_clear_state takes the page back out of the page
tables before the kernel frees them.

The copy's fix-ups after the step are kprobes' (one table: kprobes/x86.py's classify
and Fixup): rip moved back from the slot unless the instruction set it absolutely, a
call's pushed return address moved back, pushf's pushed TF put back as the program had
it.  A RIP-relative operand is another matter: the program's text is 128 TiB from the
[uprobes] page, out of reach of any disp32, so (as Linux's riprel_analyze does) the copy
addresses it through a scratch register instead: ModRM `00 reg 101` becomes
`10 reg rsi` (or rdi, or rbx, whichever the instruction does not name), the register
holds the original next rip during the step (riprel_pre_xol) and gets its value back
after it (riprel_post_xol); the displacement is unchanged.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from unicorn import UC_PROT_ALL

from ..kprobes.x86 import DecodedInsn, Fixup, rep_exit_pass_due
from ..machine.layout import EFLAGS_TF, PAGE_SIZE
from .types import UPROBE_SWBP_INSN, UPROBE_XOL_SLOT_BYTES, UprobeError, UprobeTask

if TYPE_CHECKING:
    from .core import UprobeEngine

#: TASK_SIZE - PAGE_SIZE: where every process's "[uprobes]" page is.
XOL_VADDR = 0x800000000000 - PAGE_SIZE
XOL_SLOTS = PAGE_SIZE // UPROBE_XOL_SLOT_BYTES
#: The machine's pages for XOL areas: physical memory above the programs' files area,
#: which the kernel's allocator never hands out.
XOL_POOL_BASE = 0x60000000
XOL_POOL_PAGES = 1024
_PTE_USER_RX = 0x1 | 0x4  # present, user (not writable)


class XolPool:
    """The machine's pages for XOL areas (mapped on first use)."""

    def __init__(self, engine: "UprobeEngine") -> None:
        self.engine = engine
        self._mapped = False
        self._free: list[int] = []
        self._next = XOL_POOL_BASE

    def get(self) -> int:
        if not self._mapped:
            self.engine.machine._map(XOL_POOL_BASE, XOL_POOL_PAGES * PAGE_SIZE, UC_PROT_ALL)
            self._mapped = True
        if self._free:
            return self._free.pop()
        if self._next >= XOL_POOL_BASE + XOL_POOL_PAGES * PAGE_SIZE:
            raise UprobeError(f"out of XOL pages ({XOL_POOL_PAGES} processes hold one)")
        page, self._next = self._next, self._next + PAGE_SIZE
        return page

    def put(self, page: int) -> None:
        self._free.append(page)

    def owns(self, page: int) -> bool:
        return XOL_POOL_BASE <= page < XOL_POOL_BASE + XOL_POOL_PAGES * PAGE_SIZE


class XolArea:
    """struct xol_area of one address space (keyed by its pgd)."""

    def __init__(self, engine: "UprobeEngine", pgd: int, page: int) -> None:
        self.engine, self.pgd, self.page = engine, pgd, page
        self.vaddr = XOL_VADDR
        self.slot_owner: dict[int, int] = {}   # slot index -> the task stepping in it
        self._contents: dict[int, bytes] = {}  # what each slot holds (skip rewriting it)

    @property
    def trampoline(self) -> int:
        return self.vaddr

    def get_slot(self, task: int) -> int:
        """xol_get_insn_slot: the lowest free slot (slot 0 is the trampoline's)."""
        for index in range(1, XOL_SLOTS):
            if index not in self.slot_owner:
                self.slot_owner[index] = task
                return self.vaddr + index * UPROBE_XOL_SLOT_BYTES
        raise UprobeError(f"all {XOL_SLOTS - 1} XOL slots of this process are in use")

    def free_slot(self, slot_vaddr: int) -> None:
        self.slot_owner.pop((slot_vaddr - self.vaddr) // UPROBE_XOL_SLOT_BYTES, None)

    def copy_insn(self, slot_vaddr: int, code: bytes) -> None:
        """arch_uprobe_copy_ixol: the copy into the slot (the CPU's translation of the slot
        dropped when its bytes change)."""
        index = (slot_vaddr - self.vaddr) // UPROBE_XOL_SLOT_BYTES
        if self._contents.get(index) == code:
            return
        self._contents[index] = code
        machine = self.engine.machine
        machine.uc.mem_write(self.page + index * UPROBE_XOL_SLOT_BYTES, code)
        # The clock's block counts need no forgetting: a block run with TF set is one
        # instruction, whatever the slot holds.
        machine.uc.ctl_remove_cache(slot_vaddr, slot_vaddr + UPROBE_XOL_SLOT_BYTES)


def set_xol_pte(engine: "UprobeEngine", pgd: int, page: int | None) -> None:
    """Map (or, page None, unmap) the [uprobes] page in the address space at pgd."""
    machine = engine.machine
    pte = machine.userspace.pte_of(pgd, XOL_VADDR)
    if pte is None:
        raise UprobeError("no page table for the [uprobes] page (the process has no stack there)")
    machine.uc.mem_write(pte, struct.pack("<Q", 0 if page is None else page | _PTE_USER_RX))


def xol_add_vma(engine: "UprobeEngine", pgd: int) -> XolArea:
    """Map a new "[uprobes]" page at XOL_VADDR in the address space at pgd: int3s, the
    first of them the uretprobe trampoline."""
    page = engine.xol_pool.get()
    engine.machine.uc.mem_write(page, bytes([UPROBE_SWBP_INSN]) * PAGE_SIZE)
    set_xol_pte(engine, pgd, page)
    return XolArea(engine, pgd, page)


def xol_remove_vma(engine: "UprobeEngine", area: XolArea) -> None:
    """uprobe_clear_state: the machine's page out of the page tables before they go."""
    if engine.machine.userspace.pte_of(area.pgd, XOL_VADDR) is not None:
        set_xol_pte(engine, area.pgd, None)
    engine.xol_pool.put(area.page)


# ---------------------------------------------------------------------- RIP-relative
#: The scratch registers riprel_analyze may choose, by ModRM number.
_SCRATCH = {6: "rsi", 7: "rdi", 3: "rbx"}


def riprel_analyze(insn: DecodedInsn) -> tuple[bytes, str | None]:
    """The copy for the slot, and the scratch register its RIP-relative operand now goes
    through (None: it has none; the copy is the instruction itself)."""
    off = insn.rip_disp_offset
    if off is None:
        return insn.raw, None
    raw = bytearray(insn.raw)
    modrm_at = off - 1
    reg = (raw[modrm_at] >> 3) & 7
    reg2 = 0xFF
    vex = _vex_index(raw)
    if vex is not None:
        vvvv_byte = raw[vex + 2] if raw[vex] == 0xC4 else raw[vex + 1]
        reg2 = ((vvvv_byte >> 3) & 7) ^ 7
    scratch = 6 if 6 not in (reg, reg2) else 7 if 7 not in (reg, reg2) else 3
    raw[modrm_at] = 0x80 | (reg << 3) | scratch
    rex = insn.opcode_index - 1
    if vex is None and rex >= 0 and 0x40 <= raw[rex] <= 0x4F:
        raw[rex] &= 0xFE  # REX.B off: rsi/rdi/rbx, not r14/r15/r11
    elif vex is not None and raw[vex] == 0xC4:
        raw[vex + 1] |= 0x20  # VEX.B (inverted) off likewise
    return bytes(raw), _SCRATCH[scratch]


def _vex_index(raw: bytearray) -> int | None:
    i = 0
    while i < len(raw) and raw[i] in (0x66, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0x67, 0xF0):
        i += 1
    return i if i < len(raw) and raw[i] in (0xC4, 0xC5) else None


# ---------------------------------------------------------------------- the step
def arch_uprobe_pre_xol(engine: "UprobeEngine", utask: UprobeTask, area: XolArea) -> str | None:
    """The copy into the task's slot; the CPU sent there with TF set.  Returns the scratch
    register a RIP-relative operand goes through (None: none)."""
    machine = engine.machine
    insn = utask.active.insn
    slot = area.get_slot(utask.task)
    copy, scratch = riprel_analyze(insn)
    area.copy_insn(slot, copy)
    utask.xol_vaddr = slot
    if scratch is not None:  # riprel_pre_xol
        utask.saved_scratch = (scratch, machine.reg(scratch))
        machine.set_reg(scratch, insn.address + insn.length)
    eflags = machine.eflags
    utask.saved_tf = bool(eflags & EFLAGS_TF)
    utask.rcx_before = machine.reg("rcx") if insn.is_rep_string() else None
    machine.set_reg("eflags", eflags | EFLAGS_TF)
    machine.set_reg("rip", slot)
    return scratch


def arch_uprobe_post_xol(engine: "UprobeEngine", utask: UprobeTask) -> tuple[Fixup, int]:
    """After the debug trap: the fix-ups (kprobes' rules), TF as the program had it.
    Returns the rule and rip before it was fixed, for the narration."""
    machine, userspace = engine.machine, engine.machine.userspace
    insn = utask.active.insn
    kind = insn.fixup_kind()
    _riprel_post_xol(machine, utask)
    copy_rip, orig_rip, stepped_rip = utask.xol_vaddr, utask.vaddr, machine.rip
    if kind is Fixup.PUSHF or kind is Fixup.CALL_REL32 or kind is Fixup.INDIRECT_CALL:
        rsp = machine.reg("rsp")
        tos = int.from_bytes(userspace.read_virtual(rsp, 8), "little")
        if kind is Fixup.PUSHF:
            fixed = (tos & ~EFLAGS_TF) | (EFLAGS_TF if utask.saved_tf else 0)
        else:
            fixed = orig_rip + (tos - copy_rip)
        userspace.write_virtual(rsp, fixed.to_bytes(8, "little"))
    if not kind.rip_absolute:
        machine.set_reg("rip", orig_rip + (stepped_rip - copy_rip))
    if not utask.saved_tf:
        machine.set_reg("eflags", machine.eflags & ~EFLAGS_TF)
    before, utask.rcx_before = utask.rcx_before, None
    if rep_exit_pass_due(insn, orig_rip, before, machine.rip, machine.reg("rcx"), machine.eflags):
        machine.set_reg("rip", orig_rip)
    return kind, stepped_rip


def arch_uprobe_abort_xol(engine: "UprobeEngine", utask: UprobeTask) -> None:
    """A fault in the slot: back to the probed address, as if the step never began."""
    machine = engine.machine
    _riprel_post_xol(machine, utask)
    machine.set_reg("rip", utask.vaddr)
    if not utask.saved_tf:
        machine.set_reg("eflags", machine.eflags & ~EFLAGS_TF)


def _riprel_post_xol(machine, utask: UprobeTask) -> None:
    if utask.saved_scratch is not None:
        reg, value = utask.saved_scratch
        machine.set_reg(reg, value)
        utask.saved_scratch = None

"""The instruction clock: each CPU's exact count of guest instructions, the virtual time.

The counting itself is done by C hooks on unicorn (see _clock.c, block_hook and
tool_hook): the image's text a translated block at a time, the detour copies in the
tool's pages an instruction at a time.  This module mirrors their state, struct icount,
with ctypes (its size checked against the C side at import), installs the hooks on a CPU,
and settles the count exactly where a block is left part way (a fault, a code hook in the
middle of a block, an in/out, a deadline inside a block).
"""
from __future__ import annotations

import ctypes
from typing import Callable

from capstone import CS_ARCH_X86, CS_MODE_64, Cs
from capstone import _cs as _capstone_lib
from unicorn import UC_HOOK_BLOCK, UC_HOOK_CODE, Uc, uc_version
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib

from . import _clock, capi
from .events import MachineError
from .layout import RESERVED_BASE, RESERVED_END

#: Virtual CPU speed: one retired instruction is one nanosecond of guest time.
NS_PER_INSN = 1
#: A deadline that never comes (deadline, tick and limit of struct icount).
NO_DEADLINE = (1 << 64) - 1
MAX_TOOL_HOOKS = _clock.MAX_TOOL_HOOKS
MAX_SPANS = _clock.MAX_SPANS


class ToolHook(ctypes.Structure):
    """struct tool_hook in _clock.c.  py: the callable's PyObject* (id()), called through
    the C API."""

    _fields_ = [("begin", ctypes.c_uint64), ("end", ctypes.c_uint64), ("cb", ctypes.c_void_p), ("py", ctypes.c_void_p),
                ("data", ctypes.c_void_p)]


class Span(ctypes.Structure):
    """A span of code the block hook counts, [lo, hi) (struct icount's spans)."""

    _fields_ = [("lo", ctypes.c_uint64), ("hi", ctypes.c_uint64)]


class ICount(ctypes.Structure):
    """struct icount in _clock.c (the field comments are there)."""

    _fields_ = [
        ("retired", ctypes.c_uint64), ("deadline", ctypes.c_uint64), ("emu_stop", ctypes.c_void_p),
        ("detour_base", ctypes.c_uint64), ("detour_size", ctypes.c_uint64), ("counted", ctypes.c_void_p),
        ("n_tool_hooks", ctypes.c_uint64), ("tool_hooks", ToolHook * MAX_TOOL_HOOKS),
        ("tick", ctypes.c_uint64), ("limit", ctypes.c_uint64), ("retry", ctypes.c_uint64),
        ("blk_addr", ctypes.c_uint64), ("blk_end", ctypes.c_uint64), ("blk_base", ctypes.c_uint64),
        ("blk_n", ctypes.c_uint64),
        ("split_addr", ctypes.c_uint64), ("split_size", ctypes.c_uint64),
        ("blocks", ctypes.c_void_p), ("if_may_rise", ctypes.c_uint64), ("stop_asked", ctypes.c_uint64),
        ("vmem", ctypes.c_uint64), ("next_tb_cflags", ctypes.c_void_p),
        ("limited_retired", ctypes.c_uint64), ("limited_addr", ctypes.c_uint64), ("limited_k", ctypes.c_uint64),
        ("split_stop", ctypes.c_uint64),
        ("trap_info", ctypes.c_uint64), ("trap_gate", ctypes.c_uint64), ("period", ctypes.c_uint64),
        ("tick_log", ctypes.c_void_p), ("tick_log_len", ctypes.c_uint64), ("tick_log_cap", ctypes.c_uint64),
        ("last_end", ctypes.c_uint64), ("frame_lo", ctypes.c_uint64), ("frame_hi", ctypes.c_uint64),
        ("n_spans", ctypes.c_uint64), ("spans", Span * MAX_SPANS),
        ("io_seen", ctypes.c_uint64), ("io_blk_addr", ctypes.c_uint64), ("io_blk_end", ctypes.c_uint64),
        ("io_blk_base", ctypes.c_uint64), ("io_index", ctypes.c_uint64), ("out_py", ctypes.c_void_p),
        ("out_ports", ctypes.c_uint64 * 2),
    ]


def _check_layout() -> None:
    """The ctypes mirror must lay struct icount out as the compiler did: a field added on
    one side only would make the hooks read the wrong words."""
    mine = (ctypes.sizeof(ToolHook), ctypes.sizeof(ICount), ICount.stop_asked.offset)
    theirs = (_clock.TOOL_HOOK_SIZE, _clock.ICOUNT_SIZE, _clock.ICOUNT_STOP_ASKED_OFFSET)
    if mine != theirs:
        raise ImportError(f"clock.py's struct icount (tool_hook, icount, stop_asked offset: {mine}) does not "
                          f"match _clock.c's {theirs}: rebuild the extension (python3 setup.py build_ext --inplace)")


_check_layout()

_EMU_STOP_ADDR = ctypes.cast(uclib.uc_emu_stop, ctypes.c_void_p).value
# The block hook decodes each new translated block once with capstone's C iterator: one
# handle and one instruction buffer for the process.
_DECODER = Cs(CS_ARCH_X86, CS_MODE_64)
_capstone_lib.cs_malloc.restype = ctypes.c_void_p
_capstone_lib.cs_malloc.argtypes = [ctypes.c_size_t]
_DECODER_INSN = _capstone_lib.cs_malloc(_DECODER.csh)  # never freed: one for the process
_clock.init(ctypes.cast(_capstone_lib.cs_disasm_iter, ctypes.c_void_p).value, _DECODER.csh.value, _DECODER_INSN,
            X.UC_X86_REG_EFLAGS, ctypes.cast(uclib.uc_reg_read, ctypes.c_void_p).value,
            ctypes.cast(uclib.uc_mem_read, ctypes.c_void_p).value,
            X.UC_X86_REG_RIP, X.UC_X86_REG_CS, ctypes.cast(uclib.uc_reg_write, ctypes.c_void_p).value,
            ctypes.cast(uclib.uc_mem_write, ctypes.c_void_p).value, X.UC_X86_REG_RSP, X.UC_X86_REG_SS,
            X.UC_X86_REG_IDTR)
_BLOCK_HOOK, _TOOL_HOOK = _clock.hook_addresses()
_SPANS_BLOCK_HOOK = _clock.spans_hook_address()
#: The C hook of `out` instructions (see Ports.install).
OUT_HOOK_ADDRESS = _clock.out_hook_address()
#: The C block hook that does nothing (the benchmark's floor for the clock).
EMPTY_HOOK_ADDRESS = _clock.empty_hook_address()

#: Split a block at a deadline with an instruction-limited block (InstructionClock.split_block);
#: False forces the fallback, which the tests compare it with.
LIMITED_SPLIT = True
_CF_COUNT_MASK = 0x7FFF  # QEMU's instruction limit field of a block's cflags
#: Where QEMU 5.0's struct CPUState (unicorn 2's qemu/include/hw/core/cpu.h) keeps
#: cflags_next_tb: after int nr_cores, int nr_threads, a pointer and seven bools, on LP64.
_CFLAGS_NEXT_TB_OFFSET = 24
_UNASSIGNED_CPU_INDEX = -1
_UNRESOLVED = object()


def _next_block_limit(uc: Uc) -> ctypes.c_uint32 | None:
    """unicorn's CPUState.cflags_next_tb for uc's CPU (0xFFFFFFFF: no request), or None
    when it cannot be found or does not look as QEMU leaves it (one core, one thread, no
    request): then the clock splits blocks the slow way.  Asked once the CPU exists (after
    a first emu_start: before, unicorn has none and qemu_get_cpu would dereference NULL)."""
    get_cpu = getattr(uclib, "qemu_get_cpu_x86_64", None)
    if not LIMITED_SPLIT or get_cpu is None or uc_version()[0] != 2:  # unicorn 2: QEMU 5.0's layout
        return None
    get_cpu.restype, get_cpu.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_int]
    cpu = get_cpu(uc._uch, _UNASSIGNED_CPU_INDEX)  # unicorn leaves its one CPU's index unassigned
    if not cpu:
        return None
    cores_threads = tuple((ctypes.c_int32 * 2).from_address(cpu))
    field = ctypes.c_uint32.from_address(cpu + _CFLAGS_NEXT_TB_OFFSET)
    return field if cores_threads == (1, 1) and field.value == 0xFFFFFFFF else None


class BlockTable:
    """Instruction counts of translated blocks, keyed by virtual address: shared by every
    CPU's clock when they run the same code (the kernel's text), one per CPU when the
    CPUs may run different address spaces (Machine._boot)."""

    def __init__(self) -> None:
        self.buffer = ctypes.create_string_buffer(_clock.BLOCK_TABLE_BYTES)
        self.address = ctypes.addressof(self.buffer)

    def forget(self, lo: int, hi: int) -> None:
        """Code in [lo, hi) was rewritten: its blocks must be counted afresh."""
        _clock.forget_blocks(self.address, lo, hi)


class InstructionClock:
    """One CPU's clock: its struct icount (`counter`, which the C hooks update) and the
    exact settling of a count where a block is left part way."""

    def __init__(self, uc: Uc, blocks: BlockTable) -> None:
        self.uc = uc
        self.uch = uc._uch.value
        self.counter = ICount(0, NO_DEADLINE, _EMU_STOP_ADDR)
        self.counter.tick = self.counter.limit = NO_DEADLINE
        self.counter.limited_retired = NO_DEADLINE  # no split made by the block hook yet
        self.blocks = blocks
        self.counter.blocks = blocks.address
        #: Reads code at a virtual address the guest's page tables map (user processes,
        #: see userspace.py); None while the guest runs without paging.
        self.read_virtual: Callable[[int, int], bytes] | None = None
        #: Where `retired` is (its first field), for capi.peek_u64.
        self.retired_addr = ctypes.addressof(self.counter)
        #: unicorn's request for the next block's instruction limit (see split_block).
        self.next_block_limit: ctypes.c_uint32 | None | object = _UNRESOLVED
        self._last_split: tuple[int, int, int] | None = None

    def install(self, spans: list[tuple[int, int]]) -> None:
        """Count instructions started in spans of code, [lo, hi) each (the image's text;
        the user address ranges), a block at a time, and in the detour copies of the
        tool's pages, an instruction at a time.  Several spans share one block hook over
        all of them: unicorn walks its whole list of block hooks at every block, and a
        hook more costs every block more than the hook's own test of the spans."""
        if not 1 <= len(spans) <= MAX_SPANS:
            raise MachineError(f"the clock counts 1 to {MAX_SPANS} spans of code (asked for {len(spans)})")
        block_hook = _BLOCK_HOOK
        if len(spans) > 1:
            block_hook = _SPANS_BLOCK_HOOK
            self.counter.n_spans = len(spans)
            for slot, (lo, hi) in zip(self.counter.spans, spans):
                slot.lo, slot.hi = lo, hi
        lo, hi = min(lo for lo, _hi in spans), max(hi for _lo, hi in spans)
        for kind, fn, begin, end in ((UC_HOOK_BLOCK, block_hook, lo, hi - 1),
                                     (UC_HOOK_CODE, _TOOL_HOOK, RESERVED_BASE, RESERVED_END - 1)):
            handle = ctypes.c_size_t()
            err = uclib.uc_hook_add(
                self.uc._uch, ctypes.byref(handle), kind, ctypes.c_void_p(fn),
                ctypes.cast(ctypes.pointer(self.counter), ctypes.c_void_p), ctypes.c_uint64(begin),
                ctypes.c_uint64(end),
            )
            if err:
                raise MachineError(f"could not install the instruction counter (unicorn error {err})")

    @property
    def retired(self) -> int:
        return self.counter.retired

    def adjust(self, delta: int) -> None:
        """Take instructions the tool planted (an int3 at a trampoline) off the clock."""
        self.counter.retired += delta
        self.counter.blk_end = 0  # the count is settled by hand from here

    def set(self, retired: int) -> None:
        """Put the clock back, for work the guest did on the tool's behalf (a jprobe handler)."""
        self.counter.retired = retired
        self.counter.blk_end = 0

    def uncount_current(self) -> None:
        """The instruction about to run was counted but will not run now (a stop at it)."""
        self.counter.retired -= 1

    def block_instructions(self, start: int, end: int) -> list[tuple[int, str]]:
        """(address, mnemonic) of each instruction in [start, end), as the CPU sees memory.
        Bytes that do not decode end the list as one instruction, as the block hook counts
        them: a block may end part way into an instruction that faults while it is
        translated (an SSE instruction with CR0.TS set raises #NM there)."""
        try:
            code = capi.mem_read(self.uch, start, end - start)
        except capi.AccessError:
            if self.read_virtual is None:
                raise MachineError(f"cannot read {end - start} bytes at 0x{start:x}: not mapped") from None
            code = self.read_virtual(start, end - start)
        insns, at = [], start
        for a, size, mn, _o in _DECODER.disasm_lite(code, start):
            insns.append((a, mn))
            at = a + size
        if at < end:
            insns.append((at, "(bad)"))
        return insns

    def at(self, addr: int, started: bool) -> tuple[int, int] | None:
        """The exact count at the instruction at addr inside the block being run, which the
        block hook counted whole when it began: (count with the instruction at addr
        started or not, instructions of the block after it).  None when addr is not in
        that block (the count is exact already)."""
        ic = self.counter
        if not (ic.blk_end and ic.blk_addr <= addr < ic.blk_end):
            return None
        index = len(self.block_instructions(ic.blk_addr, addr))
        return ic.blk_base + index + started, ic.blk_n - index - 1

    def settle(self, addr: int, started: bool) -> None:
        """The block being run stops being run at addr (a fault, a stop): count exactly."""
        exact = self.at(addr, started)
        if exact is not None:
            self.counter.retired = exact[0]
            self.counter.blk_end = 0

    def around_hook(self, addr: int, callback: Callable[[], bool]) -> None:
        """An exact-address hook in the middle of a block: the clock counted the whole block
        when it began; callback() sees the count as the instruction's own (it has started,
        as a per-instruction counter would have it), and the rest of the block is counted
        again after it unless the block stops here: callback returns whether it goes on."""
        ic = self.counter
        ic.if_may_rise = 1  # the callback may change IF (see _clock.c)
        exact = self.at(addr, True)
        if exact is None:
            callback()
            return
        ic.retired, rest = exact
        if callback():
            ic.retired += rest
        else:
            ic.blk_end = 0

    def split_block(self, k: int, until_before: int) -> tuple[int, bool]:
        """A deadline falls k instructions into the block [split_addr, +split_size), which
        the block hook saw beginning and stopped before (it splits such blocks itself,
        limit_block in _clock.c, once next_block_limit is known: the first split, a repeat,
        a CPU without it come here).  Returns (at, by_until): at, the address of its k-th
        instruction, where the run must stop; by_until, whether emu_start must be given
        `at` as its `until` for that.

        The cheap way (next_block_limit): the next block QEMU translates or looks up is one
        of at most k instructions (CPUState.cflags_next_tb, the icount mechanism), so the
        run stops before `at` at the block hook, like any deadline at a block's start
        (until stays until_never).  QEMU keeps such a block in its cache beside the whole
        one, keyed by its instruction limit: a tick that lands on the same instruction
        again translates nothing.  The fallback drops the whole block from the cache and
        runs with `until` at `at`, which makes unicorn translate it again ending there and
        drop that after the run: two translations per split."""
        start, size = self.counter.split_addr, self.counter.split_size
        # Decoded in C, as the block hook counted it: a few times per timer period.
        at = _clock.nth_instruction(self.uch, start, size, k, self.counter.vmem) if k > 0 else 0
        if not at or at == until_before:
            raise MachineError(f"the clock cannot stop {k} instructions into the block at 0x{start:x}")
        if self.next_block_limit is _UNRESOLVED:
            self.next_block_limit = _next_block_limit(self.uc)
            if self.next_block_limit is not None:
                self.counter.next_tb_cflags = ctypes.addressof(self.next_block_limit)
        # The same split asked for again at the same count: the limit was not honoured
        # (the run began elsewhere, an exception first): the fallback is sure to stop.
        split = (self.counter.retired, start, k)
        if self.next_block_limit is not None and k <= _CF_COUNT_MASK and split != self._last_split:
            self._last_split = split
            self.next_block_limit.value = k
            return at, False
        self._last_split = None
        self.uc.ctl_remove_cache(start, start + size)
        return at, True

    def count_in(self, counted: ctypes.Array, base: int, size: int) -> None:
        """Count the instructions of [base, base+size) marked in the byte map counted."""
        self.counter.counted = ctypes.cast(counted, ctypes.c_void_p)
        self.counter.detour_base, self.counter.detour_size = base, size

    def add_tool_hook(self, begin: int, end: int, callback: Callable[[int], None] | None,
                      c_hook: tuple[int, int] | None = None) -> bool:
        """Have the tool hook call callback(address) on [begin, end] in the tool's pages,
        or with c_hook = (function, data) that C function as a code hook with data as its
        user_data; False when its slots are full.  The C side holds no reference: the
        caller keeps callback (and data) alive."""
        ic = self.counter
        if ic.n_tool_hooks >= MAX_TOOL_HOOKS:
            return False
        slot = ic.tool_hooks[ic.n_tool_hooks]
        slot.begin, slot.end = begin, end
        if c_hook is not None:
            slot.cb, slot.py, slot.data = c_hook[0], None, c_hook[1]
        else:
            slot.cb, slot.py, slot.data = None, id(callback), None
        ic.n_tool_hooks += 1
        return True

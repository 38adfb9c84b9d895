"""The types of kprobes, the counterpart of include/linux/kprobes.h.

struct kprobe (Kprobe) and the aggregate probe that stands in the table when several
probes share an address, the per-CPU status values, the table's hash, the probe modes,
and the errors.  The managers (core.py, kretprobes.py, jprobes.py, optimize.py) import
these; this module imports none of them.
"""
from __future__ import annotations

import ctypes
import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..display import Displayed
from .guard import HandlerInterrupted, HandlerTimeout
from .narrate import AggregateHandler

if TYPE_CHECKING:
    from .core import KprobeEngine
    from .x86 import DecodedInsn


class ProbeError(Exception):
    """A probe cannot be placed or registered; the message says why (the kernel's -EINVAL)."""


KPROBE_HASH_BITS = 6
KPROBE_TABLE_SIZE = 1 << KPROBE_HASH_BITS
GOLDEN_RATIO_PRIME_64 = 0x9E37FFFFFFFC0001  # include/linux/hash.h, 2.6


def hash_ptr(value: int, bits: int = KPROBE_HASH_BITS) -> int:
    """The kernel's hash_long() for 64-bit pointers (2.6 include/linux/hash.h)."""
    return ((value * GOLDEN_RATIO_PRIME_64) & 0xFFFFFFFFFFFFFFFF) >> (64 - bits)


class KprobeStatus(enum.Enum):
    HIT_ACTIVE = "KPROBE_HIT_ACTIVE"    # pre-handlers running (or a jprobe handler in the guest)
    HIT_SS = "KPROBE_HIT_SS"            # single-stepping the copy
    HIT_SSDONE = "KPROBE_HIT_SSDONE"    # post-handlers running
    REENTER = "KPROBE_REENTER"          # stepping a probe hit while another was running


class Refusal(str):
    """Why a probe is not optimized (Kprobe.optimize_refusal, shown by `probes`): the text,
    and whether a later stop may lift it (another probe in the way, a task about to
    resume inside the bytes, the optimizer's delayed work).  A plain str is a refusal
    that lasts (the mode, the instruction, the handlers)."""

    transient: bool

    def __new__(cls, text: str, *, transient: bool = False) -> "Refusal":
        refusal = super().__new__(cls, text)
        refusal.transient = transient
        return refusal


class ProbeMode(enum.StrEnum):
    """How a probe gets past its instruction (see `set kprobe-mode`); AUTO (the default) is
    the fastest that is safe for each probe: optimized, else boosted, else single-stepped.
    OPTIMIZE picks the same per probe, for teaching: `probes` then says why a probe could
    not be optimized.  A str, so a mode compares and prints as its name."""

    AUTO = "auto"
    SINGLE_STEP = "single-step"
    BOOST = "boost"
    OPTIMIZE = "optimize"


#: The modes a user picks besides the default.
MODES = (ProbeMode.SINGLE_STEP, ProbeMode.BOOST, ProbeMode.OPTIMIZE)
#: The modes whose hits take the jump (optimized probes) and whose returns take the
#: kretprobe booster rather than the int3 trampoline.
BOOSTED_MODES = (ProbeMode.AUTO, ProbeMode.OPTIMIZE)


class StepMode(enum.StrEnum):
    """Where the probed instruction is single-stepped (see `set kprobe-step`): out of line
    in its slot, as the kernel does; or in place (the original byte put back, the
    instruction stepped at its own address, the int3 planted again), as early naive
    implementations did, which lets other CPUs run through the probe unseen while the byte
    is back."""

    OUT_OF_LINE = "out-of-line"
    IN_PLACE = "in-place"


STEP_MODES = tuple(StepMode)


class SplitCount:
    """A probe's count kept in two words and summed on read, as the kernel sums a per-CPU
    counter: python_NAME, which the Python paths add to, and c_NAME, a ctypes int64 that
    the C hit (tracing/_hit.c) adds to without the GIL.  Setting it (a reset, a test)
    sets the sum."""

    def __set_name__(self, owner, name: str) -> None:
        self.python, self.c = f"python_{name}", f"c_{name}"

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return getattr(obj, self.python) + getattr(obj, self.c).value

    def __set__(self, obj, n: int) -> None:
        setattr(obj, self.python, n - getattr(obj, self.c).value)


class Kprobe(Displayed):
    """struct kprobe: a probe on one instruction, with its handlers and counters."""

    kind = "k"
    #: True when pre_handler is the engine's own code (a kretprobe's entry,
    #: arch_prepare_kretprobe), which runs the user's entry_handler through
    #: KprobeEngine._call itself and reports its own failures as _call would: the
    #: optimized path calls it directly, without a second guard around it.
    engine_pre_handler = False
    #: A kretprobe's entry, when the optimized path can take a shorter way (see
    #: KretprobeManager._make_fast_entry): fast_entry(kcb) -> True when it did the hit.
    fast_entry = None
    #: How its hits record in C at a jump-optimized address (kprobes/chits.py's CRecord,
    #: set by whoever made its pre_handler), None: its hits run the Python path.
    c_record = None

    def __init__(
        self,
        symbol_name: str | None = None,
        offset: int = 0,
        *,
        addr: int | None = None,
        pre_handler: Callable | None = None,
        post_handler: Callable | None = None,
        fault_handler: Callable | None = None,
        break_handler: Callable | None = None,
        name: str | None = None,
    ):
        if symbol_name is None and addr is None:
            raise ProbeError("a probe needs symbol_name or addr")
        self.symbol_name = symbol_name
        self.offset = offset
        self.addr = addr
        self.pre_handler = pre_handler
        self.post_handler = post_handler
        self.fault_handler = fault_handler
        self.break_handler = break_handler
        self.name = name
        self.nmissed = 0
        # Its hits, counted in two places as the kernel keeps per-CPU counters (SplitCount):
        # by the Python paths, and by the C hit (tracing/_hit.c), which adds to its word
        # without the GIL.
        self.python_hits = 0
        self.c_hits = ctypes.c_int64(0)
        self.faults = 0  # handler errors and faults charged to this probe
        #: Executions of the probed instruction on other CPUs while an in-place step had the
        #: original byte back (`set kprobe-step in-place`): calls the probe never saw.
        self.missed_in_place = 0
        self.disabled = False
        self.internal = False  # the engine's own (the trampoline probe): not listed, not user-removable
        self.number: int | None = None  # the shell's probe number
        # Set by arch_prepare_kprobe:
        self.opcode: int | None = None
        self.ainsn: DecodedInsn | None = None
        self.slot: int | None = None
        self.boosted = False
        self.optimize_refusal: str | None = None  # why the optimizer left it an int3 probe
        self.engine: "KprobeEngine | None" = None

    def __repr__(self) -> str:
        where = self.symbol_name + (f"+0x{self.offset:x}" if self.offset else "") if self.symbol_name else ""
        return f"<{type(self).__name__} {where or hex(self.addr or 0)}>"

    hits = SplitCount()  # hits of the probe

    @property
    def registered(self) -> bool:
        return self.engine is not None

    @property
    def mode(self) -> str:
        """How hits get past the instruction: decided by the table entry (an aggregate
        manager decides for all the probes sharing its address)."""
        entry = self.engine.get_kprobe(self.addr) if self.engine is not None else None
        if entry is not None and self.addr in self.engine.optimizer.active:
            return "optimized"
        return "boost" if (entry or self).boosted else "single-step"

    @property
    def owner(self) -> "Kprobe":
        """The user-facing probe a kprobe belongs to (a jprobe's or kretprobe's kp: itself)."""
        return getattr(self, "_owner", self)


class AggrKprobe(Kprobe):
    """The manager that stands in the table when several probes share an address."""

    kind = "aggr"

    def __init__(self, first: Kprobe):
        super().__init__(addr=first.addr)
        self.children: list[Kprobe] = [first]
        self.curr: Kprobe | None = None
        self.pre_handler = self._aggr_pre_handler
        self.post_handler = self._aggr_post_handler
        self.fault_handler = self._aggr_fault_handler
        self.break_handler = self._aggr_break_handler
        self.opcode, self.ainsn, self.slot = first.opcode, first.ainsn, first.slot

    def add(self, p: Kprobe) -> None:
        """add_new_kprobe: a jprobe (break_handler) goes last, kprobes go first (newest first)."""
        if p.break_handler or p.kind == "j":
            if any(c.break_handler or c.kind == "j" for c in self.children):
                raise ProbeError(f"0x{p.addr:x} already has a jprobe: at most one jprobe per address")
            self.children.append(p)
        else:
            self.children.insert(0, p)

    def active_children(self) -> list[Kprobe]:
        return [c for c in self.children if not c.disabled]

    def _aggr_pre_handler(self, p, regs) -> int:
        for child in self.active_children():
            # A child without a pre_handler is hit too (as a lone probe without one is).
            child.python_hits += 1
            if child.pre_handler is None:
                continue
            self.curr = child
            if self.engine.narrator is not None:
                self.engine.narrate(AggregateHandler("pre_handler", child.owner))
            if self.engine._call(child, "pre_handler", child.pre_handler, child, regs):
                return 1
        return 0

    def _aggr_post_handler(self, p, regs, flags) -> None:
        for child in self.active_children():
            if child.post_handler is not None:
                self.curr = child
                if self.engine.narrator is not None:
                    self.engine.narrate(AggregateHandler("post_handler", child.owner))
                self.engine._call(child, "post_handler", child.post_handler, child, regs, flags)

    def _aggr_fault_handler(self, p, regs, trapnr) -> int:
        cur = self.curr
        if cur is not None and cur.fault_handler is not None:
            return self.engine._call(cur, "fault_handler", cur.fault_handler, cur, regs, trapnr)
        return 0

    def _aggr_break_handler(self, p, regs) -> int:
        cur = self.curr
        if cur is not None and cur.break_handler is not None:
            return self.engine._call(cur, "break_handler", cur.break_handler, cur, regs)
        return 0


@dataclass
class HandlerError:
    """A handler raised: reported with its file and line, charged to the probe."""

    probe: Kprobe
    handler: str
    exception: BaseException
    where: str  # "file:line" of the innermost frame in the handler's code

    def __str__(self) -> str:
        return f"{self.handler} of {self.probe.owner!r} {describe_handler_exception(self.exception)} ({self.where})"


def describe_handler_exception(exc: BaseException) -> str:
    """"raised ValueError: ...", or what the guard did to a handler that would not return."""
    if isinstance(exc, HandlerTimeout):
        return "ran past the handler-timeout and was stopped (HandlerTimeout)"
    if isinstance(exc, (HandlerInterrupted, KeyboardInterrupt)):
        return "was interrupted by Ctrl-C"
    return f"raised {type(exc).__name__}: {exc}"


#: Functions still running when the 2005 kernel calls kprobe_flush_task, so their return
#: probes lose their instance (see kretprobes.py): the exec chain down to flush_thread, and
#: exit_thread on the exit path (do_exit never returns, so it is safe).
EXEC_PATH_PATTERNS = ("sys_execve", "do_execve", "search_binary_handler", "load_*_binary", "flush_old_exec",
                      "flush_thread")
EXIT_PATH_PATTERNS = ("exit_thread", "kprobe_flush_task")

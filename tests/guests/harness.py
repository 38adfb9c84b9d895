"""Helpers the machine and kprobe tests share: snapshots of a machine's state and counts
of how often each instruction runs, taken independently of the probe engine."""
from __future__ import annotations

from dataclasses import dataclass

from kprobe_shell.machine.layout import RESERVED_END

#: How much of the boot stack (just below its top) a snapshot compares.
STACK_BYTES = 0x4000


@dataclass
class Snapshot:
    console: str
    retired: int
    registers: dict
    memory: dict  # page -> bytes, the image's pages
    stack: bytes

    def diff(self, other: "Snapshot") -> list[str]:
        """What differs, readably (empty when the two states are identical)."""
        out = []
        if self.console != other.console:
            out.append(f"console: {self.console!r} != {other.console!r}")
        if self.retired != other.retired:
            out.append(f"retired: {self.retired} != {other.retired}")
        for name, value in self.registers.items():
            if other.registers.get(name) != value:
                out.append(f"{name}: 0x{value:x} != 0x{other.registers.get(name, -1):x}")
        for page, data in self.memory.items():
            theirs = other.memory.get(page)
            if theirs != data:
                first = next((i for i, (a, b) in enumerate(zip(data, theirs or b"")) if a != b), 0)
                out.append(f"memory page 0x{page:x} differs first at 0x{page + first:x}")
        if set(self.memory) != set(other.memory):
            out.append("different page sets")
        if self.stack != other.stack:
            first = next(i for i, (a, b) in enumerate(zip(self.stack, other.stack)) if a != b)
            out.append(f"stack differs first at 0x{RESERVED_END - STACK_BYTES + first:x}")
        return out


def snapshot(m, *, text_as_original: bool = True) -> Snapshot:
    """The machine's whole guest-visible state.  Text is read as the guest would see it
    without probes (planted int3s replaced by their original bytes) when asked to."""
    memory = m.guest_memory()
    if text_as_original and getattr(m, "kprobes", None) is not None:
        memory = {page: m.kprobes.original_bytes(page, len(data)) for page, data in memory.items()}
    return Snapshot(
        console=m.console,
        retired=m.retired,
        registers=m.registers(),
        memory=memory,
        stack=m.read(RESERVED_END - STACK_BYTES, STACK_BYTES),
    )


def data_pages(m) -> dict:
    """The image's pages that hold no code."""
    text = m.image.text_ranges
    return {
        page: data for page, data in m.guest_memory().items()
        if not any(lo < page + len(data) and page < hi for lo, hi in text)
    }


def count_executions(m, addresses, *, ranged: bool = False) -> dict[int, int]:
    """Count how often each address runs, with the machine's own code hooks (on a machine
    without probes: an independent count to compare probe hits with).

    One exact-address hook per address (m.add_code_hook), or, with ranged=True, one
    unicorn code hook over the image's text (unicorn walks its hook list on every
    instruction, so thousands of single-address hooks make every instruction slow)."""
    counts = {a: 0 for a in addresses}
    if ranged:
        from unicorn import UC_HOOK_CODE

        def count(_uc, address, _size, _data):
            if address in counts:
                counts[address] += 1

        lo, hi = m.image.text_span
        for cpu in m.cpus:  # every CPU of an SMP machine runs the text
            cpu.uc.hook_add(UC_HOOK_CODE, count, None, lo, hi - 1)
            cpu.uc.ctl_remove_cache(lo, hi)
        return counts

    def make(a):
        def hook(_m):
            counts[a] += 1
        return hook

    for a in addresses:
        m.add_code_hook(a, make(a))
    return counts


def instruction_boundaries(m) -> list[int]:
    """Every instruction start of every function of the image (functions may overlap:
    each address once)."""
    return sorted({a for f in m.symbols.functions() for a in m.kprobes.instruction_boundaries(f.address)})


def execution_clocks(m, addr: int) -> list[int]:
    """The value of m.retired each time addr runs (the count includes that instruction)."""
    clocks: list[int] = []
    m.add_code_hook(addr, lambda mm: clocks.append(mm.retired))
    return clocks


def session_state(s) -> dict:
    """Everything a shell user could see of a session, for "a bad command changed nothing":
    the `probes` listing, planted int3s, the image's text bytes, registers, the clock,
    numbering, trace, settings, and which machine and image it is."""
    import io

    from kprobe_shell.shell.output import Output

    buf = io.StringIO()
    old, s.out = s.out, Output(buf, color=False)
    try:
        s.execute("probes")
    finally:
        s.out = old
    m = s.machine
    return {
        "machine": id(m),
        "probes": buf.getvalue(),
        "numbers": (sorted(s.probes), s.next_number),
        "planted": m.kprobes.planted(),
        "text": [m.read(lo, hi - lo) for lo, hi in m.image.text_ranges],
        "registers": m.registers(),
        "retired": m.retired,
        "console": m.console,
        "trace": len(s.trace.events),
        "settings": dict(s.settings),
        "image": s.image_path,
    }

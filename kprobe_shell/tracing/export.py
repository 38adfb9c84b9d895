"""`trace save`: the trace buffer written for other tools.

    text     ftrace's trace file: the `# tracer: nop` header, then one line per event
    dat      trace-cmd's trace.dat (tracedat.py): `trace-cmd report -i FILE` and KernelShark read it
    folded   one line per distinct stack with its count, for flame graphs (stacks.py)
    chrome   Chrome Trace Event JSON, for Perfetto and speedscope (stacks.py)

A FILE ending in .dat is saved as dat unless --format says otherwise.
"""
from __future__ import annotations

FORMATS = ("text", "dat", "folded", "chrome")


def format_for(path: str, given: str | None) -> str:
    """The format to write `path` in: the one given, else dat for *.dat, else text."""
    if given is not None:
        if given not in FORMATS:
            raise ValueError(f"unknown trace format '{given}' (one of: {', '.join(FORMATS)})")
        return given
    return "dat" if path.endswith(".dat") else "text"


def text_header(buffer, ncpus: int) -> str:
    """The header ftrace's trace file starts with (kernel/trace/trace.c, print_event_info),
    its columns placed over this shell's wider task and nanosecond time columns: the
    events in the buffer, and those written (the ones overwritten since included)."""
    entries = buffer.entries
    written = entries + buffer.overrun
    return (
        "# tracer: nop\n"
        "#\n"
        f"# entries-in-buffer/entries-written: {entries}/{written}   #P:{ncpus}\n"
        "#\n"
        f"#{'TASK-PID':>21} {'CPU#':>5} {'TIMESTAMP':>15}  FUNCTION\n"
        f"#{'| |':>19}  {'|':>4} {'|':>14}         |\n"
    )


def trace_text(buffer, ncpus: int) -> str:
    """The text of `trace save FILE`: the header, then `trace show`'s lines."""
    return text_header(buffer, ncpus) + "".join(line + "\n" for line in buffer.lines())


DESCRIPTIONS = {"dat": "trace-cmd format", "folded": "folded stacks", "chrome": "Chrome trace JSON"}


def render(fmt: str, session, version: int = 6) -> bytes:
    """The bytes of the trace buffer of `session` in format `fmt` (trace.dat: `version` 6 or 7)."""
    machine = session.machine
    if fmt == "text":
        return trace_text(session.trace, machine.ncpus).encode("utf-8", "surrogateescape")
    if fmt == "dat":
        from .tracedat import DatBuilder

        return DatBuilder(session.probes, machine.symbols, machine.ncpus).build(session.trace, machine.time_ns, version)
    from . import stacks

    if fmt == "folded":
        return stacks.folded(session.trace.events).encode()
    return stacks.chrome_json(session.trace.events).encode()

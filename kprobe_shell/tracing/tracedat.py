"""`trace save FILE.dat`: the trace buffer in trace-cmd's file format, version 6.

trace-cmd's Documentation/trace-cmd/trace-cmd.dat.v6.5.txt describes the file: a magic
and version, the ring buffer's header_page and header_event descriptions, each event's
format file (as the kernel writes it under events/kprobes/EVENT/format), kallsyms, the
saved cmdlines, and per CPU the ring-buffer pages ("flyrecord").  The pages are laid out
as the kernel's ring buffer lays them (kernel/trace/ring_buffer.c): a buffer_data_page
header (u64 time stamp, local_t commit), then events, each a 32-bit header of type_len
(5 bits) and time_delta (27 bits) followed by the record: trace_entry (common_type,
common_flags, common_preempt_count, common_pid), then the probe's fields
(kernel/trace/trace_kprobe.c: __probe_ip, or __probe_func and __probe_ret_ip for a
kretprobe), then the arguments packed in order and the __data_loc strings after them
(kernel/trace/trace_probe.c).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .fetch import FETCH_TYPES

PAGE_SIZE = 4096
PAGE_HEADER = 16                      # u64 time stamp, local_t commit
PAGE_DATA = PAGE_SIZE - PAGE_HEADER
TYPE_LEN_MAX = 28                     # data of up to 28 * 4 bytes fits type_len itself
TYPE_TIME_EXTEND = 30
DELTA_BITS = 27
FIRST_EVENT_ID = 1500                 # dynamic event ids start past the static ones

HEADER_PAGE = (
    "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
    "\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
    "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
    f"\tfield: char data;\toffset:16;\tsize:{PAGE_DATA};\tsigned:1;\n"
)
HEADER_EVENT = (
    "# compressed entry header\n"
    "\ttype_len    :    5 bits\n"
    "\ttime_delta  :   27 bits\n"
    "\tarray       :   32 bits\n"
    "\n"
    "\tpadding     : type == 29\n"
    "\ttime_extend : type == 30\n"
    "\ttime_stamp : type == 31\n"
    "\tdata max type_len  == 28\n"
)
COMMON_FIELDS = (
    ("unsigned short", "common_type", 0, 2, 0),
    ("unsigned char", "common_flags", 2, 1, 0),
    ("unsigned char", "common_preempt_count", 3, 1, 0),
    ("int", "common_pid", 4, 4, 1),
)

KERNEL_STACK_ID = 4                   # TRACE_STACK in kernel/trace/trace.h
KERNEL_STACK_FORMAT = "\n".join([
    "name: kernel_stack", f"ID: {KERNEL_STACK_ID}", "format:",
    *("\tfield:{} {};\toffset:{};\tsize:{};\tsigned:{};".format(*f) for f in COMMON_FIELDS),
    "",
    "\tfield:int size;\toffset:8;\tsize:4;\tsigned:1;",
    "\tfield:unsigned long caller[8];\toffset:16;\tsize:64;\tsigned:0;",
    "",
    'print fmt: "' + "\\t=> %ps\\n" * 8 + '", '
    + ", ".join(f"(void *)REC->caller[{i}]" for i in range(8)),
    "",
])


def kernel_stack_record(pid: int, callers: list[int]) -> bytes:
    """ftrace's kernel_stack entry (struct stack_entry): the count, then the callers; a
    reader takes as many as the record holds."""
    return (struct.pack("<HBBii4x", KERNEL_STACK_ID, 0, 0, pid, len(callers))
            + b"".join(struct.pack("<Q", c & (2**64 - 1)) for c in callers))


# fetch type -> (field type, size, signed, print format): trace_probe.h's PRINT_TYPE_FMT_NAME
_INT_FORMATS = {"u8": "%u", "u16": "%u", "u32": "%u", "u64": "%Lu",
                "s8": "%d", "s16": "%d", "s32": "%d", "s64": "%Ld",
                "x8": "0x%x", "x16": "0x%x", "x32": "0x%x", "x64": "0x%Lx"}


@dataclass
class ArgField:
    name: str
    ctype: str         # the field's type in the format file
    size: int          # 4 (__data_loc) for strings
    signed: bool
    fmt: str
    kind: str          # "int", "char" or "string"


def arg_field(name: str, type_name: str) -> ArgField:
    """The field the kernel defines for a fetch argument of type `type_name`."""
    if type_name in ("string", "ustring"):
        return ArgField(name, "__data_loc char[]", 4, True, '\\"%s\\"', "string")
    if type_name == "char":
        return ArgField(name, "char", 1, False, "'%c'", "char")
    if type_name == "symbol":
        return ArgField(name, "u64", 8, False, "%pS", "int")
    if type_name.startswith("b") and "/" in type_name:   # bitfield: its container, unsigned
        bits = int(type_name.rsplit("/", 1)[1])
        return ArgField(name, f"u{bits}", bits // 8, False, "%u" if bits < 64 else "%Lu", "int")
    ftype = FETCH_TYPES.get(type_name) or FETCH_TYPES["s64"]
    base = ftype.name if ftype.name[0] != "x" else "u" + ftype.name[1:]
    return ArgField(name, base, ftype.size, ftype.signed, _INT_FORMATS[ftype.name], "int")


@dataclass
class EventFormat:
    """One kprobe event's format: its id, fields and print fmt, and how to pack a record."""

    name: str
    id: int
    is_return: bool
    args: list[ArgField] = field(default_factory=list)

    @property
    def fixed_size(self) -> int:
        return 8 + (16 if self.is_return else 8) + sum(a.size for a in self.args)

    def format_file(self) -> str:
        lines = [f"name: {self.name}", f"ID: {self.id}", "format:"]
        lines += [_field_line(*f) for f in COMMON_FIELDS]
        lines.append("")
        probe = (("__probe_func", 8), ("__probe_ret_ip", 16)) if self.is_return else (("__probe_ip", 8),)
        lines += [_field_line("unsigned long", name, off, 8, 0) for name, off in probe]
        offset = 8 + 8 * len(probe)
        for a in self.args:
            lines.append(_field_line(a.ctype, a.name, offset, a.size, int(a.signed)))
            offset += a.size
        head = "(%lx <- %lx)" if self.is_return else "(%lx)"
        fmt = head + "".join(f" {a.name}={a.fmt}" for a in self.args)
        refs = ["REC->__probe_ret_ip", "REC->__probe_func"] if self.is_return else ["REC->__probe_ip"]
        refs += [f"__get_str({a.name})" if a.kind == "string" else f"REC->{a.name}" for a in self.args]
        lines += ["", f'print fmt: "{fmt}", ' + ", ".join(refs), ""]
        return "\n".join(lines)

    def record(self, pid: int, ips: tuple[int, ...], values: dict) -> bytes:
        """The event's record: trace_entry, the probe's ips, the args, then the strings."""
        head = struct.pack("<HBBi", self.id, 0, 0, pid) + b"".join(struct.pack("<Q", ip & (2**64 - 1)) for ip in ips)
        fixed, tail = [head], []
        data_at = self.fixed_size
        for a in self.args:
            value = values.get(a.name)
            if a.kind == "string":
                text = (value if isinstance(value, str) else "").encode("utf-8", "replace") + b"\0"
                fixed.append(struct.pack("<I", (len(text) << 16) | data_at))
                tail.append(text)
                data_at += len(text)
            elif a.kind == "char":
                fixed.append(bytes([ord(value) & 0xFF if isinstance(value, str) and value else 0]))
            else:
                number = value if isinstance(value, int) else 0
                fixed.append((number & ((1 << (8 * a.size)) - 1)).to_bytes(a.size, "little"))
        return b"".join(fixed + tail)


def _field_line(ctype: str, name: str, offset: int, size: int, signed: int) -> str:
    return f"\tfield:{ctype} {name};\toffset:{offset};\tsize:{size};\tsigned:{signed};"


# ---------------------------------------------------------------------- ring-buffer pages
MISSED_EVENTS = 1 << 31               # RB_MISSED_EVENTS in the page's commit: events were lost before it
MISSED_STORED = 1 << 30               # RB_MISSED_STORED: their count follows the page's data


def _event_header(type_len: int, delta: int) -> bytes:
    return struct.pack("<I", type_len | (delta << 5))


def event_length(delta: int, size: int) -> int:
    """The bytes rb_event(delta, data) takes for `size` bytes of data, without making it:
    the trace buffer counts its pages with it."""
    padded = (size + 3) & ~3
    length = padded + 4 if padded <= TYPE_LEN_MAX * 4 else padded + 8
    return length + 8 if delta >> DELTA_BITS else length


def rb_event(delta: int, data: bytes) -> bytes:
    """One ring-buffer event: a time extend first when the delta needs more than 27 bits."""
    out = b""
    if delta >> DELTA_BITS:
        out = _event_header(TYPE_TIME_EXTEND, delta & ((1 << DELTA_BITS) - 1)) + struct.pack("<I", delta >> DELTA_BITS)
        delta = 0
    padded = data + b"\0" * (-len(data) % 4)
    if len(padded) <= TYPE_LEN_MAX * 4:
        return out + _event_header(len(padded) // 4, delta) + padded
    # type_len 0: array[0] holds the data's length plus its own four bytes (rb_update_event)
    return out + _event_header(0, delta) + struct.pack("<I", len(padded) + 4) + padded


def _page_bodies(records: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """(time stamp, data) of the pages holding `records` (time_ns, record), oldest first.

    A page's time stamp is its first event's time; each event carries the delta from
    the one before it (rb_add_timestamp)."""
    pages: list[tuple[int, bytes]] = []
    body: list[bytes] = []
    used = stamp = last = 0
    for time_ns, data in records:
        if not body:
            stamp = last = time_ns
        event = rb_event(max(time_ns - last, 0), data)
        if used + len(event) > PAGE_DATA:
            pages.append((stamp, b"".join(body)))
            body, used = [], 0
            stamp = last = time_ns
            event = rb_event(0, data)
        body.append(event)
        used += len(event)
        last = max(time_ns, last)
    if body:
        pages.append((stamp, b"".join(body)))
    return pages


def cpu_pages(records: list[tuple[int, bytes]]) -> bytes:
    """The pages of one CPU's buffer from its (time_ns, record) list, oldest first."""
    return b"".join(_page(stamp, body) for stamp, body in _page_bodies(records))


def buffer_pages(pages: list[list[tuple[int, bytes]]], missed: int = 0) -> bytes:
    """One CPU's pages as its trace buffer filled them (each a (time_ns, record) list);
    the first says `missed` events were lost before it, as ring_buffer_read_page marks
    the first page read after an overrun."""
    out = []
    for records in pages:
        for stamp, body in _page_bodies(records):
            out.append(_page(stamp, body, missed))
            missed = 0
    return b"".join(out)


def mark_missed(pages: bytes, missed: int) -> bytes:
    """A CPU's pages, the first marked with the `missed` events lost before it."""
    if not missed or not pages:
        return pages
    used = struct.unpack_from("<Q", pages, 8)[0] & ~(MISSED_EVENTS | MISSED_STORED)
    body = pages[PAGE_HEADER:PAGE_HEADER + used]
    return _page(struct.unpack_from("<Q", pages)[0], body, missed) + pages[PAGE_SIZE:]


def _page(stamp: int, body: bytes, missed: int = 0) -> bytes:
    commit = len(body)
    if missed:
        commit |= MISSED_EVENTS
        if PAGE_DATA - len(body) >= 8:  # the count fits after the data (rb_buffer_page's room check)
            commit |= MISSED_STORED
            body += struct.pack("<Q", missed)
    return struct.pack("<QQ", stamp, commit) + body + b"\0" * (PAGE_DATA - len(body))


# ---------------------------------------------------------------------- the file
def _section(data: bytes, size_bytes: int) -> bytes:
    return len(data).to_bytes(size_bytes, "little") + data


def kallsyms(symbols) -> str:
    """/proc/kallsyms' lines for the image's located symbols."""
    letter = {"FUNC": "T", "OBJECT": "D"}
    return "".join(f"{s.address:016x} {letter.get(s.type, 't')} {s.name}\n" for s in symbols)


@dataclass
class DatContents:
    """What a trace.dat holds, whichever version writes it."""

    formats: list[EventFormat]
    cpu_data: list[bytes]                   # each CPU's pages
    kallsyms_text: str
    cmdlines: dict[int, str]
    stacks: bool = False                    # kernel_stack's format is included
    cpustats: list[str] = field(default_factory=list)   # per_cpu/cpuN/stats of each CPU

    def header_info(self) -> bytes:
        return (b"header_page\0" + _section(HEADER_PAGE.encode(), 8)
                + b"header_event\0" + _section(HEADER_EVENT.encode(), 8))

    def ftrace_events(self) -> bytes:
        if not self.stacks:
            return struct.pack("<I", 0)
        return struct.pack("<I", 1) + _section(KERNEL_STACK_FORMAT.encode(), 8)  # ftrace's own: kernel_stack

    def event_formats(self) -> bytes:
        if not self.formats:
            return struct.pack("<I", 0)
        out = struct.pack("<I", 1) + b"kprobes\0" + struct.pack("<I", len(self.formats))  # one system: kprobes
        return out + b"".join(_section(fmt.format_file().encode(), 8) for fmt in self.formats)

    def cmdlines_text(self) -> bytes:
        return "".join(f"{pid} {comm}\n" for pid, comm in sorted(self.cmdlines.items())).encode()

    def cpustat_options(self) -> bytes:
        return b"".join(_option(OPTION_CPUSTAT, text.encode() + b"\0") for text in self.cpustats)


OPTION_DONE, OPTION_CPUSTAT, OPTION_BUFFER, OPTION_TRACECLOCK, OPTION_CPUCOUNT = 0, 2, 3, 4, 8
OPTION_STRINGS, OPTION_HEADER_INFO, OPTION_FTRACE_EVENTS, OPTION_EVENT_FORMATS = 15, 16, 17, 18
OPTION_KALLSYMS, OPTION_PRINTK, OPTION_CMDLINES = 19, 20, 21


def _option(option_id: int, data: bytes) -> bytes:
    return struct.pack("<HI", option_id, len(data)) + data


def dat_v6(c: DatContents) -> bytes:
    """trace-cmd.dat.v6: the parts one after the other, the CPU data last, page aligned."""
    out = bytearray(b"\x17\x08\x44tracing6\0" + bytes([0, 8]) + struct.pack("<I", PAGE_SIZE))
    out += c.header_info() + c.ftrace_events() + c.event_formats()
    out += _section(c.kallsyms_text.encode(), 4)
    out += _section(b"", 4)                                    # no trace_printk formats
    out += _section(c.cmdlines_text(), 8)
    out += struct.pack("<I", len(c.cpu_data))
    if c.cpustats:
        out += b"options  \0" + c.cpustat_options() + struct.pack("<H", OPTION_DONE)
    out += b"flyrecord\0"
    table_at = len(out)
    out += bytes(16 * len(c.cpu_data))
    for cpu, pages in enumerate(c.cpu_data):
        out += b"\0" * (-len(out) % PAGE_SIZE)
        struct.pack_into("<QQ", out, table_at + 16 * cpu, len(out) if pages else 0, len(pages))
        out += pages
    return bytes(out)


def dat_file(formats: list[EventFormat], cpu_records: list[list[tuple[int, bytes]]],
             kallsyms_text: str, cmdlines: dict[int, str], stacks: bool = False) -> bytes:
    """A whole trace-cmd v6 file from each CPU's (time_ns, record) list."""
    return dat_v6(DatContents(formats, [cpu_pages(r) for r in cpu_records], kallsyms_text, cmdlines, stacks))


def event_types(probes, ev) -> dict[str, str]:
    """The fetch type of each argument of `ev`'s event: its probe's, else from the values."""
    up = probes.get(ev.probe)
    return (up.spec.get("types") if up is not None else None) or {
        name: "string" if isinstance(v, str) else "s64" for name, v in ev.values.items()}


class EventLengths:
    """What each event's record takes (EventFormat.record's bytes, and its stack's
    kernel_stack record after it), without building them: the trace buffer reserves its
    room on a page with it.  `fixed_sizes` holds the record size of the events whose
    records have one size (no strings) by name."""

    def __init__(self, probes):
        self.probes = probes
        self.layouts: dict[str, tuple[int, tuple[str, ...]]] = {}
        self.fixed_sizes: dict[str, int] = {}

    def size(self, ev) -> int:
        """The bytes of ev's record (its stack's record apart)."""
        layout = self.layouts.get(ev.event)
        if layout is None:
            layout = self.layouts[ev.event] = self._layout(ev)
            if not layout[1]:
                self.fixed_sizes[ev.event] = layout[0]
        size, strings = layout
        if strings:
            values = ev.values
            for name in strings:
                value = values.get(name)
                if isinstance(value, str):  # its UTF-8 bytes, as EventFormat.record stores it
                    size += len(value) + 1 if value.isascii() else len(value.encode("utf-8", "replace")) + 1
                else:
                    size += 1
        return size

    def length(self, ev) -> int:
        """The bytes ev takes on a page, time extend apart (rb_event's header included)."""
        length = event_length(0, self.size(ev))
        if ev.stack:  # ftrace's kernel_stack entry follows its event, at the same time
            length += event_length(0, stack_record_size(len(ev.stack)))
        return length

    def _layout(self, ev) -> tuple[int, tuple[str, ...]]:
        args = [arg_field(name, t) for name, t in event_types(self.probes, ev).items()]
        fixed = 8 + (16 if ev.kind == "r" else 8) + sum(a.size for a in args)
        return fixed, tuple(a.name for a in args if a.kind == "string")


def stack_record_size(frames: int) -> int:
    """kernel_stack_record's size for a stack of `frames`."""
    return 16 + 8 * frames


class DatBuilder:
    """Turns the shell's trace buffer into event formats and per-CPU pages.

    `probes` maps a probe number to its entry of `probes` (addr, kind, spec with the
    argument types of a kprobe_events line); `symbols` is the image's symbol table."""

    def __init__(self, probes, symbols, ncpus: int):
        self.probes, self.symbols, self.ncpus = probes, symbols, ncpus
        self.formats: dict[str, EventFormat] = {}

    def format_of(self, ev, ids=None) -> EventFormat:
        """ev's event format; its id is the trace buffer's for the event (`ids`: name ->
        id), else the next one past the formats made so far."""
        fmt = self.formats.get(ev.event)
        if fmt is None:
            event_id = ids(ev.event) if ids is not None else FIRST_EVENT_ID + len(self.formats)
            fmt = self.formats[ev.event] = EventFormat(
                ev.event, event_id, ev.kind == "r",
                [arg_field(name, t) for name, t in event_types(self.probes, ev).items()])
        return fmt

    def address(self, text: str) -> int:
        """The address of "sym+0x1c/0x40" or of a bare "0x..." (a formatted location, see
        SymbolTable.format), 0 if unknown."""
        text = text.strip()
        if text.startswith("0x"):
            try:
                return int(text, 16)
            except ValueError:
                return 0
        name, _, rest = text.partition("+")
        sym = self.symbols.get(name)
        if sym is None:
            return 0
        try:
            return sym.address + int(rest.partition("/")[0] or "0", 16)
        except ValueError:
            return sym.address

    def ips(self, ev) -> tuple[int, ...]:
        """__probe_ip, or (__probe_func, __probe_ret_ip) for a return event."""
        up = self.probes.get(ev.probe)
        if ev.kind == "r":
            site, _, func = ev.where.partition(" <- ")
            return (up.addr if up is not None else self.address(func), self.address(site))
        return (up.addr if up is not None else self.address(ev.where),)

    def records(self, events, ids=None) -> list[tuple[int, bytes]]:
        """(time_ns, record) of each event, its stack's record after it."""
        out = []
        for ev in events:
            out.append((ev.time_ns, self.format_of(ev, ids).record(ev.pid, self.ips(ev), ev.values)))
            if ev.stack:
                callers = [self.address(f) for f in ev.stack]
                out.append((ev.time_ns, kernel_stack_record(ev.pid, callers)))
        return out

    def contents(self, buffer, now_ns: int = 0) -> DatContents:
        """The file's contents from a TraceBuffer (tracing/trace.py): its pages as they are
        (the records of the events the shell's Python handlers recorded written into their
        room first), the first of a CPU marked with the events overwritten before it, and
        each CPU's stats for trace-cmd's CPUSTAT option."""
        events = buffer.events
        for ev in events:  # every kept event's format, in recording order
            self.format_of(ev, buffer.event_id)
        cpu_data, cpustats = [], []
        for n in range(self.ncpus):
            for ev in buffer.side[n] if n < len(buffer.side) else ():
                (_, record), *stack = self.records([ev], buffer.event_id)
                buffer.ring.fill(n, ev.seq, record, stack[0][1] if stack else None)
            cpu_data.append(mark_missed(buffer.ring.pages(n), buffer.ring.stats(n)[1]))
            cpustats.append(f"CPU: {n}\n" + buffer.stats(n, now_ns))
        cmdlines = {ev.pid: ev.comm for ev in events if 0 <= ev.cpu < self.ncpus}  # the latest name a pid
        stacks = any(ev.stack for ev in events)
        return DatContents(list(self.formats.values()), cpu_data, kallsyms(self.symbols), cmdlines, stacks, cpustats)

    def build(self, buffer, now_ns: int = 0, version: int = 6) -> bytes:
        contents = self.contents(buffer, now_ns)
        return dat_v7(contents) if version == 7 else dat_v6(contents)


class _Strings:
    """The STRINGS section: section descriptions are offsets into it."""

    def __init__(self):
        self.data = bytearray()

    def add(self, text: str) -> int:
        at = len(self.data)
        self.data += text.encode() + b"\0"
        return at


def _v7_section(section_id: int, description: int, body: bytes) -> bytes:
    """A section: id, flags (0: not compressed), its description's string, size, body."""
    return struct.pack("<HHiQ", section_id, 0, description, len(body)) + body


def dat_v7(c: DatContents) -> bytes:
    """trace-cmd.dat.v7 (Documentation/trace-cmd/trace-cmd.dat.v7.5.txt): the header (no
    compression), then sections, each found through the options section: the header
    info, the ftrace and kprobe event formats, kallsyms, printk formats, cmdlines, the
    CPUs' pages (the "buffer flyrecord" section, each CPU page aligned), the options
    (where each section is, the CPU count, each CPU's stats, the buffer's CPUs), and the
    strings the sections are described with."""
    strings = _Strings()
    out = bytearray(b"\x17\x08\x44tracing7\0" + bytes([0, 8]) + struct.pack("<I", PAGE_SIZE) + b"none\0\0")
    options_at = len(out)
    out += bytes(8)
    options = []
    for option_id, name, body in (
            (OPTION_HEADER_INFO, "headers", c.header_info()),
            (OPTION_FTRACE_EVENTS, "ftrace events", c.ftrace_events()),
            (OPTION_EVENT_FORMATS, "events format", c.event_formats()),
            (OPTION_KALLSYMS, "kallsyms", _section(c.kallsyms_text.encode(), 4)),
            (OPTION_PRINTK, "printk", _section(b"", 4)),
            (OPTION_CMDLINES, "command lines", _section(c.cmdlines_text(), 8))):
        options.append(_option(option_id, struct.pack("<Q", len(out))))
        out += _v7_section(option_id, strings.add(name), body)
    buffer_at = len(out)
    header_at = len(out)
    out += struct.pack("<HHiQ", OPTION_BUFFER, 0, strings.add("buffer flyrecord "), 0)
    cpus = b""
    for cpu, pages in enumerate(c.cpu_data):
        out += b"\0" * (-len(out) % PAGE_SIZE)
        if pages:  # trace-cmd lists the CPUs that have data
            cpus += struct.pack("<IQQ", cpu, len(out), len(pages))
        out += pages
    struct.pack_into("<Q", out, header_at + 8, len(out) - header_at - 16)
    clock = b"local\0"
    options.append(_option(OPTION_CPUCOUNT, struct.pack("<I", len(c.cpu_data))))
    options.append(_option(OPTION_TRACECLOCK, b"[local] global counter uptime perf mono mono_raw boot\0"))
    options.append(c.cpustat_options())
    options.append(_option(OPTION_BUFFER, struct.pack("<Q", buffer_at) + b"\0" + clock
                           + struct.pack("<II", PAGE_SIZE, len(cpus) // 20) + cpus))
    struct.pack_into("<Q", out, options_at, len(out))
    out += _v7_section(OPTION_DONE, strings.add("options"),
                       b"".join(options) + _option(OPTION_DONE, struct.pack("<Q", 0)))
    description = strings.add("strings")
    out += _v7_section(OPTION_STRINGS, description, bytes(strings.data))
    return bytes(out)

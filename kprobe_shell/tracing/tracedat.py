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
def _event_header(type_len: int, delta: int) -> bytes:
    return struct.pack("<I", type_len | (delta << 5))


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


def cpu_pages(records: list[tuple[int, bytes]]) -> bytes:
    """The pages of one CPU's buffer from its (time_ns, record) list, oldest first.

    A page's time stamp is its first event's time; each event carries the delta from
    the one before it (rb_add_timestamp)."""
    pages: list[bytes] = []
    body: list[bytes] = []
    used = stamp = last = 0
    for time_ns, data in records:
        if not body:
            stamp = last = time_ns
        event = rb_event(max(time_ns - last, 0), data)
        if used + len(event) > PAGE_DATA:
            pages.append(_page(stamp, b"".join(body)))
            body, used = [], 0
            stamp = last = time_ns
            event = rb_event(0, data)
        body.append(event)
        used += len(event)
        last = max(time_ns, last)
    if body:
        pages.append(_page(stamp, b"".join(body)))
    return b"".join(pages)


def _page(stamp: int, body: bytes) -> bytes:
    return struct.pack("<QQ", stamp, len(body)) + body + b"\0" * (PAGE_DATA - len(body))


# ---------------------------------------------------------------------- the file
def _section(data: bytes, size_bytes: int) -> bytes:
    return len(data).to_bytes(size_bytes, "little") + data


def kallsyms(symbols) -> str:
    """/proc/kallsyms' lines for the image's located symbols."""
    letter = {"FUNC": "T", "OBJECT": "D"}
    return "".join(f"{s.address:016x} {letter.get(s.type, 't')} {s.name}\n" for s in symbols)


def dat_file(formats: list[EventFormat], cpu_records: list[list[tuple[int, bytes]]],
             kallsyms_text: str, cmdlines: dict[int, str], stacks: bool = False) -> bytes:
    """A whole trace-cmd v6 file: header, formats, kallsyms, cmdlines, then each CPU's pages."""
    out = bytearray(b"\x17\x08\x44tracing6\0" + bytes([0, 8]) + struct.pack("<I", PAGE_SIZE))
    out += b"header_page\0" + _section(HEADER_PAGE.encode(), 8)
    out += b"header_event\0" + _section(HEADER_EVENT.encode(), 8)
    out += struct.pack("<I", 1 if stacks else 0)               # ftrace's own events: kernel_stack
    if stacks:
        out += _section(KERNEL_STACK_FORMAT.encode(), 8)
    out += struct.pack("<I", 1 if formats else 0)              # one system: kprobes
    if formats:
        out += b"kprobes\0" + struct.pack("<I", len(formats))
        for fmt in formats:
            out += _section(fmt.format_file().encode(), 8)
    out += _section(kallsyms_text.encode(), 4)
    out += _section(b"", 4)                                    # no trace_printk formats
    out += _section("".join(f"{pid} {comm}\n" for pid, comm in sorted(cmdlines.items())).encode(), 8)
    out += struct.pack("<I", len(cpu_records)) + b"flyrecord\0"
    table_at = len(out)
    out += bytes(16 * len(cpu_records))
    for cpu, records in enumerate(cpu_records):
        out += b"\0" * (-len(out) % PAGE_SIZE)
        pages = cpu_pages(records)
        struct.pack_into("<QQ", out, table_at + 16 * cpu, len(out) if pages else 0, len(pages))
        out += pages
    return bytes(out)


class DatBuilder:
    """Turns the shell's trace events into event formats and per-CPU records.

    `probes` maps a probe number to its entry of `probes` (addr, kind, spec with the
    argument types of a kprobe_events line); `symbols` is the image's symbol table."""

    def __init__(self, probes, symbols, ncpus: int):
        self.probes, self.symbols, self.ncpus = probes, symbols, ncpus
        self.formats: dict[str, EventFormat] = {}

    def format_of(self, ev) -> EventFormat:
        fmt = self.formats.get(ev.event)
        if fmt is None:
            up = self.probes.get(ev.probe)
            types = (up.spec.get("types") if up is not None else None) or {
                name: "string" if isinstance(v, str) else "s64" for name, v in ev.values.items()}
            fmt = self.formats[ev.event] = EventFormat(
                ev.event, FIRST_EVENT_ID + len(self.formats), ev.kind == "r",
                [arg_field(name, t) for name, t in types.items()])
        return fmt

    def address(self, text: str) -> int:
        """The address of "sym+0x1c/0x40" (a formatted location), 0 if unknown."""
        name, _, rest = text.strip().partition("+")
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

    def build(self, events) -> bytes:
        cpus: list[list[tuple[int, bytes]]] = [[] for _ in range(self.ncpus)]
        cmdlines: dict[int, str] = {}
        for ev in events:
            if not 0 <= ev.cpu < self.ncpus:
                continue
            cmdlines[ev.pid] = ev.comm  # one name a pid, the latest, as the kernel's saved_cmdlines
            cpus[ev.cpu].append((ev.time_ns, self.format_of(ev).record(ev.pid, self.ips(ev), ev.values)))
            if ev.stack:
                callers = [self.address(f) if not f.startswith("0x") else int(f, 16) for f in ev.stack]
                cpus[ev.cpu].append((ev.time_ns, kernel_stack_record(ev.pid, callers)))
        stacks = any(ev.stack for ev in events)
        return dat_file(list(self.formats.values()), cpus, kallsyms(self.symbols), cmdlines, stacks)

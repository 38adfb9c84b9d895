"""Looking at the machine: regs, x, disas, bt, symbols, tasks, cpus."""
from __future__ import annotations

import re

from capstone import CS_GRP_CALL as _CS_GRP_CALL
from capstone import CS_GRP_JUMP as _CS_GRP_JUMP

from ...kprobes.x86 import _cs
from ...machine import MachineError
from ...machine.registers import GENERAL_REGISTERS
from ...machine.smp import CpuState
from ..registry import CommandError, command
from ...tracing.cvalue import EFLAGS_BITS, EvalError
from ..gdbvalues import evaluate_in, gdb_state, thread_backtrace
from ..locations import eval_address
from .common import no_arguments, parse_number


@command("regs", group="inspect", aliases=("info registers", "i r", "registers"),
         summary="the CPU's registers (changed ones marked)", usage="regs [REG...]",
         example="info registers rip rsp")
def cmd_regs(session, rest: str):
    """General registers and eflags, or only the ones named (as gdb's `info registers rip`);
those changed since the guest last started running are highlighted (marked * in plain
output)."""
    names = [w.lstrip("$").lower() for w in rest.split()]
    unknown = [n for n in names if n not in GENERAL_REGISTERS]
    if unknown:
        raise CommandError(f"no register named '{unknown[0]}' (registers: {' '.join(GENERAL_REGISTERS)})")
    m = session.machine
    regs = m.registers()
    prev = session.last_regs or regs
    out = session.out
    for name in names or GENERAL_REGISTERS:
        value = regs[name]
        changed = prev.get(name) != value
        extra = ""
        if name == "rip":
            extra = f"  <{m.symbols.format(value, with_size=False)}>"
        elif name == "eflags":
            extra = "  " + _flags(value)
        mark = "*" if changed and not out.color else " "
        line = f"{mark}{name:<7}0x{value:016x}  {_signed_repr(value):>21}{extra}"
        out.print(line, "changed" if changed else None)
    return regs


def _signed_repr(v: int) -> str:
    return str(v - (1 << 64) if v >> 63 else v)


def _flags(v: int) -> str:
    return "[ " + " ".join(n for bit, n in EFLAGS_BITS if v >> bit & 1) + " ]"


# ---------------------------------------------------------------------- x/FMT
def _x_state(session) -> dict:
    """The last format and next address of `x`, kept per session: two sessions in one
    process (the tests, the Python API) must not continue at each other's address."""
    state = getattr(session, "_x_state", None)
    if state is None:
        state = session._x_state = {"count": 1, "fmt": "x", "size": "w", "next": None}
    return state
_SIZES = {"b": 1, "h": 2, "w": 4, "g": 8}


@command("x", group="inspect", args=("location",), summary="examine memory, gdb style: x/NFU ADDR",
         usage="x/NFU ADDR", example="x/8xb do_fork\nx/4gx $rsp\nx/s 0x1234\nx/3i $rip")
def cmd_x(session, rest: str):
    """N units of format F (x hex, d signed, u unsigned, t binary, a address, c char,
s string, i instruction) and size U (b byte, h half, w word, g giant). ADDR is an
address (0x1000, do_fork+4, $rsp+8) or, as in gdb, a C expression of the selected frame
(`x/s file->f_dentry->d_iname`, `x/2gx &jiffies`). A planted int3 shows as cc with the
original byte beside it: cc[55]."""
    fmt_text = ""
    if rest.startswith("/"):
        fmt_text, _, rest = rest[1:].partition(" ")
    mt = re.fullmatch(r"([0-9]*)([xduotacsi]?)([bhwg]?)([xduotacsi]?)", fmt_text)
    if not mt:
        raise CommandError(f"bad format '/{fmt_text}': x/NFU, F in x d u o t a c s i, U in b h w g")
    _X_STATE = _x_state(session)
    count = parse_number(mt.group(1), "count") if mt.group(1) else 1
    fmt = mt.group(2) or mt.group(4) or _X_STATE["fmt"]
    size = mt.group(3) or (_X_STATE["size"] if fmt not in ("a",) else "g")
    if fmt == "a":
        size = "g"
    if fmt == "c":
        size = mt.group(3) or "b"
    if rest.strip():
        addr = _x_address(session, rest)
    elif _X_STATE["next"] is not None:
        addr = _X_STATE["next"]
    else:
        raise CommandError("usage: x/NFU ADDR")
    if count <= 0 or count > 4096:
        raise CommandError("the count must be between 1 and 4096")
    saved = dict(_X_STATE)
    _X_STATE.update(fmt=fmt, size=size)
    m = session.machine
    out = session.out
    planted = m.kprobes.planted()
    # An optimized probe's jump: each of its 5 bytes is shown with the original under it.
    for a, orig in m.kprobes.optimizer.replaced_bytes().items():
        planted.update({a + i: b for i, b in enumerate(orig)})
    try:
        if fmt == "i":
            for line in disassemble_lines(session, addr, count, mark_pc=True):
                out.print(line)
            return None
        if fmt == "s":
            for _ in range(count):
                s = m.read_cstring(addr, 4096)
                out.print(f"0x{addr:x} <{m.symbols.format(addr, with_size=False)}>:\t\"{_escape(s)}\"")
                addr += len(s) + 1
            _X_STATE["next"] = addr
            return None
        unit = _SIZES[size]
        per_line = {1: 8, 2: 8, 4: 4, 8: 2}[unit]
        data = m.read(addr, unit * count)
    except (MachineError, CommandError) as exc:
        _X_STATE.update(saved)  # a failed x leaves the remembered format and address alone
        raise CommandError(str(exc)) from None
    values = []
    for i in range(count):
        a = addr + i * unit
        if i % per_line == 0:
            if i:
                out.print(line)
            line = f"0x{a:x} <{m.symbols.format(a, with_size=False)}>:"
        chunk = data[i * unit : (i + 1) * unit]
        v = int.from_bytes(chunk, "little")
        values.append(v)
        cell = _format_unit(session, v, fmt, unit)
        if unit == 1 and a in planted:
            cell = out.style(cell, "planted") + f"[{planted[a]:02x}]"
        line += "\t" + cell
    out.print(line)
    _X_STATE["next"] = addr + unit * count
    if any(addr <= a < addr + unit * count for a in planted) and unit != 1:
        hits = ", ".join(f"0x{a:x} (original {b:02x})" for a, b in sorted(planted.items()) if addr <= a < addr + unit * count)
        out.print(f"  probe bytes (int3 or an optimized probe's jmp) planted at {hits}", "planted")
    return values


def _x_address(session, text: str) -> int:
    """x's ADDR: an address expression, else a C expression as gdb's x reads one (`&jiffies`,
    `file->f_dentry`, `buf`): a pointer's or integer's value, an object's address."""
    try:
        return eval_address(session, text)
    except CommandError as first:
        try:
            value, _ctx = evaluate_in(session, text)
        except CommandError:
            raise first from None
    if value.type.kind in ("struct", "union", "array", "func") and value.address is not None:
        return value.address
    try:
        return value.as_int() & 0xFFFFFFFFFFFFFFFF
    except EvalError as exc:
        raise CommandError(str(exc)) from None


def _format_unit(session, v: int, fmt: str, unit: int) -> str:
    bits = unit * 8
    if fmt == "x":
        return f"0x{v:0{unit * 2}x}"
    if fmt == "d":
        return str(v - (1 << bits) if v >> (bits - 1) else v)
    if fmt == "u":
        return str(v)
    if fmt == "o":
        return f"0{v:o}"
    if fmt == "t":
        return f"{v:0{bits}b}"
    if fmt == "a":
        return f"0x{v:x} <{session.machine.symbols.format(v, with_size=False)}>"
    if fmt == "c":
        return f"{v} '{_escape(bytes([v & 0xFF]))}'"
    return hex(v)


def _escape(b: bytes) -> str:
    return "".join(chr(c) if 32 <= c < 127 and c != 0x22 else f"\\x{c:02x}" for c in b)


# ---------------------------------------------------------------------- disassembly
def disassemble_lines(session, start: int, count: int | None, end: int | None = None, mark_pc: bool = True,
                      code: bytes | None = None, name=None) -> list[str]:
    """Lines of disassembly from start: the original instructions, with planted int3 marked.
    code: the bytes to show instead of memory's, named by name(address) (a program's file)."""
    m = session.machine
    name = name or (lambda a: m.symbols.format(a, with_size=False))
    out = session.out
    rip = m.rip
    planted = m.kprobes.planted()
    jumps = m.kprobes.optimizer.active
    owners = {}
    for up in session.probes.values():
        owners.setdefault(up.addr, []).append(f"{up.kind}{up.number}")
    length = (end - start) if end else 16 * (count or 1)
    try:
        code = m.kprobes.original_bytes(start, max(1, length)) if code is None else code
    except MachineError as exc:
        raise CommandError(str(exc)) from None
    lines = []
    for insn in _cs.disasm(code, start):
        if count is not None and len(lines) >= count:
            break
        a = insn.address
        pc = "=> " if (mark_pc and a == rip) else "   "
        where = name(a)
        raw = bytes(insn.bytes)
        text = f"{insn.mnemonic:<7} {insn.op_str}".rstrip()
        if insn.group(_CS_GRP_JUMP) or insn.group(_CS_GRP_CALL):
            target = re.fullmatch(r"0x[0-9a-f]+", insn.op_str)
            if target:
                text += f" <{name(int(insn.op_str, 16))}>"
        line = f"{pc}0x{a:016x} <{where}>:  {raw.hex(' '):<24} {session_highlight(session, text)}"
        if a in planted:
            who = ",".join(owners.get(a, ["kretprobe_trampoline"] if m.kprobes.kretprobes.is_trampoline(a) else []))
            line += "  " + out.style(f"<-- int3 planted (cc over {planted[a]:02x}) {who}".rstrip(), "planted")
        elif a in jumps:
            op = jumps[a]
            line += "  " + out.style(
                f"<-- jmp planted (e9 over {op.original[:5].hex(' ')}: optimized, detour 0x{op.entry:x}) "
                f"{','.join(owners.get(a, []))}".rstrip(), "planted")
        elif a in owners:
            line += "  " + out.style(f"<-- {','.join(owners[a])}", "planted")
        if pc.startswith("=>"):
            line = out.style(line, "pc") if not out.color else line
        lines.append(line)
    return lines


def session_highlight(session, text: str) -> str:
    if not session.out.color:
        return text
    from ..asm_highlight import highlight_asm

    return highlight_asm(text)


@command("disas", group="inspect", aliases=("disassemble",), args=("location",),
         summary="disassemble a function (=> marks rip, planted probes marked)", usage="disas [LOCATION]",
         example="disas do_fork\ndisas $rip")
def cmd_disas(session, rest: str):
    """Disassemble the function containing LOCATION (default: rip). The listing shows the
original instructions; where a probe's int3 is planted the line says so, with the byte
it replaced and the probe's number."""
    m = session.machine
    addr = eval_address(session, rest) if rest.strip() else m.rip
    hit = m.symbols.containing(addr)
    if hit is None and m.userspace is not None:
        return _disas_program_function(session, addr)
    if hit is None or not hit[0].size:
        lines = disassemble_lines(session, addr, 16)
    else:
        sym = hit[0]
        session.out.print(f"Dump of assembler code for function {sym.name} (0x{sym.address:x}, {sym.size} bytes):")
        lines = disassemble_lines(session, sym.address, None, end=sym.end)
    for line in lines:
        session.out.print(line)
    return None


def _disas_program_function(session, addr: int) -> None:
    """disas at a user address: the whole function when a program's symbol holds it.  The
current process's memory when it runs that program, else the program's file (its
address space is not the current one, or it has not started)."""
    m = session.machine
    found = m.userspace.symbols.containing_any(addr, m.userspace.current_program())
    if found is None or not found[1].size:
        lines = disassemble_lines(session, addr, 16)
    else:
        prog, sym = found
        session.out.print(f"Dump of assembler code for function {prog.name}:{sym.name} "
                          f"(0x{sym.address:x}, {sym.size} bytes):")
        if prog is m.userspace.current_program():
            lines = disassemble_lines(session, sym.address, None, end=sym.end)
        else:
            session.out.print(f"(from the file {prog.path}: the current process does not run {prog.name})")
            lines = disassemble_lines(session, sym.address, None, end=sym.end, mark_pc=False,
                                      code=prog.file_bytes(sym),
                                      name=lambda a: prog.format(a, with_size=False) or f"0x{a:x}")
    for line in lines:
        session.out.print(line)


# ---------------------------------------------------------------------- backtrace
def backtrace(session, limit: int = 64) -> list[tuple[int, str]]:
    """(return address, note) frames by the frame-pointer chain; trampolines resolved."""
    from ...tracing.stacks import unwind

    return [(addr, "(return address held by a kretprobe instance)" if resolved else "")
            for addr, resolved in unwind(session.machine, limit)]


@command("bt", group="inspect", aliases=("backtrace", "where"), args=("number",),
         summary="the current task's call stack (real return addresses, not the trampoline)", usage="bt [N]")
def cmd_bt(session, rest: str):
    """Walk the frame-pointer chain of the current task. Where a kretprobe replaced a
return address with kretprobe_trampoline, the real return address is shown (taken from
the task's instances), marked as such. After `thread N`, the frames of that thread (a
sleeping task's from the context switch_to() saved)."""
    limit = parse_number(rest, "frame count") if rest else 64
    if limit <= 0:
        raise CommandError("the frame count must be positive")
    m = session.machine
    if gdb_state(session).thread is not None:  # `thread N` chose another CPU or a sleeping task
        return thread_backtrace(session, limit)
    frames = backtrace(session, limit)
    for i, (addr, note) in enumerate(frames):
        session.out.print(f"#{i:<3}0x{addr:016x} in {m.symbols.format(addr)} {note}".rstrip())
    user = m.userspace.user_frame() if m.userspace is not None else None
    if user is not None:  # a program's system call or trap: where it left user mode
        session.out.print(f"#{len(frames):<3}0x{user[0]:016x} in {m.symbols.format(user[0])} "
                          f"(user mode, rsp 0x{user[1]:x}, from the task's pt_regs)")
        print_user_frames(session, len(frames) + 1, limit)
    return [{"frame": i, "addr": a, "where": m.symbols.format(a)} for i, (a, _n) in enumerate(frames)]


def print_user_frames(session, first: int, limit: int) -> None:
    """The program's own frames above the user rip, numbered from first: walked with its
.eh_frame CFI (as gdb does for code without frame pointers), or where no CFI rule applies
the frame-pointer chain (a frameless leaf by its prologue); each line says which."""
    m = session.machine
    prog = m.userspace.current_program()
    for i, frame in enumerate(m.userspace.user_frames(limit), first):
        how = {"CFI": "by .eh_frame CFI", "prologue": "by prologue analysis: no frame pointer"}.get(
            frame.how, "by the frame-pointer chain")
        where = prog.format(frame.pc, return_address=True) if prog is not None else None
        session.out.print(f"#{i:<3}0x{frame.pc:016x} in {where or hex(frame.pc)} (user, {how})")


@command("symbols", group="inspect", aliases=("syms", "info functions"), args=("symbol",),
         summary="list the image's symbols and the programs' (optionally matching a glob)",
         usage="symbols [GLOB | PROGRAM:GLOB]", example="symbols do_*\nsymbols hello:main")
def cmd_symbols(session, rest: str):
    """Address, size, type and name of each symbol matching GLOB (default: all): the
kernel's, then those of the programs given with exec, named PROGRAM:SYMBOL (hello:main),
which x, disas and bt take and show too. PROGRAM:GLOB lists one program's only."""
    m = session.machine
    pattern = rest.strip() or "*"
    syms = [] if ":" in pattern else [(s.name, s) for s in m.symbols.glob(pattern)]
    if m.userspace is not None:  # the programs' symbols, named PROGRAM:SYMBOL
        syms += [(f"{prog.name}:{s.name}", s) for prog, s in m.userspace.symbols.glob(pattern)]
    for name, s in syms:
        session.out.print(f"0x{s.address:016x} {s.size:6d} {s.type:<6} {name}")
    if not syms:
        session.out.print(f"No symbol matches '{pattern}'.")
    return [{"name": name, "addr": s.address, "size": s.size, "type": s.type} for name, s in syms]


@command("tasks", group="inspect", aliases=("ps",), summary="the guest's tasks", usage="tasks")
def cmd_tasks(session, rest: str):
    """Every live task of the guest: pid, comm, state, parent, cpu; '*' marks current.
With several CPUs, RUNNING says which CPU runs the task now (its %gs:pcurrent), and the
other CPUs' idle tasks, which are not on the task list, are listed too."""
    no_arguments(rest, "tasks")
    m = session.machine
    cur = m.tasks.current_address()
    out = session.out
    smp = m.ncpus > 1
    tasks = m.tasks.all()
    running_on: dict[int, int] = {}
    if smp:
        for cpu in m.cpus:
            addr = m.smp.cpu_current_task(cpu.index)
            if addr:
                running_on[addr] = cpu.index
        listed = {t.address for t in tasks}
        tasks += [t for a in sorted(running_on, key=running_on.get) if a not in listed
                  for t in [m.tasks.read_task(a)] if t is not None]
    extra = f" {'RUNNING':<8}" if smp else ""
    out.print(f"  {'PID':>5} {'COMM':<16} {'S':<2} {'PPID':>5} {'CPU':>3}{extra}  TASK_STRUCT", "header")
    data = []
    for t in tasks:
        mark = "*" if t.address == cur else " "
        ppid = "-" if t.parent_pid is None else str(t.parent_pid)
        on = running_on.get(t.address)
        extra = f" {('cpu ' + str(on)) if on is not None else '-':<8}" if smp else ""
        out.print(f"{mark} {t.pid:>5} {t.comm:<16} {t.state_letter:<2} {ppid:>5} {t.cpu:>3}{extra}  0x{t.address:x}")
        row = {"pid": t.pid, "comm": t.comm, "state": t.state_word, "current": t.address == cur,
               "parent": t.parent_pid, "cpu": t.cpu, "task_struct": t.address}
        if smp:
            row["running_on"] = on
        data.append(row)
    return data


@command("cpus", group="inspect", aliases=("info cpus",), summary="the virtual CPUs", usage="cpus")
def cmd_cpus(session, rest: str):
    """Each CPU: its state (online, parked after cli; hlt, or waiting for its startup IPI),
its instruction clock, where it is and the task it runs; '*' marks the CPU the other
commands (regs, bt, x ...) look at: the one that ran last."""
    m = session.machine
    out = session.out
    out.print(f"  {'CPU':>3} {'STATE':<14} {'CLOCK':>12}  {'TASK':<20} RIP", "header")
    data = []
    for cpu in m.cpus:
        regs = cpu.registers()
        task = m.tasks.read_task(m.smp.cpu_current_task(cpu.index)) if cpu.state is not CpuState.WAIT_FOR_SIPI else None
        label = task.label if task else "-"
        where = m.symbols.format(regs["rip"]) if task else "-"
        mark = "*" if cpu.index == m.cpu_id else " "
        out.print(f"{mark} {cpu.index:>3} {cpu.state.value:<14} {cpu.icount.retired:>12}  {label:<20} {where}")
        data.append({"cpu": cpu.index, "state": cpu.state.value, "clock": cpu.icount.retired, "task": label,
                     "rip": regs["rip"]})
    return data

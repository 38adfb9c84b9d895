"""Pictures of the mechanism for teaching: the stack around rsp, kretprobe_inst_table, a slot.

Each view reads the machine and the engine's own tables (never a cache of its own) and
returns plain lines plus a JSON-able description, so the same words serve a terminal, a
batch log, `--json` and the tests.  Colour is added only through `Output.style`, which is a
no-op when not writing to a terminal.

  stack_view      8-byte slots from rsp up: return addresses (sym+off), saved frame
                  pointers, and the slots a kretprobe overwrote with kretprobe_trampoline,
                  each with the instance that owns it and the real return address.
  instance_table  the 64 buckets of kretprobe_inst_table (hash_ptr(task)): non-empty
                  buckets drawn as the hlist they are, newest instance first.
  slot_view       a probe's original instruction beside its out-of-line copy: bytes and
                  disassembly, the re-targeted RIP-relative displacement, the jmp back.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..kprobes.core import KPROBE_TABLE_SIZE, AggrKprobe, hash_ptr
from ..kprobes.x86 import _cs, decode_at
from ..machine import MachineError
from ..machine.layout import BOOT_STACK_TOP
from .registry import CommandError
from .uprobe_views import is_user_stack, render_user_stack

#: The most slots `stack` shows at once (a task's whole 8 KiB stack is 1024).
MAX_STACK_SLOTS = 1024


# ---------------------------------------------------------------------- helpers
def _task_label(machine, task_addr: int) -> str:
    task = machine.tasks.read_task(task_addr)
    return task.label if task else f"task 0x{task_addr:x}"


def _function_name(machine, addr: int) -> str:
    hit = machine.symbols.containing(addr)
    return hit[0].name if hit else f"0x{addr:x}"


def _probe_label(ri) -> str:
    """'probe 2 (do_sys_open)' for an instance, or the unregistered case."""
    if ri.rp is None:
        return "an unregistered probe"
    number = ri.rp.number if ri.rp.number is not None else "?"
    name = ri.rp.symbol_name or f"0x{ri.rp.addr:x}"
    return f"probe {number} ({name})"


def _follows_call(machine, addr: int) -> bool:
    """True when the instruction just before addr is a call: addr is a return site.

    Decodes the containing function from its start (x86 cannot be decoded backwards),
    using the original bytes so a planted int3 does not hide the call."""
    hit = machine.symbols.containing(addr)
    if hit is None or not hit[0].size or hit[1] == 0:
        return False
    sym = hit[0]
    try:
        code = machine.kprobes.original_bytes(sym.address, sym.size)
    except MachineError:
        return False
    for insn in _cs.disasm(code, sym.address):
        if insn.address + insn.size == addr:
            return insn.mnemonic.startswith("call")
        if insn.address >= addr:
            break
    return False


# ---------------------------------------------------------------------- the stack
@dataclass
class StackSlot:
    addr: int
    value: int
    kind: str = ""            # return, trampoline, saved-rbp, stack, data, task, ""
    text: str = ""
    marks: list[str] = field(default_factory=list)  # rsp, rbp
    instances: list = field(default_factory=list)   # kretprobe instances recording this slot

    def as_json(self) -> dict:
        return {"addr": self.addr, "value": self.value, "kind": self.kind, "text": self.text, "marks": self.marks,
                "instances": [{"probe": ri.rp.number if ri.rp else None, "task": ri.task, "ret_addr": ri.ret_addr,
                               "index": ri.index} for ri in self.instances]}


def _stack_bounds(machine) -> tuple[int | None, int | None]:
    """The current task's stack [bottom, top), when the kernel says where it is."""
    task = machine.tasks.current()
    lay = machine.tasks.layout
    rsp = machine.reg("rsp")
    if task is not None and lay is not None and task.stack and task.stack <= rsp < task.stack + lay["stack_size"]:
        return task.stack, task.stack + lay["stack_size"]
    if rsp <= BOOT_STACK_TOP:  # a user image on the machine's boot stack
        return None, BOOT_STACK_TOP + 0x10
    return None, None


def stack_slots(machine, count: int, start: int | None = None) -> list[StackSlot]:
    """count 8-byte slots from start (default rsp) upwards, each classified."""
    rsp = machine.reg("rsp")
    rbp = machine.reg("rbp")
    start = rsp if start is None else start
    _bottom, top = _stack_bounds(machine)
    if top is not None and start < top:
        count = min(count, (top - start) // 8)
    slots: list[StackSlot] = []
    for i in range(count):
        addr = start + 8 * i
        try:
            value = machine.read_u64(addr)
        except MachineError:
            break
        slots.append(StackSlot(addr, value))
    if not slots:
        return slots
    by_addr = {s.addr: s for s in slots}
    # Every instance in flight records the stack slot it overwrote: index them by slot.
    owners: dict[int, list] = {}
    for bucket in machine.kprobes.kretprobes.kretprobe_inst_table:
        for ri in bucket:
            owners.setdefault(ri.stack_slot, []).append(ri)
    frame_func = _label_prologue(machine, by_addr, owners, rsp)
    _label_frame_chain(machine, by_addr, owners, rbp, frame_func)
    for s in slots:
        _classify_slot(machine, s, owners, rsp, rbp, start, top)
    return slots


def _label_prologue(machine, by_addr: dict, owners: dict, rsp: int) -> str:
    """Label the return address (and saved rbp) of a function stopped in its prologue;
    returns the function that owns the frame rbp points at.

    The frame-pointer chain: [rbp] is the caller's rbp, [rbp+8] the return address.  The
    function owning a frame is rip's function for the first, then each return site's."""
    mgr = machine.kprobes.kretprobes
    frame_func = _function_name(machine, machine.rip)
    hit = machine.symbols.containing(machine.rip)
    # In the prologue rbp is still the caller's: at +0 the return address is at rsp, after
    # `push rbp` it is at rsp+8 above the saved rbp.  The chain from rbp is the caller's.
    if hit is not None and hit[1] in (0, 1) and rsp in by_addr:
        pushed = hit[1] == 1 and machine.kprobes.original_bytes(hit[0].address, 1) == b"\x55"
        if hit[1] == 0 or pushed:
            ret = by_addr.get(rsp + (8 if pushed else 0))
            if pushed:
                by_addr[rsp].kind = "saved-rbp"
                by_addr[rsp].text = f"saved rbp: {frame_func}'s caller's frame pointer (0x{by_addr[rsp].value:x})"
            if ret is not None and mgr.is_trampoline(ret.value):  # labelled below, with its instance
                real = owners.get(ret.addr)
                frame_func = _function_name(machine, real[-1].ret_addr) if real else "?"
            elif ret is not None and machine.image.is_text(ret.value):  # (at _start there is none)
                ret.kind = "return"
                ret.text = f"return address of {frame_func} -> {machine.symbols.format(ret.value)}"
                frame_func = _function_name(machine, ret.value)
    return frame_func


def _label_frame_chain(machine, by_addr: dict, owners: dict, frame: int, frame_func: str) -> None:
    """Walk the saved-rbp chain from `frame`, labelling each saved rbp and return address."""
    mgr = machine.kprobes.kretprobes
    seen = set()
    while frame in by_addr and frame not in seen:
        seen.add(frame)
        saved = by_addr[frame]
        saved.kind = "saved-rbp"
        saved.text = f"saved rbp: {frame_func}'s caller's frame pointer (0x{saved.value:x})"
        ret = by_addr.get(frame + 8)
        if ret is None:
            break
        if not mgr.is_trampoline(ret.value):
            ret.kind = "return"
            ret.text = f"return address of {frame_func} -> {machine.symbols.format(ret.value)}"
            frame_func = _function_name(machine, ret.value)
        else:
            ret.kind = "trampoline"  # described below, with its instance
            real = owners.get(ret.addr)
            frame_func = _function_name(machine, real[-1].ret_addr) if real else "?"
        frame = saved.value


def _classify_slot(machine, s: StackSlot, owners: dict, rsp: int, rbp: int, start: int, top: int | None) -> None:
    """Mark rsp/rbp, and say what a slot the frame chain did not explain holds."""
    if s.addr == rsp:
        s.marks.append("rsp")
    if s.addr == rbp:
        s.marks.append("rbp")
    if machine.kprobes.kretprobes.is_trampoline(s.value):
        s.kind = "trampoline"
        s.instances = owners.get(s.addr, [])
        s.text = _trampoline_text(machine, s.instances)
    elif s.kind:
        return
    elif machine.image.is_text(s.value) and _follows_call(machine, s.value):
        s.kind = "return"
        s.text = f"return address -> {machine.symbols.format(s.value)}"
    elif machine.image.is_text(s.value):
        s.kind = "code"
        s.text = f"code address {machine.symbols.format(s.value)}"
    elif top is not None and start - 0x2000 <= s.value < top and s.value % 8 == 0:
        s.kind = "stack"
        s.text = f"pointer into the stack (rsp{s.value - rsp:+#x})"
    else:
        task = machine.tasks.read_task(s.value) if machine.tasks.has_kernel_tasks and s.value else None
        if task is not None and machine.tasks.exists(s.value):
            s.kind = "task"
            s.text = f"task_struct of {task.label}"
        else:
            hit = machine.symbols.containing(s.value)
            if hit is not None and hit[0].size and hit[0].contains(s.value) and hit[0].type == "OBJECT":
                s.kind = "data"
                s.text = f"&{machine.symbols.format(s.value, with_size=False)}"


def _trampoline_text(machine, instances: list) -> str:
    if not instances:
        return "kretprobe_trampoline (no instance in flight records this slot)"
    # Instances sharing a slot were pushed newest first; the oldest holds the real address.
    parts = []
    for ri in instances:
        ret = ("kretprobe_trampoline" if machine.kprobes.kretprobes.is_trampoline(ri.ret_addr)
               else f"{machine.symbols.format(ri.ret_addr)} (0x{ri.ret_addr:x})")
        parts.append(f"instance #{ri.index} of {_probe_label(ri)} for {_task_label(machine, ri.task)}, "
                     f"real return {ret}")
    return "kretprobe_trampoline: hijacked return address; " + "; ".join(parts)


def render_stack(session, count: int) -> tuple[list[str], list[dict]]:
    m = session.machine
    if is_user_stack(m):
        return render_user_stack(session, count)
    out = session.out
    rsp, rbp = m.reg("rsp"), m.reg("rbp")
    slots = stack_slots(m, count)
    task = m.tasks.current()
    who = f"{task.label} (task_struct 0x{task.address:x})" if task else "no current task"
    _bottom, top = _stack_bounds(m)
    top_s = f", stack top 0x{top:x}" if top is not None else ""
    lines = [out.style(f"Stack of {who}: rsp 0x{rsp:x}, rbp 0x{rbp:x}{top_s}; {len(slots)} slot(s) of 8 bytes",
                       "header")]
    role = {"trampoline": "planted", "return": "sym", "saved-rbp": "dim"}
    for s in slots:
        mark = ",".join(s.marks)
        line = (f"  rsp{s.addr - rsp:+#06x}  0x{s.addr:016x}: 0x{s.value:016x}  "
                f"{(mark and '<- ' + mark):<11} {out.style(s.text, role.get(s.kind, '')) if s.text else ''}")
        lines.append(line.rstrip())
    if not slots:
        lines.append(f"  (0x{rsp:x} cannot be read)")
    return lines, [s.as_json() for s in slots]


# ---------------------------------------------------------------------- kretprobe_inst_table
def render_instance_table(session) -> tuple[list[str], dict]:
    """kretprobe_inst_table drawn as its 64 buckets; empty ones summarised as ranges."""
    m = session.machine
    out = session.out
    mgr = m.kprobes.kretprobes
    table = mgr.kretprobe_inst_table
    used = [b for b in range(KPROBE_TABLE_SIZE) if table[b]]
    total = sum(len(table[b]) for b in used)
    lines = [out.style(f"kretprobe_inst_table: {KPROBE_TABLE_SIZE} buckets indexed by hash_ptr(task); "
                       f"{total} instance(s) in flight in {len(used)} bucket(s)", "header")]
    data = {"buckets": [], "empty": [], "probes": []}
    for b in used:
        tasks = []
        for ri in table[b]:
            if ri.task not in tasks:
                tasks.append(ri.task)
        who = ", ".join(f"{_task_label(m, t)} (task_struct 0x{t:x})" for t in tasks)
        lines.append(f"  [{b:2d}] {who}")
        nodes = []
        for i, ri in enumerate(table[b]):
            arrow = "head ->" if i == 0 else "     ->"
            ret = ("kretprobe_trampoline" if mgr.is_trampoline(ri.ret_addr)
                   else f"{m.symbols.format(ri.ret_addr)} (0x{ri.ret_addr:x})")
            task_note = f" {_task_label(m, ri.task)}" if len(tasks) > 1 else ""
            lines.append(f"       {arrow} [#{ri.index} {_probe_label(ri)}{task_note}: ret_addr {ret}, "
                         f"stack slot 0x{ri.stack_slot:x}]")
            nodes.append({"probe": ri.rp.number if ri.rp else None, "index": ri.index, "task": ri.task,
                          "ret_addr": ri.ret_addr, "stack_slot": ri.stack_slot})
        lines.append("       ->  NULL")
        data["buckets"].append({"bucket": b, "tasks": tasks, "instances": nodes})
    empty = [b for b in range(KPROBE_TABLE_SIZE) if not table[b]]
    data["empty"] = empty
    lines.append(f"  empty: {len(empty)} of {KPROBE_TABLE_SIZE} buckets ({_ranges(empty) or 'none'})")
    for rp in mgr.kretprobes:
        lines.append(f"  pool of probe {rp.number if rp.number is not None else '?'} ({rp.symbol_name}): "
                     f"maxactive {rp.maxactive}, {len(rp.used_instances)} used, {len(rp.free_instances)} free, "
                     f"nmissed {rp.nmissed}")
        data["probes"].append({"probe": rp.number, "maxactive": rp.maxactive, "used": len(rp.used_instances),
                               "free": len(rp.free_instances), "nmissed": rp.nmissed})
    return lines, data


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    out, i = [], 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        out.append(f"{numbers[i]}" if i == j else f"{numbers[i]}-{numbers[j]}")
        i = j + 1
    return ", ".join(out)


# ---------------------------------------------------------------------- a slot
def probe_entry(session, up):
    """The kprobe_table entry behind a user probe (an aggregate when the address is shared)."""
    if up.is_breakpoint:
        raise CommandError(f"{up.number} is a breakpoint: breakpoints have no instruction slot")
    kp = getattr(up.obj, "kp", up.obj)
    entry = session.machine.kprobes.get_kprobe(kp.addr)
    if entry is None or entry.slot is None or entry.ainsn is None:
        raise CommandError(f"probe {up.number} has no instruction slot")
    return kp, entry


def _bytes_cell(raw: bytes, mark: tuple[int, int] | None, out) -> str:
    """Hex bytes; the RIP-relative displacement in [brackets] (and coloured on a terminal)."""
    cells = [f"{b:02x}" for b in raw]
    if mark is not None:
        lo, hi = mark
        inner = " ".join(cells[lo:hi])
        cells = cells[:lo] + [out.style(f"[{inner}]", "changed")] + cells[hi:]
    return " ".join(cells)


def _relative_branch_target(raw: bytes, at: int) -> tuple[str, int] | None:
    """(mnemonic, target) of a rel8/rel32 call, jmp or jcc decoded at `at`, else None."""
    from capstone import CS_GRP_CALL, CS_GRP_JUMP
    from capstone import x86_const as CX

    from ..kprobes.x86 import decode

    insn = decode(raw, at)
    if insn is None or not (insn.group(CS_GRP_JUMP) or insn.group(CS_GRP_CALL)):
        return None
    ops = list(insn.operands)
    if len(ops) == 1 and ops[0].type == CX.X86_OP_IMM:
        return insn.mnemonic, ops[0].imm
    return None


def render_slot(session, up) -> tuple[list[str], dict]:
    m = session.machine
    out = session.out
    engine = m.kprobes
    kp, entry = probe_entry(session, up)
    insn = entry.ainsn
    addr, slot, n = entry.addr, entry.slot, insn.length
    original = engine.original_bytes(addr, n)
    in_memory = m.read(addr, n)
    copy = m.read(slot, n)
    jmp = m.read(slot + n, 5)
    copied = decode_at(copy, slot)
    jmp_insn = decode_at(jmp, slot + n)
    index = (slot - engine.slots.base) // engine.slots.size
    shared = f", shared by the {len(entry.children)} probes of an aggregate" if isinstance(entry, AggrKprobe) else ""
    lines = [out.style(f"Probe {up.number} ({up.kind}) at {m.symbols.format(addr)}: insn slot {index} at 0x{slot:x}"
                       f"{shared}; mode {kp.mode}; kprobe_table[{hash_ptr(addr)}]", "header")]
    mark = (insn.rip_disp_offset, insn.rip_disp_offset + 4) if insn.rip_disp_offset is not None else None
    width = max(len(" ".join("xx" for _ in range(n))) + (2 if mark else 0), 14)

    def row(label: str, where: int, raw: bytes, text: str, mark_here=None) -> str:
        cell = _bytes_cell(raw, mark_here, out)
        pad = width - len(" ".join(f"{b:02x}" for b in raw)) - (2 if mark_here else 0)
        return f"  {label:<10} 0x{where:016x}  {cell}{' ' * max(pad, 0)}  {text}"

    def target_note(at: int, raw: bytes) -> str:
        if mark is None:
            return ""
        disp = int.from_bytes(raw[mark[0]:mark[1]], "little", signed=True)
        target = at + n + disp
        return f"   ; -> 0x{target:x} <{m.symbols.format(target, with_size=False)}>"

    armed = in_memory[:1] == b"\xcc" and original[:1] != b"\xcc"
    lines.append(f"  {'':<10} {'address':<18}  {'bytes':<{width}}  instruction")
    lines.append(row("original", addr, original, insn.text + target_note(addr, original), mark))
    lines.append(row("in memory", addr, in_memory[:1],
                     f"int3 planted over {original[0]:02x}" if armed else "not armed (disabled): the original byte"))
    lines.append(row("slot copy", slot, copy, (copied.text if copied else "?") + target_note(slot, copy), mark))
    back = addr + n
    lines.append(row("jmp back", slot + n, jmp, f"jmp 0x{back:x} <{m.symbols.format(back, with_size=False)}>"
                     + ("   (taken when boosted; a single-step traps before it)" if jmp_insn else "")))
    data = {"probe": up.number, "addr": addr, "slot": slot, "index": index, "original": original.hex(),
            "copy": copy.hex(), "jmp": jmp.hex(), "armed": armed, "mode": kp.mode}
    if mark is not None:
        old = int.from_bytes(original[mark[0]:mark[1]], "little", signed=True)
        new = int.from_bytes(copy[mark[0]:mark[1]], "little", signed=True)
        target = addr + n + old
        lines.append(f"  RIP-relative displacement at byte {mark[0]}: 0x{old & 0xffffffff:08x} ({old:+#x}) from "
                     f"0x{addr + n:x} became 0x{new & 0xffffffff:08x} ({new:+#x}) from 0x{slot + n:x}: "
                     f"new = (0x{addr:x} {'-' if old < 0 else '+'} {abs(old):#x}) - 0x{slot:x}; both reach 0x{target:x}")
        data.update(old_disp=old, new_disp=new, target=target)
    else:
        lines.append("  no RIP-relative operand: the copy is byte for byte the original")
    branch = _relative_branch_target(original, addr)
    if branch is not None:
        from_slot = _relative_branch_target(copy, slot)
        lines.append(f"  relative {branch[0]}: the original goes to 0x{branch[1]:x} "
                     f"<{m.symbols.format(branch[1], with_size=False)}>; stepped in the slot the CPU goes to "
                     f"0x{from_slot[1]:x}, never run: the debug trap comes first and resume_execution adds "
                     f"addr - slot ({addr - slot:+#x})")
        data.update(branch_target=branch[1], branch_target_from_slot=from_slot[1])
    lines.append(f"  after the step: resume_execution '{insn.fixup_kind()}'")
    return lines, data

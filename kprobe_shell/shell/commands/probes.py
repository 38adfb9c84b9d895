"""Probe commands: kprobe, jprobe, kretprobe, probes, delete, disable, enable, instances, break."""
from __future__ import annotations

import os

from ...api import Jprobe, Kprobe, Kretprobe, ProbeError
from ...machine import StopReason
from ...tracing.probe_events import KRETPROBE_MAXACTIVE_MAX
from ..registry import CommandError, command
from ..session import UserProbe
from .common import no_arguments, parse_location, parse_number, parse_probe_numbers
from .wildcards import is_wildcard, place_each, unique_event_name


def _signed(value: int) -> int:
    return value - (1 << 64) if value >> 63 else value


def _event_name(kind: str, symbol: str | None, offset: int, addr: int) -> str:
    """ftrace's default event names: p_SYM_OFFS, r_SYM_0, p_0xADDR_0."""
    base = symbol if symbol else f"0x{addr:x}"
    return f"{'r' if kind == 'r' else 'p'}_{base}_{offset}"


# ---------------------------------------------------------------------- handlers
def make_kprobe_handler(session, up: UserProbe, render=None, condition=None):
    """The default pre_handler: one ftrace line per hit, then the probe's commands."""
    machine = session.machine
    fmt = machine.symbols.format
    where_of: dict[int, str] = {}  # sym+off of the probed address, formatted once

    def pre_handler(p, regs):
        args, values = render(regs) if render else ("", {})
        if condition is not None and not condition(values):
            return 0
        where = where_of.get(p.addr)
        if where is None:
            where = where_of[p.addr] = fmt(p.addr)
        session.emit_trace(session.trace_event_for(up, where, args, values), up)
        session.run_probe_commands(up)
        return 0

    return pre_handler


def make_kprobe_post_handler(session, up: UserProbe):
    """A post_handler in the spirit of the kernel's kprobe_example: one line after the step.

    It runs at the debug trap, before resume_execution, so it sees what the 2005 kernel's
    post_handler saw: rip still inside the insn slot (just past the copy) and TF set."""
    machine = session.machine
    fmt = machine.symbols.format

    def post_handler(p, regs, flags):
        rip, eflags = regs.rip, machine.eflags
        slot = machine.kprobes.slots.slot_of(rip)
        where = f"slot 0x{slot:x}+0x{rip - slot:x}" if slot is not None else fmt(rip)
        args = f" post_handler: rip=0x{rip:x} ({where}) eflags=0x{eflags:x}{' TF' if eflags & 0x100 else ''}"
        session.emit_trace(session.trace_event_for(up, fmt(p.addr), args, {"rip": rip, "eflags": eflags}), up)

    return post_handler


def make_kretprobe_handler(session, up: UserProbe, render=None, condition=None):
    """The default return handler: the return site and the function, the value signed and hex."""
    machine = session.machine
    fmt = machine.symbols.format

    names: dict[int, str] = {}  # return sites and probed functions, formatted once

    def name_of(addr: int, function: bool = False) -> str:
        key = -addr if function else addr
        text = names.get(key)
        if text is None:
            text = names[key] = machine.symbols.containing(addr)[0].name if function else fmt(addr)
        return text

    def handler(ri, regs):
        site = name_of(ri.ret_addr)
        func = name_of(ri.rp.addr, function=True) if ri.rp else "?"
        if render is not None:
            args, values = render(regs)
        else:
            rax = regs.rax
            args, values = f" ret={_signed(rax)} (0x{rax:x})", {"ret": _signed(rax)}
        if condition is not None and not condition(values):
            return 0
        session.emit_trace(session.trace_event_for(up, f"{site} <- {func}", args, values), up)
        session.run_probe_commands(up)
        return 0

    return handler


def make_jprobe_trace_entry(session, up: UserProbe):
    """A Python jprobe entry that prints the probed call's arguments, named from DWARF."""
    machine = session.machine
    probed: dict[int, tuple] = {}  # the probed address -> (sym+off, DWARF parameters), looked up once

    def entry(*args):
        addr = up.addr
        known = probed.get(addr)
        if known is None:
            func = machine.symbols.containing(addr)[0].name
            known = probed[addr] = (machine.symbols.format(addr), machine.image.parameters.get(func) or [])
        where, params = known
        parts = []
        for i, value in enumerate(args):
            name = params[i].name if i < len(params) else f"arg{i + 1}"
            shown = f"{value}" if value < 0 else f"0x{value:x}"
            if i < len(params) and params[i].is_string and value > 0:
                try:
                    shown = '"' + machine.read_cstring(value).decode("utf-8", "replace") + '"'
                except Exception:  # noqa: BLE001 - a bad pointer shows as (fault)
                    shown = "(fault)"
            parts.append(f"{name}={shown}")
        args_text = (" " + " ".join(parts)) if parts else ""
        session.emit_trace(session.trace_event_for(up, where, args_text), up)
        session.run_probe_commands(up)

    entry.__qualname__ = "(built-in entry: prints the arguments)"  # what `probes` shows as the handler
    return entry


# ---------------------------------------------------------------------- creating probes
def create_from_spec(session, up: UserProbe) -> UserProbe:
    """(Re)create a user probe on the session's machine from its spec."""
    m = session.machine
    spec = up.spec
    kind = up.kind
    if kind in ("b", "t"):
        return _create_breakpoint(session, up)
    if spec.get("request") is not None:
        from .handlers import create_handler_probe

        return create_handler_probe(session, up)
    if spec.get("line"):
        from .events import create_probe_event

        return create_probe_event(session, spec["line"], number=up.number, commands=up.commands, silent=up.silent)
    sym, off = spec.get("symbol"), spec.get("offset", 0)
    addr = spec.get("addr")
    if kind == "k":
        obj = Kprobe(sym, off, addr=None if sym else addr)
        up.obj = obj
        obj.pre_handler = make_kprobe_handler(session, up)
        if spec.get("post"):
            obj.post_handler = make_kprobe_post_handler(session, up)
        m.register_kprobe(obj)
    elif kind == "j":
        entry = spec["entry"]
        if entry == "-":
            obj = Jprobe(sym, make_jprobe_trace_entry(session, up), addr=None if sym else addr)
        else:
            obj = Jprobe(sym, entry, addr=None if sym else addr)
        up.obj = obj
        m.register_jprobe(obj)
    elif kind == "r":
        obj = Kretprobe(sym, None, spec.get("maxactive", 0), addr=None if sym else addr, unsafe=spec.get("unsafe", False))
        up.obj = obj
        obj.handler = make_kretprobe_handler(session, up)
        m.register_kretprobe(obj)
    else:
        raise CommandError(f"unknown probe kind {kind}")
    up.addr = obj.addr
    if not up.enabled:
        m.disable_probe(obj)
    return session.add_user_probe(up)


def _create_breakpoint(session, up: UserProbe) -> UserProbe:
    m = session.machine

    def on_break(machine):
        if session._skip_break_once == up.addr:
            session._skip_break_once = None
            return
        if not up.enabled or machine.kprobes.kprobe_running():
            return
        up.hits += 1
        if session._stop_at_break is not None:
            return  # [robustness fix] two breakpoints on one address: the first one reports the stop
        machine.uncount_current()  # the instruction runs after we continue, counted then
        session._stop_at_break = up
        machine.stop_guest(machine._event(StopReason.BREAKPOINT, f"breakpoint {up.number}"))

    up.obj = m.add_code_hook(up.addr, on_break)
    return session.add_user_probe(up)


def _new_probe(session, kind: str, location: str, spec: dict) -> UserProbe:
    sym, off, addr = parse_location(session, location)
    spec.update(symbol=sym, offset=off, addr=addr)
    if kind == "r" and off:
        raise CommandError("a return probe goes on a function's entry: no offset")
    if kind == "j" and off:
        # [robustness fix] the offset was dropped and the jprobe landed on the entry.
        raise CommandError(f"a jprobe goes on a function's entry (offset 0), not {sym}+0x{off:x}")
    up = UserProbe(number=0, kind=kind, location=location, addr=addr, spec=spec,
                   event=unique_event_name(session, _event_name(kind, sym, off, addr)))
    if kind in ("b", "t"):
        if not session.machine.image.is_text(addr):
            raise CommandError(f"0x{addr:x} is not in the image's text")
        return _create_breakpoint(session, up)
    try:
        return create_from_spec(session, up)
    except ProbeError as exc:
        raise CommandError(str(exc)) from None


def _describe_new(session, up: UserProbe) -> None:
    what = {"k": "Kprobe", "j": "Jprobe", "r": "Kretprobe", "b": "Breakpoint", "t": "Temporary breakpoint"}[up.kind]
    others = [o for o in sorted(session.probes.values(), key=lambda o: o.number)
              if o.addr == up.addr and o is not up and o.is_breakpoint == up.is_breakpoint]
    if others:
        nums = ", ".join(str(o.number) for o in others)
        if up.is_breakpoint:
            session.out.print(f"Note: breakpoint {nums} also set at 0x{up.addr:x}.")
        else:
            session.out.print(f"Note: probe {nums} also at 0x{up.addr:x}: the probes share the address "
                              "(an aggregate kprobe runs each one's handlers).")
    extra = ""
    if up.kind == "r":
        extra = f" maxactive={up.obj.maxactive}"
    if up.kind == "j":
        extra = f" -> {up.obj.entry_label}"
    session.out.print(f"{what} {up.number} at 0x{up.addr:x}: {session.machine.symbols.format(up.addr)}{extra}")


def _place_one(session, kind: str, name: str, spec: dict) -> list[dict]:
    """One probe of a wildcard's matches, announced as a single one is."""
    up = _new_probe(session, kind, name, spec)
    _describe_new(session, up)
    return [{"number": up.number, "addr": up.addr, "function": name}]


@command("kprobe", repeatable=False, group="probes", aliases=("kp",), args=("location",),
         summary="plant a kprobe: one trace line per hit",
         usage="kprobe LOCATION [--post]",
         example="kprobe do_fork\nkprobe do_sys_open+0x4\nkprobe 0x100123\nkprobe do_fork --post")
def cmd_kprobe(session, rest: str):
    """Register a kprobe at LOCATION (a symbol, symbol+offset or an address). The int3 is
planted in guest memory at once; each hit prints one trace line (task-pid, cpu, virtual
time, event, sym+off). Arguments as in ftrace: use the `p` form (`p do_sys_open dfd=%di`).
--post adds a post_handler that prints a second line after the instruction was stepped:
it sees rip still in the insn slot and TF set (a probe with a post_handler is never
boosted: the debug trap is what calls it)."""
    words = rest.split()
    post = "--post" in words
    location = " ".join(w for w in words if w != "--post")  # `do_fork + 4` is one location
    if not location:
        raise CommandError("usage: kprobe LOCATION [--post]")
    if is_wildcard(location):  # kprobe vfs_*: one probe per matching function
        return place_each(session, location, lambda name: _place_one(session, "k", name, {"post": post} if post else {}))
    up = _new_probe(session, "k", location, {"post": post} if post else {})
    _describe_new(session, up)
    return {"number": up.number, "addr": up.addr}


@command("jprobe", repeatable=False, group="probes", aliases=("jp",), args=("location", "symbol"),
         summary="plant a jprobe: a handler entered with the function's own arguments",
         usage="jprobe LOCATION [HANDLER]",
         example="jprobe do_fork jdo_fork\njprobe do_sys_open")
def cmd_jprobe(session, rest: str):
    """Register a jprobe on a function entry. HANDLER is a guest function compiled into the
image with the same prototype that ends with jprobe_return() (execution really goes
there); without HANDLER a built-in handler prints the arguments, named from DWARF."""
    args = session.split_args(rest)
    if not args or len(args) > 2:
        raise CommandError("usage: jprobe LOCATION [HANDLER]")
    entry = args[1] if len(args) == 2 else "-"
    if entry != "-" and entry not in session.machine.symbols:
        raise CommandError(session.machine.symbols.unknown_message(entry))
    up = _new_probe(session, "j", args[0], {"entry": entry})
    _describe_new(session, up)
    return {"number": up.number, "addr": up.addr}


@command("kretprobe", repeatable=False, group="probes", aliases=("kretp", "rp"), args=("location", "text"),
         summary="plant a return probe: one line per return, with the value",
         usage="kretprobe LOCATION [maxactive=N] [--unsafe]",
         example="kretprobe do_sys_open\nkretprobe path_lookup_recursive maxactive=2")
def cmd_kretprobe(session, rest: str):
    """Register a kretprobe on a function. maxactive bounds the calls in flight that can be
traced at once (default: the kernel's, max(10, 2*NR_CPUS)); calls beyond it are counted in
nmissed. --unsafe allows the exec path (do_execve, flush_thread, ...) to show the 2005 bug."""
    args = session.split_args(rest)
    if not args:
        raise CommandError("usage: kretprobe LOCATION [maxactive=N] [--unsafe]")
    spec = {"maxactive": 0, "unsafe": False}
    for a in args[1:]:
        if a == "--unsafe":
            spec["unsafe"] = True
        elif a.startswith("maxactive="):
            n = parse_number(a.split("=", 1)[1], "maxactive")
            if n < 0:
                raise CommandError("maxactive must be >= 0 (0 means the default)")
            if n > KRETPROBE_MAXACTIVE_MAX:
                # [robustness fix] maxactive=10**11 built that many instances and ran out of memory.
                raise CommandError(f"maxactive must be at most {KRETPROBE_MAXACTIVE_MAX}")
            spec["maxactive"] = n
        else:
            raise CommandError(f"unexpected '{a}' (maxactive=N or --unsafe)")
    if is_wildcard(args[0]):  # kretprobe sys_*: one return probe per matching function
        return place_each(session, args[0], lambda name: _place_one(session, "r", name, dict(spec)))
    up = _new_probe(session, "r", args[0], spec)
    _describe_new(session, up)
    return {"number": up.number, "addr": up.addr}


@command("break", repeatable=False, group="running", aliases=("b", "br"), args=("location",),
         summary="stop the guest when it reaches LOCATION", usage="break LOCATION",
         example="break do_exit")
def cmd_break(session, rest: str):
    """Set a breakpoint: the guest stops before the instruction at LOCATION runs and the
prompt comes back. Breakpoints cost nothing elsewhere (a hook on that one address)."""
    if not rest:
        raise CommandError("usage: break LOCATION")
    up = _new_probe(session, "b", rest, {})
    _describe_new(session, up)
    return {"number": up.number, "addr": up.addr}


@command("tbreak", repeatable=False, group="running", args=("location",), summary="a breakpoint that deletes itself when hit",
         usage="tbreak LOCATION")
def cmd_tbreak(session, rest: str):
    """Like break, but deleted the first time it stops the guest."""
    if not rest:
        raise CommandError("usage: tbreak LOCATION")
    up = _new_probe(session, "t", rest, {})
    _describe_new(session, up)
    return {"number": up.number, "addr": up.addr}


def delete_user_probe(session, up: UserProbe) -> None:
    m = session.machine
    if up.is_breakpoint:
        m.remove_hook(up.obj)
    else:
        try:
            m.unregister(up.obj)
        except ProbeError as exc:  # e.g. `delete` in a probe's own commands (mid-hit)
            raise CommandError(str(exc)) from None
    session.probes.pop(up.number, None)
    session.drop_aggregations(up.number)


@command("delete", repeatable=False, group="probes", aliases=("d", "del"), args=("probe",),
         summary="remove probes or breakpoints (all when no number is given)", usage="delete [N...]")
def cmd_delete(session, rest: str):
    """Unregister probes/breakpoints by number: the int3 is removed from guest memory (the
original byte put back), the slot freed; a kretprobe's calls in flight return normally."""
    nums = session.split_args(rest)
    # [robustness fix] `delete 1 1` deleted 1, then raised a ProbeError out of the shell.
    targets = parse_probe_numbers(session, rest) if nums else list(session.probes.values())
    for up in targets:
        delete_user_probe(session, up)
    session.out.print(f"Deleted {len(targets)} probe(s)/breakpoint(s)" if not nums or len(targets) > 1
                      else f"Deleted {targets[0].number}")


def _set_enabled(session, rest: str, enabled: bool):
    nums = session.split_args(rest)
    targets = parse_probe_numbers(session, rest) if nums else list(session.probes.values())
    for up in targets:
        up.enabled = enabled
        if not up.is_breakpoint:
            (session.machine.enable_probe if enabled else session.machine.disable_probe)(up.obj)
    word = "Enabled" if enabled else "Disabled"
    session.out.print(f"{word} {', '.join(str(t.number) for t in targets) or 'nothing'}")


@command("disable", repeatable=False, group="probes", aliases=("dis",), args=("probe",), summary="disarm probes, keeping counters",
         usage="disable [N...]")
def cmd_disable(session, rest: str):
    """Disarm: the original byte goes back into guest memory; hits and nmissed are kept."""
    _set_enabled(session, rest, False)


@command("enable", repeatable=False, group="probes", aliases=("en",), args=("probe",), summary="re-arm disabled probes",
         usage="enable [N...]")
def cmd_enable(session, rest: str):
    """Re-arm: the int3 is planted again."""
    _set_enabled(session, rest, True)


@command("probes", group="probes", aliases=("info probes", "i b", "info breakpoints", "lsprobes"),
         summary="list probes and breakpoints with their counters", usage="probes")
def cmd_probes(session, rest: str):
    """Number, type (k/j/r, b breakpoint), address, sym+off, enabled, hits, nmissed, mode,
and for return probes maxactive with free/used instances."""
    no_arguments(rest, "probes")
    out = session.out
    rows = []
    header = f"{'Num':<4}{'Type':<5}{'Address':<20}{'What':<34}{'Enb':<4}{'Hits':>7}{'Missed':>8}  {'Mode':<12}Details"
    out.print(header, "header")
    data = []
    for up in sorted(session.probes.values(), key=lambda p: p.number):
        obj = up.obj
        if up.is_breakpoint:
            hits, missed, mode, details = up.hits, 0, "-", "breakpoint" if up.kind == "b" else "temporary"
        else:
            hits = obj.hits
            missed = obj.nmissed
            mode = obj.mode
            details = ""
            if up.kind == "r":
                details = f"maxactive={obj.maxactive} free={len(obj.free_instances)} used={len(obj.used_instances)}"
            elif up.kind == "j" and obj.entry_label != up.event:
                details = f"-> {obj.entry_label}"
            if getattr(obj, "faults", 0):
                details += f" faults={obj.faults}"
            in_place = getattr(obj, "missed_in_place", 0)
            if session.machine.kprobes.step_mode == "in-place":
                mode = "in-place"
            if in_place or mode == "in-place":
                details = f"{details} missed (in-place window)={in_place}".strip()
            if session.machine.kprobes.mode == "optimize" and mode != "optimized":
                from .misc import _not_optimized

                why = _not_optimized(session.machine, up)
                if why:
                    details += f" (not optimized: {why})"
            if up.event:
                details = f"{up.event} {details.strip()}".strip()
            if up.spec.get("where"):
                details += f" ({os.path.basename(up.spec['where'])})"
        # The engine may have disabled it on its own (set handler-error disable).
        enabled = up.enabled and not getattr(obj, "disabled", False)
        enb = "y" if enabled else "n"
        what = session.machine.symbols.format(up.addr)
        rows.append(f"{up.number:<4}{up.kind:<5}0x{up.addr:016x}  {what:<34}{enb:<4}{hits:>7}{missed:>8}  {mode:<12}{details}")
        data.append({"number": up.number, "type": up.kind, "addr": up.addr, "what": what, "enabled": enabled,
                     "hits": hits, "nmissed": missed, "mode": mode, "details": details.strip(),
                     "missed_in_place": 0 if up.is_breakpoint else getattr(obj, "missed_in_place", 0)})
    for row in rows:
        out.print(row)
    if not rows:
        out.print("No probes or breakpoints.")
    return data


@command("instances", group="probes", aliases=("inst",),
         summary="the per-task return-probe instance tables (kretprobe_inst_table)",
         usage="instances [--all | --table]", example="instances\ninstances --table")
def cmd_instances(session, rest: str):
    """For every task with return-probe calls in flight: its bucket of the 64-bucket
kretprobe_inst_table and each instance, newest first: probe, function, the real return
address, the stack slot that now holds the trampoline. --all also lists each kretprobe's
free/used pool. --table draws the table itself: every non-empty bucket as the chain it
is (head first, tasks sharing a bucket interleaved), the empty buckets as ranges, and
each kretprobe's pool."""
    option = rest.strip()
    if option not in ("", "--all", "--table"):
        raise CommandError(f"unexpected '{option}' (usage: instances [--all | --table])")
    if option == "--table":
        from ..views import render_instance_table

        lines, data = render_instance_table(session)
        for line in lines:
            session.out.print(line)
        return data
    m = session.machine
    mgr = m.kprobes.kretprobes
    fmt = m.symbols.format
    rows = mgr.instances_by_task()
    out = session.out
    data = []
    if not rows:
        out.print("No return-probe instances in flight.")
    for bucket, task_addr, ris in rows:
        task = m.tasks.read_task(task_addr)
        label = task.label if task else f"(exited task 0x{task_addr:x})"
        if task and m.ncpus > 1:
            label += f" on cpu {task.cpu}"
        out.print(f"kretprobe_inst_table[{bucket:2d}]  task {label} (task_struct 0x{task_addr:x}): {len(ris)} in flight",
                  "header")
        for depth, ri in enumerate(ris):
            func = m.symbols.containing(ri.rp.addr)[0].name if ri.rp else "(unregistered probe)"
            num = ri.rp.number if ri.rp else "-"
            try:
                now = m.read_u64(ri.stack_slot)
            except Exception:  # noqa: BLE001
                now = None
            now_s = "?" if now is None else ("kretprobe_trampoline" if mgr.is_trampoline(now) else fmt(now))
            out.print(f"  #{depth} probe {num} {func}: returns to {fmt(ri.ret_addr)} (0x{ri.ret_addr:x}); "
                      f"stack slot 0x{ri.stack_slot:x} now holds {now_s}")
            data.append({"bucket": bucket, "task": label, "probe": num, "function": func,
                         "ret_addr": ri.ret_addr, "stack_slot": ri.stack_slot, "slot_holds": now})
    if rest.strip() == "--all":
        for rp in mgr.kretprobes:
            out.print(f"probe {rp.number} {rp.symbol_name}: maxactive={rp.maxactive} free={len(rp.free_instances)} "
                      f"used={len(rp.used_instances)} nmissed={rp.nmissed}")
    return data


@command("commands", group="probes", args=("probe",), summary="attach shell commands to a probe or breakpoint",
         usage="commands [N]\n  COMMAND...\nend", repeatable=False,
         example="commands 1\n  silent\n  bt\nend")
def cmd_commands(session, rest: str):
    """Attach commands to probe or breakpoint N (default: the newest). In a script the
lines that follow up to `end` are the list; `silent` as the first line hides the probe's
own trace line. Probe commands run at the hit and may only inspect (regs, bt, x, ...);
breakpoint commands run after the stop and may end with `continue`."""
    raise CommandError("'commands' needs its lines up to 'end': use it in a script, or type them after it")

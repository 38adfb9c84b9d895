"""Probe commands: kprobe, jprobe, kretprobe, probes, delete, disable, enable, instances, break."""
from __future__ import annotations

import os

from ...tracing.probe_events import KRETPROBE_MAXACTIVE_MAX
from ..registry import CommandError, command
from ..gdbvalues import check_condition
from ..userprobes import delete_user_probe, describe_new, new_probe, why_not_optimized
from ..watchpoints import breakpoint_details
from ..locations import parse_location
from ..uprobe_views import render_user_instances
from .common import no_arguments, parse_number, parse_probe_numbers
from .wildcards import is_wildcard, place_each


def _new_probe(session, kind: str, location: str, spec: dict):
    return new_probe(session, kind, location, parse_location(session, location), spec)


def _place_one(session, kind: str, name: str, spec: dict) -> list[dict]:
    """One probe of a wildcard's matches, announced as a single one is."""
    up = _new_probe(session, kind, name, spec)
    describe_new(session, up)
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
    describe_new(session, up)
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
    describe_new(session, up)
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
                # Each instance is preallocated, as register_kretprobe does: bound the pool.
                raise CommandError(f"maxactive must be at most {KRETPROBE_MAXACTIVE_MAX}")
            spec["maxactive"] = n
        else:
            raise CommandError(f"unexpected '{a}' (maxactive=N or --unsafe)")
    if is_wildcard(args[0]):  # kretprobe sys_*: one return probe per matching function
        return place_each(session, args[0], lambda name: _place_one(session, "r", name, dict(spec)))
    up = _new_probe(session, "r", args[0], spec)
    describe_new(session, up)
    return {"number": up.number, "addr": up.addr}


@command("break", repeatable=False, group="running", aliases=("b", "br"), args=("location",),
         summary="stop the guest when it reaches LOCATION [if COND]", usage="break LOCATION [if COND]",
         example="break do_exit\nbreak vfs_read if count > 100")
def cmd_break(session, rest: str):
    """Set a breakpoint: the guest stops before the instruction at LOCATION runs and the
prompt comes back. Breakpoints cost nothing elsewhere (a hook on that one address).
`if COND` stops only when the C expression COND (over the DWARF variables in scope at
LOCATION, as `print` reads them) is non-zero; `condition N [COND]` changes it later.
An address in the middle of an instruction is refused, as a kprobe there is. A
breakpoint inside a guest jprobe handler stops there, as gdb's do."""
    return _break(session, "b", rest, "break")


@command("tbreak", repeatable=False, group="running", args=("location",), summary="a breakpoint that deletes itself when hit",
         usage="tbreak LOCATION [if COND]")
def cmd_tbreak(session, rest: str):
    """Like break, but deleted the first time it stops the guest."""
    return _break(session, "t", rest, "tbreak")


def _break(session, kind: str, rest: str, name: str):
    location, _, cond = rest.partition(" if ")
    if rest.startswith("if "):
        location, cond = "", rest[3:]
    if not location.strip():
        raise CommandError(f"usage: {name} LOCATION [if COND]")
    spec = {}
    if cond.strip():
        point = parse_location(session, location.strip())
        check_condition(session, point[2], cond.strip())
        spec["condition"] = cond.strip()
    up = _new_probe(session, kind, location.strip(), spec)
    describe_new(session, up)
    return {"number": up.number, "addr": up.addr}


@command("condition", repeatable=False, group="running", args=("probe", "text"),
         summary="stop at breakpoint N only when COND holds", usage="condition N [COND]",
         example="condition 1 count > 100\ncondition 1")
def cmd_condition(session, rest: str):
    """Give breakpoint N the condition COND (a C expression, as in `break LOC if COND`);
with no COND, N stops every time again."""
    number, _, cond = rest.strip().partition(" ")
    if not number:
        raise CommandError("usage: condition N [COND]")
    up = session.probes.lookup(number)
    if up.kind not in ("b", "t"):
        raise CommandError(f"{up.number} is a probe, not a breakpoint: a probe's filter is `if` on its line")
    if not cond.strip():
        up.spec.pop("condition", None)
        session.out.print(f"Breakpoint {up.number} now unconditional.")
        return None
    check_condition(session, up.addr, cond.strip())
    up.spec["condition"] = cond.strip()
    return {"number": up.number, "condition": cond.strip()}


@command("delete", repeatable=False, group="probes", aliases=("d", "del"), args=("probe",),
         summary="remove probes or breakpoints (all when no number is given)", usage="delete [N...]")
def cmd_delete(session, rest: str):
    """Unregister probes/breakpoints by number: the int3 is removed from guest memory (the
original byte put back), the slot freed; a kretprobe's calls in flight return normally."""
    nums = session.split_args(rest)
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
    for up in session.probes.sorted():
        obj = up.obj
        if up.is_breakpoint:
            hits, missed, mode, details = up.hits, 0, "-", breakpoint_details(up)
        elif up.kind in ("u", "ur"):
            hits, missed, mode = obj.hits, obj.nmissed, obj.mode
            details = f"{up.event} {up.location}" + (f" maxactive={obj.maxactive}" if up.kind == "ur" else "")
            if obj.faults:
                details += f" faults={obj.faults}"
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
                why = why_not_optimized(session.machine, up)
                if why:
                    details += f" (not optimized: {why})"
            if up.event:
                details = f"{up.event} {details.strip()}".strip()
            if up.spec.get("filter"):
                details += f" if {up.spec['filter']}"
            if up.spec.get("where"):
                details += f" ({os.path.basename(up.spec['where'])})"
        # The engine may have disabled it on its own (set handler-error disable).
        enabled = up.enabled and not getattr(obj, "disabled", False)
        enb = "y" if enabled else "n"
        what = (obj.program.describe(up.addr) + f" [{obj.program.name}]" if up.kind in ("u", "ur") and obj.program
                else session.machine.symbols.format(up.addr))
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
         usage="instances [--all | --table | --svg FILE]", example="instances\ninstances --table\ninstances --svg table.svg")
def cmd_instances(session, rest: str):
    """For every task with return-probe calls in flight: its bucket of the 64-bucket
kretprobe_inst_table and each instance, newest first: probe, function, the real return
address, the stack slot that now holds the trampoline. --all also lists each kretprobe's
free/used pool. --table draws the table itself: every non-empty bucket as the chain it
is (head first, tasks sharing a bucket interleaved), the empty buckets as ranges, and
each kretprobe's pool."""
    if rest.split()[:1] == ["--svg"]:
        from ... import figures

        rest, svg = figures.take_svg_option(session, rest, "instances --svg FILE")
        if rest.strip():
            raise CommandError(f"unexpected '{rest.strip()}' (usage: instances --svg FILE)")
        figures.save_svg(session, figures.instances_svg(session), svg, "kretprobe_inst_table")
        return {"svg": svg}
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
    user_lines, user_data = render_user_instances(session)
    if not rows and not user_lines:
        out.print("No return-probe instances in flight.")
    for line in user_lines:
        out.print(line)
    data.extend(user_data)
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

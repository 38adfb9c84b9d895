"""bpftrace-style maps fed by probes, and ftrace's kprobe_profile.

    @opens[comm] = count() on opens                 per-task count of the event `opens`
    @fd = hist(retval) on r_do_sys_open_0           power-of-2 histogram of the return value
    @flags[comm, filename] = lhist(flags, 0, 65536, 16384) on 1
    maps                                            print them (also printed when the guest halts)
    maps clear [@NAME]
    kprobe_profile                                  EVENT  HITS  MISSES, as the debugfs file

A map line names the probe by its event or number; its hits update the map after the
probe's filter (`if ...`) has let them through, the same hits that print trace lines.
Fields: the probe's fetch-arg names, comm, pid, cpu, and retval on a return probe.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...numbers import NumberError, is_decimal, parse_int
from ...tracing.maps import MAP_KINDS, BpfMap, MapError, MapStore
from ..registry import CommandError, command

#: Fields every probe has (the task at the hit), and what return probes add.
BUILTIN_FIELDS = {"comm": "str", "pid": "int", "cpu": "int"}
RETURN_FIELDS = {"retval": "int"}

_LINE = re.compile(r"""
    (?P<name>@[A-Za-z_0-9]*)\s*
    (?:\[(?P<keys>[^\]]*)\])?\s*
    =\s*(?P<func>[A-Za-z_]\w*)\s*
    \((?P<args>[^)]*)\)\s*
    (?:on\s+(?P<probe>\S+))?\s*$
""", re.VERBOSE)


@dataclass
class Aggregation:
    """One `@name[keys] = func(args) on PROBE` line."""

    text: str
    probe: int
    name: str
    func: str
    keys: tuple[str, ...]
    value: str | None          # the field fed to sum/hist/... (None for count)
    params: tuple = ()         # lhist (min, max, step)
    skipped: int = 0           # hits whose value could not be fetched (a faulting read)
    #: The map last updated (a fresh machine makes new ones): found once, not per hit.
    bpf_map: BpfMap | None = field(default=None, repr=False, compare=False)

    def apply(self, session, ev) -> None:
        values = ev.values
        key = tuple([values[k] if k in values else _field(session, ev, k) for k in self.keys])
        name = self.value
        value = (values[name] if name in values else _field(session, ev, name)) if name else None
        if None in key or (name and not isinstance(value, int)):
            self.skipped += 1
            return
        bpf_map = self.bpf_map
        try:
            if bpf_map is None or session.maps.maps.get(self.name) is not bpf_map:
                bpf_map = self.bpf_map = session.maps.declare(self.name, self.func, self.params)
            bpf_map.update(key or None, value)
        except MapError:
            # The map was taken over by another kind (a handler file's count() on our hist):
            # the hit is not lost silently, it is counted here.
            self.skipped += 1


def _field(session, ev, name: str):
    if name in ev.values:
        return ev.values[name]
    if name == "comm":
        return ev.comm
    if name == "pid":
        return ev.pid
    if name == "cpu":
        return ev.cpu
    if name == "retval":
        rax = session.machine.reg("rax")
        return rax - (1 << 64) if rax >> 63 else rax
    return None


def probe_fields(up) -> dict[str, str] | None:
    """Field name -> 'int'/'str' a map may use on this probe; None: any name (handler files)."""
    fields = dict(BUILTIN_FIELDS)
    if up.kind == "r":
        fields.update(RETURN_FIELDS)
        if not up.spec.get("line") and not up.spec.get("request"):
            fields["ret"] = "int"  # the `kretprobe` command's ret=
    fields.update(up.spec.get("fields", {}))
    if up.spec.get("request") is not None:
        return None
    return fields


def _find_probe(session, text: str):
    if text.lstrip("#").isdigit():
        return session.probes.lookup(text)
    for up in session.probes.values():
        if up.event == text:
            return up
    events = ", ".join(sorted(up.event for up in session.probes.values() if up.event)) or "none"
    raise CommandError(f"no probe event '{text}' (events: {events})")


def _int_arg(text: str, what: str) -> int:
    try:
        return parse_int(text)
    except NumberError:
        raise CommandError(f"lhist() {what} must be an integer, not '{text.strip()}'") from None


def parse_aggregation(session, line: str) -> Aggregation:
    m = _LINE.fullmatch(line.strip())
    if m is None:
        if "=" not in line:
            raise CommandError("expected @NAME[KEY, ...] = FUNC(ARGS) on EVENT (e.g. @opens[comm] = count() on opens)")
        if "[" in line.split("=")[0] and "]" not in line.split("=")[0]:
            raise CommandError("unbalanced '[': expected @NAME[KEY, ...]")
        if "(" not in line.split("=", 1)[1] or ")" not in line.split("=", 1)[1]:
            raise CommandError("expected FUNC(ARGS) after '=': count(), sum(F), min(F), max(F), avg(F), "
                               "stats(F), hist(F) or lhist(F, MIN, MAX, STEP)")
        raise CommandError("expected @NAME[KEY, ...] = FUNC(ARGS) on EVENT")
    if m.group("probe") is None:
        raise CommandError("missing 'on EVENT': name the probe (event or number) whose hits feed the map")
    try:
        name = MapStore.check_name(m.group("name"))
    except MapError as exc:
        raise CommandError(str(exc)) from None
    func = m.group("func")
    if func not in MAP_KINDS:
        raise CommandError(f"unknown function '{func}()': one of {', '.join(f + '()' for f in MAP_KINDS)}")
    up = _find_probe(session, m.group("probe"))
    if up.is_breakpoint:
        raise CommandError(f"{up.number} is a breakpoint; maps are fed by probes")
    fields = probe_fields(up)

    def field(text: str, role: str, want_int: bool) -> str:
        text = text.strip()
        if not re.fullmatch(r"[A-Za-z_]\w*", text):
            raise CommandError(f"{role} '{text}' is not a field name")
        if fields is not None:
            kind = fields.get(text)
            if kind is None:
                have = ", ".join(sorted(fields))
                hint = " (retval is only for return probes)" if text == "retval" else ""
                raise CommandError(f"probe {up.number} ({up.event}) has no field '{text}'{hint}; fields: {have}")
            if want_int and kind != "int":
                raise CommandError(f"{func}() needs a number, and '{text}' is a string")
        return text

    keys_text = m.group("keys")
    keys: tuple[str, ...] = ()
    if keys_text is not None:
        if not keys_text.strip():
            raise CommandError("empty key: write @NAME[KEY] or @NAME")
        keys = tuple(field(k, "key", False) for k in keys_text.split(","))
    args = [a for a in m.group("args").split(",")] if m.group("args").strip() else []
    want = {"count": 0, "lhist": 4}.get(func, 1)
    if len(args) != want:
        shape = {"count": "count()", "lhist": "lhist(FIELD, MIN, MAX, STEP)"}.get(func, f"{func}(FIELD)")
        raise CommandError(f"{func}() takes {want} argument(s): {shape}")
    value = field(args[0], "value", True) if args else None
    params: tuple = ()
    if func == "lhist":
        try:
            params = MapStore.check_lhist(*(_int_arg(a, w) for a, w in zip(args[1:], ("min", "max", "step"))))
        except MapError as exc:
            raise CommandError(str(exc)) from None
    try:
        session.maps.declare(name, func, params)
    except MapError as exc:
        raise CommandError(str(exc)) from None
    text = f"{name}{'[' + ', '.join(keys) + ']' if keys else ''} = {func}({', '.join(a.strip() for a in args)}) on {up.event or up.number}"
    return Aggregation(text, up.number, name, func, keys, value, params)


@command("aggregate", group="trace", aliases=("agg",), args=("text",), repeatable=False,
         summary="feed a bpftrace-style map from a probe: @NAME[KEYS] = FUNC(FIELD) on EVENT",
         usage="@NAME[KEY, ...] = FUNC(ARGS) on EVENT|N\n       aggregate [delete N]",
         example="@opens[comm] = count() on opens\n@fd = hist(retval) on r_do_sys_open_0\n"
                 "@flags = lhist(flags, 0, 65536, 16384) on opens\naggregate")
def cmd_aggregate(session, rest: str):
    """bpftrace's map assignments, attached to a probe. FUNC: count(), sum(F), min(F),
max(F), avg(F), stats(F), hist(F) (power-of-2 buckets), lhist(F, MIN, MAX, STEP) (linear).
KEYs and F are fields of the probe: its fetch-arg names (p:opens do_sys_open name=...),
comm, pid, cpu, and retval on return probes (signed). Hits rejected by the probe's
filter are not counted. `maps` prints the maps; they are also printed when the guest
halts. Without arguments: the attached lines; `aggregate delete N` removes line N."""
    rest = rest.strip()
    out = session.out
    if rest.startswith("@"):
        agg = parse_aggregation(session, rest)
        session.aggregations.setdefault(agg.probe, []).append(agg)
        out.print(f"Map line {_all(session).index(agg) + 1}: {agg.text} (probe {agg.probe})")
        return {"line": agg.text, "probe": agg.probe, "map": agg.name}
    args = session.split_args(rest)
    if not args:
        lines = _all(session)
        if not lines:
            out.print("No map lines (e.g. @opens[comm] = count() on opens).")
        for i, agg in enumerate(lines, 1):
            skipped = f"  ({agg.skipped} hit(s) skipped: field not fetched)" if agg.skipped else ""
            out.print(f"{i}: {agg.text} (probe {agg.probe}){skipped}")
        return [{"line": a.text, "probe": a.probe, "skipped": a.skipped} for a in lines]
    if args[0] == "delete" and len(args) == 2 and is_decimal(args[1]) and len(args[1]) < 10:
        lines = _all(session)
        n = int(args[1])
        if not 1 <= n <= len(lines):
            raise CommandError(f"no map line {n} (there are {len(lines)})")
        agg = lines[n - 1]
        session.aggregations[agg.probe].remove(agg)
        out.print(f"Deleted map line {n}: {agg.text}")
        return None
    raise CommandError("usage: @NAME[KEY, ...] = FUNC(ARGS) on EVENT, or aggregate [delete N]")


def _all(session) -> list[Aggregation]:
    return [a for n in sorted(session.aggregations) for a in session.aggregations[n]]


@command("maps", group="trace", args=("text",), repeatable=False,
         summary="print the bpftrace-style maps, or clear them", usage="maps [@NAME...] | maps clear [@NAME]",
         example="maps\nmaps @opens\nmaps clear")
def cmd_maps(session, rest: str):
    """Print maps as bpftrace does: counts sorted by value (ties by key), histograms with
power-of-2 ([2, 4), [4, 8) ... [1K, 2K)) or linear buckets and @ bars. They are printed
by themselves when the guest halts. `maps clear` empties every map (or one)."""
    args = session.split_args(rest)
    if args and args[0] == "clear":
        if len(args) > 2:
            raise CommandError("usage: maps clear [@NAME]")
        try:
            n = session.maps.clear(args[1] if len(args) == 2 else None)
        except MapError as exc:
            raise CommandError(str(exc)) from None
        session.out.print(f"Cleared {n} map(s)")
        return None
    names = []
    for a in args:
        try:
            name = MapStore.check_name(a)
        except MapError as exc:
            raise CommandError(str(exc)) from None
        if name not in session.maps.maps:
            have = ", ".join(session.maps.names()) or "none"
            raise CommandError(f"no map {name} (maps: {have})")
        names.append(name)
    if not session.maps:
        session.out.print("No map has entries yet.")
        return []
    shown = []
    for name in names or session.maps.names():
        bmap = session.maps.maps[name]
        if bmap.keys_count:
            session.out.print(bmap.text())
            shown.append(bmap.as_json())
    return shown


@command("profile", group="probes", aliases=("kprobe_profile",), repeatable=False,
         summary="hits and misses per probe event, as ftrace's kprobe_profile", usage="kprobe_profile",
         example="kprobe_profile")
def cmd_kprobe_profile(session, rest: str):
    """ftrace's /sys/kernel/debug/tracing/kprobe_profile: one line per probe event,
`  EVENT(44 wide) HITS(15) MISSES(15)`. HITS is ftrace's nhit: a kprobe's hits, and for
a return probe the returns its handler saw (kretprobe_dispatcher counts nhit, not the
entry), the same number `probes` and the JSON show; MISSES adds a return probe's
maxactive misses to the kprobe's own (trace_kprobe_missed), so a too-small maxactive
shows here and hits + misses count the calls."""
    if rest.strip():
        raise CommandError("usage: kprobe_profile")
    data = []
    for up in session.probes.sorted():
        if up.is_breakpoint:
            continue
        obj = up.obj
        kp = getattr(obj, "kp", obj)
        hits = obj.hits  # a return probe's: returns handled (trace_kprobe.c's nhit)
        missed = kp.nmissed + (obj.nmissed if obj is not kp else 0)
        name = up.event or f"probe{up.number}"
        session.out.print(f"  {name:<44} {hits:>15} {missed:>15}")
        data.append({"event": name, "probe": up.number, "hits": hits, "misses": missed})
    return data

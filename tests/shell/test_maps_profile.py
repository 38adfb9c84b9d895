"""Maps fed by kprobe_events probes, `maps`, and ftrace's kprobe_profile, end to end."""
from __future__ import annotations

import json
import re

MAP_LINES = [
    "p:opens do_sys_open name=+0(%si):string flags=%dx:x32",
    "r20 do_sys_open",
    "p:etc do_sys_open name=+0(%si):string if name ~ \"/etc/*\"",
    "@opens[comm] = count() on opens",
    "@names[comm, name] = count() on 1",
    "@fds = hist(retval) on r_do_sys_open_0",
    "@flags = lhist(flags, 0, 65536, 16384) on opens",
    "@total = sum(flags) on opens",
    "@etc = count() on etc",
    "@low = min(retval) on 2",
]


def _run(run_shell, tmp_path, *extra, json_mode=False):
    args = ["--batch"] + (["--json"] if json_mode else [])
    for line in MAP_LINES + list(extra):
        args += ["-ex", line]
    r = run_shell(*args, tmp_home=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_maps_at_halt_agree_with_the_guest(tmp_path, run_shell, minikernel_source):
    out = _run(run_shell, tmp_path, "run")
    maps = out[out.index("[guest halted"):]
    # what each task opened, by its own console lines (hello = execer after exec, opens
    # /etc/hostname without printing it: main.c's hello_main)
    printed = re.findall(r"\[(\w+)\] open (\S+)(?: O_DIRECT)? -> fd (-?\d+)", out)
    per_task: dict[str, int] = {}
    for who, _, _ in printed:
        per_task[who] = per_task.get(who, 0) + 1
    per_task["hello"] = 1
    counts = {k: int(v) for k, v in re.findall(r"^@opens\[(\w+)\]: (\d+)$", maps, re.M)}
    assert counts == per_task
    # bpftrace order: ascending by value, ties by key
    rows = re.findall(r"^@opens\[(\w+)\]: (\d+)$", maps, re.M)
    assert rows == sorted(rows, key=lambda kv: (int(kv[1]), kv[0]))
    for who, path, _ in printed:
        assert re.search(rf"^@names\[{who}, {re.escape(path)}\]: 1$", maps, re.M)
    # the filter `if name ~ "/etc/*"` holds back the other hits from the map too
    etc = sum(1 for _, p, _ in printed if p.startswith("/etc/")) + 1  # + hello's /etc/hostname
    assert f"@etc: {etc}\n" in maps
    assert "@low: -2\n" in maps                              # /nonexistent: -ENOENT, signed
    fds = [int(fd) for _, _, fd in printed] + [3]            # hello's open returned an fd too
    assert re.search(rf"^\[2, 4\) +{fds.count(3)} \|@{{52}}\|$", maps, re.M)
    assert re.search(r"^\(\.\.\., 0\) +1 \|@+ +\|$", maps, re.M)
    # flags: O_RDONLY|O_LARGEFILE = 0x8000 for all but /dev/sda's 0xc002 (fs.h, main.c)
    assert re.search(r"^\[32768, 49152\) +11 \|@{52}\|$", maps, re.M)
    assert re.search(r"^\[49152, 65536\) +1 \|@{4}", maps, re.M)
    assert f"@total: {11 * 0x8000 + 0xc002}\n" in maps
    # `aggregate` lists the lines, `maps` prints the same maps again
    assert maps.count("@fds:") == 1


def test_maps_command_json_and_clear(tmp_path, run_shell):
    out = _run(run_shell, tmp_path, "run 150000", "maps @opens", "aggregate", "maps clear", "maps", json_mode=True)
    objs = [json.loads(line) for line in out.splitlines()]
    shown = next(o for o in objs if o.get("command") == "maps @opens")
    assert [m["name"] for m in shown["data"]] == ["@opens"]
    entries = shown["data"][0]["entries"]
    assert all(set(e) == {"key", "value"} and len(e["key"]) == 1 for e in entries)
    listed = next(o for o in objs if o.get("command") == "aggregate")["data"]
    assert [a["line"] for a in listed][:2] == ["@opens[comm] = count() on opens", "@names[comm, name] = count() on opens"]
    assert next(o for o in objs if o.get("command") == "maps")["output"] == "No map has entries yet."


def test_map_maps_are_printed_as_json_objects_at_halt(tmp_path, run_shell):
    out = _run(run_shell, tmp_path, "run", json_mode=True)
    objs = [json.loads(line) for line in out.splitlines()]
    halt = next(i for i, o in enumerate(objs) if o["type"] == "stop")
    maps = [o for o in objs[halt:] if o["type"] == "map"]
    assert [m["name"] for m in maps] == sorted(m["name"] for m in maps)
    assert {m["name"]: m["kind"] for m in maps}["@fds"] == "hist"
    lh = next(m for m in maps if m["name"] == "@flags")
    assert (lh["min"], lh["max"], lh["step"]) == (0, 65536, 16384)
    assert lh["entries"][0]["buckets"][-1] == {"min": 49152, "max": 65535, "count": 1}


def test_bad_map_lines_are_refused_and_change_nothing(tmp_path, run_shell):
    bad = {
        "@a[zz] = count() on opens": "probe 1 (opens) has no field 'zz'; fields: comm, cpu, flags, name, pid",
        "@a = count()": "missing 'on EVENT'",
        "@a = frob(flags) on opens": "unknown function 'frob()'",
        "@a = hist(name) on opens": "hist() needs a number, and 'name' is a string",
        "@a = hist(retval) on opens": "retval is only for return probes",
        "@a = lhist(flags, 0, 10) on opens": "lhist() takes 4 argument(s)",
        "@a = lhist(flags, 10, 0, 1) on opens": "lhist() max must be above min",
        "@a = count() on nosuch": "no probe event 'nosuch' (events: etc, opens, r_do_sys_open_0)",
        "@a[ = count() on opens": "unbalanced '['",
        "@1a = count() on opens": "bad map name '@1a'",
        "@opens = hist(flags) on opens": "map @opens holds count() values; it cannot take hist()",
    }
    args = []
    for line in MAP_LINES:
        args += ["-ex", line]
    args += ["-ex", "aggregate"]
    for line in bad:
        args += [f"--eval-command={line}", "-ex", "aggregate"]
    r = run_shell(*args, stdin="", tmp_home=str(tmp_path))
    assert "Traceback" not in r.stdout + r.stderr
    for line, words in bad.items():
        err = [x for x in r.stderr.splitlines() if x.startswith(f"-ex '{line}': ")]
        assert len(err) == 1 and words in err[0], (line, r.stderr)
    # the listings follow one another on stdout (the errors between them are on stderr)
    listings = re.findall(r"^(1: @.*\n(?:(?!1: @)\d+: @.*\n)*)", r.stdout, re.M)
    assert len(listings) == len(bad) + 1 and len(set(listings)) == 1


def test_kprobe_profile_and_a_too_small_maxactive(tmp_path, run_shell):
    r = run_shell("--batch", "-ex", "r1 path_lookup_recursive", "-ex", "p:opens do_sys_open",
                  "-ex", "r2:ropen do_sys_open", "-ex", "run",
                  "-ex", "probes", "-ex", "kprobe_profile", tmp_home=str(tmp_path))
    assert r.returncode == 0, r.stdout
    out = r.stdout
    # the guest says how deep its recursion went (main.c: opener1 walks a 5-component path)
    depth = int(re.search(r"path_lookup_recursive\(\"[^\"]+\"\) -> (\d+) components", out).group(1))
    assert depth == 5
    # one instance: the outermost call takes it, every nested call misses
    assert re.search(rf"^1 +r .*path_lookup_recursive.* +y +1 +{depth - 1}  ", out, re.M)
    assert f"warning: probe 1 (path_lookup_recursive) missed {depth - 1} hit(s) (maxactive=1 was too small" in out
    rows = re.findall(r"^  (\S+) +(\d+) +(\d+)$", out, re.M)
    assert [name for name, _, _ in rows] == ["r_path_lookup_recursive_0", "opens", "ropen"]
    # ftrace's shape: two spaces, the event left-aligned in 44, hits and misses in 15
    line = next(x for x in out.splitlines() if x.startswith("  r_path_lookup_recursive_0"))
    # hits: the returns handled, as ftrace's nhit (kretprobe_dispatcher) and `probes` count them
    assert line == f"  {'r_path_lookup_recursive_0':<44} {1:>15} {depth - 1:>15}"
    hits = {name: (int(h), int(m)) for name, h, m in rows}
    opens = hits["opens"][0]
    assert opens == 12
    ropen_hits, ropen_missed = (int(g) for g in re.search(r"^3 +r .*do_sys_open.* +y +(\d+) +(\d+)  ", out, re.M).groups())
    assert hits["ropen"] == (ropen_hits, ropen_missed)   # one meaning of hits in both listings
    assert ropen_missed > 0                          # five tasks inside do_sys_open at once, maxactive=2
    assert ropen_hits + ropen_missed == opens        # every call either returned through the probe or missed
    assert f"warning: probe 3 (do_sys_open) missed {ropen_missed} hit(s)" in out


def test_help_shows_usage_and_examples(tmp_path, run_shell):
    r = run_shell("--batch", "-ex", "help handlers", "-ex", "help maps", "-ex", "help aggregate",
                  "-ex", "help kprobe_profile", tmp_home=str(tmp_path))
    assert r.returncode == 0
    blocks = r.stdout.split("usage: ")[1:]
    assert [b.split()[0] for b in blocks] == ["handlers", "maps", "@NAME[KEY,", "kprobe_profile"]
    assert all("\nexample:\n  (kprobe) " in b for b in blocks)


def test_a_map_line_on_a_handler_file_probe_uses_its_emitted_fields(tmp_path, run_shell):
    f = tmp_path / "h.py"
    f.write_text("from kprobe_shell.handlers import kprobe, emit, read_string\n\n"
                 "@kprobe('do_sys_open')\ndef on_open(p, regs):\n    emit(name=read_string(regs.si), flags=regs.dx)\n")
    r = run_shell("--batch", "-ex", f"handlers {f}", "-ex", "@by_name[name] = count() on on_open",
                  "-ex", "@fl = sum(flags) on on_open", "-ex", "run", tmp_home=str(tmp_path))
    assert r.returncode == 0, r.stdout
    assert "@by_name[/etc/hostname]: 3\n" in r.stdout and "@by_name[/nonexistent]: 1\n" in r.stdout
    assert f"@fl: {11 * 0x8000 + 0xc002}\n" in r.stdout


def test_missed_warning_comes_again_after_reset_and_maps_start_empty(tmp_path, run_shell):
    # the `kretprobe` command keeps its probe's spec over reset (kprobe_events lines are re-parsed)
    r = run_shell("--batch", "-ex", "kretprobe path_lookup_recursive maxactive=1", "-ex", "@n = count() on 1", "-ex", "run",
                  "-ex", "reset", "-ex", "maps", "-ex", "run", "-ex", "kprobe_profile", tmp_home=str(tmp_path))
    assert r.returncode == 0, r.stdout
    # counters start from zero on the fresh machine, so the same misses are news again
    assert r.stdout.count("warning: probe 1 (path_lookup_recursive) missed 4 hit(s)") == 2
    after_reset = r.stdout[r.stdout.index("Fresh machine"):]
    assert "No map has entries yet." in after_reset
    assert after_reset.count("@n: 1\n") == 1  # one traced return per run: the outermost call
    # one return handled (the outermost call), four misses: hits + misses = the five calls
    assert re.search(r"^  r_path_lookup_recursive_0 +1 +4$", after_reset, re.M)


def test_maps_agree_with_the_trace_of_the_same_hits(kernel_path):
    """Every map line's map, as printed, equals one made from the traced events of its
    probe by the maps' reference implementation (tests/guests/map_reference.py)."""
    import io

    from kprobe_shell.shell.output import Output
    from kprobe_shell.shell.session import Session
    from map_reference import ReferenceMap

    s = Session(kernel_path, output=Output(io.StringIO(), color=False))
    lines = {
        "@opens[comm] = count() on opens": ("count", ("comm",), None, ()),
        "@names[comm, name] = count() on opens": ("count", ("comm", "name"), None, ()),
        "@flags[pid] = lhist(flags, 0, 65536, 16384) on opens": ("lhist", ("pid",), "flags", (0, 65536, 16384)),
        "@total[cpu] = sum(flags) on opens": ("sum", ("cpu",), "flags", ()),
        "@lo = min(flags) on opens": ("min", (), "flags", ()),
        "@hi[comm] = max(flags) on opens": ("max", ("comm",), "flags", ()),
        "@av[comm] = avg(flags) on opens": ("avg", ("comm",), "flags", ()),
        "@st = stats(flags) on opens": ("stats", (), "flags", ()),
        "@h[comm] = hist(flags) on opens": ("hist", ("comm",), "flags", ()),
    }
    s.execute("p:opens do_sys_open name=+0(%si):string flags=%dx:x32")
    for line in lines:
        s.execute(line)
    s.execute("run")
    events = [ev for ev in s.trace.events if ev.event == "opens"]
    assert len(events) == 12
    fields = lambda ev: {"comm": ev.comm, "pid": ev.pid, "cpu": ev.cpu, **ev.values}  # noqa: E731
    for line, (kind, keys, value, params) in lines.items():
        name = line.split("[")[0].split(" ")[0]
        reference = ReferenceMap(name, kind, params)
        for ev in events:
            f = fields(ev)
            reference.update(tuple(f[k] for k in keys) or None, f[value] if value else None)
        assert s.maps.maps[name].text() == reference.text(), line


def test_maps_clear_mid_run_empties_one_map(tmp_path, run_shell):
    full = _run(run_shell, tmp_path, "run")
    whole = dict(re.findall(r"^@opens\[(\w+)\]: (\d+)$", full[full.index("[guest halted"):], re.M))
    out = _run(run_shell, tmp_path, "run 150000", "maps @opens", "maps clear @opens", "maps @opens", "maps @total",
               "run")
    assert "Cleared 1 map(s)" in out
    before, after = out.split("Cleared 1 map(s)")
    first = dict(re.findall(r"^@opens\[(\w+)\]: (\d+)$", before, re.M))
    assert first and "@total: " in after.split("[guest halted")[0]   # the other maps kept theirs
    halted = after[after.index("[guest halted"):]
    second = dict(re.findall(r"^@opens\[(\w+)\]: (\d+)$", halted, re.M))
    # the map line goes on feeding the same map: both halves add up to a whole run's counts
    assert {k: int(first.get(k, 0)) + int(second.get(k, 0)) for k in whole} == {k: int(v) for k, v in whole.items()}


def test_handler_file_maps_kind_conflicts_64_bit_sums_and_a_full_map(tmp_path, run_shell):
    f = tmp_path / "h.py"
    f.write_text("from kprobe_shell.handlers import kprobe, count, hist, sum_, comm\n\n"
                 "calls = 0\n\n"
                 "@kprobe('do_sys_open')\ndef on_open(p, regs):\n    global calls\n    calls += 1\n"
                 "    count('c', key=(comm(), calls))\n    sum_('big', (1 << 64) - 1)\n"
                 "    if calls == 12:\n        hist('c', 1)\n"
                 "    if calls == 1:\n        for i in range(4100):\n            count('many', key=i)\n")
    r = run_shell("--batch", "-ex", f"handlers {f}", "-ex", "run", "-ex", "maps", tmp_home=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert "map @c holds count() values; it cannot take hist()" in r.stdout + r.stderr
    assert r.stdout.count(f"@big: {12 * ((1 << 64) - 1)}\n") == 2          # exact past 64 bits
    assert len(re.findall(r"^@c\[\w+, \d+\]: 1$", r.stdout, re.M)) == 2 * 12
    assert len(re.findall(r"^@many\[\d+\]: 1$", r.stdout, re.M)) == 2 * 4096   # bpftrace's max_map_keys
    assert r.stdout.count("(4 update(s) of @many dropped: the map was full, at 4096 keys, bpftrace's max_map_keys)") == 2

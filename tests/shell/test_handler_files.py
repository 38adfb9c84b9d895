"""Python handler files (`handlers FILE.py`) on the bundled kernel, through the real shell."""
from __future__ import annotations

import json
import re
import textwrap

import pytest

DECORATED = textwrap.dedent('''
    from kprobe_shell.handlers import (kprobe, kretprobe, jprobe, comm, pid, current, read_string,
                                       read_struct, read_u32, emit, count, hist, retval, symbol)

    @kprobe("do_sys_open")
    def on_open(p, regs):
        emit(filename=read_string(regs.si), flags=regs.dx & 0xffffffff)
        count("opens", key=comm())

    @kprobe("do_sys_open+0x4")
    def after_mov(p, regs):
        # do_sys_open+0x1 is `mov rdi, rsi`: here rdi already holds the filename
        emit(same=read_string(regs.di) == read_string(regs.si))

    def stash(ri, regs):
        ri.data["name"] = read_string(regs.si)

    @kretprobe("do_sys_open", maxactive=20, entry_handler=stash)
    def on_return(ri, regs):
        emit(name=ri.data["name"], ret=retval(), site=symbol(ri.ret_addr))
        hist("fd", retval())

    @jprobe("ip_queue_xmit")
    def on_xmit(skb, ipfragok):
        s = read_struct(skb, "struct sk_buff")
        by_offset = read_struct(skb, fields={"len": (32, "u32")})
        sk = s.deref("sk")
        emit(len=s.len, len2=by_offset.len, len3=read_u32(skb + 32), sport=sk.sport, ipfragok=ipfragok,
             task=current().comm, pid=pid())
''')

EXPLICIT = textwrap.dedent('''
    from kprobe_shell.handlers import Kprobe, Kretprobe, emit, pid, stats, retval

    def on_fork(p, regs):
        emit(clone_flags=regs.di, pid=pid())

    def on_ret(ri, regs):
        stats("ret", retval())

    def init(machine):
        machine.register_kprobe(Kprobe("do_fork", pre_handler=on_fork))
        machine.register_kretprobe(Kretprobe("do_sys_open", on_ret, 2))
''')

RAISES = textwrap.dedent('''
    from kprobe_shell.handlers import kprobe, jprobe, kretprobe

    @kprobe("do_sys_open")
    def boom(p, regs):
        raise ValueError("handler bug")

    @jprobe("ip_queue_xmit")
    def jboom(skb, ipfragok):
        return {}["missing"]

    @kretprobe("path_lookup_recursive")
    def rboom(ri, regs):
        return 1 // 0
''')

THIRD_IS_BAD = textwrap.dedent('''
    from kprobe_shell.handlers import kprobe, kretprobe

    @kprobe("do_fork")
    def a(p, regs):
        pass

    @kretprobe("do_sys_open")
    def b(ri, regs):
        pass

    @kprobe("no_such_function")
    def c(p, regs):
        pass
''')


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _json(stdout):
    return [json.loads(line) for line in stdout.splitlines()]


def test_every_decorator_kind_on_the_bundled_kernel(tmp_path, run_shell, trace_of):
    f = _write(tmp_path, "decorated.py", DECORATED)
    r = run_shell("--batch", "-ex", f"handlers {f}", "-ex", "run", "-ex", "probes", tmp_home=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert re.search(r"^1 +k .*do_sys_open\+0x0/.* on_open \(decorated\.py:5\)$", out, re.M)
    assert re.search(r"^2 +k .*do_sys_open\+0x4/.* after_mov \(decorated\.py:10\)$", out, re.M)
    assert re.search(r"^3 +r .*do_sys_open\+0x0/.* on_return maxactive=20 ", out, re.M)
    assert re.search(r"^4 +j .*ip_queue_xmit\+0x0/.* on_xmit ", out, re.M)
    # the kprobe: every filename the guest printed that it opened
    opens = trace_of(out, "on_open")
    printed = re.findall(r"\[(\w+)\] open (\S+)(?: O_DIRECT)? -> fd (-?\d+)", out)
    assert {(h["comm"], h["args"]["filename"].strip('"')) for h in opens} >= {(w, p) for w, p, _ in printed}
    assert all(h["args"]["same"] == "True" for h in trace_of(out, "after_mov"))
    assert len(trace_of(out, "after_mov")) == len(opens) == 12
    # the return probe: entry_handler's stash and the return value agree with the console
    rets = trace_of(out, "on_return")
    seen = {(h["comm"], h["args"]["name"].strip('"'), int(h["args"]["ret"])) for h in rets}
    assert {(w, p, int(fd)) for w, p, fd in printed} <= seen
    assert ("opener2", "/nonexistent", -2) in seen
    assert all(h["where"].endswith(" <- do_sys_open") and h["args"]["site"].startswith('"sys_open+') for h in rets)
    # the jprobe: the probed arguments, a DWARF struct, the same field by offset, and the guest's own words
    xmits = trace_of(out, "on_xmit")
    assert len(xmits) == 10
    payloads = [int(n) for n in re.findall(r"ip_queue_xmit to 10\.0\.0\.2 \((\d+) byte payload\)", out)]
    assert [int(h["args"]["len"]) for h in xmits[:8]] == payloads
    for h in xmits:
        assert h["args"]["len"] == h["args"]["len2"] == h["args"]["len3"]
        assert h["args"]["ipfragok"] == "0" and h["args"]["task"] == '"netd"' and h["comm"] == "netd"
    assert [int(h["args"]["sport"]) for h in xmits] == [1024] * 8 + [1025, 1026]  # main.c's sockets
    # maps are printed when the guest halts, bpftrace style
    halt = out.index("[guest halted")
    maps = out[halt:]
    assert "@opens[opener2]: 4" in maps and "@fd:" in maps
    assert re.search(r"^\(\.\.\., 0\) +1 \|@+ +\|$", maps, re.M)     # the -2
    assert re.search(r"^\[2, 4\) +11 \|@{52}\|$", maps, re.M)         # the eleven fd 3


def test_explicit_register_calls_in_init(tmp_path, run_shell, trace_of):
    f = _write(tmp_path, "explicit.py", EXPLICIT)
    r = run_shell("--batch", "-ex", f"handlers {f}", "-ex", "run", "-ex", "probes", "-ex", "kprobe_profile",
                  tmp_home=str(tmp_path))
    assert r.returncode == 0, r.stdout
    forks = trace_of(r.stdout, "on_fork")
    assert len(forks) == len(re.findall(r"init: (?:kernel_thread|sys_clone) \w+ -> pid \d+", r.stdout)) + 1
    assert re.search(r"^2 +r .*do_sys_open.* on_ret maxactive=2 ", r.stdout, re.M)
    # maxactive=2 with five tasks inside do_sys_open at once: misses, shown three ways
    missed = int(re.search(r"^2 +r +\S+ +\S+ +y +\d+ +(\d+)", r.stdout, re.M).group(1))
    assert missed > 0
    assert f"warning: probe 2 (do_sys_open) missed {missed} hit(s)" in r.stdout
    # kprobe_profile's hits are the returns handled (ftrace's nhit), so hits + misses = calls
    assert re.search(rf"^  on_ret +{12 - missed} +{missed}$", r.stdout, re.M)
    stats = re.search(r"^@ret: count (\d+), average (-?\d+), total (-?\d+)$", r.stdout, re.M)
    assert int(stats.group(1)) == 12 - missed


def test_reload_replaces_and_reset_recreates(tmp_path, run_shell, trace_of):
    f = _write(tmp_path, "explicit.py", EXPLICIT)
    r = run_shell("--batch", "-ex", f"handlers {f}", "-ex", f"handlers {f}", "-ex", "probes", "-ex", "run",
                  "-ex", "reset", "-ex", "probes", "-ex", "run", "-ex", "handlers", tmp_home=str(tmp_path))
    assert r.returncode == 0, r.stdout
    assert f"Loaded {f}: 2 probe(s), replacing 1, 2" in r.stdout
    listings = re.findall(r"^Num Type.*\n((?:\d.*\n)+)", r.stdout, re.M)
    assert [[row.split()[0] for row in block.splitlines()] for block in listings] == [["3", "4"], ["3", "4"]]
    runs = r.stdout.split("Fresh machine")
    # one trace line per fork in each run: the old probes are gone, not doubled
    assert len(trace_of(runs[0], "on_fork")) == len(trace_of(runs[1], "on_fork")) == 6
    assert f"{f}: 3 k on_fork (do_fork), 4 r on_ret (do_sys_open)" in r.stdout


def test_raising_handlers_are_faults_and_the_guest_goes_on(tmp_path, run_shell):
    f = _write(tmp_path, "raises.py", RAISES)
    plain = run_shell("--batch", "--json", "-ex", "run", tmp_home=str(tmp_path))
    probed = run_shell("--batch", "--json", "-ex", f"handlers {f}", "-ex", "run", "-ex", "probes",
                       tmp_home=str(tmp_path))
    assert probed.returncode == 0
    assert "Traceback" not in probed.stdout + probed.stderr
    objs = _json(probed.stdout)
    console = [o["text"] for o in objs if o["type"] == "console"]
    assert console == [o["text"] for o in _json(plain.stdout) if o["type"] == "console"]
    errors = [o for o in objs if o["type"] == "handler-error"]
    where = {(o["probe"], o["where"], o["error"]) for o in errors}
    assert where == {(1, f"{f}:6", "ValueError: handler bug"), (2, f"{f}:10", "KeyError: 'missing'"),
                     (3, f"{f}:14", "ZeroDivisionError: integer division or modulo by zero")}
    rows = next(o for o in objs if o.get("command") == "probes")["data"]
    for row in rows:
        faults = int(re.search(r"faults=(\d+)", row["details"]).group(1))
        assert faults == sum(1 for o in errors if o["probe"] == row["number"]) > 0
    assert rows[0]["hits"] == 12 and "faults=12" in rows[0]["details"]


def test_text_warning_names_file_and_line(tmp_path, run_shell):
    f = _write(tmp_path, "raises.py", RAISES)
    r = run_shell("--batch", "-ex", f"handlers {f}", "-ex", "run 100000", tmp_home=str(tmp_path))
    assert f"warning: probe 1 (boom): pre_handler raised ValueError: handler bug ({f}:6)" in r.stdout


@pytest.mark.parametrize("source, message", [
    ("from kprobe_shell.handlers import kprobe\n\n@kprobe('do_fork')\ndef f(p, regs)\n    pass\n",
     "{f}:4: SyntaxError: expected ':'"),
    ("from kprobe_shell.handlers import kprobe\n\n@kprobe('do_fork')\ndef f(p, regs):\n    pass\n\nx = 1 / 0\n",
     "{f}:7: ZeroDivisionError: division by zero"),
    (THIRD_IS_BAD, "{f}:12: no symbol 'no_such_function' in the image"),
    ("from kprobe_shell.handlers import kprobe\n\n@kprobe\ndef f(p, regs):\n    pass\n",
     "{f}:3: HandlerUsageError: a probe target is a symbol"),
    ("from kprobe_shell.handlers import kretprobe\n\n@kretprobe('do_sys_open+4')\ndef f(ri, regs):\n    pass\n",
     "{f}:3: a return probe goes on a function's entry, not do_sys_open+4"),
    ("from kprobe_shell.handlers import jprobe\n\n@jprobe('do_fork')\ndef f(*a):\n    pass\n\n"
     "@jprobe('do_fork')\ndef g(*a):\n    pass\n", "{f}:7: 0x"),
    ("x = 1\n", "{f}: no probes"),
    ("from kprobe_shell.handlers import kprobe\n\n@kprobe('do_sys_open+2')\ndef f(p, regs):\n    pass\n",
     "{f}:3: do_sys_open+0x2 is not an instruction boundary"),
])
def test_load_errors_are_one_line_and_register_nothing(tmp_path, run_shell, source, message):
    f = _write(tmp_path, "bad.py", source)
    r = run_shell("-ex", "kprobe do_fork", "-ex", "probes", "-ex", f"handlers {f}", "-ex", "probes",
                  "-ex", "handlers", stdin="", tmp_home=str(tmp_path))
    assert "Traceback" not in r.stdout + r.stderr
    err = [line for line in r.stderr.splitlines() if line.startswith(f"-ex 'handlers {f}'")]
    assert len(err) == 1 and message.format(f=f) in err[0], r.stderr
    blocks = re.findall(r"^Num Type.*\n((?:\d.*\n)+)", r.stdout, re.M)
    assert len(blocks) == 2 and blocks[0] == blocks[1]
    assert "No handler files loaded." in r.stdout


def test_a_failed_reload_keeps_the_old_probes(tmp_path):
    # The shell cannot rewrite a file between commands, so this one drives a Session
    # in-process: load, run, break the file on disk, reload: same rows, same counters.
    import io

    from kprobe_shell.shell.output import Output
    from kprobe_shell.shell.registry import CommandError
    from kprobe_shell.shell.session import Session

    f = _write(tmp_path, "explicit.py", EXPLICIT)
    buf = io.StringIO()
    s = Session(output=Output(buf))
    s.execute(f"handlers {f}")
    s.execute("run 200000")

    def listing():
        buf.truncate(0)
        buf.seek(0)
        s.execute("probes")
        return buf.getvalue()

    before = listing()
    (tmp_path / "explicit.py").write_text(EXPLICIT.replace('Kprobe("do_fork"', 'Kprobe("do_forkk"'))
    with pytest.raises(CommandError, match=rf"{re.escape(f)}:11: no symbol 'do_forkk'"):
        s.execute(f"handlers {f}")
    assert listing() == before
    assert re.search(r"^1 +k .* +y +[1-9]\d* ", before, re.M)


def test_same_file_twice_is_byte_identical(tmp_path, run_shell):
    f = _write(tmp_path, "decorated.py", DECORATED)
    a = run_shell("--batch", "-ex", f"handlers {f}", "-ex", "run", "-ex", "maps", tmp_home=str(tmp_path))
    b = run_shell("--batch", "-ex", f"handlers {f}", "-ex", "run", "-ex", "maps", tmp_home=str(tmp_path))
    assert a.returncode == 0 and a.stdout == b.stdout
    assert a.stdout.count("@opens[") == 2 * 6  # at the halt and from `maps`


def test_sys_exit_is_a_fault_not_the_end_of_the_shell(tmp_path, run_shell):
    at_import = _write(tmp_path, "exit_now.py", "import sys\nsys.exit(2)\n")
    in_handler = _write(tmp_path, "exit_later.py", textwrap.dedent('''
        import sys
        from kprobe_shell.handlers import kprobe

        @kprobe("do_sys_open")
        def f(p, regs):
            sys.exit(3)
    '''))
    r = run_shell("-ex", f"handlers {at_import}", "-ex", f"handlers {in_handler}", "-ex", "set handler-error disable",
                  "-ex", "run", "-ex", "probes", stdin="", tmp_home=str(tmp_path))
    assert r.returncode == 0 and "Traceback" not in r.stdout + r.stderr
    assert f"{at_import}:2: SystemExit: 2" in r.stderr
    assert f"pre_handler raised HandlerUsageError: sys.exit(3) in a probe handler ({in_handler}:7)" in r.stdout
    # `set handler-error disable`: the probe is disarmed after its first fault, and shows so
    assert re.search(r"^1 +k +\S+ +do_sys_open\S+ +n +1 +0 .* f faults=1 \(exit_later\.py:5\)$", r.stdout, re.M)
    assert "minikernel: all tasks reaped, halting" in r.stdout

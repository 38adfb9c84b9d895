"""Malformed probe definitions at the shell: each one precise error, and nothing changes.

One shell run (--json, not --batch, so every command gets its say) defines two good
probes, then alternates `probes` with one bad definition; every `probes` listing must be
the first one, byte for byte, and each bad line must fail with its own message (and, for
parse errors, a caret under the offending character, as ftrace's error_log).
"""
from __future__ import annotations

import json

import pytest

# (definition, words the error must contain, text the caret must point at or None)
MALFORMED = [
    ("p do_sys_open a=%zz", "Invalid register name '%zz'", "%zz"),
    ("p do_sys_open a=%di:u7", "Unknown type 'u7'", "u7"),
    ("p do_sys_open $retval", "$retval is only available on return probes", "$retval"),
    ("p do_sys_open a=+0(%di", "missing ')'", None),
    ("p do_sys_open+2 a=%di", "do_sys_open+0x2 is not an instruction boundary (nearest: do_sys_open+0x1, do_sys_open+0x4)", None),
    ("p no_such_func", "no symbol 'no_such_func'", None),
    ("r99999 do_sys_open", "Maxactive is too big (max 4096)", "99999"),
    ("p:opens do_sys_open", "event 'kprobes/opens' already exists (probe 1)", None),
    ("p do_sys_open a=%di if a ==", "Unexpected end of filter", None),
    ("p:1bad do_sys_open", "Event name must follow the same rules as C identifiers", "1bad"),
    ("p do_sys_open a=%di:string", "'string' type needs a memory argument", "string"),
    ("r do_sys_open+4", "Return probe must be on a function entry", "+4"),
    ("p do_sys_open $arg0", "arguments count from 1", "0"),
    ("p do_sys_open+0x4 $arg1", "$argN is only available on a function entry probe", "$arg1"),
    ("p do_sys_open $stackX", "Invalid $-variable '$stackX'", "$stackX"),
    ("p do_sys_open nosuchparam", "'do_sys_open' has no parameter 'nosuchparam' (parameters: dfd, filename, flags, mode)",
     "nosuchparam"),
    ("p do_sys_open a=@", "Missing address or symbol after '@'", None),
    ("p do_sys_open c=$comm:u32", "$comm can only be fetched as a string", "u32"),
    ("p do_sys_open a=%di if zz == 1", "Unknown field 'zz' in filter", "zz"),
    ("p do_sys_open a=%di if a ~ 3", "Glob match '~' needs a string field", "~"),
    ("p do_sys_open a=%di if (a == 1", "Unbalanced parentheses in filter", "(a"),
    ("-:no_such_event", "no event 'no_such_event'", None),
    ("p 0x10", "outside the image's text", None),
    ("p kretprobe_trampoline", "kretprobe_trampoline cannot be probed", None),
    ("p jprobe_return", "jprobe_return cannot be probed", None),
    ("p machine_halt+1", "is hlt", None),
    ("r do_execve", "refusing a return probe on do_execve", None),
    ("p do_sys_open a=" + "+0(" * 15 + "%di" + ")" * 15, "nested too deeply (max 14)", None),
    ("p:grp/ do_sys_open", "Event name is not specified", None),
    ("p do_sys_open a=%di a=%si", "Argument name 'a' is already used", "a=%si"),
    ("p do_sys_open a=%di:b9@0/8", "Bitfield b9@0 does not fit in 8 bits", "b9@0/8"),
    ("p do_sys_open a=+0x(%di)", "Invalid dereference offset '0x'", "0x("),
    ("r5:ret2 do_sys_open $arg1", "$argN is not available on return probes", "$arg1"),
    ("p do_sys_open flags=%dx:x32 if flags > \"x\"", "Type mismatch in filter", None),
]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    import subprocess
    import sys

    home = tmp_path_factory.mktemp("home")
    args = [sys.executable, "-m", "kprobe_shell", "--json",
            "--eval-command=p:opens do_sys_open name=+0(%si):string flags=%dx:x32",
            "--eval-command=r do_sys_open", "--eval-command=run 100000", "--eval-command=probes"]
    for line, _, _ in MALFORMED:
        args += [f"--eval-command={line}", "--eval-command=probes"]
    r = subprocess.run(args, input="", capture_output=True, text=True, timeout=120,
                       env={"XDG_CONFIG_HOME": str(home), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if json.loads(line)["type"] == "result"]


def test_there_are_at_least_twenty():
    assert len(MALFORMED) >= 20
    assert len({line for line, _, _ in MALFORMED}) == len(MALFORMED)


def test_each_gives_its_error_and_the_probe_list_stays(results):
    first = next(r for r in results if r["command"] == "probes")
    assert first["data"][0]["hits"] > 0  # the run happened: counters are part of what must not change
    by_line = {r["command"]: r for r in results}
    listings = [r for r in results if r["command"] == "probes"]
    assert len(listings) == len(MALFORMED) + 1
    for listing in listings:
        assert listing["output"] == first["output"]
        assert listing["data"] == first["data"]
    for line, words, caret_at in MALFORMED:
        res = by_line[line]
        assert res["ok"] is False, line
        error = res["error"]
        assert words in error, (line, error)
        assert "\n" not in error or error.startswith("parse error:"), error  # one line, or ftrace's caret block
        if caret_at is not None:
            head, shown, caret = error.split("\n")
            assert shown == "  " + line
            assert caret.index("^") - 2 == line.index(caret_at), (line, error)

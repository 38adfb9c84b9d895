"""Bad commands: each gets a one-line error, registers nothing and changes nothing.

"Nothing changes" is checked on everything a user could see: the `probes` listing, the
int3 bytes planted in guest memory (and the rest of the text), the registers, the probe
numbering, the trace, the settings and the machine itself.
"""
from __future__ import annotations

import io

import pytest

from harness import session_state
from kprobe_shell import Kprobe, ProbeError
from kprobe_shell.shell.output import Output
from kprobe_shell.shell.registry import CommandError
from kprobe_shell.shell.session import Session

SETUP = [
    "kprobe leaf",           # 1
    "kretprobe walk",        # 2
    "jprobe leaf",           # 3 (Python entry: prints the arguments)
    "break walk",            # 4
    "p:e1 leaf x=%di",       # 5
    "run 300",
]


@pytest.fixture
def session(user_image):
    s = Session(user_image, output=Output(io.StringIO(), color=False))
    for line in SETUP:
        s.execute(line)
    return s


state = session_state


BAD = [
    # unknown commands, with a did-you-mean
    ("frobnicate", "unknown command 'frobnicate'; try 'help'"),
    ("kporbe leaf", "unknown command 'kporbe' (did you mean kprobe"),
    ("dissas walk", "(did you mean disas"),
    ("help frobnicate", "unknown command 'frobnicate'"),
    # wrong argument counts
    ("kprobe", "usage: kprobe LOCATION"),
    ("kprobe leaf walk", "one address expected, not 'leaf' followed by 'walk'"),
    ("jprobe", "usage: jprobe LOCATION [HANDLER]"),
    ("jprobe walk a b", "usage: jprobe LOCATION [HANDLER]"),
    ("kretprobe", "usage: kretprobe LOCATION"),
    ("break", "usage: break LOCATION"),
    ("tbreak", "usage: tbreak LOCATION"),
    ("until", "usage: until LOCATION"),
    ("load", "usage: load IMAGE"),
    ("load a b", "usage: load IMAGE"),
    ("source", "usage: source FILE"),
    ("set", "usage: set NAME VALUE"),
    ("set explain", "usage: set NAME VALUE"),
    ("trace save", "usage: trace save [--format text|dat|folded|chrome] [--v7] FILE"),
    ("trace save --format xml out.txt", "unknown trace format 'xml' (one of: text, dat, folded, chrome)"),
    ("reset now", "usage: reset [--no-probes]"),
    ("regs all", "no register named 'all' (registers: rax rbx"),
    ("tasks 1", "unexpected '1' (usage: tasks)"),
    ("probes 1", "unexpected '1' (usage: probes)"),
    ("instances 1", "unexpected '1' (usage: instances [--all | --table])"),
    ("finish now", "unexpected 'now' (usage: finish)"),
    ("nexti 2", "unexpected '2' (usage: nexti)"),
    ("commands", "'commands' needs its lines up to 'end'"),
    # wrong argument types
    ("run ten", "'ten' is not a number (the instruction count"),
    ("run 0", "the instruction budget must be positive"),
    ("run -5", "the instruction budget must be positive"),
    ("stepi 0", "the count must be positive"),
    ("stepi x", "'x' is not a number"),
    ("bt 0", "the frame count must be positive"),
    ("bt many", "'many' is not a number"),
    ("delete one", "'one' is not a probe number"),
    ("kretprobe walk maxactive=lots", "'lots' is not a number (the maxactive"),
    ("kretprobe walk maxactive=-1", "maxactive must be >= 0"),
    ("kretprobe walk maxactive=100000000000", "maxactive must be at most 4096"),
    ("kretprobe walk --bogus", "unexpected '--bogus' (maxactive=N or --unsafe)"),
    ("x/q leaf", "bad format '/q'"),
    ("x/0x leaf", "the count must be between 1 and 4096"),
    ("x/5000xb leaf", "the count must be between 1 and 4096"),
    ("print leaf+", "'leaf+' ends with an operator"),
    ("print $nosuch", "unknown register '$nosuch'"),
    ("set nosuch 1", "unknown setting 'nosuch'"),
    ("set kprobe-mode fast", "kprobe-mode is one of auto, single-step, boost, optimize"),
    ("set handler-error maybe", "handler-error is one of continue, disable, stop"),
    ("set handler-timeout soon", "handler-timeout takes a number of seconds"),
    ("set handler-timeout -1", "handler-timeout must be > 0"),
    ("set handler-timeout " + "1" * 5000, "handler-timeout must be at most 86400 seconds"),
    ("set handler-timeout nan", "handler-timeout takes a number of seconds"),
    ("set handler-timeout \u0663", "handler-timeout takes a number of seconds"),
    ("set timer-period 5", "at least 100 instructions"),
    ("set timer-period 99999999999999999999", "at most 1000000000000 instructions"),
    ("set history-size -5", "history-size must be >= 0"),
    ("until 0x10", "0x10 is not in the image's text: the guest never executes it"),
    ("until counter", "is not in the image's text: the guest never executes it"),
    ("set explain maybe", "set explain takes on or off"),
    ("show nosuch", "unknown setting 'nosuch'"),
    ("trace bogus", "usage: trace [show|pipe|stats|clear|save [--format FMT] [--v7] FILE]"),
    ("trace stats 0", "usage: trace stats"),
    ("trace save --v7 out.txt", "--v7 is trace.dat's version 7: for the dat format only"),
    ("set trace-buffer-size 0", "trace-buffer-size is 1 to 1048576 (KiB per CPU)"),
    ("set trace-buffer-size " + "9" * 5000, "trace-buffer-size is 1 to 1048576 (KiB per CPU)"),
    ("set trace-buffer-size big", "set trace-buffer-size takes a number"),
    ("set trace-overwrite maybe", "set trace-overwrite takes on or off"),
    ("trigger e1 bogus", "usage: trigger EVENT stacktrace|!stacktrace"),
    ("trigger nope stacktrace", "no event 'nope' (events: "),
    ("trigger e1 !stacktrace", "event 'e1' has no stacktrace trigger"),
    # symbols that do not exist, with the closest names
    ("kprobe laef", "no symbol 'laef' in the image (did you mean leaf"),
    ("kretprobe wlak", "no symbol 'wlak' in the image (did you mean walk"),
    ("break wakl", "no symbol 'wakl' in the image (did you mean walk"),
    ("until lef", "no symbol 'lef' in the image (did you mean leaf"),
    ("disas walker", "no symbol 'walker' in the image (did you mean walk"),
    ("x/4xb leav", "no symbol 'leav' in the image (did you mean leaf"),
    ("jprobe walk laef", "no symbol 'laef' in the image (did you mean leaf"),
    ("p leef", "no symbol 'leef' in the image (did you mean leaf"),
    # addresses outside the image
    ("kprobe 0x10", "0x10 is outside the image's text: only code can be probed"),
    ("kprobe 0xffffffffffff0000", "is outside the image's text"),
    ("kprobe leaf+0x1000000", "is outside the image's text"),
    ("kprobe counter", "is outside the image's text"),
    ("kprobe 0x40010000", "is in the engine's own instruction slot page: it cannot be probed"),
    ("break 0x10", "0x10 is not in the image's text"),
    ("x/4gx 0x10", "cannot read 32 bytes at 0x10: not mapped"),
    ("disas 0x10", "not mapped"),
    ("p 0x10", "0x10 is outside the image's text"),
    ("jprobe walk counter", "this image has no jprobe_return/jprobe_saved_rsp: use a Python handler"),
    # offsets into the middle of an instruction, with the nearest boundaries
    ("kprobe leaf+2", "leaf+0x2 is not an instruction boundary (nearest: leaf+0x"),
    ("p walk+2", "walk+0x2 is not an instruction boundary (nearest: walk+0x"),
    # entry-only probes with an offset
    ("kretprobe walk+4", "a return probe goes on a function's entry: no offset"),
    ("jprobe walk+4", "a jprobe goes on a function's entry (offset 0), not walk+0x4"),
    ("r walk+4", "entry"),
    # probing the same thing twice where that is not allowed
    ("jprobe leaf", "already has a jprobe: at most one jprobe per address"),
    ("p:e1 walk", "event 'kprobes/e1' already exists (probe 5)"),
    # deleting (disabling, enabling) what does not exist
    ("delete 99", "no probe or breakpoint number 99 (existing: 1, 2, 3, 4, 5)"),
    ("delete 1 99", "no probe or breakpoint number 99"),
    ("disable 2 77", "no probe or breakpoint number 77"),
    ("enable 0", "no probe or breakpoint number 0"),
    ("-:nosuch", "no event 'nosuch' (see 'probes')"),
    ("-:", "Event name is not specified"),
    # kprobe_events syntax errors
    ("p leaf %zz", "Invalid register name '%zz'"),
    ("p leaf +0(%di", "Dereference brace is not closed"),
    ("r5000 walk", "Maxactive is too big (max 4096)"),
    ("p leaf x=%di if x ==", "Unexpected end of filter"),
    # perf probe's language and wildcards
    ("p walk:999", "has no instructions: see 'probe -L walk'"),
    ("p walk;zzz*", "no line of walk matches the pattern 'zzz*'"),
    ("r walk:1", "a return probe goes on a function's entry (FUNC%return)"),
    ("p walk nosuch->x", "Failed to find 'nosuch' in walk at this address"),
    ("p walk depth->x", "'->x' needs a pointer, not int"),
    ("p walk depth[1]", "[1] needs an array or a pointer, not int"),
    ("p nosuch.c:3", "no instructions for nosuch.c:3 in the line table"),
    ("probe -L nosuch", "no debug info for function 'nosuch'"),
    ("probe -Q walk", "unknown option '-Q' (-a, -L, -V, -x)"),
    ("kprobe zz*", "no function matches 'zz*'"),
    ("kretprobe zz?", "no function matches 'zz?'"),
    ("p 'zz*' $params", "no function matches 'zz*'"),
    # files that are not there
    ("load /nonexistent/image.elf", "/nonexistent/image.elf: no such file"),
    ("load /", "/: not a regular file"),
    ("source /nonexistent/script", "cannot read /nonexistent/script"),
    ("trace save /nonexistent/dir/out.txt", "cannot write /nonexistent/dir/out.txt"),
]


@pytest.mark.parametrize("line, message", BAD, ids=[b[0] for b in BAD])
def test_bad_command_is_one_line_and_changes_nothing(session, line, message):
    before = state(session)
    with pytest.raises(CommandError) as info:
        session.execute(line)
    text = str(info.value)
    assert message in text
    # One line, except the kprobe_events parser, which points at the character (2 more lines).
    assert len(text.splitlines()) == (3 if text.startswith("parse error") else 1), text
    assert state(session) == before


def test_the_session_still_works_after_every_bad_command(session):
    for line, _ in BAD:
        with pytest.raises(CommandError):
            session.execute(line)
    session.execute("continue")  # the breakpoint on walk
    session.execute("delete 4")
    session.execute("run")
    assert "user image done" in session.machine.console
    assert session.machine.kprobes.check_invariants() == []


def test_probing_one_address_twice_makes_an_aggregate(user_image):
    """As in the kernel, several kprobes may share an address (register_aggr_kprobe):
    both are listed, both are hit, and deleting one leaves the other armed."""
    out = io.StringIO()
    s = Session(user_image, output=Output(out, color=False))
    s.execute("kprobe leaf")
    s.execute("kprobe leaf")
    assert "Note: probe 1 also at 0x" in out.getvalue()
    m = s.machine
    addr = m.symbols["leaf"].address

    def armed(m) -> bool:  # an int3, or (auto mode) an optimized probe's jump
        return addr in m.kprobes.planted() or addr in m.kprobes.optimizer.active

    assert armed(m)
    assert len(m.kprobes.all_probes()) == 2
    s.execute("run")
    assert s.probes[1].obj.hits == s.probes[2].obj.hits > 0
    s.execute("reset")
    s.execute("delete 1")
    assert armed(s.machine)
    s.execute("run 2000")
    assert s.probes[2].obj.hits > 0
    s.execute("delete 2")
    assert not armed(s.machine)
    assert s.machine.read(addr, 5) == s.machine.image.symbol_bytes(s.machine.symbols["leaf"])[:5]


def test_the_same_kprobe_object_twice_is_refused(user_image):
    """register_kprobe of an already registered struct kprobe: -EINVAL."""
    s = Session(user_image, output=Output(io.StringIO(), color=False))
    kp = Kprobe("leaf")
    s.machine.register_kprobe(kp)
    before = s.machine.kprobes.planted()
    with pytest.raises(ProbeError, match="already registered"):
        s.machine.register_kprobe(kp)
    assert s.machine.kprobes.planted() == before
    assert s.machine.kprobes.all_probes() == [kp]


def test_two_breakpoints_on_one_address_stop_once(user_image):
    out = io.StringIO()
    s = Session(user_image, output=Output(out, color=False))
    s.execute("break leaf")
    s.execute("break leaf")
    assert "Note: breakpoint 1 also set at 0x" in out.getvalue()
    s.execute("run")
    assert "Breakpoint 1, leaf+0x0/" in out.getvalue()
    assert "Breakpoint 2," not in out.getvalue()
    assert s.probes[1].hits == 1


def test_delete_the_same_number_twice_deletes_it_once(session):
    session.execute("delete 1 1")
    assert 1 not in session.probes and 2 in session.probes
    assert session.machine.kprobes.check_invariants() == []


def test_finish_in_the_outermost_frame_is_refused(user_image):
    s = Session(user_image, output=Output(io.StringIO(), color=False))
    with pytest.raises(CommandError, match="no caller frame to finish to"):
        s.execute("finish")
    assert s.machine.retired == 0


def test_x_state_is_per_session(user_image):
    a = Session(user_image, output=Output(io.StringIO(), color=False))
    b = Session(user_image, output=Output(io.StringIO(), color=False))
    a.execute("x/2xg leaf")
    with pytest.raises(CommandError, match="usage: x/NFU ADDR"):
        b.execute("x")


def test_batch_mode_shows_no_traceback_for_any_bad_command(user_image, tmp_path, run_shell):
    script = tmp_path / "bad.kps"
    script.write_text("\n".join(line for line, _ in BAD if not line.startswith("load")) + "\n")
    r = run_shell(user_image, stdin=script.read_text(), tmp_home=str(tmp_path))
    assert "Traceback" not in r.stdout + r.stderr
    assert "internal error" not in r.stdout + r.stderr

"""The prompt's completer, driven with prompt_toolkit Documents on a real session."""
from __future__ import annotations

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from kprobe_shell.shell.completer import ShellCompleter, command_for_line
from kprobe_shell.shell.session import Session


@pytest.fixture
def session(user_image):
    return Session(user_image)


def complete(session, text: str, cursor: int | None = None) -> list:
    doc = Document(text, len(text) if cursor is None else cursor)
    return list(ShellCompleter(session).get_completions(doc, CompleteEvent(completion_requested=True)))


def texts(session, text: str) -> list[str]:
    return [c.text for c in complete(session, text)]


def test_first_word_completes_command_names_and_aliases(session):
    got = texts(session, "kpr")
    assert "kprobe" in got
    assert all(t.startswith("kpr") for t in got)
    assert texts(session, "disa") == ["disable", "disas", "disassemble"]
    assert texts(session, "nosuchcmd") == []
    everything = texts(session, "")
    for word in ("p", "r", "-:", "run", "si", "help", "break"):
        assert word in everything
    # the inserted text replaces the typed prefix
    c = next(c for c in complete(session, "kpr") if c.text == "kprobe")
    assert c.start_position == -3


def test_symbol_prefix_after_kprobe_shows_address(session):
    comps = complete(session, "kprobe wa")
    assert [c.text for c in comps] == ["walk"]
    walk = session.machine.symbols["walk"]
    assert f"0x{walk.address:x}" in comps[0].display_meta_text
    assert comps[0].start_position == -2
    # every function of the image is offered on an empty word, functions first
    got = texts(session, "break ")
    assert {"walk", "leaf", "_start"} <= set(got)
    assert got.index("walk") < got.index("counter")
    # an alias dispatches the same way
    assert texts(session, "b le") == ["leaf"]
    # sym+offset is not completed any further
    assert texts(session, "kprobe walk+4") == []


def test_probe_numbers_after_delete(session):
    assert texts(session, "delete ") == []
    session.execute("kprobe leaf")
    session.execute("kretprobe walk")
    session.execute("break _start")
    assert texts(session, "delete ") == ["1", "2", "3"]
    assert texts(session, "disable 2") == ["2"]
    metas = [c.display_meta_text for c in complete(session, "enable ")]
    assert "leaf" in metas[0] and "walk" in metas[1]
    session.execute("delete 2")
    assert texts(session, "d ") == ["1", "3"]


def test_settings_and_their_values_after_set(session):
    assert "kprobe-mode" in texts(session, "set ")
    assert texts(session, "set kp") == ["kprobe-mode", "kprobe-step"]
    assert texts(session, "set kprobe-step ") == ["out-of-line", "in-place"]
    assert texts(session, "set kprobe-mode ") == ["auto", "single-step", "boost", "optimize"]
    assert texts(session, "set kprobe-mode s") == ["single-step"]
    assert texts(session, "set handler-error d") == ["disable"]
    assert texts(session, "set explain ") == ["on", "off"]
    assert texts(session, "show h") == ["handler-error", "handler-timeout", "history-size"]


def test_fetch_args_after_p_symbol(session):
    got = texts(session, "p walk ")
    for arg in ("%di", "%si", "%dx", "%cx", "%r8", "%r9", "%ax", "%sp", "%ip",
                "$arg1", "$arg6", "$stack", "$stack0", "$comm", "+0("):
        assert arg in got, arg
    assert "$retval" not in got  # entry probe
    # the DWARF parameter of walk(int depth), with its type
    depth = next(c for c in complete(session, "p walk ") if c.text == "depth")
    assert "int" in depth.display_meta_text
    assert texts(session, "p:myev walk de") == ["depth"]
    assert texts(session, "p walk $st") == ["$stack", "$stack0"]


def test_fetch_arg_details(session):
    # return probes: $retval, and no $argN or parameter names (gone at return)
    got = texts(session, "r walk ")
    assert "$retval" in got and "$arg1" not in got and "depth" not in got
    assert texts(session, "r4 walk $re") == ["$retval"]
    # types after ':'
    assert texts(session, "p walk %di:") == ["u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64",
                                              "x8", "x16", "x32", "x64", "string", "symbol"]
    assert texts(session, "p walk name=+0(%si):st") == ["string"]
    # inside +OFFS( ... ) and after NAME=
    assert texts(session, "p walk v=+8(%s") == ["%si", "%sp"]
    assert "depth" not in texts(session, "p walk v=")
    assert "%di" in texts(session, "p walk v=")
    # the first word after p/r is the probed symbol
    assert texts(session, "p le") == ["leaf"]
    assert texts(session, "r wa") == ["walk"]
    # gdb's `p $reg` is print, and completes registers
    assert "$rsp" in texts(session, "p $rs")


def test_command_options_after_the_location(session):
    assert "--unsafe" not in texts(session, "kretprobe ")
    assert texts(session, "kretprobe walk ") == ["maxactive=", "--unsafe"]
    assert texts(session, "reset --") == ["--no-probes"]
    assert texts(session, "trace s") == ["show", "stats", "save"]


def test_symbols_follow_a_new_image(session, user_image, tmp_path):
    import guestbuild

    completer = ShellCompleter(session)
    doc = Document("kprobe wal", 10)
    assert [c.text for c in completer.get_completions(doc, CompleteEvent())] == ["walk"]
    src = tmp_path / "other.c"
    src.write_text("void waltz(void) {}\nvoid _start(void) { waltz(); for (;;) ; }\n")
    out = tmp_path / "other.elf"
    guestbuild.compile_guest(src, out, flags=("-O1", "-ffreestanding", "-nostdlib", "-static", "-no-pie",
                                              "-fcf-protection=none"))
    session.execute(f"load {out}")
    assert [c.text for c in completer.get_completions(doc, CompleteEvent())] == ["waltz"]


def test_help_files_and_multiword_aliases(session, tmp_path):
    assert "kretprobe" in texts(session, "help kret")
    (tmp_path / "probes.kps").write_text("kprobe leaf\n")
    got = texts(session, f"source {tmp_path}/pro")
    assert got == ["bes.kps"]  # the path completer inserts the rest of the name
    assert "info registers" in texts(session, "info r")
    assert set(texts(session, "i ")) >= {"i r", "i b"}
    assert texts(session, "-:") == []
    session.execute("p:opens walk")
    assert texts(session, "-:op") == ["-:opens"]


def test_completer_never_raises(session):
    for text in ("", " ", "p", "p ", "r", "-", "-:", "x/", "x/4gx ", "set ", "set nosuch ", "help help help ",
                 "\t", "p walk a=b=c:", "p walk +0(+8(%", "kprobe 0x", "'", '"', "commands ", "load /nonexistent/"):
        complete(session, text)


def test_command_for_line_follows_dispatch():
    assert command_for_line("si 3")[0].name == "stepi"
    assert command_for_line("x/4gx $rsp")[0].name == "x"
    assert command_for_line("p walk %di")[0].name == "probe-event"
    assert command_for_line("p $rip")[0].name == "print"
    assert command_for_line("r")[0].name == "run"
    assert command_for_line("info registers")[0].name == "regs"
    assert command_for_line("frobnicate") is None

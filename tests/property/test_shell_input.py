"""Property: whatever is typed, the shell answers with output or a CommandError, never
another Python exception (and so never a traceback); kprobe_events lines likewise."""
from __future__ import annotations

import io
import os

import pytest
from propsettings import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from kprobe_shell.shell.commands.misc import QuitRequest
from kprobe_shell.shell.output import Output
from kprobe_shell.shell.registry import REGISTRY, CommandError
from kprobe_shell.shell.session import Session
import kprobe_shell.shell.commands  # noqa: F401 - fills the registry

WORDS = sorted(set(REGISTRY.names()) | {w.split()[0] for w in REGISTRY.names()})
ARGS = [
    "leaf", "walk", "_start", "counter", "leaf+1", "leaf+4", "walk+0x8", "leaf+0x100000", "nosuch",
    "0", "1", "2", "-1", "0x10", "0x401000", "0x40010000", "0xffffffffffffffff", "99999999999999999999",
    "$rip", "$rsp", "$rsp+8", "$nope", "*0x401000", "%di", "+0(%si):string", "maxactive=2", "maxactive=x",
    "--unsafe", "--all", "--no-probes", "on", "off", "auto", "boost", "single-step", "stop", "disable",
    "continue", "0.01", "timer-period", "kprobe-mode", "handler-error", "handler-timeout", "explain",
    "show", "clear", "save", "x", "/4gx", "/s", "/3i", "/zz", '"', "'", "\\", "#", "+", "-", "if", "==",
]
ARG = st.one_of(st.sampled_from(ARGS), st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12))
LINE = st.builds(lambda w, a: " ".join([w, *a]),
                 st.one_of(st.sampled_from(WORDS), st.text(max_size=8)), st.lists(ARG, max_size=4))
#: Commands that run the guest a long way or leave the process: kept, but bounded.
NOT_ALONE = {"quit", "q", "exit"}
#: Commands that wait for a person on another program (gdbserver waits for gdb to attach).
WAITS_FOR_A_DEBUGGER = {"gdbserver"}

EVENT_HEADS = ["p", "r", "r2", "r4097", "p:", "p:ev", "r:ev", "p:g/ev", "p:g/", "p:/ev", "-:ev", "-:", "p:1bad"]
FETCH = ["%di", "%si", "%ax", "%zz", "x=%di", "x=%di:u32", "s=+0(%si):string", "+8($stack)", "$stack2", "$stack",
         "$arg1", "$arg9", "$retval", "$retval:s64", "$comm", "@counter", "@counter+8", "@0x401000", "@nosuch",
         "+0(+8(%sp)):u64", "-4(%bp):s32", "y=%di:symbol", "z=%di:x99", "a=", "=%di", "(%di)", "+(%di)",
         "if", "if x == 1", "if x ~ \"a*\"", "if x > 2 && x < 9", "if !x", "if x ==", "if (x", "&&"]
EVENT = st.builds(
    lambda h, loc, args: " ".join([h, loc, *args]),
    st.one_of(st.sampled_from(EVENT_HEADS), st.from_regex(r"[pr-][0-9]{0,3}(:[A-Za-z_/]{0,6})?", fullmatch=True)),
    st.one_of(st.sampled_from(["leaf", "walk", "leaf+1", "leaf+4", "0x401000", "0x10", "nosuch", "walk+0x100",
                               "_start", ""]), st.text(max_size=6)),
    st.lists(st.one_of(st.sampled_from(FETCH), st.text(max_size=8)), max_size=4),
)


@pytest.fixture
def in_tmp(tmp_path):
    old = os.getcwd()
    os.chdir(tmp_path)  # `trace save FILE` writes relative to here
    try:
        yield tmp_path
    finally:
        os.chdir(old)


def _command_name(word: str) -> str | None:
    try:
        return REGISTRY.lookup(word).name
    except CommandError:
        return None


def execute_all(image, lines):
    s = Session(image, output=Output(io.StringIO(), color=False), timer_period=500)
    for line in lines:
        if line.split()[:1] and line.split()[0] in NOT_ALONE:
            continue
        if line.split()[:1] and _command_name(line.split()[0]) in WAITS_FOR_A_DEBUGGER:
            continue
        try:
            s.execute(line)
        except (CommandError, QuitRequest):
            pass
    return s


@settings(max_examples=examples(100))
@given(lines=st.lists(LINE, min_size=1, max_size=12))
def test_random_command_lines_only_raise_command_error(user_image, in_tmp, lines):
    s = execute_all(user_image, lines)
    assert s.machine.kprobes.check_invariants() == []


@settings(max_examples=examples(100))
@given(lines=st.lists(EVENT, min_size=1, max_size=8))
def test_random_kprobe_events_lines_only_raise_command_error(user_image, in_tmp, lines):
    s = execute_all(user_image, lines + ["run"])
    assert s.machine.kprobes.check_invariants() == []


@settings(max_examples=examples(80))
@given(text=st.one_of(LINE, EVENT), cursor=st.integers(0, 200))
def test_the_completer_and_the_highlighter_never_raise(user_image, text, cursor):
    """Completion runs on every keystroke (in a thread): an exception there would print
    a traceback under the prompt."""
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from kprobe_shell.shell.completer import ShellCompleter
    from kprobe_shell.shell.lexer import KprobeShellLexer, highlight_asm

    s = _completion_session(user_image)
    doc = Document(text, min(cursor, len(text)))
    list(ShellCompleter(s).get_completions(doc, CompleteEvent(completion_requested=True)))
    highlight_asm(text)
    # The lexer keeps every character (pygments normalizes newlines and trims them at the ends).
    lexed = "".join(v for _t, v in KprobeShellLexer.build().get_tokens(text))
    assert "".join(lexed.split()) == "".join(text.split())


_SESSIONS: dict = {}


def _completion_session(image):
    if image not in _SESSIONS:
        s = Session(image, output=Output(io.StringIO(), color=False))
        s.execute("kprobe leaf")
        s.execute("kretprobe walk")
        _SESSIONS[image] = s
    return _SESSIONS[image]

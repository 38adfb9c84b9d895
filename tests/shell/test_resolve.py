"""One line resolver for dispatch, completion and the highlighter; one settings table;
one place that names events.  Each test drives every consumer on the same line."""
from __future__ import annotations

import io
import os

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from pygments.token import Keyword, Name

from kprobe_shell.shell.completer import ShellCompleter, command_for_line
from kprobe_shell.shell.lexer import KprobeShellLexer
from kprobe_shell.shell.output import Output
from kprobe_shell.shell.resolve import resolve
from kprobe_shell.shell.session import Session
from kprobe_shell.shell.settings import SETTINGS, parse_setting
from kprobe_shell.tracing.probe_events import default_event_name, parse_probe_event

SHELL_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "kprobe_shell", "shell")


@pytest.fixture
def session(user_image):
    return Session(user_image, output=Output(io.StringIO(), color=False))


def texts(session, text: str) -> list[str]:
    doc = Document(text, len(text))
    return [c.text for c in ShellCompleter(session).get_completions(doc, CompleteEvent(completion_requested=True))]


def head_token(text: str):
    """The token type of the line's first word."""
    return next(t for t, v in KprobeShellLexer.build().get_tokens(text) if v.strip())


# ---------------------------------------------------------------------- `r 100`: gdb's run with a count
def test_r_with_a_count_is_run_for_every_consumer(session):
    assert resolve("r 100").command.name == "run"
    assert command_for_line("r 100")[0].name == "run"
    assert head_token("r 100") is Keyword
    assert texts(session, "r 100") == []  # a count, not a symbol
    session.execute("r 100")
    assert session.stop_event is not None and session.stop_event.reason.value == "budget"
    assert session.probes == {}


def test_r_with_a_symbol_is_a_return_probe_for_every_consumer(session):
    assert resolve("r walk").command.name == "probe-event"
    assert command_for_line("r walk")[0].name == "probe-event"
    assert head_token("r walk") is Keyword.Declaration
    assert texts(session, "r wa") == ["walk"]
    # While the first argument is still being typed, `r ` may become either.
    assert resolve("r ", typing=True).command.name == "probe-event"
    assert resolve("r ").command.name == "run"
    session.execute("r walk")
    assert [up.kind for up in session.probes.values()] == ["r"]


# ---------------------------------------------------------------------- `@map = ...`: bpftrace's map lines
def test_map_line_is_aggregate_for_every_consumer(session):
    line = "@calls[comm] = count() on 1"
    assert resolve(line).command.name == "aggregate"
    assert resolve(line).argument == line
    assert command_for_line(line)[0].name == "aggregate"
    assert head_token(line) is Name.Variable.Global
    assert texts(session, "@calls = co") == []
    session.execute("kprobe leaf")
    session.execute(line)
    session.execute("run")
    assert session.maps.maps["@calls"].entries


def test_unknown_and_ambiguous_lines_resolve_to_nothing_with_the_dispatch_error():
    for line in ("frobnicate", "in"):
        r = resolve(line)
        assert r.command is None and r.error
        assert command_for_line(line) is None
    assert "ambiguous" in resolve("in").error


def test_format_and_multiword_heads():
    r = resolve("x/4gx   $rsp")
    assert (r.command.name, r.form, r.head, r.args, r.argument) == ("x", "format", "x/4gx", "$rsp", "/4gx   $rsp")
    r = resolve("info registers rip")
    assert (r.command.name, r.head, r.args) == ("regs", "info registers", "rip")
    # where the cursor is: after `set kprobe-mode `, the second argument, of kind text
    r = resolve("set kprobe-mode ", typing=True)
    assert r.arguments_before("") == ["kprobe-mode"] and r.arg_kind(1) == "text"
    assert resolve("i r", typing=True).arguments_before("r") is None  # still the alias `i r`
    tokens = [(t, v) for t, v in KprobeShellLexer.build().get_tokens("info registers rip") if v.strip()]
    assert tokens[:2] == [(Keyword, "info"), (Keyword, "registers")]


# ---------------------------------------------------------------------- the settings table
def test_every_setting_is_shown_set_completed_and_helped_from_the_table(session):
    names = [s.name for s in SETTINGS]
    assert list(session.settings) == names
    session.execute("show")
    shown = session.out.stream.getvalue().splitlines()
    assert [line.split()[0] for line in shown] == names
    assert set(texts(session, "set ")) == set(names)
    from kprobe_shell.shell.registry import REGISTRY

    details = REGISTRY.lookup("set").details
    for s in SETTINGS:
        assert f"{s.name}: {s.help}" in details
        if s.choices:
            assert texts(session, f"set {s.name} ") == list(s.choices)
            for choice in s.choices:
                parse_setting(s.name, choice)  # every offered value is accepted


def test_set_and_the_config_file_check_values_alike(tmp_path):
    from kprobe_shell.shell.config import load_config
    from kprobe_shell.shell.registry import CommandError

    cfg = tmp_path / "config"
    cfg.write_text("kprobe-mode = sideways\nhandler-timeout = off\n")
    got = load_config(str(cfg))
    with pytest.raises(CommandError) as exc:
        parse_setting("kprobe-mode", "sideways")
    assert got["warnings"] == [f"{cfg}:1: {exc.value}; line ignored"]
    assert got["handler-timeout"] is None


# ---------------------------------------------------------------------- event names
@pytest.mark.parametrize("command, line", [
    ("kprobe walk+4", "p walk+4"),
    ("kretprobe walk", "r walk"),
    ("kprobe walk", "p walk"),
])
def test_default_event_names_agree(session, command, line):
    """`kprobe LOCATION` and the kprobe_events line for the same place get the same event."""
    session.execute(command)
    (up,) = session.probes.values()
    assert up.event == parse_probe_event(line).event


def test_address_probes_are_named_as_ftrace_names_them(session):
    addr = session.machine.symbols["leaf"].address
    session.execute(f"kprobe 0x{addr:x}")
    (up,) = session.probes.values()
    assert up.event == parse_probe_event(f"p 0x{addr:x}").event == default_event_name("p", None, 0, addr)
    assert up.event == f"p_0x{addr:016x}"


# ---------------------------------------------------------------------- the shell's layout

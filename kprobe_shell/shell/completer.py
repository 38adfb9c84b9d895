"""Tab completion that knows where in a command line the cursor is.

The first word completes to command names and aliases (read from the registry, so a new
command completes as soon as it is registered), plus the probe-definition words `p`, `r`
and `-:`.  The rest of the line is resolved as dispatch resolves it (resolve.py), and
later words complete by the argument kind the command declares: symbols of
the image for locations, probe numbers, file names, setting names and their values,
command names for `help`.  Probe definitions (`p SYM ARGS`, `r SYM ARGS`) complete their
fetch arguments: registers, $argN/$stack/$comm/$retval, memory dereferences, the DWARF
parameter names of the probed function, and the `:TYPE` suffixes.
"""
from __future__ import annotations

from typing import Iterable

from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document

from .registry import REGISTRY
from .resolve import resolve
from .settings import BY_NAME as SETTINGS_BY_NAME

#: Probe-definition words and what they mean (the first word of a kprobe_events line).
EVENT_WORDS = {
    "p": "define a probe (ftrace kprobe_events), or print $EXPR",
    "r": "define a return probe (ftrace kprobe_events); alone: run",
    "-:": "remove a probe event: -:EVENT",
}

FETCH_REGISTERS = ("%di", "%si", "%dx", "%cx", "%r8", "%r9", "%ax", "%sp", "%ip",
                   "%bx", "%bp", "%r10", "%r11", "%r12", "%r13", "%r14", "%r15")
ABI_REGISTER_META = {"%di": "arg1", "%si": "arg2", "%dx": "arg3", "%cx": "arg4", "%r8": "arg5", "%r9": "arg6",
                     "%ax": "return value", "%sp": "stack pointer", "%ip": "instruction pointer"}
FETCH_SPECIALS = ([(f"$arg{i}", f"argument {i} (entry only)") for i in range(1, 7)]
                  + [("$stack", "stack pointer"), ("$stack0", "word at the stack pointer"),
                     ("$comm", "current task's name")])
FETCH_TYPES = ([f"u{n}" for n in (8, 16, 32, 64)] + [f"s{n}" for n in (8, 16, 32, 64)]
               + [f"x{n}" for n in (8, 16, 32, 64)] + ["string", "symbol"])

#: Registers for gdb-style $REG in addresses (print $rsp, x/4gx $rsp+8).
GDB_REGISTERS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12",
                 "r13", "r14", "r15", "rip", "eflags")

#: Fixed words some commands take in their free-text arguments.
COMMAND_OPTIONS = {
    "kretprobe": ("maxactive=", "--unsafe"),
    "reset": ("--no-probes",),
    "trace": ("show", "pipe", "stats", "clear", "save"),
    "instances": ("--all", "--table"),
    "explain": ("on", "off"),
}


def command_for_line(line: str):
    """(Command, its argument) for a line, as Session.execute dispatches it; None when unknown."""
    resolved = resolve(line)
    if not resolved.line or resolved.command is None:
        return None
    return resolved.command, resolved.argument


class ShellCompleter(Completer):
    """Context-aware completion for the prompt; reads the live session on every call."""

    def __init__(self, session):
        self.session = session
        self._paths = PathCompleter(expanduser=True)
        self._symbol_cache: tuple[object, list] | None = None  # (symbol table, its symbols by name)

    # ------------------------------------------------------------------ entry point
    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        try:
            yield from self._complete(document, complete_event)
        except Exception:  # noqa: BLE001 - completion must never break the prompt
            return

    def _complete(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        stripped = text.lstrip()
        if not stripped or " " not in stripped:
            yield from self._command_names(stripped)
            return
        # The word under the cursor and the complete words before it.
        word = text.split(" ")[-1]
        # A multi-word alias still being typed ("info reg", "i r").
        yield from self._multiword_alias(stripped)
        resolved = resolve(text, typing=True)
        if resolved.command is None:
            return
        if resolved.form == "probe-event":
            if not resolved.head.startswith("-:"):
                yield from self._event_line(resolved.head, text[: len(text) - len(word)].split()[1:], word)
            return
        done = resolved.arguments_before(word)
        if done is None:
            return
        yield from self._by_kind(resolved.command, resolved.arg_kind(len(done)), done, word, complete_event)

    # ------------------------------------------------------------------ first word
    def _command_names(self, prefix: str) -> Iterable[Completion]:
        if prefix.startswith("-:"):
            # -:EVENT removes a probe event: complete the events that exist.
            for up in self.session.probes.sorted():
                text = f"-:{up.event}"
                if up.event and not up.is_breakpoint and text.startswith(prefix):
                    yield Completion(text, -len(prefix), display_meta=f"probe {up.number} at {up.location}")
            return
        entries: dict[str, str] = {name: cmd.summary for name, cmd in REGISTRY.commands.items()}
        for alias, target in REGISTRY.aliases.items():
            entries.setdefault(alias, f"= {target}")
        for word, meta in EVENT_WORDS.items():
            entries[word] = meta
        for name in sorted(entries, key=lambda n: (" " in n, n)):
            if name.startswith(prefix):
                yield Completion(name, -len(prefix), display_meta=entries[name][:60])

    def _multiword_alias(self, typed: str) -> Iterable[Completion]:
        if len(typed.split()) > 1 and typed.endswith(" "):
            return
        for alias, target in sorted(REGISTRY.aliases.items()):
            if " " in alias and alias.startswith(typed) and alias != typed:
                yield Completion(alias, -len(typed), display_meta=f"= {target}")

    # ------------------------------------------------------------------ arguments by kind
    def _by_kind(self, cmd, kind, done, word, complete_event) -> Iterable[Completion]:
        if kind in ("location", "symbol"):
            if word.startswith("$"):
                yield from self._registers(word)
            elif not word.startswith(("*", "0x")) and "+" not in word:
                yield from self._symbols(word, functions_first=kind == "location")
        elif kind == "probe":
            yield from self._probe_numbers(word)
        elif kind == "file":
            sub = Document(word, len(word))
            yield from self._paths.get_completions(sub, complete_event)
        elif kind == "setting":
            yield from self._settings(word)
        elif kind == "command":
            yield from self._command_names(word)
        elif kind == "task":
            yield from self._tasks(word)
        elif kind == "text" and done and cmd.arg_kind(len(done) - 1) == "setting" and len(done) == 1:
            yield from self._setting_values(done[0], word)
        if kind not in ("location", "symbol", "probe", "file", "setting", "command"):
            for opt in COMMAND_OPTIONS.get(cmd.name, ()):
                if opt.startswith(word) and opt not in done:
                    yield Completion(opt, -len(word))

    def _symbol_list(self) -> list:
        table = self.session.machine.symbols
        if self._symbol_cache is None or self._symbol_cache[0] is not table:  # a load/reset: new table
            by_name = getattr(table, "by_name", None)
            syms = list(by_name.values()) if by_name is not None else list(table)
            syms = [s for s in syms if s.name and not s.name.startswith("$")]
            syms.sort(key=lambda s: s.name)
            self._symbol_cache = (table, syms)
        return self._symbol_cache[1]

    def _symbols(self, prefix: str, functions_first: bool = True) -> Iterable[Completion]:
        matches = [s for s in self._symbol_list() if s.name.startswith(prefix)]
        if functions_first:
            matches.sort(key=lambda s: (s.type != "FUNC", s.name))
        for s in matches:
            yield Completion(s.name, -len(prefix), display_meta=f"0x{s.address:x} {s.type.lower()}")

    def _registers(self, word: str) -> Iterable[Completion]:
        for reg in GDB_REGISTERS:
            text = "$" + reg
            if text.startswith(word):
                yield Completion(text, -len(word))

    def _probe_numbers(self, prefix: str) -> Iterable[Completion]:
        for n, up in sorted(self.session.probes.items()):
            text = str(n)
            if text.startswith(prefix):
                hits = getattr(up.obj, "hits", up.hits)
                meta = f"{up.kind} {up.location}{'' if up.enabled else ' (disabled)'}, {hits} hit(s)"
                yield Completion(text, -len(prefix), display_meta=meta)

    def _settings(self, prefix: str) -> Iterable[Completion]:
        for name in sorted(self.session.settings):
            if name.startswith(prefix) and name in SETTINGS_BY_NAME:
                shown = SETTINGS_BY_NAME[name].shown(self.session.settings[name])
                yield Completion(name, -len(prefix), display_meta=f"now {shown}")

    def _setting_values(self, setting: str, prefix: str) -> Iterable[Completion]:
        row = SETTINGS_BY_NAME.get(setting)
        values = row.choices if row is not None and row.choices else None
        if values is None and setting in self.session.settings:
            values = (str(self.session.settings[setting]),)
        for v in values or ():
            if v.startswith(prefix):
                yield Completion(v, -len(prefix))

    def _tasks(self, prefix: str) -> Iterable[Completion]:
        m = self.session.machine
        if m.running:
            return
        for t in m.tasks.all():
            for text in (str(t.pid),):
                if text.startswith(prefix):
                    yield Completion(text, -len(prefix), display_meta=t.label)

    # ------------------------------------------------------------------ probe definitions
    def _event_line(self, first: str, args: list[str], word: str) -> Iterable[Completion]:
        """`p[:EV] SYM ARGS`, `r[N][:EV] SYM ARGS`: the symbol, then fetch arguments."""
        if not args:
            if word.startswith("$") and first == "p":
                yield from self._registers(word)
            elif "+" not in word and not word.startswith("0x"):
                yield from self._symbols(word)
            return
        is_return = first.startswith("r")
        symbol, _, offset = args[0].partition("+")
        at_entry = not is_return and offset.strip() in ("", "0", "0x0")
        yield from self._fetch_arg(word, symbol, is_return, at_entry)

    def _fetch_arg(self, word: str, symbol: str, is_return: bool, at_entry: bool) -> Iterable[Completion]:
        # NAME=FETCHARG: complete the part after '='.
        head = ""
        frag = word
        if "=" in frag:
            cut = frag.index("=") + 1
            head, frag = frag[:cut], frag[cut:]
        # FETCHARG:TYPE
        if ":" in frag:
            cut = frag.rindex(":") + 1
            tfrag = frag[cut:]
            for t in FETCH_TYPES:
                if t.startswith(tfrag):
                    yield Completion(t, -len(tfrag), display_meta="fetch type")
            return
        # +OFFS(FETCHARG): complete inside the innermost parenthesis.
        if "(" in frag:
            frag = frag[frag.rindex("(") + 1:]
            for reg in FETCH_REGISTERS:
                if reg.startswith(frag):
                    yield Completion(reg, -len(frag), display_meta=ABI_REGISTER_META.get(reg, "register"))
            return
        candidates: list[tuple[str, str]] = []
        if at_entry and not head:
            # perf probe's by-name arguments, from DWARF (entry only: they live in registers then)
            candidates += [(p.name, f"{p.type} ({p.location})") for p in self._parameters(symbol)]
        candidates += [(r, ABI_REGISTER_META.get(r, "register")) for r in FETCH_REGISTERS]
        candidates += [(t, m) for t, m in FETCH_SPECIALS if at_entry or not t.startswith("$arg")]
        if is_return:
            candidates.append(("$retval", "return value (return probes)"))
        candidates.append(("+0(", "memory at: +OFFS(FETCHARG)"))
        seen = set()
        for text, meta in candidates:
            if text in seen or not text.startswith(frag):
                continue
            seen.add(text)
            yield Completion(text, -len(frag), display_meta=meta)

    def _parameters(self, symbol: str) -> list:
        try:
            return list(self.session.machine.image.parameters.get(symbol) or [])
        except Exception:  # noqa: BLE001 - DWARF trouble means no names, not no completion
            return []

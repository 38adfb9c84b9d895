"""The interactive prompt: `(kprobe) `, completion, history, a toolbar, Ctrl-C that stops the guest.

Each command runs in a worker thread.  The main thread waits for it and is the one
that receives SIGINT: Ctrl-C there becomes `machine.request_stop()`, the run returns
with StopReason.INTERRUPTED and the guest stays inspectable.  (unicorn's emu_start
does not let a signal through while it runs, so the guest must not run on the main
thread.)  Ctrl-C at the prompt abandons the line; Ctrl-D on an empty line leaves.

An empty line repeats the previous command when the registry marks it repeatable (gdb's
habit, never in scripts).  `commands N` typed here reads its lines from `> ` prompts up
to `end`.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

from .config import PROMPT_STYLES, data_dir
from .history import trim_history_file
from .registry import CommandError
from .resolve import resolve
from .script import attach_commands, is_commands_block

PROMPT = "(kprobe) "
CONTINUATION_PROMPT = "> "



def run_repl(session, config) -> int:
    """Run the prompt until quit / Ctrl-D. Returns the exit status."""
    return Repl(session, config).loop()


# ---------------------------------------------------------------------- history
def open_history(session, config):
    """FileHistory in the XDG data dir, trimmed loosely to history-size; in memory when
    the directory is not writable (a read-only home must not stop the shell)."""
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    size = session.settings.get("history-size", config.get("history-size", 10000))
    try:
        size = int(size)
    except (TypeError, ValueError):
        size = 10000
    if size <= 0:
        return InMemoryHistory()
    try:
        directory = data_dir()
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, "history")
        with open(path, "a", encoding="utf-8"):
            pass
        trim_history_file(path, size)
        session.history_path = path
        return FileHistory(path)
    except OSError:
        return InMemoryHistory()


# ---------------------------------------------------------------------- output routing
class PromptAwareStream:
    """The session's output stream at the prompt.

    While a command runs (no prompt on screen) text goes straight to the terminal, in
    order.  Whenever a prompt is on screen, text goes through prompt_toolkit's
    patch_stdout proxy so it lands above the prompt instead of through it.
    """

    def __init__(self, direct, proxy, prompt_session):
        self.direct = direct
        self.proxy = proxy
        self.prompt_session = prompt_session

    def _target(self):
        app = getattr(self.prompt_session, "app", None)
        if self.proxy is not None and app is not None and app.is_running:
            return self.proxy
        return self.direct

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        for s in (self.direct, self.proxy):
            if s is not None:
                try:
                    s.flush()
                except Exception:  # noqa: BLE001 - a closed terminal must not kill the shell
                    pass

    def isatty(self) -> bool:
        return True


# ---------------------------------------------------------------------- the loop
class Repl:
    def __init__(self, session, config):
        from prompt_toolkit import PromptSession
        from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
        from prompt_toolkit.output import ColorDepth
        from prompt_toolkit.styles import Style

        from .completer import ShellCompleter
        from .keys import build_key_bindings
        from .toolbar import Toolbar

        self.session = session
        self.config = config
        session.interactive = True
        session.on_background_done = self._background_done
        style_name = config.get("prompt-style", "default")
        if style_name not in PROMPT_STYLES:
            style_name = "default"
        self.style_name = style_name
        self.toolbar = Toolbar(session)
        self.last_repeatable: str | None = None
        # Ctrl-C presses since the last line was entered: they belong to its command
        self.interrupts = 0
        self.command_running = False
        self.pending: list[str] = []  # the remaining lines of a multi-line paste
        lexer = None
        colour = session.out.color and style_name != "plain"
        if colour:
            from prompt_toolkit.lexers import PygmentsLexer

            from .lexer import KprobeShellLexer

            lexer = PygmentsLexer(type(KprobeShellLexer.build()))
        terminal = None
        if os.name == "posix" and sys.stdin.isatty():
            from .terminal_input import DrainingInput

            terminal = DrainingInput(sys.stdin)
        self.prompt_session = PromptSession(
            input=terminal,
            history=open_history(session, config),
            completer=ShellCompleter(session),
            complete_while_typing=True,
            complete_in_thread=True,
            auto_suggest=AutoSuggestFromHistory(),
            lexer=lexer,
            key_bindings=build_key_bindings(),
            bottom_toolbar=self.toolbar if style_name == "default" else None,
            style=Style.from_dict({**TOOLBAR_STYLE, **{role: ptk for role, (_sgr, ptk) in
                                                        config.get("colors", {}).items() if role in TOOLBAR_STYLE}}),
            color_depth=None if colour else ColorDepth.DEPTH_1_BIT,
            enable_suspend=True,
            reserve_space_for_menu=6,
        )

    # -------------------------------------------------------------- prompting
    def _prompt(self, message: str) -> str:
        """One line from the user. A paste of several lines arrives as one text: its lines
        are handed out one per call, each echoed after the prompt as if typed."""
        self.interrupts = 0
        if self.pending:
            line = self.pending.pop(0)
            self.session.out.print(f"{message}{line}")
            return line
        # While a background run goes on, redraw twice a second so the toolbar stays live.
        refresh = 0.5 if self.session.background_running else 0
        text = self.prompt_session.prompt([("class:prompt", message)], refresh_interval=refresh,
                                          handle_sigint=False)
        self._settle_terminal()
        if "\n" in text:
            lines = [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
            if not lines:
                return ""
            self.pending.extend(lines[1:])
            return lines[0]
        return text

    def _settle_terminal(self) -> None:
        """Keep every Ctrl-C typed after Enter for the command, even on terminals that never
        answer a cursor-position request.

        prompt_toolkit asks the terminal where the cursor is (CPR, ESC[6n) and, after Enter,
        waits up to a second for the answer with the terminal still raw; it gives up on CPR
        only after two seconds at one prompt, so on such a terminal every quickly typed
        line opened that window again.  A Ctrl-C typed in it is a byte, not SIGINT, and
        went to the next prompt while the command ran on.  A terminal that has not answered
        by now never will: stop asking.  A Ctrl-C already typed is what it would have been
        in cooked mode: an interrupt for the command about to run, with the keys typed
        before it flushed, as the tty driver flushes them on SIGINT."""
        from prompt_toolkit.input.typeahead import get_typeahead, store_typeahead
        from prompt_toolkit.keys import Keys
        from prompt_toolkit.renderer import CPR_Support

        app = self.prompt_session.app
        if app.renderer.cpr_support is CPR_Support.UNKNOWN and not app.renderer.waiting_for_cpr:
            app.renderer.cpr_support = CPR_Support.NOT_SUPPORTED
        keys = get_typeahead(app.input)
        presses = [i for i, key in enumerate(keys) if key.key in (Keys.ControlC, Keys.SIGINT)]
        if presses:
            self.interrupts += len(presses)
            keys = keys[presses[-1] + 1:]
        store_typeahead(app.input, keys)

    def _on_sigint(self, signum, frame) -> None:
        """SIGINT outside the prompt (the terminal is cooked then): counted for the command
        of the line just entered, and the guest asked to stop if that command runs."""
        self.interrupts += 1
        if self.command_running:
            self._stop_guest()

    def _stop_guest(self) -> None:
        try:
            self.session.machine.request_stop()
        except Exception:  # noqa: BLE001 - a machine being replaced; the next poll retries
            pass

    def loop(self) -> int:
        from prompt_toolkit.patch_stdout import patch_stdout

        out = self.session.out
        direct = out.stream
        self.toolbar.refresh()
        try:
            previous = signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread (tests driving Repl directly)
            previous = None
        with patch_stdout(raw=True):
            out.stream = PromptAwareStream(direct, sys.stdout, self.prompt_session)
            try:
                self._banner()
                return self._loop()
            finally:
                out.flush()
                out.stream = direct
                if previous is not None:
                    signal.signal(signal.SIGINT, previous)

    def _banner(self) -> None:
        s = self.session
        m = s.machine
        try:
            entry = f"entry {m.symbols.format(m.image.entry, with_size=False)} (0x{m.image.entry:x})"
        except Exception:  # noqa: BLE001
            entry = "entry ?"
        name = os.path.basename(s.image_path)
        s.out.print(f"kprobe-shell: {name}, {entry}, {len(m.symbols)} symbols. "
                    f"'help' lists the commands, Tab completes, Ctrl-D quits.", "header")

    def _loop(self) -> int:
        while True:
            try:
                line = self._prompt(PROMPT)
            except KeyboardInterrupt:
                self.pending.clear()
                if self.session.background_running:
                    self.session.out.print("[stopping the guest]", "dim")
                    self.session.stop_background()
                continue
            except EOFError:
                self.session.stop_background()
                return 0
            line = line.strip()
            if not line:
                if not self.last_repeatable:
                    continue
                line = self.last_repeatable
            else:
                self.last_repeatable = repeat_form(line)
            if line.startswith("#"):
                continue
            if is_commands_block(line):
                self._read_commands_block(line)
                continue
            try:
                if self.run_command(line):
                    self.session.stop_background()
                    return 0
            except KeyboardInterrupt:  # SIGINT with no handler of ours (not the main thread)
                self.pending.clear()
                continue

    # -------------------------------------------------------------- one command
    def run_command(self, line: str) -> bool:
        """Run one line in a worker thread; True when the user asked to quit."""
        from .registry import QuitRequest

        session = self.session
        result: dict = {}
        done = threading.Event()

        def work() -> None:
            try:
                session.execute_and_report(line)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                result["exc"] = exc
            finally:
                done.set()

        worker = threading.Thread(target=work, name="kprobe-shell-command", daemon=True)
        if self._run_and_wait(worker, done):
            self.pending.clear()  # Ctrl-C also drops the rest of a pasted block
        self.session.out.flush()
        exc = result.get("exc")
        quit_requested = False
        if isinstance(exc, QuitRequest):
            quit_requested = True
        elif isinstance(exc, CommandError):
            self.session.out.error(f"error: {exc}")
        elif exc is not None:
            msg = str(exc).splitlines()[0] if str(exc) else ""
            self.session.out.error(f"internal error: {type(exc).__name__}: {msg}")
        self.toolbar.refresh()
        self.session.out.flush()
        return quit_requested

    def _run_and_wait(self, worker: threading.Thread, done: threading.Event) -> int:
        """Start the command and wait for it; Ctrl-C meanwhile (or since its line was
        entered) stops the guest. Returns how many times Ctrl-C was pressed.

        While the command runs, SIGINT has a handler that asks the machine to stop rather
        than raising KeyboardInterrupt, so no Ctrl-C can leave the main thread while the
        worker still runs.  The request is repeated until the command ends: a run that
        began after the first request (breakpoint commands that continue, a script)
        stops too.  An Event, not Thread.join(): when Ctrl-C interrupts join() on Python
        3.11, the bpo-45274 clean-up in Thread._wait_for_tstate_lock marks the
        still-running worker as finished."""
        try:
            previous = signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread (tests driving Repl directly)
            previous = None
        self.command_running = True
        try:
            worker.start()
            while not done.wait(0.1 if self.interrupts else 0.5):
                if self.interrupts:
                    self._stop_guest()
        finally:
            self.command_running = False
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        return self.interrupts

    def _background_done(self) -> None:
        """Called on the background thread when a `continue &` ends: the guest is stopped,
        so the toolbar can read it; then ask the prompt to redraw."""
        self.toolbar.refresh()
        app = getattr(self.prompt_session, "app", None)
        if app is not None and app.is_running:
            app.invalidate()

    # -------------------------------------------------------------- commands N ... end
    def _read_commands_block(self, header: str) -> None:
        session = self.session
        args = header.split()[1:]
        try:
            if args:
                target = session.probes.lookup(args[0]).number
            elif session.probes:
                target = max(session.probes)
            else:
                raise CommandError("no probe or breakpoint to attach commands to")
        except CommandError as exc:
            session.out.error(f"error: {exc}")
            return
        session.out.print(f"Type commands for {target}, one per line ('silent' first hides its trace line).")
        session.out.print("End with a line saying just \"end\".")
        body: list[str] = []
        while True:
            try:
                text = self._prompt(CONTINUATION_PROMPT)
            except KeyboardInterrupt:
                session.out.print("(commands not changed)")
                return
            except EOFError:
                break
            text = text.strip()
            if text == "end":
                break
            if text:
                body.append(text)
        try:
            attach_commands(session, f"commands {target}", body)
        except CommandError as exc:
            session.out.error(f"error: {exc}")
        self.toolbar.refresh()


def repeat_form(line: str) -> str | None:
    """What an empty Enter after `line` runs: the line itself if its command is repeatable
    (`x/4gx ADDR` repeats as `x/4gx`: gdb shows the next units), else None."""
    cmd = resolve(line).command
    if cmd is None or not cmd.repeatable:
        return None
    if cmd.name == "x":
        return line.split()[0]
    return line


TOOLBAR_STYLE = {
    "prompt": "bold",
    "bottom-toolbar": "noreverse bg:#303030 #d0d0d0",
    "toolbar": "",
    "toolbar.stopped": "bold bg:#005f87 #ffffff",
    "toolbar.running": "bold bg:#5f8700 #ffffff",
    "toolbar.halted": "bold bg:#585858 #ffffff",
    "toolbar.faulted": "bold bg:#af0000 #ffffff",
    "toolbar.sym": "#87d787",
    "toolbar.missed": "bold #ffaf00",
}

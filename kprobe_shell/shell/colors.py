"""Colour names the user can write in the config file, for both places that draw colour.

`color.trace = bright-blue bold` in the config file restyles one role.  Command output
goes to the terminal as ANSI SGR sequences (output.py); the prompt and its toolbar are
drawn by prompt_toolkit, which takes its own style strings.  One vocabulary, translated
here to both, so a user never needs to know which part draws what.
"""
from __future__ import annotations

COLORS = ("black", "red", "green", "yellow", "blue", "magenta", "cyan", "white")
ATTRIBUTES = {"bold": ("1", "bold"), "dim": ("2", ""), "italic": ("3", "italic"), "underline": ("4", "underline"),
              "reverse": ("7", "reverse")}

#: Roles of command output (output.ANSI) and of the prompt (repl.TOOLBAR_STYLE).
OUTPUT_ROLES = ("error", "warning", "addr", "sym", "planted", "changed", "header", "dim", "console", "trace", "pc",
                "narrate")
PROMPT_ROLES = ("prompt", "bottom-toolbar", "toolbar", "toolbar.stopped", "toolbar.running", "toolbar.halted",
                "toolbar.faulted", "toolbar.sym", "toolbar.missed")
ROLES = OUTPUT_ROLES + PROMPT_ROLES


def _color(word: str, background: bool) -> tuple[str, str]:
    bright = word.startswith("bright-")
    name = word[len("bright-"):] if bright else word
    if name not in COLORS:
        raise ValueError(word)
    code = COLORS.index(name) + (90 if bright else 30) + (10 if background else 0)
    ptk = f"ansi{'bright' if bright else ''}{name}"
    return str(code), f"bg:{ptk}" if background else ptk


def translate(words: str) -> tuple[str, str]:
    """'bright-red bold on-black' -> (ANSI escape, prompt_toolkit style). ValueError names
    the word it does not know."""
    sgr: list[str] = []
    ptk: list[str] = []
    for word in words.split():
        w = word.lower()
        if w == "default":
            continue
        if w in ATTRIBUTES:
            code, style = ATTRIBUTES[w]
        elif w.startswith("on-"):
            code, style = _color(w[3:], background=True)
        else:
            code, style = _color(w, background=False)
        sgr.append(code)
        if style:
            ptk.append(style)
    return (f"\x1b[{';'.join(sgr)}m" if sgr else ""), " ".join(ptk)


def vocabulary() -> str:
    return (f"colours {', '.join(COLORS)} (bright-NAME, on-NAME for the background), "
            f"attributes {', '.join(ATTRIBUTES)}, default")

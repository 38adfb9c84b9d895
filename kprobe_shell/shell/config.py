"""The user's config file: $XDG_CONFIG_HOME/kprobe-shell/config (key = value lines).

    # ~/.config/kprobe-shell/config
    timer-period = 5000
    history-size = 10000
    kprobe-mode = auto            # the defaults of `set`
    handler-error = continue
    handler-timeout = 5           # seconds, or off
    cpus = 1
    color = on                    # on, off; unset = on for a terminal
    prompt-style = default        # default, plain (no colour at the prompt), no-toolbar
    color.trace = bright-blue     # restyle one role (see colors.py)
    color.toolbar.running = bold white on-green
"""
from __future__ import annotations

import os

from .registry import CommandError
from .settings import CONFIG_SETTINGS, parse_setting

#: prompt-style values of the config file.
PROMPT_STYLES = ("default", "plain", "no-toolbar")


def config_dir() -> str:
    return os.path.join(os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "kprobe-shell")


def data_dir() -> str:
    return os.path.join(os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "kprobe-shell")


def load_config(path: str | None = None) -> dict:
    """Settings from the config file. A line the shell cannot use is skipped and named in
    config["warnings"] (FILE:LINE: why): the shell must start anyway, and say what it ignored."""
    from .colors import ROLES, translate, vocabulary

    path = path or os.path.join(config_dir(), "config")
    out: dict = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError:
        return out
    warnings: list[str] = []
    colors: dict[str, tuple[str, str]] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue

        def skip(why: str) -> None:
            warnings.append(f"{path}:{number}: {why}; line ignored")

        if "=" not in line:
            skip("expected NAME = VALUE")
            continue
        key, value = (s.strip() for s in line.split("=", 1))
        if key in CONFIG_SETTINGS:
            try:
                out[key] = parse_setting(key, value)  # the same check as `set`
            except CommandError as exc:
                skip(str(exc))
        elif key == "color":
            # Not a `set` default: it decides how the shell's output starts, and `auto`
            # (colour for a terminal only) is a state `set color` cannot return to.
            if value not in ("on", "off", "auto"):
                skip("color is on, off or auto")
            else:
                out[key] = {"on": True, "off": False}.get(value)
        elif key == "prompt-style":
            if value in PROMPT_STYLES:
                out[key] = value
            else:
                skip(f"prompt-style is one of {', '.join(PROMPT_STYLES)}")
        elif key.startswith("color."):
            role = key[len("color."):]
            if role not in ROLES:
                skip(f"no colour role '{role}' (roles: {', '.join(ROLES)})")
                continue
            try:
                colors[role] = translate(value)
            except ValueError as exc:
                skip(f"unknown colour word '{exc}' ({vocabulary()})")
        else:
            skip(f"unknown setting '{key}'")
    if colors:
        out["colors"] = colors
    if warnings:
        out["warnings"] = warnings
    return out

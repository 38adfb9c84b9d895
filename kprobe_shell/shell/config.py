"""The user's config file: $XDG_CONFIG_HOME/kprobe-shell/config (key = value lines)."""
from __future__ import annotations

import os


def config_dir() -> str:
    return os.path.join(os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "kprobe-shell")


def data_dir() -> str:
    return os.path.join(os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "kprobe-shell")


def load_config(path: str | None = None) -> dict:
    """Settings from the config file; a malformed line is skipped with no fuss (it is the
    user's file, and the shell must start anyway)."""
    path = path or os.path.join(config_dir(), "config")
    out: dict = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError:
        return out
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if "=" not in line:
            continue
        key, value = (s.strip() for s in line.split("=", 1))
        if key in ("timer-period", "history-size"):
            try:
                out[key] = int(value, 0)
            except ValueError:
                continue
        elif key == "handler-timeout":
            try:
                seconds = None if value == "off" else float(value)
            except ValueError:
                continue
            if seconds is None or 0 < seconds < float("inf"):
                out[key] = seconds
        elif key == "color":
            out[key] = {"on": True, "off": False}.get(value)
        elif key in ("kprobe-mode", "handler-error", "prompt-style"):
            out[key] = value
    return out

"""Numbers as users type them: every count, address, offset and filter value goes through here.

Python's int() is too generous for a command line: it takes Unicode digits ("٣" is 3,
"²" fails deep inside a parser), any number of digits (and raises its own ValueError past
4,300), and values of any width, which an address then wraps to 64 bits without a word
(0x10000000000401000 would land on 0x401000).  Here only ASCII digits count, and a value
that does not fit in 64 bits is refused as gdb refuses it: "Numeric constant too large."
"""
from __future__ import annotations

import re

#: The widest value any number on the command line may have: a 64-bit address or count.
LIMIT = 1 << 64

# What int(text, 0) accepts, in ASCII only: 0x.., 0o.., 0b.., decimal (no leading zeros
# except 0 itself), with underscores between digits.
_PYTHON_FORM = re.compile(r"[+-]?(0[xX](_?[0-9a-fA-F])+|0[oO](_?[0-7])+|0[bB](_?[01])+|[1-9](_?[0-9])*|0(_?0)*)")
# kstrtoul(text, 0)'s form: 0x.. hex, a leading 0 is octal, else decimal.
_C_FORM = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")
# Long enough for 2^64 in binary with a prefix; anything longer is too large or not a number.
_MAX_CHARS = 80

TOO_LARGE = "numeric constant too large"


class NumberError(ValueError):
    """Not a number, or one too large; str() is the reason, too_large says which."""

    def __init__(self, message: str, too_large: bool = False):
        super().__init__(message)
        self.too_large = too_large


def is_decimal(text: str) -> bool:
    """ASCII digits only (str.isdigit() also says yes to '٣' and '²')."""
    return bool(text) and text.isascii() and text.isdigit()


def parse_int(text: str) -> int:
    """int(text, 0) for ASCII input whose magnitude fits in 64 bits."""
    text = text.strip()
    if not _PYTHON_FORM.fullmatch(text):
        raise NumberError(f"'{_shorten(text)}' is not a number")
    return _checked(text, lambda t: int(t, 0))


def parse_c_ulong(text: str) -> int:
    """The kernel's kstrtoul(text, 0), as the kprobe_events parser reads numbers: 0x hex,
    leading-zero octal, else decimal; an optional '+'."""
    if text.startswith("+"):
        text = text[1:]
    if not _C_FORM.fullmatch(text):
        raise NumberError(f"'{_shorten(text)}' is not a number")
    base = 16 if text[:2].lower() == "0x" else 8 if text.startswith("0") and len(text) > 1 else 10
    return _checked(text, lambda t: int(t, base))


def _checked(text: str, convert) -> int:
    if len(text) > _MAX_CHARS:
        raise NumberError(TOO_LARGE, too_large=True)
    value = convert(text)
    if not -LIMIT < value < LIMIT:
        raise NumberError(TOO_LARGE, too_large=True)
    return value


def _shorten(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[:width] + "..."

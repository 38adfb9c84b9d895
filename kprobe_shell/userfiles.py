"""Reading the files a user names (command files, handler files, guest images).

A name can point anywhere: /dev/zero never ends, a FIFO blocks until someone writes,
/proc/self/mem fails with EIO, and a name with a NUL byte cannot be passed to the
kernel at all.  Only a regular file of a sane size is read; anything else is refused
with the reason, before a byte is read.
"""
from __future__ import annotations

import os
import stat

from .textsafe import escape_controls

#: Command files (`source`, `-x`) and handler files: text a person wrote.
MAX_TEXT_FILE = 8 << 20
#: Guest images: the bundled kernel is under 1 MiB; the machine's RAM is 1 GiB.
MAX_IMAGE_FILE = 256 << 20

_KINDS = (
    (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
)


class UserFileError(Exception):
    """Why the file cannot be read (the caller names the file)."""


def printable_name(path: str, width: int = 200) -> str:
    """The name as it can be shown: control characters escaped, cut past `width`."""
    shown = escape_controls(path)
    return shown if len(shown) <= width else shown[:width - 3] + "..."


def read_user_file(path: str, limit: int = MAX_TEXT_FILE) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; UserFileError otherwise."""
    if "\0" in path:
        raise UserFileError("the file name contains a NUL byte")
    try:
        st = os.stat(path)
    except OSError as exc:
        raise UserFileError(exc.strerror or str(exc)) from None
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise UserFileError(f"not a regular file ({kind})" if kind != "not a regular file" else kind)
    if st.st_size > limit:
        raise UserFileError(f"too large ({st.st_size} bytes; at most {limit})")
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)  # /proc files say size 0 and may hold more
    except OSError as exc:
        raise UserFileError(exc.strerror or str(exc)) from None
    if len(data) > limit:
        raise UserFileError(f"too large (more than {limit} bytes)")
    return data


def decode_text(data: bytes) -> str:
    """UTF-8 text with universal newlines, as open(path, encoding="utf-8").read() gives it
    (UnicodeDecodeError when it is not text)."""
    return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


def text_lines(data: bytes) -> list[str]:
    """decode_text() split as readlines() splits: on '\\n' only, each line keeping it."""
    text = decode_text(data)
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])

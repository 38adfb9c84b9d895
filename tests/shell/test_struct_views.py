"""Struct views behave as Python objects: a missing member is an AttributeError."""
from __future__ import annotations

import pytest

from kprobe_shell.tracing.structs import StructError, StructView, layout_from_offsets


class FakeMemory:
    def read(self, addr: int, size: int) -> bytes:
        return bytes(range(addr & 0xFF, (addr & 0xFF) + size))


def _view() -> StructView:
    return StructView(FakeMemory(), layout_from_offsets({"len": (0, "u8"), "flags": (1, "u8")}), 0)


def test_hasattr_and_getattr_with_a_default_work():
    v = _view()
    assert hasattr(v, "len") and v.len == 0 and v.flags == 1
    assert not hasattr(v, "x")
    assert getattr(v, "x", 42) == 42


def test_a_missing_member_is_still_a_struct_error_with_the_members_named():
    with pytest.raises(StructError, match=r"has no member 'x' \(members: len, flags\)"):
        _view().x
    with pytest.raises(AttributeError):
        _view().x


def test_version(run_shell):
    from kprobe_shell import __version__

    r = run_shell("--version")
    assert r.returncode == 0 and r.stdout == f"kprobe-shell {__version__}\n"

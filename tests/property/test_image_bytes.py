"""Property: any bytes given as an image are either a usable image (it boots and runs)
or refused with ImageError: never another exception, at load, at boot or while running."""
from __future__ import annotations

from pathlib import Path

import pytest
from propsettings import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from kprobe_shell import Image, ImageError, Machine, StopEvent


def load_and_run(raw: bytes) -> str:
    try:
        m = Machine(Image.from_bytes(raw, "fuzzed"))
    except ImageError as exc:
        assert str(exc).startswith("fuzzed: ") and "\n" not in str(exc)
        return "refused"
    assert isinstance(m.run(3000), StopEvent)
    m.tasks.all()
    assert m.kprobes.check_invariants() == []
    return "ran"


@pytest.fixture(scope="module")
def good(build_guest):
    return Path(build_guest("workload")).read_bytes()


@settings(max_examples=examples(100))
@given(raw=st.binary(max_size=4096))
def test_random_bytes_are_refused(raw):
    assert load_and_run(raw) == "refused" or raw[:4] == b"\x7fELF"


@settings(max_examples=examples(100))
@given(raw=st.binary(min_size=60, max_size=2048))
def test_random_bytes_behind_an_elf_magic_are_refused_cleanly(raw):
    load_and_run(b"\x7fELF\x02\x01\x01" + raw)


#: Where a mutation lands: mostly the ELF header and program headers, where a flipped
#: byte changes what the loader sees; anywhere in the file otherwise.
POSITION = st.one_of(st.integers(0, 0x3F), st.integers(0x40, 0x200), st.integers(0, 10**7))


@settings(max_examples=examples(150))
@given(edits=st.lists(st.tuples(POSITION, st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 10**7)))
def test_mutated_real_elf_loads_or_is_refused_cleanly(good, edits, cut):
    raw = bytearray(good)
    for pos, value in edits:
        raw[pos % len(raw)] = value
    if cut is not None:
        raw = raw[: cut % len(raw)]
    load_and_run(bytes(raw))

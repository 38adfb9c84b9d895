"""Maps kept in C (_maps.c, cmaps.h): the same printed text as the Python maps they replace,
the canonical key encoding C callers use, buckets over the whole 64-bit range, bounds."""
from __future__ import annotations

import ctypes
import struct
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kprobe_shell.tracing import _maps
from kprobe_shell.tracing.maps import (MAP_KINDS, MAX_KEYS, SCALAR_KINDS, BpfMap, MapError, MapStore, _hist_label,
                                       _hist_range, _lhist_label, _lhist_range, _sort_key, hist_index, lhist_index)

INT64 = st.integers(-(1 << 63), (1 << 63) - 1)
SETTINGS = settings(deadline=None, derandomize=True, max_examples=300)


# ---------------------------------------------------------------------- the reference
class ReferenceMap:
    """The maps' Python implementation before they moved to C (entries in a dict), kept as
    the oracle; its avg is exact integer division toward zero, as bpftrace's."""

    def __init__(self, name, kind, params=()):
        self.name, self.kind, self.params, self.entries = name, kind, tuple(params), {}

    def update(self, key, value):
        key = () if key is None else tuple(key) if isinstance(key, tuple) else (key,)
        key = tuple(k.decode("utf-8", "backslashreplace") if isinstance(k, bytes) else
                    int(k) if isinstance(k, bool) else k for k in key)
        kind, entries = self.kind, self.entries
        if kind == "count":
            entries[key] = entries.get(key, 0) + 1
        elif kind == "sum":
            entries[key] = entries.get(key, 0) + value
        elif kind == "min":
            entries[key] = min(entries.get(key, value), value)
        elif kind == "max":
            entries[key] = max(entries.get(key, value), value)
        elif kind in ("avg", "stats"):
            n, total = entries.get(key, (0, 0))
            entries[key] = (n + 1, total + value)
        else:
            index = hist_index(value) if kind == "hist" else lhist_index(value, *self.params)
            buckets = entries.setdefault(key, {})
            buckets[index] = buckets.get(index, 0) + 1

    def scalar(self, key):
        state = self.entries[key]
        if self.kind == "avg":
            return int(Fraction(state[1], state[0]))
        return state[1] if self.kind == "stats" else state

    def text(self):
        lines = []
        scalar = self.kind in SCALAR_KINDS
        order = (lambda k: (self.scalar(k), _sort_key(k))) if scalar else _sort_key
        for key in sorted(self.entries, key=order):
            label = f"{self.name}[{', '.join(str(k) for k in key)}]" if key else self.name
            if self.kind == "stats":
                n, total = self.entries[key]
                lines.append(f"{label}: count {n}, average {int(Fraction(total, n))}, total {total}")
            elif scalar:
                lines.append(f"{label}: {self.scalar(key)}")
            else:
                lines.append(f"{label}:")
                buckets = self.entries[key]
                top = max(buckets.values())
                for i in range(min(buckets), max(buckets) + 1):
                    n = buckets.get(i, 0)
                    name = _hist_label(i) if self.kind == "hist" else _lhist_label(i, *self.params)
                    lines.append(f"{name:<16}{n:>8} |{'@' * int(n / top * 52):<52}|")
                lines.append("")
        if not lines or lines[-1] != "":
            lines.append("")
        return "\n".join(lines)


KEYS = st.one_of(
    st.none(),
    st.sampled_from(["sshd", "bash", "", "é", "/etc/hostname", b"cr\xffon", 0, -1, 7, True, (1 << 64) - 1]),
    st.tuples(st.sampled_from(["a", "b", "\udcff"]), st.integers(-3, 3)),
)
VALUES = st.one_of(st.integers(-5, 5000), INT64, st.integers(0, (1 << 64) - 1))


@SETTINGS
@given(kind=st.sampled_from(MAP_KINDS), updates=st.lists(st.tuples(KEYS, VALUES), max_size=40),
       params=st.sampled_from([(0, 100, 10), (-1000, 1000, 7), (-(1 << 63), (1 << 63) - 1, 1 << 60)]))
def test_same_text_as_the_python_maps(kind, updates, params):
    params = params if kind == "lhist" else ()
    ours, reference = BpfMap("@m", kind, params), ReferenceMap("@m", kind, params)
    for key, value in updates:
        ours.update(key, value)
        reference.update(key, value)
    assert ours.text() == reference.text()
    assert ours.entries == reference.entries


@SETTINGS
@given(value=st.one_of(INT64, st.integers(0, (1 << 64) - 1)))
def test_hist_buckets_in_c_are_hist_index(value):
    m = BpfMap("@h", "hist")
    m.update(None, value)
    assert m.entries == {(): {hist_index(value): 1}}
    if value < 1 << 63:  # the same bucket through the C callers' update
        assert m._cmap.update_encoded(b"", value) == 0
        assert m.entries == {(): {hist_index(value): 2}}


@st.composite
def lhist_bounds(draw):
    """(min, max, step) anywhere in the int64 range, 1 to 1000 buckets, max not always on a step."""
    step = draw(st.integers(1, 1 << 53) | st.integers(1, 20))
    buckets = draw(st.integers(1, 1000))
    extra = draw(st.integers(0, step - 1))
    span = step * buckets + extra
    lo = draw(st.integers(-(1 << 63), (1 << 63) - 1 - span) if span < 1 << 64 else st.nothing())
    return MapStore.check_lhist(lo, lo + span, step)


@SETTINGS
@given(value=INT64, bounds=lhist_bounds(), near=st.booleans())
def test_lhist_buckets_in_c_are_lhist_index(value, bounds, near):
    lo, hi, step = bounds
    if near:  # most int64 values fall outside: take one near the buckets too
        value = max(-(1 << 63), min((1 << 63) - 1, lo + value % (hi - lo + 2 * step) - step))
    m = BpfMap("@l", "lhist", bounds)
    assert m._cmap.update_encoded(b"", value) == 0
    assert m.entries == {(): {lhist_index(value, lo, hi, step): 1}}


def test_the_key_encoding_of_cmaps_h():
    assert _maps.encode_key(None) == b""
    assert _maps.encode_key(-2) == b"i" + struct.pack("<q", -2)
    assert _maps.encode_key((1 << 64) - 1) == b"u" + b"\xff" * 8
    assert _maps.encode_key((1 << 63) - 1) == b"i" + struct.pack("<q", (1 << 63) - 1)
    assert _maps.encode_key(("sshd", 4)) == b"s\x04\x00sshd" + b"i" + struct.pack("<q", 4)
    assert _maps.encode_key(b"\xff") == b"s\x04\x00\\xff"   # bytes: decoded as the Python maps did
    assert _maps.encode_key(True) == _maps.encode_key(1)


def test_c_callers_updates_are_the_python_updates():
    m = BpfMap("@s", "sum")
    m.update(("bash", 3), 10)
    assert m._cmap.update_encoded(_maps.encode_key(("bash", 3)), -4) == 0
    assert m._cmap.update_encoded(b"s\x02\x00\xc3\xa9", 1) == 0      # UTF-8 'é'
    assert m._cmap.update_encoded(b"s\x02\x00\xff\xfe", 1) == 0      # not UTF-8: shown escaped
    assert m.entries == {("bash", 3): 6, ("é",): 1, ("\\xff\\xfe",): 1}
    m._cmap.update_encoded(b"x", 1)  # a C caller's bad encoding is found when read back
    with pytest.raises(MapError, match="bad part"):
        m.entries


def test_values_and_sums_stay_exact_over_64_bits():
    m = BpfMap("@t", "sum")
    for _ in range(4):
        m.update(None, (1 << 64) - 1)
    m.update("k", -(1 << 63))
    m.update("k", -(1 << 63))
    assert m.entries == {(): 4 * ((1 << 64) - 1), ("k",): -(1 << 64)}
    a = BpfMap("@a", "avg")
    for v in ((1 << 63) - 1, (1 << 63) - 3, -7):
        a.update(None, v)
    assert a.scalar(()) == int(Fraction((1 << 64) - 11, 3))
    for bad in (1 << 64, -(1 << 63) - 1):
        with pytest.raises(MapError, match="64-bit value"):
            a.update(None, bad)
    with pytest.raises(MapError, match="key must fit in 64 bits"):
        a.update(1 << 64, 1)
    with pytest.raises(MapError, match=r"avg\(\) needs an integer value, not str 'x'"):
        a.update(None, "x")
    with pytest.raises(MapError, match="a map key must be a string or an integer, not float"):
        a.update(1.5, 1)
    with pytest.raises(MapError, match="at most 65535 bytes"):
        a.update("x" * 70000, 1)
    assert a.entries == {(): (3, (1 << 64) - 11)}   # refused updates changed nothing


def test_a_full_map_drops_and_says_so():
    m = BpfMap("@c", "count", max_entries=3)
    for comm in ["a", "b", "c", "d", "a", "e"]:
        m.update(comm, None)
    assert m.entries == {("a",): 2, ("b",): 1, ("c",): 1} and m.dropped == 2
    assert m._cmap.update_encoded(_maps.encode_key("z"), 0) == -1
    assert m._cmap.update_encoded(_maps.encode_key("b"), 0) == 0   # a known key still counts
    assert m.text().splitlines() == [
        "@c[c]: 1", "@c[a]: 2", "@c[b]: 2",
        "(3 update(s) of @c dropped: the map was full, at 3 keys, bpftrace's max_map_keys)"]
    assert m.as_json()["dropped"] == 3
    m.clear()
    assert m.entries == {} and m.dropped == 0 and "dropped" not in m.as_json()
    assert MAX_KEYS == 4096 and BpfMap("@d", "count")._cmap.max_entries == 4096


def test_the_default_bound_is_bpftraces_4096_keys():
    m = BpfMap("@c", "count")
    for i in range(MAX_KEYS + 10):
        m.update(i, None)
    assert m.keys_count == MAX_KEYS and m.dropped == 10
    assert m.entries[(MAX_KEYS - 1,)] == 1 and (MAX_KEYS,) not in m.entries


def test_many_keys_grow_the_table_and_keep_insertion_order():
    m = BpfMap("@h", "hist", max_entries=MAX_KEYS)
    for i in range(3000):
        m.update(("k", i % 1500), i)
    entries = m.entries
    assert list(entries) == [("k", i) for i in range(1500)]
    assert entries[("k", 3)] == {hist_index(3): 1, hist_index(1503): 1}


def test_clear_keeps_the_map_and_its_kind():
    store = MapStore()
    store.update("x", "hist", "k", 3)
    handle = store.maps["@x"].handle
    assert store.clear() == 1 and not store
    assert store.maps["@x"].handle == handle and store.maps["@x"].keys_count == 0
    with pytest.raises(MapError, match="holds hist"):
        store.update("x", "count")
    store.update("@x", "hist", None, 1)
    assert store.maps["@x"].entries == {(): {2: 1}}
    with pytest.raises(MapError, match="no map @y"):
        store.clear("y")
    store.reset()
    store.update("x", "count")          # a fresh run: the name is free again
    assert store.maps["@x"].kind == "count"


def test_the_capsule_for_c_callers():
    assert ctypes.pythonapi.PyCapsule_IsValid
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    assert get(_maps.API, b"kprobe_shell.tracing._maps.API")

    class Api(ctypes.Structure):
        _fields_ = [("update", ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32,
                                                ctypes.c_int64)),
                    ("update_unsigned", ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p,
                                                         ctypes.c_uint32, ctypes.c_uint64)),
                    ("kind", ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p))]

    api = Api.from_address(get(_maps.API, b"kprobe_shell.tracing._maps.API"))
    m = BpfMap("@mx", "max")
    key = _maps.encode_key(("cpu", 1))
    assert api.kind(m.handle) == MAP_KINDS.index("max")
    assert api.update(m.handle, key, len(key), -5) == 0
    assert api.update_unsigned(m.handle, key, len(key), (1 << 64) - 2) == 0
    assert api.update(m.handle, key, len(key), 7) == 0
    assert m.text() == f"@mx[cpu, 1]: {(1 << 64) - 2}\n"

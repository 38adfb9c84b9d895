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
from kprobe_shell.tracing.maps import MAP_KINDS, MAX_KEYS, BpfMap, MapError, MapStore, hist_index, lhist_index
from map_reference import ReferenceMap

INT64 = st.integers(-(1 << 63), (1 << 63) - 1)
SETTINGS = settings(deadline=None, derandomize=True, max_examples=300)


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


@SETTINGS
@given(raw=st.binary(max_size=40) | st.text(max_size=20).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_guest_strings_encode_as_the_text_python_shows(raw):
    # a :string fetch arg's text (fetch.py's decode_string) and a comm (tasks.py: Latin-1)
    assert _maps.guest_str_key(raw) == _maps.encode_key(raw.decode("utf-8", "backslashreplace"))
    assert _maps.latin1_str_key(raw) == _maps.encode_key(raw.decode("latin-1"))


def test_text_with_lone_surrogates_is_its_own_key():
    m = BpfMap("@c", "count")
    for key in ("\udcff", "\\xed\\xb3\\xbf", "\udcff", "ok"):
        m.update(key, None)
    assert _maps.encode_key("\udcff")[:1] == b"S" and _maps.encode_key("ok")[:1] == b"s"
    assert m.entries == {("\udcff",): 2, ("\\xed\\xb3\\xbf",): 1, ("ok",): 1}

"""bpftrace-style maps: buckets, ordering and the exact text bpftrace prints."""
from __future__ import annotations

import pytest

from kprobe_shell.tracing.maps import MapError, MapStore, hist_index, lhist_index

# The hist() example of bpftrace's reference guide (kretprobe:vfs_read { @bytes = hist(retval); }).
BPFTRACE_HIST_EXAMPLE = """\
@bytes:
(..., 0)             117 |@@@@@@@@@@@@                                        |
[0]                    5 |                                                    |
[1]                  325 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@                  |
[2, 4)                 6 |                                                    |
[4, 8)                 3 |                                                    |
[8, 16)              495 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[16, 32)              35 |@@@                                                 |
[32, 64)              25 |@@                                                  |
[64, 128)             21 |@@                                                  |
[128, 256)            10 |@                                                   |
[256, 512)             3 |                                                    |
[512, 1K)              2 |                                                    |
[1K, 2K)             196 |@@@@@@@@@@@@@@@@@@@@                                |
[2K, 4K)               0 |                                                    |
[4K, 8K)               2 |                                                    |

"""


def test_hist_prints_like_bpftrace():
    store = MapStore()
    # one value per bucket of the example, repeated by its count
    samples = {-1: 117, 0: 5, 1: 325, 3: 6, 5: 3, 8: 495, 16: 35, 63: 25, 64: 21, 200: 10, 256: 3,
               1023: 2, 1024: 196, 4096: 2}
    for value, n in samples.items():
        for _ in range(n):
            store.update("bytes", "hist", None, value)
    assert store.maps["@bytes"].text() + "\n" == BPFTRACE_HIST_EXAMPLE


@pytest.mark.parametrize("value, index", [(-5, 0), (0, 1), (1, 2), (2, 3), (3, 3), (4, 4), (1023, 11),
                                          (1024, 12), (1 << 20, 22), ((1 << 63) - 1, 64)])
def test_hist_buckets_are_powers_of_two(value, index):
    assert hist_index(value) == index


def test_hist_labels_use_k_m_g_suffixes():
    store = MapStore()
    for v in (1 << 20, 1 << 30, 1 << 40):
        store.update("big", "hist", None, v)
    text = store.maps["@big"].text()
    assert "[1M, 2M)" in text and "[1G, 2G)" in text and "[1T, 2T)" in text
    assert "[512M, 1G)" in text  # the empty buckets between are shown, as bpftrace does


def test_lhist_buckets_and_labels():
    assert [lhist_index(v, 0, 100, 10) for v in (-1, 0, 9, 10, 99, 100, 5000)] == [0, 1, 1, 2, 10, 11, 11]
    store = MapStore()
    for v in (-3, 5, 15, 15, 250):
        store.update("l", "lhist", None, v, (0, 100, 10))
    rows = store.maps["@l"].text().splitlines()
    assert rows[0] == "@l:"
    assert rows[1].startswith("(..., 0)        ")
    assert rows[2] == "[0, 10)                1 |" + "@" * 26 + " " * 26 + "|"
    assert rows[3] == "[10, 20)               2 |" + "@" * 52 + "|"
    assert rows[-1].startswith("[100, ...)             1 |")


def test_counts_sort_by_value_and_ties_by_key():
    store = MapStore()
    for comm in ["sshd", "bash", "sshd", "cron", "bash", "sshd", "acpid"]:
        store.update("c", "count", comm)
    assert store.maps["@c"].text() == "@c[acpid]: 1\n@c[cron]: 1\n@c[bash]: 2\n@c[sshd]: 3\n"


def test_multiple_keys_no_key_and_the_other_functions():
    store = MapStore()
    for v in (10, -4, 7):
        store.update("s", "sum", ("netd", 4), v)
        store.update("mn", "min", None, v)
        store.update("mx", "max", None, v)
        store.update("a", "avg", None, v)
        store.update("st", "stats", "k", v)
    assert store.maps["@s"].text() == "@s[netd, 4]: 13\n"
    assert store.maps["@mn"].text() == "@mn: -4\n"
    assert store.maps["@mx"].text() == "@mx: 10\n"
    assert store.maps["@a"].text() == "@a: 4\n"          # 13 / 3, integer as bpftrace
    assert store.maps["@st"].text() == "@st[k]: count 3, average 4, total 13\n"


def test_a_map_keeps_its_kind_and_bounds():
    store = MapStore()
    store.update("x", "count")
    with pytest.raises(MapError, match=r"map @x holds count\(\) values; it cannot take hist\(\)"):
        store.update("x", "hist", None, 3)
    store.update("l", "lhist", None, 1, (0, 10, 1))
    with pytest.raises(MapError, match="cannot take lhist"):
        store.update("l", "lhist", None, 1, (0, 20, 1))
    with pytest.raises(MapError, match="needs an integer value"):
        store.update("h", "hist", None, "three")
    with pytest.raises(MapError, match="bad map name"):
        store.update("@1x", "count")
    with pytest.raises(MapError, match="step must be > 0"):
        MapStore.check_lhist(0, 10, 0)


def test_json_shape():
    store = MapStore()
    for v in (0, 3, 3):
        store.update("h", "hist", "opener1", v)
    store.update("c", "count", ("a", 1))
    assert store.maps["@h"].as_json() == {
        "type": "map", "name": "@h", "kind": "hist",
        "entries": [{"key": ["opener1"], "buckets": [{"min": 0, "max": 0, "count": 1}, {"min": 1, "max": 1, "count": 0},
                                                     {"min": 2, "max": 3, "count": 2}]}],
    }
    assert store.maps["@c"].as_json()["entries"] == [{"key": ["a", 1], "value": 1}]

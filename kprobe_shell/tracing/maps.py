"""bpftrace-style maps: per-key counts, sums, averages and histograms.

A map is named like bpftrace's (``@opens``, ``@`` alone is allowed) and is created by
its first update; its kind is fixed then, as bpftrace's type checker fixes it:

    count()              @opens[opener1]: 3
    sum(v) min(v) max(v) @bytes[netd]: 1732
    avg(v)               integer average, as bpftrace prints it
    stats(v)             @x[k]: count 3, average 5, total 15
    hist(v)              power-of-2 buckets: [0] [1] [2, 4) [4, 8) ... [1K, 2K) ...
    lhist(v, min, max, step)   linear buckets: (..., min) [min, min+step) ... [max, ...)

Printing follows bpftrace's text output: scalar maps sorted by value (ties broken by
key, so the output is deterministic where bpftrace's hash order is not), histogram maps
by key, each histogram row as ``LABEL(16 wide) COUNT(8 wide) |BAR(52 wide)|`` with a bar
of ``@`` proportional to the largest bucket, and a blank line after each map.

The entries are kept in C (_maps.c) so that a probe hit's C code updates them without
Python (cmaps.h); values are 64-bit, signed or unsigned, and sums exact.  A map holds at
most MAX_KEYS keys (bpftrace's max_map_keys, 4096): updates with a new key beyond that are
dropped, counted, and the count printed with the map.
"""
from __future__ import annotations

import re

from ..display import Displayed
from . import _maps
from ._maps import MAX_KEYS, MapError

__all__ = ["MAP_KINDS", "MAX_KEYS", "BpfMap", "MapError", "MapStore", "hist_index", "lhist_index"]

#: Every aggregation function, as bpftrace names them.
MAP_KINDS = ("count", "sum", "min", "max", "avg", "stats", "hist", "lhist")
SCALAR_KINDS = ("count", "sum", "min", "max", "avg", "stats")
BAR_WIDTH = 52  # bpftrace's max_width


# ---------------------------------------------------------------------- buckets
def hist_index(value: int) -> int:
    """bpftrace's log2 bucket: 0 for negatives, 1 for 0, 2 for 1, then k+2 for [2^k, 2^(k+1))."""
    if value < 0:
        return 0
    if value == 0:
        return 1
    return value.bit_length() + 1


def _hist_power_label(power: int) -> str:
    """1, 2, 4 ... 512, 1K, 2K ... 1M ... 1G ... 1T (bpftrace's hist_index_label)."""
    for suffix, shift in (("E", 60), ("P", 50), ("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if power >= shift:
            return f"{1 << (power - shift)}{suffix}"
    return str(1 << power)


def _hist_label(index: int) -> str:
    if index == 0:
        return "(..., 0)"
    if index == 1:
        return "[0]"
    if index == 2:
        return "[1]"
    return f"[{_hist_power_label(index - 2)}, {_hist_power_label(index - 1)})"


def _hist_range(index: int) -> tuple[int | None, int | None]:
    """The inclusive [min, max] of a log2 bucket (None: unbounded), for JSON."""
    if index == 0:
        return None, -1
    if index == 1:
        return 0, 0
    low = 1 << (index - 2)
    return low, 2 * low - 1


def lhist_index(value: int, lo: int, hi: int, step: int) -> int:
    """0 below min, 1.. for [min + (i-1)*step, min + i*step), buckets+1 at or above max."""
    buckets = (hi - lo) // step
    if value < lo:
        return 0
    if value >= hi:
        return buckets + 1
    return (value - lo) // step + 1


def _lhist_label(index: int, lo: int, hi: int, step: int) -> str:
    buckets = (hi - lo) // step
    if index == 0:
        return f"(..., {lo})"
    if index == buckets + 1:
        return f"[{hi}, ...)"
    return f"[{lo + (index - 1) * step}, {lo + index * step})"


def _lhist_range(index: int, lo: int, hi: int, step: int) -> tuple[int | None, int | None]:
    buckets = (hi - lo) // step
    if index == 0:
        return None, lo - 1
    if index == buckets + 1:
        return hi, None
    return lo + (index - 1) * step, lo + index * step - 1


# ---------------------------------------------------------------------- one map
def _average(n: int, total: int) -> int:
    """bpftrace's avg: the total over the count, as an integer rounded toward zero."""
    if not n:
        return 0
    quotient = abs(total) // n
    return quotient if total >= 0 else -quotient


class BpfMap(Displayed):
    """One map.  Its entries live in C (_maps.c), where the probe hit's C code updates them
    too (cmaps.h): `handle` is the struct cmap * for it, valid while this object lives."""

    __slots__ = ("name", "kind", "params", "_cmap")

    def __init__(self, name: str, kind: str, params: tuple = (), max_entries: int = MAX_KEYS) -> None:
        self.name = name               # "@opens"
        self.kind = kind               # one of MAP_KINDS
        self.params = tuple(params)    # lhist: (min, max, step)
        self._cmap = _maps.Map(MAP_KINDS.index(kind), *self.params, max_entries=max_entries)

    def __repr__(self) -> str:
        return f"BpfMap({self.name!r}, {self.kind!r}, {self.params!r}, {self.keys_count} keys)"

    def update(self, key, value: int | None) -> None:
        """key: None, one key part or a tuple of them (ints and strings); value ignored by count()."""
        self._cmap.update(key, value)

    def clear(self) -> None:
        self._cmap.clear()

    # -------------------------------------------------------------- reading it back
    @property
    def handle(self) -> int:
        return self._cmap.handle

    @property
    def entries(self) -> dict:
        """key tuple -> state: an int (count, sum, min, max), (count, total) (avg, stats),
        {bucket index: count} (hist, lhist); a copy read from C."""
        return self._cmap.entries()

    @property
    def keys_count(self) -> int:
        return len(self._cmap)

    @property
    def dropped(self) -> int:
        """Updates refused because the map already held max_entries keys."""
        return self._cmap.dropped

    def scalar(self, key: tuple, entries: dict | None = None) -> int:
        """The number bpftrace prints (and sorts by) for a scalar map entry."""
        state = (self.entries if entries is None else entries)[key]
        if self.kind in ("avg", "stats"):
            return _average(*state) if self.kind == "avg" else state[1]
        return state

    def sorted_keys(self, entries: dict | None = None) -> list[tuple]:
        entries = self.entries if entries is None else entries
        if self.kind in SCALAR_KINDS:
            return sorted(entries, key=lambda k: (self.scalar(k, entries), _sort_key(k)))
        return sorted(entries, key=_sort_key)

    def label(self, key: tuple) -> str:
        if not key:
            return self.name
        return f"{self.name}[{', '.join(str(k) for k in key)}]"

    def text(self) -> str:
        """The map as bpftrace prints it at exit (ends with a blank line)."""
        lines = []
        entries = self.entries
        for key in self.sorted_keys(entries):
            if self.kind in SCALAR_KINDS:
                if self.kind == "stats":
                    n, total = entries[key]
                    lines.append(f"{self.label(key)}: count {n}, average {_average(n, total)}, total {total}")
                else:
                    lines.append(f"{self.label(key)}: {self.scalar(key, entries)}")
            else:
                lines.append(f"{self.label(key)}:")
                lines.extend(self._histogram_rows(entries[key]))
                lines.append("")
        if self.dropped:
            lines.append(self.dropped_note())
        if not lines or lines[-1] != "":
            lines.append("")
        return "\n".join(lines)

    def dropped_note(self) -> str:
        return (f"({self.dropped} update(s) of {self.name} dropped: the map was full, "
                f"at {self._cmap.max_entries} keys, bpftrace's max_map_keys)")

    def _histogram_rows(self, buckets: dict[int, int]) -> list[str]:
        if not buckets:
            return []
        lo, hi = min(buckets), max(buckets)
        top = max(buckets.values())
        rows = []
        for index in range(lo, hi + 1):
            n = buckets.get(index, 0)
            bar = "@" * int(n / top * BAR_WIDTH)
            rows.append(f"{self._bucket_label(index):<16}{n:>8} |{bar:<{BAR_WIDTH}}|")
        return rows

    def _bucket_label(self, index: int) -> str:
        return _hist_label(index) if self.kind == "hist" else _lhist_label(index, *self.params)

    def _bucket_range(self, index: int):
        return _hist_range(index) if self.kind == "hist" else _lhist_range(index, *self.params)

    def as_json(self) -> dict:
        items = []
        entries = self.entries
        for key in self.sorted_keys(entries):
            item: dict = {"key": list(key)}
            state = entries[key]
            if self.kind == "stats":
                n, total = state
                item.update(count=n, average=_average(n, total), total=total)
            elif self.kind in SCALAR_KINDS:
                item["value"] = self.scalar(key, entries)
            else:
                lo, hi = min(state), max(state)
                item["buckets"] = [
                    {"min": self._bucket_range(i)[0], "max": self._bucket_range(i)[1], "count": state.get(i, 0)}
                    for i in range(lo, hi + 1)
                ]
            items.append(item)
        obj = {"type": "map", "name": self.name, "kind": self.kind, "entries": items}
        if self.kind == "lhist":
            obj["min"], obj["max"], obj["step"] = self.params
        if self.dropped:
            obj["dropped"] = self.dropped
        return obj


def _sort_key(key: tuple) -> tuple:
    # Integers before strings at each position, so mixed keys still sort.
    return tuple((0, k, "") if isinstance(k, int) else (1, 0, k) for k in key)


# ---------------------------------------------------------------------- all maps
class MapStore:
    """Every map of a session, by name."""

    def __init__(self) -> None:
        self.maps: dict[str, BpfMap] = {}

    @staticmethod
    def check_name(name: str) -> str:
        if not name.startswith("@"):
            name = "@" + name
        if not re.fullmatch(r"@[A-Za-z_][A-Za-z0-9_]*|@", name):
            raise MapError(f"bad map name '{name}': @ followed by a C identifier, or @ alone")
        return name

    @staticmethod
    def check_lhist(lo: int, hi: int, step: int) -> tuple[int, int, int]:
        for what, v in (("min", lo), ("max", hi), ("step", step)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise MapError(f"lhist() {what} must be an integer, not {v!r}")
            if not -(1 << 63) <= v < 1 << 63:
                raise MapError(f"lhist() {what} must fit in 64 bits (signed), not {v}")
        if step <= 0:
            raise MapError(f"lhist() step must be > 0 (got {step})")
        if hi <= lo:
            raise MapError(f"lhist() max must be above min (got min {lo}, max {hi})")
        if (hi - lo) // step > 1000:
            raise MapError(f"lhist() would have {(hi - lo) // step} buckets; at most 1000")
        return lo, hi, step

    def declare(self, name: str, kind: str, params: tuple = ()) -> BpfMap:
        """The map called name, created on first use; a second use must agree on its kind."""
        name = self.check_name(name)
        if kind not in MAP_KINDS:
            raise MapError(f"unknown aggregation '{kind}' (one of {', '.join(MAP_KINDS)})")
        params = tuple(params)
        m = self.maps.get(name)
        if m is None:
            if kind == "lhist":
                if len(params) != 3:
                    raise MapError(f"lhist() needs (min, max, step), not {params}")
                params = self.check_lhist(*params)
            m = self.maps[name] = BpfMap(name, kind, params)
        elif m.kind != kind:
            raise MapError(f"map {name} holds {m.kind}() values; it cannot take {kind}()")
        elif kind == "lhist" and m.params != params:
            raise MapError(f"map {name} is lhist{m.params}; it cannot take lhist{params}")
        return m

    def update(self, name: str, kind: str, key=None, value=None, params: tuple = ()) -> None:
        """One update of @name (key: None, a key part or a tuple of them), made on first use."""
        m = self.maps.get(name) or self.maps.get("@" + name)
        if m is None or m.kind != kind or (kind == "lhist" and m.params != tuple(params)):
            m = self.declare(name, kind, params)  # made, or MapError for another kind
        m.update(key, value)

    def clear(self, name: str | None = None) -> int:
        """Empty every map (or one), as bpftrace's clear(): each keeps its name and kind, so
        C code that holds its handle goes on updating it."""
        if name is None:
            for m in self.maps.values():
                m.clear()
            return len(self.maps)
        name = self.check_name(name)
        if name not in self.maps:
            raise MapError(f"no map {name}")
        self.maps[name].clear()
        return 1

    def reset(self) -> None:
        """Forget every map (a fresh run): their names may then take another kind."""
        self.maps.clear()

    def names(self) -> list[str]:
        return sorted(self.maps)

    def __bool__(self) -> bool:
        return any(m.keys_count for m in self.maps.values())

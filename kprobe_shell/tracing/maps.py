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
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..display import Displayed

__all__ = ["MAP_KINDS", "BpfMap", "MapError", "MapStore", "hist_index", "lhist_index"]

#: Every aggregation function, as bpftrace names them.
MAP_KINDS = ("count", "sum", "min", "max", "avg", "stats", "hist", "lhist")
SCALAR_KINDS = ("count", "sum", "min", "max", "avg", "stats")
BAR_WIDTH = 52  # bpftrace's max_width


class MapError(Exception):
    """A map used inconsistently (another kind, other lhist bounds, a non-integer value)."""


def _key_tuple(key) -> tuple:
    """None -> no key; a tuple -> several keys; anything else -> one key."""
    if key is None:
        return ()
    if isinstance(key, tuple):
        return tuple(_key_part(k) for k in key)
    return (_key_part(key),)


def _key_part(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, str)):
        return value
    raise MapError(f"a map key must be a string or an integer, not {type(value).__name__}")


def _int_value(value, kind: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MapError(f"{kind}() needs an integer value, not {type(value).__name__} {value!r}")
    return value


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
@dataclass
class BpfMap(Displayed):
    name: str                      # "@opens"
    kind: str                      # one of MAP_KINDS
    params: tuple = ()             # lhist: (min, max, step)
    entries: dict = field(default_factory=dict)  # key tuple -> state

    def update(self, key: tuple, value: int | None) -> None:
        kind = self.kind
        if kind == "count":
            self.entries[key] = self.entries.get(key, 0) + 1
            return
        value = _int_value(value, kind)
        if kind == "sum":
            self.entries[key] = self.entries.get(key, 0) + value
        elif kind == "min":
            self.entries[key] = min(self.entries.get(key, value), value)
        elif kind == "max":
            self.entries[key] = max(self.entries.get(key, value), value)
        elif kind in ("avg", "stats"):
            n, total = self.entries.get(key, (0, 0))
            self.entries[key] = (n + 1, total + value)
        else:
            index = hist_index(value) if kind == "hist" else lhist_index(value, *self.params)
            buckets = self.entries.setdefault(key, {})
            buckets[index] = buckets.get(index, 0) + 1

    # -------------------------------------------------------------- reading it back
    def scalar(self, key: tuple) -> int:
        """The number bpftrace prints (and sorts by) for a scalar map entry."""
        state = self.entries[key]
        if self.kind == "avg":
            n, total = state
            return int(total / n) if n else 0  # bpftrace: integer division toward zero
        if self.kind == "stats":
            return state[1]
        return state

    def sorted_keys(self) -> list[tuple]:
        if self.kind in SCALAR_KINDS:
            return sorted(self.entries, key=lambda k: (self.scalar(k), _sort_key(k)))
        return sorted(self.entries, key=_sort_key)

    def label(self, key: tuple) -> str:
        if not key:
            return self.name
        return f"{self.name}[{', '.join(str(k) for k in key)}]"

    def text(self) -> str:
        """The map as bpftrace prints it at exit (ends with a blank line)."""
        lines = []
        for key in self.sorted_keys():
            if self.kind in SCALAR_KINDS:
                if self.kind == "stats":
                    n, total = self.entries[key]
                    avg = int(total / n) if n else 0
                    lines.append(f"{self.label(key)}: count {n}, average {avg}, total {total}")
                else:
                    lines.append(f"{self.label(key)}: {self.scalar(key)}")
            else:
                lines.append(f"{self.label(key)}:")
                lines.extend(self._histogram_rows(self.entries[key]))
                lines.append("")
        if not lines or lines[-1] != "":
            lines.append("")
        return "\n".join(lines)

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
        entries = []
        for key in self.sorted_keys():
            item: dict = {"key": list(key)}
            state = self.entries[key]
            if self.kind == "stats":
                n, total = state
                item.update(count=n, average=int(total / n) if n else 0, total=total)
            elif self.kind in SCALAR_KINDS:
                item["value"] = self.scalar(key)
            else:
                lo, hi = min(state), max(state)
                item["buckets"] = [
                    {"min": self._bucket_range(i)[0], "max": self._bucket_range(i)[1], "count": state.get(i, 0)}
                    for i in range(lo, hi + 1)
                ]
            entries.append(item)
        obj = {"type": "map", "name": self.name, "kind": self.kind, "entries": entries}
        if self.kind == "lhist":
            obj["min"], obj["max"], obj["step"] = self.params
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
        m = self.maps.get(name)
        if m is None:
            m = self.maps[name] = BpfMap(name, kind, tuple(params))
        elif m.kind != kind:
            raise MapError(f"map {name} holds {m.kind}() values; it cannot take {kind}()")
        elif kind == "lhist" and m.params != tuple(params):
            raise MapError(f"map {name} is lhist{m.params}; it cannot take lhist{tuple(params)}")
        return m

    def update(self, name: str, kind: str, key=None, value=None, params: tuple = ()) -> None:
        self.declare(name, kind, params).update(_key_tuple(key), value)

    def clear(self, name: str | None = None) -> int:
        if name is None:
            n = len(self.maps)
            self.maps.clear()
            return n
        name = self.check_name(name)
        if name not in self.maps:
            raise MapError(f"no map {name}")
        del self.maps[name]
        return 1

    def names(self) -> list[str]:
        return sorted(self.maps)

    def __bool__(self) -> bool:
        return any(m.entries for m in self.maps.values())

"""The maps' Python implementation before their entries moved to C: the oracle of the
differential tests of kprobe_shell/tracing/maps.py (tests/tracing/test_cmaps.py)."""
from __future__ import annotations

from fractions import Fraction

from kprobe_shell.tracing.maps import SCALAR_KINDS, _hist_label, _lhist_label, _sort_key, hist_index, lhist_index


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

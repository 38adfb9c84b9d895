"""scripts/bench.py --quick runs and prints its table (a smoke test: no timing is judged)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench.py"


@pytest.mark.slow
def test_bench_quick_prints_the_table(capsys):
    import guestbuild

    guestbuild.require_compiler()
    spec = importlib.util.spec_from_file_location("kp_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    for row in ("(1) workload", "  bare unicorn (no tool)", "  unicorn + an empty C block hook",
                "  tool with no probes", "  probes never hit", "a run's fixed cost", "(2) floor", "(3) per hit",
                "(4) trace-line rendering", "(5) targets"):
        assert row in out
    for probe in ("kprobe", "jprobe", "kretprobe", "kprobe+kretprobe", "jprobe+kretprobe"):
        assert any(line.startswith(probe + " ") for line in out.splitlines())
    header = next(line for line in out.splitlines() if line.startswith("probe "))
    for mode in ("single-step", "boost", "optimize", "auto", "kernel 2005"):
        assert mode in header

"""The SMP demo and the shell's SMP surface, in batch mode."""
from __future__ import annotations

import re
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demos" / "08-smp-in-place.kps"


def probe_row(section: str, symbol: str) -> tuple[int, int, int | None]:
    """(hits, nmissed, missed in the in-place window) of the probe on symbol in a `probes` table."""
    row = next(line for line in section.splitlines() if re.match(rf"\d+\s+k\s+0x[0-9a-f]+\s+{symbol}\+", line))
    hits, missed = (int(v) for v in re.search(r"\s(\d+)\s+(\d+)\s+\S+", row.split(symbol)[1]).groups())
    window = re.search(r"missed \(in-place window\)=(\d+)", row)
    return hits, missed, int(window.group(1)) if window else None


def test_demo_shows_in_place_misses_and_out_of_line_none(run_shell, tmp_path):
    r = run_shell("--cpus", "2", "--batch", "-x", str(DEMO), tmp_home=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "Traceback" not in out + r.stderr
    out_of_line, in_place = out.split("=== 2. in-place single-step")
    hits, missed, window = probe_row(out_of_line, "_spin_lock_irqsave")
    assert hits > 100 and missed == 0 and window is None
    hits2, missed2, window2 = probe_row(in_place, "_spin_lock_irqsave")
    assert window2 > 0 and missed2 == 0 and hits2 > 0
    assert f"other CPUs ran through it {window2} time(s) unseen" in in_place
    # the trace lines of the opens name both CPUs
    cpus = set(re.findall(r"\[(\d{3})\]\s+\d+\.\d+: open: \(do_sys_open", out_of_line))
    assert cpus == {"000", "001"}
    # both runs halt with both CPUs parked
    assert out.count("[guest halted: hlt with interrupts off on every CPU") == 2


def test_tasks_and_cpus_show_which_cpu_runs_what(run_shell, tmp_path):
    r = run_shell("--cpus", "2", "--batch", "-ex", "run 300000", "-ex", "tasks", "-ex", "cpus",
                  tmp_home=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    header = next(line for line in r.stdout.splitlines() if "COMM" in line and "RUNNING" in line)
    assert header
    running = re.findall(r"^\*?\s+(\d+) (\S+)\s+\w\s+\S+\s+(\d)\s+cpu (\d)", r.stdout, re.M)
    assert {cpu for _pid, _comm, _home, cpu in running} == {"0", "1"}
    assert all(home == cpu for _pid, _comm, home, cpu in running)  # tasks run on their own CPU
    assert re.search(r"^\*?\s+1 online\s+\d+\s+\S+", r.stdout, re.M)


def test_one_cpu_shell_output_is_unchanged(run_shell, tmp_path):
    r = run_shell("--batch", "-ex", "tasks", tmp_home=str(tmp_path))
    assert "RUNNING" not in r.stdout  # no SMP column on a one-CPU machine

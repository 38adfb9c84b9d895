"""scripts/bench.py --qiling: real programs under the tool and under Qiling 1.4.6 (part 6).

Qiling is installed here only, into a venv of its own under the user's cache directory,
never into the tool's environment: it pins its own versions of unicorn and capstone.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

QILING_VERSION = "1.4.6"
ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ROOT / "tests" / "userspace" / "programs"
#: (name, extra link flags, needs) of the programs run: a small one and a bigger one.
CANDIDATES = (("hello", (), None), ("bzip", ("-lbz2",), "/usr/lib/x86_64-linux-gnu/libbz2.a"))
BUDGET = 2_000_000_000

#: Run in Qiling's venv, once per sample: prints the time from creating the emulator to
#: the program's end on stderr (the program's own output goes to stdout).
QILING_RUNNER = r"""
import sys, time
from qiling import Qiling
from qiling.const import QL_VERBOSE
rootfs, argv = sys.argv[1], sys.argv[2:]
t = time.perf_counter()
Qiling(argv, rootfs, verbose=QL_VERBOSE.DISABLED).run()
sys.stdout.flush()
print(f"qiling-seconds {time.perf_counter() - t:.6f}", file=sys.stderr)
"""


class QilingUnavailable(Exception):
    """Qiling could not be installed or run here: the message says why."""


def qiling_python() -> str:
    """The Python of Qiling's venv, created and filled on first use."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kprobe-shell"
    venv = cache / f"qiling-{QILING_VERSION}"
    python = venv / "bin" / "python"
    if python.exists() and _has_qiling(python):
        return str(python)
    print(f"bench: installing Qiling {QILING_VERSION} into {venv} (once)", file=sys.stderr)
    for cmd in ([sys.executable, "-m", "venv", str(venv)],
                [str(python), "-m", "pip", "install", "-q", f"qiling=={QILING_VERSION}"]):
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise QilingUnavailable(f"`{' '.join(cmd)}` failed: {tail}")
    if not _has_qiling(python):
        raise QilingUnavailable(f"qiling {QILING_VERSION} does not import in {venv}")
    return str(python)


def _has_qiling(python: Path) -> bool:
    done = subprocess.run([str(python), "-c", "import qiling; print(qiling.__version__)"],
                          capture_output=True, text=True, check=False)
    return done.returncode == 0 and done.stdout.strip() == QILING_VERSION


def build_programs(scratch: str) -> list[tuple[str, str, str]]:
    """(name, path, native output) of each program that builds here, each in a rootfs of
    its own (scratch/NAME-root/NAME) for Qiling."""
    if shutil.which("gcc") is None:
        raise QilingUnavailable("gcc is not installed: no program to run")
    built = []
    for name, extra, needs in CANDIDATES:
        if needs is not None and not os.path.exists(needs):
            print(f"bench: skipping {name}: {needs} is missing", file=sys.stderr)
            continue
        root = Path(scratch) / f"{name}-root"
        root.mkdir()
        path = root / name
        subprocess.run(["gcc", "-static", "-O2", "-o", str(path), str(PROGRAMS / f"{name}.c"), *extra],
                       check=True, capture_output=True)
        native = subprocess.run([str(path)], capture_output=True, check=True, stdin=subprocess.DEVNULL).stdout
        built.append((name, str(path), native.decode()))
    return built


def run_qiling(python: str, runner: str, path: str) -> tuple[float, str]:
    done = subprocess.run([python, runner, os.path.dirname(path), path], capture_output=True, text=True,
                          check=False, stdin=subprocess.DEVNULL)
    seconds = [line.split()[1] for line in done.stderr.splitlines() if line.startswith("qiling-seconds ")]
    if done.returncode != 0 or not seconds:
        tail = " ".join(done.stderr.strip().splitlines()[-2:])
        raise QilingUnavailable(f"Qiling could not run {path}: {tail}")
    return float(seconds[0]), done.stdout


def run_tool(path: str) -> tuple[float, str]:
    from kprobe_shell import Machine, Program, StopReason

    t = time.perf_counter()
    m = Machine(programs=[Program(path, [os.path.basename(path)])])
    event = m.run(max_insns=BUDGET)
    seconds = time.perf_counter() - t
    if event.reason is not StopReason.HALTED:
        raise RuntimeError(f"the tool did not run {path} to its end: {m.describe_stop(event)}")
    start = m.console.index(" -> pid 2\n") + len(" -> pid 2\n")
    return seconds, m.console[start:m.console.index("init: reaped pid 2 ")]


def measure_programs(runs: int, scratch: str, Bench, machine_info) -> str:
    """Part 6's table, or why it could not be made."""
    sys.path.insert(0, str(ROOT))
    out = io.StringIO()
    out.write(f"\n(6) real programs, the tool (no probes) vs Qiling {QILING_VERSION}: median of {runs} round(s); "
              f"{machine_info()}\n")
    try:
        python = qiling_python()
        programs = build_programs(scratch)
    except (QilingUnavailable, subprocess.CalledProcessError) as exc:
        out.write(f"  not measured: {exc}\n")
        return out.getvalue()
    runner = os.path.join(scratch, "qiling_runner.py")
    Path(runner).write_text(QILING_RUNNER)
    bench = _ReportedTimes(Bench)(runs)
    for name, path, native in programs:
        for who, run in (("tool", lambda p=path: run_tool(p)),
                         ("qiling", lambda p=path: run_qiling(python, runner, p))):
            bench.add(f"{name} {who}", _timed(run, native, f"{who} {name}"))
    try:
        bench.run(progress=lambda r: print(f"  programs: round {r}/{runs} done", file=sys.stderr))
    except (QilingUnavailable, RuntimeError) as exc:
        out.write(f"  not measured: {exc}\n")
        return out.getvalue()
    out.write(f"{'program':<28}{'tool':>10}{'Qiling':>10}{'tool/Qiling':>13}\n")
    for name, _path, _native in programs:
        ratio = bench.paired_ratio(f"{name} tool", f"{name} qiling")
        out.write(f"{name + ' (gcc -static)':<28}{bench.median(f'{name} tool') * 1e3:>8.0f}ms"
                  f"{bench.median(f'{name} qiling') * 1e3:>8.0f}ms{ratio:>12.2f}x  "
                  f"{'met' if round(ratio, 2) <= 1.0 else 'MISSED'} (target <= 1.0x)\n")
    return out.getvalue()


def _timed(run, native: str, what: str):
    """A Bench configuration whose sample is the time the run reports (the emulator's
    creation to the program's end), its output checked against the native run's."""
    def setup():
        result = {}

        def go():
            result["seconds"], output = run()
            if output != native:
                raise RuntimeError(f"{what}: the output differs from the native run's: {output[:200]!r}")
        return go, result
    return setup


def _ReportedTimes(Bench):
    """bench.Bench whose samples are the times the runs report (see _timed)."""
    class ReportedTimes(Bench):
        @staticmethod
        def _time(setup) -> float:
            go, result = setup()
            go()
            return result["seconds"]
    return ReportedTimes

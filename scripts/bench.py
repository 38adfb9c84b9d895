#!/usr/bin/env python3
"""Side-by-side benchmark of what probes cost, in one process, medians of several runs.

    python scripts/bench.py [--runs 5] [--calls 100000] [--steady-calls 1000000] [--quick]
                            [--qiling [--programs-only]]

Every configuration is measured in the same process, round-robin (one run of each, then
the next round), and the median of the rounds is reported, so that the noise of a shared
machine hits all rows alike.  Setting up (loading, registering) is not timed.  Ratios
between rows are taken within each round, then their median; a per-hit figure is each
sample less a run without the probe right before it (see Bench), so a slow spell of the
machine cancels out of a comparison instead of deciding it.

1. Workloads, unprobed:
   - the bundled kernel (boot, self-tests, the forked workload, halt).  It needs the
     machine's timer, so its baseline is the machine alone (unicorn + the instruction
     clock + timer delivery, no probe engine);
   - a call-heavy micro workload: a freestanding guest calling a 3-instruction function
     (first instruction RIP-relative) --steady-calls times; its baseline is bare unicorn,
     and unicorn with a C block hook that does nothing is shown beside it (what unicorn
     charges for any block hook: the floor of the tool's block clock).  It runs long
     enough (~70 ms) that the few tens of microseconds every run costs to set up, shown
     on their own line (a 1-call image), do not decide a comparison to 1.1x; its rows
     have a phase of their own, many short rounds.
   Each: baseline, the tool with no probes, the tool with probes on functions that are
   never called (kprobes and a kretprobe, in auto mode: optimized where safe).
2. The floor: a unicorn hook on the probed address whose Python callback does nothing
   (one host transition per hit), over bare unicorn.
3. Per hit on the micro workload's function: kprobe, jprobe, kretprobe (entry + return),
   kprobe + kretprobe, jprobe + kretprobe; with a no-op Python handler and with the
   shell's default trace handler (an ftrace line per hit, written to a file); in
   microseconds over the tool's no-probe run and as a multiple of the floor; for each
   kprobe-mode.  The kernel's documented 2005 figures (x86_64 Opteron) are printed beside.
   A count() map update alone, in C (as the probe hit's C code makes it) and from Python.
   Then kprobe_events lines in auto mode as the issue's targets name them (two register
   args and a string; with a count() map; entry and return events with $retval): the
   shell's whole path, recorded in the trace buffer, rendered, written to a file.
4. Throughput of trace-line rendering (TraceEvent records -> the shell's Output -> a file;
   records a recorder wrote in C into the trace ring -> rendered by the ring at the
   Output's flush -> a file), and of `trace save FILE.dat` with a full trace buffer.
5. The issue's targets (probes not hit <= 1.1x bare, optimized <= 2x the floor, boosted
   <= 6x, kretprobe entry + return in auto mode <= 4x; a traced kprobe hit, recorded in
   C, <= 1.0x the floor, its count() map update <= 0.5x; a traced kretprobe (a p: and
   an r: event with $retval on one function, per call) <= 2x; end to end, `kprobe-shell IMAGE
   --batch -ex 'p:h hot x=%di y=%si:u32' -ex run > /dev/null` on a 200,000-call loop
   against the same command without the probe, <= 2x the floor per hit, its peak
   memory (VmHWM) <= 1.2x the command's without the probe and flat
   (<= 1.05x) with ten times the events), met or missed in this run.
6. With --qiling: real programs (tests/userspace/programs: hello, and bzip on Debian's
   libbz2 when libbz2-dev is installed, built with gcc -static) run by the tool with no
   probes (the bundled kernel's CONFIG_USERSPACE build boots, runs the program, halts)
   and by Qiling 1.4.6 (which serves the system calls in Python), side by side, round
   robin; each time is from creating the emulator to the program's end (interpreter
   start and imports not counted), and the ratio is the tool's over Qiling's within each
   round (target: <= 1.0x).  Qiling is never a dependency of kprobe-shell: --qiling
   pip-installs it into a venv of its own under $XDG_CACHE_HOME/kprobe-shell (default
   ~/.cache), once; Qiling needs a rootfs directory and a glibc program inside it (it
   answers readlink("/proc/self/exe") with the program's path in the rootfs), so each
   program is copied into an otherwise empty one.  Both runs' output is checked against
   the native run's.  --programs-only runs this part alone.
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

PROGRAM = r"""
static inline void outb(unsigned short p, unsigned char v){ __asm__ volatile("outb %0,%1"::"a"(v),"Nd"(p)); }
volatile long g;
__attribute__((noinline)) long hot(long x){ return x + g; }
__attribute__((noinline)) long cold(long x){ return x * 7 + g; }
__attribute__((noinline)) long colder(long x, long y){ return x * y + g; }
void _start(void){
  long s = 0;
  for (long i = 0; i < CALLS; i++) s += hot(i);
  g = s;
  outb(0x3f8, 'k'); outb(0x3f8, '\n');
  __asm__ volatile("cli; hlt");
}
"""

#: Documented per-hit overhead, microseconds (Documentation/kprobes.txt, 2005, x86_64 Opteron 246).
KERNEL_2005 = {"k": 0.49, "j": 0.76, "r": 0.80, "kr": 0.82, "jr": 1.07}
MODES = ("single-step", "boost", "optimize", "auto")


def build(calls: int, directory: str) -> str:
    """The micro workload's image, calling hot() `calls` times, built in directory."""
    src = os.path.join(directory, "bench.c")
    with open(src, "w") as f:
        f.write(PROGRAM)
    out = os.path.join(directory, f"bench-{calls}.elf")
    subprocess.run(["gcc", "-O2", "-ffreestanding", "-nostdlib", "-static", "-no-pie", "-fno-pic",
                    "-fcf-protection=none", f"-DCALLS={calls}", "-o", out, src], check=True)
    return out


class Bench:
    """Configurations measured round-robin; each is a function returning a callable to time.
    Each round starts one configuration further along, so no configuration always runs
    right after the same other one.

    A configuration can have a base, a configuration that takes a few milliseconds (the
    same guest without the thing measured): every sample of it is then taken right after
    a run of its base, and what is kept is the difference, so a slow spell of the shared
    machine, which outlasts the pair, mostly cancels out of it."""

    def __init__(self, runs: int):
        self.runs = runs
        self.configs: dict[str, tuple] = {}
        self.samples: dict[str, list[float]] = {}

    def add(self, name: str, setup, repeat: int = 1, base=None) -> None:
        """repeat: samples per round, for rows so short (a few ms) that one hiccup of a
        shared machine would otherwise decide their median.  base: see the class."""
        self.configs[name] = (setup, repeat, base)
        self.samples[name] = []

    @staticmethod
    def _time(setup) -> float:
        go = setup()
        t = time.perf_counter()
        go()
        return time.perf_counter() - t

    def run(self, progress=None) -> None:
        names = list(self.configs)
        for r in range(self.runs):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                setup, repeat, base = self.configs[name]
                for _ in range(repeat):
                    before = self._time(base) if base is not None else 0.0
                    self.samples[name].append(self._time(setup) - before)
            if progress:
                progress(r + 1)

    def median(self, name: str) -> float:
        """The median sample (for a configuration with a base: the median difference)."""
        return statistics.median(self.samples[name])

    def paired_ratio(self, name: str, base: str) -> float:
        """The median over rounds of name's time over base's in the same round: a shared
        machine's slow spells, which last longer than a round, cancel out of each ratio."""
        return statistics.median(a / b for a, b in zip(self.samples[name], self.samples[base]))


def machine_info() -> str:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import unicorn

    return (f"{os.cpu_count()} cores ({cpu}); Python {platform.python_version()}; "
            f"unicorn {unicorn.__version__}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="rounds; the median is reported (default 5)")
    ap.add_argument("--calls", type=int, default=100_000, help="calls of the micro workload per hit row (default 100000)")
    ap.add_argument("--steady-calls", type=int, default=1_000_000,
                    help="calls of the micro workload in the no-probe rows (default 1000000)")
    ap.add_argument("--quick", action="store_true", help="a brief smoke run (1 round, 2000 calls, no kernel rows)")
    ap.add_argument("--qiling", action="store_true",
                    help="also run real programs under the tool and under Qiling 1.4.6 (installed into its own "
                         "venv under $XDG_CACHE_HOME/kprobe-shell on first use), side by side (part 6)")
    ap.add_argument("--programs-only", action="store_true", help="with --qiling: run part 6 alone")
    args = ap.parse_args(argv)
    if args.programs_only and not args.qiling:
        ap.error("--programs-only goes with --qiling")
    if args.quick:
        args.runs, args.calls, args.steady_calls = 1, 2000, 2000
    with tempfile.TemporaryDirectory(prefix="kpbench") as scratch:
        if not args.programs_only:
            print(measure(args, scratch), end="")
        if args.qiling:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            from bench_programs import measure_programs

            print(measure_programs(args.runs, scratch, Bench, machine_info), end="")
    return 0


def measure(args, scratch: str) -> str:
    """Run every configuration and return the table."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import ctypes

    from unicorn import UC_ARCH_X86, UC_HOOK_BLOCK, UC_HOOK_CODE, UC_HOOK_INSN, UC_MODE_64, Uc
    from unicorn.unicorn_py3.unicorn import uclib
    from unicorn.x86_const import UC_X86_INS_OUT, UC_X86_REG_RSP

    from kprobe_shell import Jprobe, Kprobe, Kretprobe, Machine
    from kprobe_shell.images import bundled_image_path
    from kprobe_shell.machine import Image
    from kprobe_shell.machine.clock import EMPTY_HOOK_ADDRESS
    from kprobe_shell.machine.machine import Machine as MachineAlone
    from kprobe_shell.shell.output import Output
    from kprobe_shell.shell.session import Session
    from kprobe_shell.tracing.trace import DEFAULT_SIZE_KB, TraceEvent

    path = build(args.calls, scratch)
    steady = build(args.steady_calls, scratch)
    once = build(1, scratch)
    image = Image.load(path)
    hot = image.symbols["hot"].address
    n = args.calls

    # ------------------------------------------------------------ configurations
    def bare_unicorn(image_path, hit_hook=False, empty_block_hook=False):
        img = Image.load(image_path)

        def setup():
            uc = Uc(UC_ARCH_X86, UC_MODE_64)
            pages = set()
            for s in img.segments:
                pages.update(range(s.vaddr & ~0xFFF, s.end, 0x1000))
            for p in sorted(pages):
                uc.mem_map(p, 0x1000)
            for s in img.segments:
                uc.mem_write(s.vaddr, s.data)
            uc.mem_map(0x7F0000, 0x10000)
            uc.reg_write(UC_X86_REG_RSP, 0x7FFF00)
            uc.hook_add(UC_HOOK_INSN, lambda *a: None, None, 1, 0, UC_X86_INS_OUT)
            if hit_hook:
                uc.hook_add(UC_HOOK_CODE, lambda uc, a, s, u: None, None, hot, hot)
            if empty_block_hook:  # a C callback, as the clock's is (a Python one costs a transition)
                handle = ctypes.c_size_t()
                err = uclib.uc_hook_add(uc._uch, ctypes.byref(handle), UC_HOOK_BLOCK,
                                        ctypes.c_void_p(EMPTY_HOOK_ADDRESS), None,
                                        ctypes.c_uint64(1), ctypes.c_uint64(0))
                assert err == 0, err
            return lambda: uc.emu_start(img.entry, (1 << 64) - 1)
        return setup

    def alone(image_path):
        def setup():
            return MachineAlone(image_path).run
        return setup

    def tool(image_path, register=None, mode="auto"):
        def setup():
            m = Machine(image_path)
            m.kprobes.set_mode(mode)
            if register:
                register(m)
            return m.run
        return setup

    def traced(commands, mode):
        """The shell's default handlers: one ftrace line per hit, written to a file."""
        def setup():
            f = open(os.path.join(scratch, "trace.txt"), "w")
            session = Session(path, output=Output(stream=f, color=False))
            session.execute(f"set kprobe-mode {mode}")
            for c in commands:
                session.execute(c)

            def go():
                session.machine.run()
                session.out.flush()  # the trace lines still waiting to be rendered (see Output)
                f.close()
            return go
        return setup

    noop = lambda *a: 0  # noqa: E731
    cases = [
        ("k", "kprobe", lambda m: m.register_kprobe(Kprobe("hot", pre_handler=noop)), ["kprobe hot"]),
        ("j", "jprobe", lambda m: m.register_jprobe(Jprobe("hot", lambda x: None)), ["jprobe hot"]),
        ("r", "kretprobe", lambda m: m.register_kretprobe(Kretprobe("hot", handler=noop)), ["kretprobe hot"]),
        ("kr", "kprobe+kretprobe", lambda m: [m.register_kprobe(Kprobe("hot", pre_handler=noop)),
                                             m.register_kretprobe(Kretprobe("hot", handler=noop))],
         ["kprobe hot", "kretprobe hot"]),
        ("jr", "jprobe+kretprobe", lambda m: [m.register_jprobe(Jprobe("hot", lambda x: None)),
                                             m.register_kretprobe(Kretprobe("hot", handler=noop))],
         ["jprobe hot", "kretprobe hot"]),
    ]

    def unhit(m):
        for name in ("cold", "colder"):
            m.register_kprobe(Kprobe(name, pre_handler=noop))
        m.register_kretprobe(Kretprobe("cold", handler=noop))

    bench = Bench(args.runs)
    kernel = None if args.quick else bundled_image_path()
    if kernel is not None and os.path.isfile(kernel):
        never = never_called_kernel_functions(Machine, Kprobe, kernel)

        def kernel_unhit(m):
            for name in never[:8]:
                m.register_kprobe(Kprobe(name, pre_handler=noop))
            for name in never[:2]:
                m.register_kretprobe(Kretprobe(name, handler=noop))

        bench.add("kernel: machine alone", alone(kernel), 3)
        bench.add("kernel: tool, no probes", tool(kernel), 3)
        bench.add("kernel: tool, unhit probes", tool(kernel, kernel_unhit), 3)
    else:
        kernel = None
    # The no-probe rows compare costs a few percent apart: they get a phase of their own,
    # one run of each per round (~0.4 s), many rounds, each ratio taken within its round.
    steady_bench = Bench(args.runs * 4)
    steady_bench.add("bare", bare_unicorn(steady))
    steady_bench.add("empty block hook", bare_unicorn(steady, empty_block_hook=True))
    steady_bench.add("machine alone", alone(steady))
    steady_bench.add("tool, no probes", tool(steady))
    steady_bench.add("tool, unhit probes", tool(steady, unhit))
    short = 1 if args.quick else 5    # samples per round of the rows that take a few ms or less
    bench.add("once: bare unicorn", bare_unicorn(once), short)
    bench.add("once: tool, no probes", tool(once), short)
    # Per hit: each sample less a run of the same workload without probes, right before it.
    bench.add("floor", bare_unicorn(path, hit_hook=True), 1 if args.quick else 3, base=bare_unicorn(path))
    for key, label, reg, commands in cases:
        for mode in MODES:
            bench.add(f"{key} noop {mode}", tool(path, reg, mode), base=tool(path))
            bench.add(f"{key} trace {mode}", traced(commands, mode), base=tool(path))
    for key, _label, commands in EVENT_CASES:
        bench.add(f"event {key}", traced(commands, "auto"), base=tool(path))
    # End to end as a user types it: a fresh process, the shell's batch mode, output to
    # /dev/null; each sample less the same command without the probe.
    e2e_calls = 20_000 if args.quick else 200_000
    e2e_path = build(e2e_calls, scratch)
    bench.add("end to end", command_line(e2e_path, ["p:h hot x=%di y=%si:u32", "run"]),
              base=command_line(e2e_path, ["run"]))
    print(f"benchmark: {len(steady_bench.configs)} no-probe configurations x {steady_bench.runs} rounds, "
          f"then {len(bench.configs)} x {args.runs}; {machine_info()}", file=sys.stderr)
    steady_bench.run()
    bench.run(progress=lambda r: print(f"  round {r}/{args.runs} done", file=sys.stderr))

    # ------------------------------------------------------------ the table
    med = bench.median
    out = io.StringIO()
    w = out.write

    def row(label: str, seconds: float, ratio: float, note: str = "") -> None:
        w(f"{label:<46}{seconds * 1e3:>8.1f}ms{ratio:>9.2f}x{note}\n")

    w(f"kprobe-shell benchmark: median of {args.runs} round(s), {n} calls of hot(); {machine_info()}\n\n")
    w(f"{'(1) workload':<46}{'time':>10}{'ratio':>10}\n")
    if kernel is not None:
        for label, name in (("bundled kernel, machine alone (baseline)", "kernel: machine alone"),
                            ("bundled kernel, tool with no probes", "kernel: tool, no probes"),
                            ("bundled kernel, probes never hit", "kernel: tool, unhit probes")):
            row(label, med(name), bench.paired_ratio(name, "kernel: machine alone"))
    w(f"micro workload, {args.steady_calls} calls ({steady_bench.runs} rounds; ratios within each round):\n")
    steady_ratio = {name: steady_bench.paired_ratio(name, "bare") for name in steady_bench.configs}
    for label, name, note in (("  bare unicorn (no tool)", "bare", ""),
                              ("  unicorn + an empty C block hook", "empty block hook", "  (the clock's floor)"),
                              ("  machine alone (unicorn + clock)", "machine alone", ""),
                              ("  tool with no probes", "tool, no probes", ""),
                              ("  probes never hit", "tool, unhit probes",
                               f"  ({steady_bench.paired_ratio('tool, unhit probes', 'tool, no probes'):.2f}x"
                               " no probes)")):
        row(label, steady_bench.median(name), steady_ratio[name], note)
    once_bare, once_tool = med("once: bare unicorn"), med("once: tool, no probes")
    w(f"  a run's fixed cost (a 1-call image): bare {once_bare * 1e6:.0f} us, tool {once_tool * 1e6:.0f} us\n\n")
    floor_us = med("floor") / n * 1e6
    w(f"(2) floor: no-op unicorn hook on the address: {floor_us:.2f} us/hit over bare unicorn\n\n")
    w(f"(3) per hit (per call for return probes; {n} calls), us over the tool's no-probe run, and x floor\n")
    header = f"{'probe':<18}{'handler':<8}" + "".join(f"{m:>18}" for m in MODES) + f"{'kernel 2005':>13}\n"
    w(header)

    def per_hit_us(key: str, handler: str, mode: str) -> float:
        return med(f"{key} {handler} {mode}") / n * 1e6

    for key, label, _reg, _cmds in cases:
        for handler in ("noop", "trace"):
            cells = ""
            for mode in MODES:
                per = per_hit_us(key, handler, mode)
                cells += f"{per:>10.2f} ({per / floor_us:>4.1f}x)"
            w(f"{label:<18}{handler:<8}{cells}{KERNEL_2005[key]:>10.2f} us\n")
    w(f"\nkprobe_events lines, auto mode, recorded in the trace buffer ({DEFAULT_SIZE_KB} KiB a CPU), rendered, "
      "written to a file:\n")
    for key, label, commands in EVENT_CASES:
        per = med(f"event {key}") / n * 1e6
        w(f"  {label:<58}{per:>8.2f} us ({per / floor_us:>4.1f}x floor)\n")
    map_us = (med("event count") - med("event kprobe")) / n * 1e6
    w(f"  {'  of which the count() map update':<58}{map_us:>8.2f} us ({map_us / floor_us:>4.1f}x floor)\n")
    c_ns, py_ns = map_update_ns(200_000 if args.quick else 2_000_000)
    w(f"  {'  a count() update alone, in C (cmaps_api.update)':<58}{c_ns / 1e3:>8.3f} us ({c_ns / 1e3 / floor_us:>4.2f}x"
      f" floor; {c_ns:.0f} ns)\n")
    w(f"  {'  a count() update alone, from Python (MapStore.update)':<58}{py_ns / 1e3:>8.3f} us "
      f"({py_ns / 1e3 / floor_us:>4.2f}x floor; {py_ns:.0f} ns)\n")
    map_update_target = ("count() map update in C, alone", c_ns / 1e3 / floor_us, 0.5, "x floor")
    lines_per_s = trace_throughput(TraceEvent, Output, scratch, 20_000 if args.quick else 200_000)
    w(f"\n(4) trace-line rendering to a file: {lines_per_s / 1e3:.0f}k lines/s ({1e6 / lines_per_s:.2f} us/line)\n")
    c_per_s = c_trace_throughput(Output, scratch, 20_000 if args.quick else 200_000)
    w(f"    of records written in C, rendered by the ring: {c_per_s / 1e3:.0f}k lines/s "
      f"({1e6 / c_per_s:.2f} us/line)\n")
    dat_per_s, dat_events = dat_throughput(Session, Output, path, scratch)
    w(f"    trace save FILE.dat of a full buffer ({dat_events} events): {dat_per_s / 1e3:.0f}k events/s "
      f"({1e6 / dat_per_s:.2f} us/event)\n")

    # The targets, as this run measured them.
    rows = [("probes not hit (micro, vs bare unicorn)",
             max(steady_ratio["tool, no probes"], steady_ratio["tool, unhit probes"]), 1.1, "x")]
    if kernel is not None:
        rows.append(("probes not hit (kernel, vs machine alone)",
                     max(bench.paired_ratio(name, "kernel: machine alone")
                         for name in ("kernel: tool, no probes", "kernel: tool, unhit probes")), 1.1, "x"))
    rows += [("optimized kprobe, no-op handler", per_hit_us("k", "noop", "optimize") / floor_us, 2.0, "x floor"),
             ("boosted kprobe, no-op handler", per_hit_us("k", "noop", "boost") / floor_us, 6.0, "x floor"),
             ("kretprobe entry + return, auto mode", per_hit_us("r", "noop", "auto") / floor_us, 4.0, "x floor")]
    e2e_us = med("end to end") / e2e_calls * 1e6
    w(f"\nend to end, kprobe-shell --batch -ex 'p:h hot x=%di y=%si:u32' -ex run > /dev/null, {e2e_calls} calls: "
      f"{e2e_us:.2f} us per hit over the run without the probe ({e2e_us / floor_us:.1f}x floor)\n")
    memory = peak_memory(e2e_path, build(e2e_calls * 10, scratch))
    w(f"peak memory of that command: {memory['run', 1] / 1024:.1f} MB without the probe, "
      f"{memory['traced', 1] / 1024:.1f} MB with it ({e2e_calls} events), "
      f"{memory['traced', 10] / 1024:.1f} MB with {e2e_calls * 10} events\n")
    rows += [("traced kprobe hit (p: 2 regs + $comm), auto", med("event kprobe") / n * 1e6 / floor_us, 1.0, "x floor"),
             ("count() map update at a traced hit (C)", map_us / floor_us, 0.5, "x floor"),
             ("traced kretprobe (p: + r: with $retval), auto", med("event kretprobe") / n * 1e6 / floor_us, 2.0,
              "x floor"),
             ("traced hit end to end (command line)", e2e_us / floor_us, 2.0, "x floor"),
             ("its peak memory, vs the run without the probe", memory["traced", 1] / memory["run", 1], 1.2, "x"),
             ("its peak memory, 10x the events vs 1x", memory["traced", 10] / memory["traced", 1], 1.05, "x")]
    w("\n(5) targets (each value as shown, to two decimals, against the issue's limit)\n")
    for label, value, limit, unit in [*rows, map_update_target]:
        w(f"{label:<46}{value:>7.2f}{unit:<8} <= {limit:<4} {'met' if round(value, 2) <= limit else 'MISSED'}\n")
    return out.getvalue()


#: Traced hits as the issue's targets name them: (key, label, the shell's commands).
EVENT_CASES = (
    ("kprobe", "p: two register args and a string ($comm)", ["p:h hot x=%di y=%si:u32 c=$comm"]),
    ("count", "the same with a count() map on it", ["p:h hot x=%di y=%si:u32 c=$comm", "@n[c] = count() on h"]),
    ("kretprobe", "p: + r: with $retval (entry and return events)", ["p:e hot x=%di", "r:x hot ret=$retval"]),
)


def command_line(image: str, commands: list[str]):
    """A configuration: the shell as a user starts it, `kprobe-shell IMAGE --batch -ex
    C ...`, its output to /dev/null (the process's start included: the base has it too)."""
    argv = [sys.executable, "-m", "kprobe_shell", image, "--batch"]
    for c in commands:
        argv += ["-ex", c]
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH")))))

    def setup():
        return lambda: subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, env=env)
    return setup


#: The shell as the end-to-end command runs it, printing its own peak resident memory
#: (VmHWM: the memory of this program, not of the process it was forked from, which
#: ru_maxrss would also count) on stderr at exit.
PEAK_MEMORY_RUNNER = (
    "import atexit, runpy, sys\n"
    "def hwm():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            print('peak-kib', line.split()[1], file=sys.stderr)\n"
    "atexit.register(hwm)\n"
    "sys.argv = ['kprobe-shell', *sys.argv[1:]]\n"
    "runpy.run_module('kprobe_shell', run_name='__main__')\n"
)


def peak_memory(image: str, image_10x: str) -> dict[tuple[str, int], int]:
    """Peak resident memory (KiB) of the end-to-end command with and without the probe,
    and with the probe on ten times the calls."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH")))))
    out = {}
    for key, path, commands in (("run", image, ["run"]), ("traced", image, ["p:h hot x=%di y=%si:u32", "run"]),
                                ("traced", image_10x, ["p:h hot x=%di y=%si:u32", "run"])):
        argv = [sys.executable, "-c", PEAK_MEMORY_RUNNER, path, "--batch"] + [a for c in commands for a in ("-ex", c)]
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, check=True)
        out[key, 10 if path == image_10x else 1] = int(done.stderr.rsplit("peak-kib ", 1)[1].split()[0])
    return out


def dat_throughput(Session, Output, image: str, scratch: str) -> tuple[float, int]:
    """Events per second of `trace save FILE.dat` with the buffer full of p: events."""
    with open(os.devnull, "w") as sink:
        session = Session(image, output=Output(stream=sink, color=False))
        for c in EVENT_CASES[0][2]:
            session.execute(c)
        session.machine.run()
        session.out.flush()
        t = time.perf_counter()
        session.execute(f"trace save {os.path.join(scratch, 'bench.dat')}")
        return session.trace.entries / (time.perf_counter() - t), session.trace.entries


def never_called_kernel_functions(Machine, Kprobe, kernel: str) -> list[str]:
    """Functions of the bundled kernel that its whole run never calls (found by a counting
    run with a kprobe on every function entry)."""
    m = Machine(kernel)
    probes = []
    for f in m.symbols.functions():
        try:
            probes.append(m.register_kprobe(Kprobe(addr=f.address, name=f.name)))
        except Exception:  # noqa: BLE001 - what cannot be probed is not a candidate
            pass
    m.run()
    return sorted(p.name for p in probes if p.hits == 0 and not p.name.startswith(("fx_", "_start")))


def map_update_ns(count: int) -> tuple[float, float]:
    """Nanoseconds per count() update of a map keyed by a task name: through the C update
    that C callers make (a loop in C, cmaps.h), and through MapStore.update from Python
    (handler files' and the shell's Python paths).  Median of 5."""
    from kprobe_shell.tracing import _maps
    from kprobe_shell.tracing.maps import MapStore

    store = MapStore()
    store.update("n", "count", ("workload",))
    key = _maps.encode_key(("workload",))
    c_ns = statistics.median(_maps.bench_update(store.maps["@n"]._cmap, key, 0, count) / count for _ in range(5))
    update, py_count = store.update, count // 10
    py_times = []
    for _ in range(5):
        t = time.perf_counter_ns()
        for _ in range(py_count):
            update("n", "count", ("workload",))
        py_times.append((time.perf_counter_ns() - t) / py_count)
    return c_ns, statistics.median(py_times)


def trace_throughput(TraceEvent, Output, scratch: str, count: int) -> float:
    """Lines per second: TraceEvent records -> the shell's Output (which renders them in
    batches, see Output.trace) -> a file."""
    events = [TraceEvent(time_ns=1000 * i, comm="workload", pid=3, cpu=0, event="p_hot_0",
                         where="hot+0x0/0x8", args=f" x=0x{i:x}") for i in range(count)]
    t = time.perf_counter()
    with open(os.path.join(scratch, "render.txt"), "w") as f:
        out = Output(stream=f, color=False)
        trace = out.trace
        for ev in events:
            trace(ev)
        out.flush()
    return count / (time.perf_counter() - t)


def c_trace_throughput(Output, scratch: str, count: int) -> float:
    """Lines per second: records written through the ring's C interface (ringbuf.h) ->
    rendered by the ring in bulk at the Output's flush -> a file.  The records are
    written first (not timed): the ring keeps them all."""
    import struct

    from kprobe_shell.tracing._ring import W_PROBE
    from kprobe_shell.tracing.trace import TraceBuffer

    buf = TraceBuffer(size_kb=count * 32 // 1024 + 64)
    event_id = buf.describe("p_hot_0", False, "k", 1, False, {"x": "x64"})
    buf.ring.set_where(W_PROBE, 0x1000, "hot+0x0/0x8")
    with open(os.path.join(scratch, "render_c.txt"), "w") as f:
        out = Output(stream=f, color=False)
        out.follow(buf)
        record, ring = buf.ring.record, struct.Struct("<HBBiQQ")
        for i in range(count):
            record(0, 1000 * i, 3, b"workload", ring.pack(event_id, 0, 0, 3, 0x1000, i))
        t = time.perf_counter()
        out.flush()
        f.flush()
        return count / (time.perf_counter() - t)


if __name__ == "__main__":
    sys.exit(main())

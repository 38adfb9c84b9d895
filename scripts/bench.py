#!/usr/bin/env python3
"""Side-by-side benchmark of probe costs, in one process, medians of several runs.

    python3 scripts/bench.py [--runs 5] [--calls 100000]

Workload: a freestanding guest calling a small function (first instruction RIP-relative)
N times. Rows, all measured in this run:
  bare unicorn          the image in unicorn alone (no tool, no clock)
  bare unicorn + clock  the same with the C instruction counter the tool's clock uses
  tool, no probes       kprobe_shell's Machine
  tool, unhit probes    probes registered on a function that is never called
  floor                 a unicorn hook on the probed address whose callback does nothing
  k/j/r/kr per mode     per-hit cost over the no-probe run, and as a ratio to the floor
The kernel's documented per-hit figures (2005, x86_64 Opteron) are printed beside ours.
"""
from __future__ import annotations

import argparse
import os
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
void _start(void){
  long s = 0;
  for (long i = 0; i < CALLS; i++) s += hot(i);
  g = s;
  outb(0x3f8, 'k'); outb(0x3f8, '\n');
  __asm__ volatile("cli; hlt");
}
"""

KERNEL_2005 = {"k": 0.49, "j": 0.76, "r": 0.80, "kr": 0.82, "jr": 1.07}


def build(calls: int) -> str:
    d = tempfile.mkdtemp(prefix="kpbench")
    src = os.path.join(d, "bench.c")
    with open(src, "w") as f:
        f.write(PROGRAM)
    out = os.path.join(d, "bench.elf")
    subprocess.run(["gcc", "-O2", "-ffreestanding", "-nostdlib", "-static", "-no-pie", "-fno-pic",
                    "-fcf-protection=none", f"-DCALLS={calls}", "-o", out, src], check=True)
    return out


def timed(fn, runs: int) -> float:
    samples = []
    for _ in range(runs):
        setup = fn()
        t = time.perf_counter()
        setup()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--calls", type=int, default=100_000)
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from unicorn import UC_ARCH_X86, UC_HOOK_CODE, UC_HOOK_INSN, UC_MODE_64, Uc
    from unicorn.x86_const import UC_X86_INS_OUT, UC_X86_REG_RSP

    from kprobe_shell import Jprobe, Kprobe, Kretprobe, Machine
    from kprobe_shell.machine import Image

    path = build(args.calls)
    image = Image.load(path)
    hot = image.symbols["hot"].address

    def bare_unicorn(with_hook=None):
        def setup():
            uc = Uc(UC_ARCH_X86, UC_MODE_64)
            pages = set()
            for s in image.segments:
                pages.update(range(s.vaddr & ~0xFFF, s.end, 0x1000))
            for p in sorted(pages):
                uc.mem_map(p, 0x1000)
            for s in image.segments:
                uc.mem_write(s.vaddr, s.data)
            uc.mem_map(0x7F0000, 0x10000)
            uc.reg_write(UC_X86_REG_RSP, 0x7FFF00)
            uc.hook_add(UC_HOOK_INSN, lambda *a: None, None, 1, 0, UC_X86_INS_OUT)
            if with_hook:
                uc.hook_add(UC_HOOK_CODE, lambda uc, a, s, u: None, None, hot, hot)
            return lambda: uc.emu_start(image.entry, 1 << 64 - 1)
        return setup

    def tool(register=None, mode="auto"):
        def setup():
            m = Machine(path)
            m.kprobes.set_mode(mode)
            if register:
                register(m)
            return m.run
        return setup

    def clock_only():
        def setup():
            from kprobe_shell.machine.machine import Machine as Bare

            m = Bare(path)
            return m.run
        return setup

    noop = lambda *a: 0  # noqa: E731
    rows = []
    base_bare = timed(bare_unicorn(), args.runs)
    floor = timed(bare_unicorn(with_hook=True), args.runs)
    clock = timed(clock_only(), args.runs)
    none = timed(tool(), args.runs)
    unhit = timed(tool(lambda m: [m.register_kprobe(Kprobe("cold", pre_handler=noop)),
                                  m.register_kretprobe(Kretprobe("cold", handler=noop))]), args.runs)
    n = args.calls
    floor_us = (floor - base_bare) / n * 1e6
    print(f"workload: {n} calls of a 3-instruction function; median of {args.runs} runs; {os.cpu_count()} cores")
    print(f"{'row':<44}{'time':>10}{'ratio':>9}")
    print(f"{'bare unicorn (no tool, no clock)':<44}{base_bare * 1e3:>8.1f}ms{1.0:>8.2f}x")
    print(f"{'bare unicorn + instruction clock':<44}{clock * 1e3:>8.1f}ms{clock / base_bare:>8.2f}x")
    print(f"{'tool, no probes':<44}{none * 1e3:>8.1f}ms{none / clock:>8.2f}x (vs clock)")
    print(f"{'tool, probes on a function never called':<44}{unhit * 1e3:>8.1f}ms{unhit / none:>8.2f}x (vs no probes)")
    print(f"{'floor: no-op hook on the address':<44}{floor * 1e3:>8.1f}ms  {floor_us:.2f} us/hit")
    print()
    print(f"{'per hit (no-op handlers)':<34}{'mode':<13}{'us/hit':>8}{'x floor':>9}{'kernel 2005 us':>16}")
    cases = [
        ("k", "kprobe (pre only)", lambda m: m.register_kprobe(Kprobe("hot", pre_handler=noop))),
        ("k", "kprobe (pre + post)", lambda m: m.register_kprobe(Kprobe("hot", pre_handler=noop, post_handler=noop))),
        ("j", "jprobe (Python entry)", lambda m: m.register_jprobe(Jprobe("hot", lambda x: None))),
        ("r", "kretprobe", lambda m: m.register_kretprobe(Kretprobe("hot", handler=noop))),
        ("kr", "kprobe + kretprobe", lambda m: [m.register_kprobe(Kprobe("hot", pre_handler=noop)),
                                                m.register_kretprobe(Kretprobe("hot", handler=noop))]),
    ]
    for key, label, reg in cases:
        for mode in ("single-step", "auto"):
            t = timed(tool(reg, mode), args.runs)
            per = (t - none) / n * 1e6
            rows.append((label, mode, per))
            print(f"{label:<34}{mode:<13}{per:>8.2f}{per / floor_us:>8.1f}x{KERNEL_2005[key]:>16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

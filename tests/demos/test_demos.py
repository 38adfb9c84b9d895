"""Every demo in scripts/demos runs through the real shell in batch mode and shows what it teaches.

Each demo runs once (`python -m kprobe_shell --batch -x FILE`, as the README says); the
tests then look for the lines that carry the lesson, with the numbers worked out here
from the kernel image (addresses, bytes, the displacement arithmetic, hash buckets), not
copied from a previous run.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kprobe_shell import Machine
from kprobe_shell.machine.layout import INSN_SLOT_BASE

ROOT = Path(__file__).resolve().parents[2]
DEMOS = ROOT / "scripts" / "demos"
SLOT_SIZE = 32  # one insn slot: the copy and the jmp back
DIV_FACTOR = 3

_runs: dict[str, tuple[subprocess.CompletedProcess, float]] = {}


def run_demo(name: str, tmp_path_factory) -> str:
    """The demo's stdout (run once per session); checks the run itself was clean."""
    if name not in _runs:
        home = tmp_path_factory.mktemp("demo-home")
        env = dict(os.environ, XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"))
        start = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "kprobe_shell", "--batch", "-x", str(DEMOS / name)],
                           capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
        _runs[name] = (r, time.perf_counter() - start)
    r, _elapsed = _runs[name]
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert "\x1b[" not in r.stdout, "colour escapes in batch output to a pipe"
    return r.stdout


@pytest.fixture(scope="module")
def kernel_facts(kernel_path):
    """Addresses and bytes from the image, read on a fresh machine with no probe."""
    m = Machine()
    syms = m.symbols
    return {"m": m, "sym": {n: syms[n].address for n in (
        "do_fork", "copy_process", "kprobe_target", "kprobe_target2", "div_factor", "ip_queue_xmit",
        "do_sys_open", "sys_open", "kretprobe_trampoline", "do_execve", "smoke_rand1")},
        "rand1": int.from_bytes(m.read(syms["smoke_rand1"].address, 4), "little")}


def hash_ptr(value: int) -> int:
    """include/linux/hash.h, 64-bit, 6 bits: computed here, not imported from the engine."""
    return ((value * 0x9E37FFFFFFFC0001) % (1 << 64)) >> 58


def test_every_demo_is_listed_and_tested():
    files = sorted(p.name for p in DEMOS.glob("*.kps"))
    assert len(files) >= 7
    readme = (DEMOS / "README.md").read_text()
    for f in files:
        assert f"kprobe-shell --batch -x scripts/demos/{f}" in readme
        assert f in DEMO_TESTS, f"{f} has no test of what it teaches"
        if isinstance(DEMO_TESTS[f], str):
            path, name = DEMO_TESTS[f].split("::")
            assert f"def {name}(" in (DEMOS.parents[1] / path).read_text()


def test_01_first_kprobe(tmp_path_factory, kernel_facts):
    out = run_demo("01-first-kprobe.kps", tmp_path_factory)
    fork = kernel_facts["sym"]["do_fork"]
    slot = INSN_SLOT_BASE
    assert f"Kprobe 1 at 0x{fork:x}: do_fork+0x0/" in out
    assert f"0x{fork:x} <do_fork+0x0>:\t0xcc[55]" in out  # int3 planted over push rbp
    assert f"armed: int3 (cc) planted at do_fork+0x0/0x31 (0x{fork:x}) over the original byte 55" in out
    assert f"int3 trap, rip 0x{fork + 1:x}: probe at do_fork+0x0/" in out
    assert f"single-step out of line: rip 0x{fork + 1:x} -> slot 0x{slot:x} holding 'push rbp'" in out
    # The post_handler runs before resume_execution: rip is still in the slot, TF still set.
    pre = re.findall(r"p_do_fork_0: \(do_fork\+0x0/0x31\)$", out, re.M)
    post = re.findall(rf"p_do_fork_0: \(do_fork\+0x0/0x31\) post_handler: rip=0x{slot + 1:x} "
                      rf"\(slot 0x{slot:x}\+0x1\) eflags=0x[0-9a-f]+ TF$", out, re.M)
    assert len(pre) == len(post) == 6
    assert re.search(r"^1   k .*do_fork\+0x0/0x31 +y +6 +0  single-step", out, re.M)
    assert f"0x{fork:x} <do_fork+0x0>:\t0x55\t0x48" in out  # the original byte back after delete


def test_02_single_step_out_of_line(tmp_path_factory, kernel_facts):
    out = run_demo("02-single-step-out-of-line.kps", tmp_path_factory)
    m, sym = kernel_facts["m"], kernel_facts["sym"]
    target, slot1 = sym["kprobe_target"], INSN_SLOT_BASE
    raw = m.read(target, 6)
    assert raw[:2] == b"\x8b\x0d"  # mov ecx, [rip + disp32]
    old = int.from_bytes(raw[2:6], "little", signed=True)
    assert target + 6 + old == sym["div_factor"]
    new = old + target - slot1
    new_bytes = new.to_bytes(4, "little", signed=True).hex(" ")
    assert f"original   0x{target:016x}  8b 0d [{raw[2:6].hex(' ')}]" in out
    assert f"slot copy  0x{slot1:016x}  8b 0d [{new_bytes}]" in out
    assert f"in the slot it becomes 0x{new & 0xffffffff:08x} ({new:+#x})" in out
    assert f"both reach 0x{sym['div_factor']:x}" in out
    assert (f"resume_execution, fix-up 'rip relative to slot': rip 0x{slot1 + 6:x} (relative to the slot) -> "
            f"0x{target + 6:x}") in out
    # The call: the return address pushed from the slot is moved back next to the original.
    call_at, slot2 = sym["do_fork"] + 0xA, INSN_SLOT_BASE + SLOT_SIZE
    assert m.read(call_at, 1) == b"\xe8"
    assert f"stack slot 0x" in out and f"goes from 0x{slot2 + 5:x} to 0x{call_at + 5:x} (do_fork+0xf/0x31)" in out
    assert f"fix-up 'call rel32': rip 0x{sym['copy_process'] - call_at + slot2:x} (relative to the slot) -> " \
           f"0x{sym['copy_process']:x} (copy_process+0x0/" in out
    rand1 = kernel_facts["rand1"]
    assert f"kprobe_target(0x{rand1:08x}) = 0x{rand1 // DIV_FACTOR:08x}" in out


def test_03_jprobe_ip_queue_xmit(tmp_path_factory, kernel_facts):
    out = run_demo("03-jprobe-ip-queue-xmit.kps", tmp_path_factory)
    xmit = kernel_facts["sym"]["ip_queue_xmit"]
    assert f"int3 trap, rip 0x{xmit + 1:x}: probe at ip_queue_xmit+0x0/" in out
    saved = re.search(r"setjmp_pre_handler: saved 18 registers \(rip 0x([0-9a-f]+), rsp 0x([0-9a-f]+), .*?rdi "
                      r"0x([0-9a-f]+), rsi 0x([0-9a-f]+).*?copied 64 stack bytes 0x([0-9a-f]+)-0x([0-9a-f]+)", out)
    assert saved, "the jprobe's setjmp is narrated"
    rip, rsp, rdi, rsi, lo, hi = (int(g, 16) for g in saved.groups())
    assert rip == xmit + 1 and lo == rsp and hi == rsp + 64
    # The guest handler printed the same skb, and after the longjmp rdi/rsi hold the arguments again.
    skb = int(re.search(r"jprobe: ip_queue_xmit\(skb=([0-9a-f]+), ipfragok=0\)", out).group(1), 16)
    assert skb == rdi
    assert f"rsp 0x{rsp:x} matches the saved rsp" in out
    printed = re.findall(r"^\$\d+ = 0x([0-9a-f]+)", out, re.M)
    assert [int(v, 16) for v in printed[:2]] == [rdi, rsi]
    assert out.count("jprobe: ip_queue_xmit(skb=") == 10
    assert re.search(r"^1   j .*ip_queue_xmit\+0x0/0x145 +y +10 +0 ", out, re.M)
    assert re.search(r"p_tcp_transmit_skb_0: \(tcp_transmit_skb\+0x0/0x17\) sk=0x[0-9a-f]+ skb=0x%x$" % skb, out, re.M)


def test_04_kretprobes_instances(tmp_path_factory, kernel_facts):
    out = run_demo("04-kretprobes-instances.kps", tmp_path_factory)
    tramp = kernel_facts["sym"]["kretprobe_trampoline"]
    # Before the entry probe: rsp holds the real return address; after: the trampoline, same slot.
    before = re.search(r"rsp\+0x000  0x([0-9a-f]+): 0x([0-9a-f]+)  <- rsp      return address of do_sys_open -> "
                       r"sys_open\+0x1b/", out)
    assert before
    slot_addr, ret = int(before.group(1), 16), int(before.group(2), 16)
    assert ret == kernel_facts["sym"]["sys_open"] + 0x1B
    assert (f"the return address at stack slot 0x{slot_addr:x}, 0x{ret:x} (sys_open+0x1b/0x1d), is saved in the "
            f"instance and replaced by kretprobe_trampoline 0x{tramp:x}") in out
    assert re.search(rf"0x{slot_addr:016x}: 0x{tramp:016x} +kretprobe_trampoline: hijacked return address; "
                     rf"instance #0 of probe 1 \(do_sys_open\) for opener1-2, real return sys_open\+0x1b/0x1d "
                     rf"\(0x{ret:x}\)", out)
    # The trampoline walk when the first task returns.
    assert f"rip = 0x{ret:x} (sys_open+0x1b/0x1d), the real return address" in out
    tables = out.split("kretprobe_inst_table: 64 buckets")[1:]
    assert len(tables) == 3
    # Several tasks in flight: one bucket per task, each at hash_ptr(task_struct).
    rows = re.findall(r"^  \[ ?(\d+)\] (\S+) \(task_struct 0x([0-9a-f]+)\)$", tables[0], re.M)
    assert len(rows) == 4 and len({r[1] for r in rows}) == 4
    for bucket, _who, task in rows:
        assert int(bucket) == hash_ptr(int(task, 16))
    assert f"empty: 60 of 64 buckets" in tables[0]
    # Recursion: five instances of one task at the deepest call, five trampoline slots on its stack.
    opener1 = tables[1].split("[13] opener1-2")[1].split("->  NULL")[0]
    assert opener1.count("probe 2 (path_lookup_recursive)") == 5
    stack = out.split("Stack of opener1-2")[3]
    assert stack.count("kretprobe_trampoline: hijacked return address; instance #") == 5
    assert "real return opener1_main+0x41/" in stack
    # quitter dies inside vfs_read: its instance is flushed, no handler ran.
    assert "kprobe_flush_task: quitter-6: 1 return-probe instance(s) recycled" in out
    assert "0 instance(s) in flight in 0 bucket(s)" in tables[2]


def test_05_maxactive_nmissed(tmp_path_factory):
    out = run_demo("05-maxactive-nmissed.kps", tmp_path_factory)
    first, second = out.split("Fresh machine from")
    assert "pre_handler_kretprobe of probe 1: no free instance (all 2 of maxactive in flight)" in first
    assert "warning: probe 1 (path_lookup_recursive) missed 3 hit(s) (maxactive=2 was too small" in first
    assert "pool of probe 1 (path_lookup_recursive): maxactive 2, 2 used, 0 free, nmissed 3" in first
    row = re.search(r"^2   r .*do_sys_open\+0x0/0xba +y +(\d+) +(\d+)  ", first, re.M)
    hits, missed = int(row.group(1)), int(row.group(2))
    assert missed > 0 and hits == first.count("r_do_sys_open_0: (sys_open+0x1b/")
    assert first.count("r_path_lookup_recursive_0:") == 2  # 5 calls, 2 instances
    # With the default pool every call is traced.
    assert re.search(r"^5   r .*do_sys_open\+0x0/0xba +y +(\d+) +0  ", second, re.M).group(1) == str(hits + missed)
    assert second.count("r_path_lookup_recursive_0:") == 5


def test_06_exec_problem(tmp_path_factory):
    out = run_demo("06-exec-problem.kps", tmp_path_factory)
    for fn in ("do_execve", "sys_execve", "flush_thread", "load_elf_binary"):
        assert f"error: refusing a return probe on {fn}: it is on the exec path" in out
    assert "kprobe_flush_task(hello-5, task_struct" in out and "called from flush_thread+" in out
    assert re.search(r"^\[bug: kernel BUG at kretprobe_trampoline: hello-5 returned through the trampoline but "
                     r"has no return-probe instance", out, re.M)
    assert re.search(r"^2   r .*do_execve\+0x0/0x173 +y +0 +0 ", out, re.M)  # the return never got its handler


def test_07_smoke_test(tmp_path_factory, kernel_facts):
    out = run_demo("07-smoke-test.kps", tmp_path_factory)
    rand1 = kernel_facts["rand1"]
    assert f"pre: (kprobe_target+0x0/0xd) value=0x{rand1:x}" in out
    assert f"ret: (smoke_test+0x16/0x48 <- kprobe_target) ret=0x{rand1 // DIV_FACTOR:x}" in out
    assert f"ret2: (smoke_test+0x23/0x48 <- kprobe_target2) ret=0x{rand1 // DIV_FACTOR + 1:x}" in out
    assert out.count("Kprobe smoke test passed successfully") == 3
    for r1 in (rand1, 4, 0xFFFFFFFF):
        block = out.split(f"Kprobe smoke test started (rand1 = 0x{r1:x}, div_factor = 3)")[1]
        block = block.split("Kprobe smoke test passed successfully")[0]
        assert len(re.findall(r"^  test_\w+ +ok ", block, re.M)) == 5
        assert f"kprobe_target2 returned 0x{r1 // 3 + 1:x} (want 0x{r1 // 3 + 1:x})" in block
    assert "FAILED" not in out


def wc_counts(data: bytes) -> str:
    """lines words bytes, as wc (and guest_images/examples/wc) counts them."""
    lines = data.count(b"\n")
    return f"{lines} {len(data.split())} {len(data)}"


def test_09_your_own_program(tmp_path_factory):
    out = run_demo("09-your-own-program.kps", tmp_path_factory)
    source = (ROOT / "guest_images" / "examples" / "wc.c").read_bytes()
    with open(ROOT / "guest_images" / "examples" / "wc.c", "rb") as stdin:
        native = subprocess.run([str(ROOT / "guest_images" / "examples" / "wc")], stdin=stdin,
                                capture_output=True, check=False).stdout.decode()
    assert native == wc_counts(source) + " -\n"
    motd = b"Welcome to minikernel 2.6.12 (kprobe-shell guest)\nProbes welcome; please do not probe the probes.\n"
    assert native + wc_counts(motd) + " /etc/motd\nwc: cannot open /nonexistent\n" in re.sub(r"^ +wc-2 .*\n", "", out, flags=re.M)
    assert re.search(r'wc-2 +\[000\] +[0-9.]+: opens: \(do_sys_open\+0x0/0x[0-9a-f]+\) filename="/etc/motd"', out)
    assert re.search(r'wc-2 +\[000\] +[0-9.]+: opens: \(do_sys_open\+0x0/0x[0-9a-f]+\) filename="/nonexistent"', out)
    reads = re.findall(r"wc-2 .* reads: \(sys_read\+0x[0-9a-f]+/0x[0-9a-f]+ <- vfs_read\) arg1=(0x[0-9a-f]+)", out)
    assert reads[:len(source) // 64] == ["0x40"] * (len(source) // 64) and "0x0" in reads
    assert len(re.findall(r"wc-2 .* w: \(sys_write\+0x0/0x[0-9a-f]+\) fd=0x1 count=", out)) == 3
    assert "init: reaped pid 2 (wc), exit code 1\n" in out


def test_10_uprobes(tmp_path_factory):
    out = run_demo("10-uprobes.kps", tmp_path_factory)
    wc = ROOT / "guest_images" / "examples" / "wc"
    call_site = int(re.search(r"([0-9a-f]+):\s+e8 [0-9a-f ]+\s+call\s+401010 <count>",
                              subprocess.run(["objdump", "-d", str(wc)], capture_output=True, text=True).stdout)[1], 16) + 5
    assert re.search(r'wc-2 +\[000\] +[0-9.]+: p_count_0: \(0x401010\) fd=0x0 name="-"', out)
    assert re.search(r'wc-2 +\[000\] +[0-9.]+: p_count_0: \(0x401010\) fd=0x3 name="/etc/motd"', out)
    # the first call returns to its call site; $retval is rax, what the line's write(2) returned
    source = (ROOT / "guest_images" / "examples" / "wc.c").read_bytes()
    first_line = wc_counts(source) + " -\n"
    assert re.search(rf"r_count_0: \(0x{call_site:x} <- 0x401010\) returned=0x{len(first_line):x}\n", out)
    assert first_line in out
    assert "0x00007ffffffff000          uretprobe trampoline ([uprobes] page): hijacked by count+0x0" in out
    assert "#0 count+0x0 [wc] (p_count_0, r_count_0): returns to start_c+0x20" in out
    for step in ("install_breakpoint: int3 written at 0x401010", "xol_add_vma: pid 2 gets its [uprobes] page",
                 "prepare_uretprobe: the return address at", "pre_ssout: 'push r15' copied into XOL slot",
                 "arch_uprobe_post_xol applies", "handle_trampoline runs 1 return handler chain(s)"):
        assert step in out, step
    assert re.search(r"^1 +u +0x0000000000401010  count\+0x0 \[wc\] +y +2 +0", out, re.M)
    # the probes change nothing the program computes, nor how many instructions it takes
    from kprobe_shell import Program

    plain = Machine(programs=[Program(str(wc), ["wc", "/etc/motd"], stdin=str(ROOT / "guest_images" / "examples" / "wc.c"))])
    plain.run(max_insns=10_000_000)
    assert f"the machine halted; {plain.retired} instructions]" in out
    assert "    " + first_line not in out and first_line in plain.console


DEMO_TESTS = {
    "01-first-kprobe.kps": test_01_first_kprobe,
    "02-single-step-out-of-line.kps": test_02_single_step_out_of_line,
    "03-jprobe-ip-queue-xmit.kps": test_03_jprobe_ip_queue_xmit,
    "04-kretprobes-instances.kps": test_04_kretprobes_instances,
    "05-maxactive-nmissed.kps": test_05_maxactive_nmissed,
    "06-exec-problem.kps": test_06_exec_problem,
    "07-smoke-test.kps": test_07_smoke_test,
    # needs the SMP machine's own fixtures; tested beside the other SMP shell tests
    "08-smp-in-place.kps": "tests/shell/test_smp_demo.py::test_demo_shows_in_place_misses_and_out_of_line_none",
    "09-your-own-program.kps": test_09_your_own_program,
    "10-uprobes.kps": test_10_uprobes,
}


def test_demo_output_is_the_same_every_run(tmp_path_factory, kernel_path):
    first = run_demo("04-kretprobes-instances.kps", tmp_path_factory)
    home = tmp_path_factory.mktemp("demo-again")
    env = dict(os.environ, XDG_CONFIG_HOME=str(home / "c"), XDG_DATA_HOME=str(home / "d"))
    again = subprocess.run([sys.executable, "-m", "kprobe_shell", "--batch", "-x",
                            str(DEMOS / "04-kretprobes-instances.kps")], capture_output=True, text=True,
                           env=env, timeout=120, cwd=ROOT)
    assert again.stdout == first

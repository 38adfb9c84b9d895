"""Every kprobe_events fetch-arg form and type, against values the guest computed.

One shell run (batch mode, the bundled kernel) defines the probes; the ground truth comes
from elsewhere: the kernel's sources (the flags and AT_FDCWD of fs.h, the socket
addresses of main.c), the guest's own console (the fd each task printed for each open,
the pid/comm table init prints), and a second run of the same kernel through the Python
API whose kprobe handlers read registers and memory directly (not through fetch.py).
The kernel is deterministic and probes do not move its clock, so both runs see the same
hits in the same order.
"""
from __future__ import annotations

import re
import struct

import pytest

from kprobe_shell import Kprobe, Kretprobe, Machine

OPEN_ARGS = ("p:open_args do_sys_open dfd=%di fname=+0(%si):string flags=%dx:x32 mode=%cx:u32 "
             "a1=$arg1:s32 a2=$arg2 a3=$arg3:x32 a4=$arg4:u32 sp=$stack site=$stack0:symbol ret0=$stack0 "
             "s1=$stack1 cm=$comm $comm")
DFD_TYPES = ("p:dfd_types do_sys_open " + " ".join(f"{t}=%di:{t}" for t in
             ("u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "x8", "x16", "x32", "x64")))
GLOBALS = "p:globals do_sys_open jif=@jiffies:u64 cur=@cpu_pda cpun=@cpu_pda+8:u64 below=@dcache_misses-8 at={at}"
RETURNS = "r20:ret do_sys_open s64=$retval:s64 s32=$retval:s32 u32=$retval:u32 x64=$retval:x64 x8=$retval:x8 plain=$retval"
XMIT = ("p:xmit ip_queue_xmit len=+32(%di):u32 saddr=+0(+8(%di)):x32 daddr=+4(+8(%di)):x32 below=-8(+8(%di)) "
        "sport=+8(+8(%di)):u16 dport=+10(+8(%di)):u16 proto=+12(+8(%di)):u8 ports=+8(+8(%di)):x32 "
        "addrs=+0(+8(%di)):x64 hi8=+7(+8(%di)):s8 hi16=+6(+8(%di)):s16 d32=+4(+8(%di)):s32 d64=+0(+8(%di)):s64 "
        "b8=+4(+8(%di)):x8 b16=+4(+8(%di)):x16")
DIO = "p:dio __blockdev_direct_IO rw=$arg1:s32 off=$arg6:s64 nr_segs=$arg7:u64 gb=$arg8:symbol end_io=$arg9 lock=$arg10:s32"


def _defines(text: str) -> dict[str, int]:
    """#define NAME VALUE lines of a C header (C's octal for a leading 0)."""
    out = {}
    for name, value in re.findall(r"#define\s+(\w+)\s+(-?\d+)\b", text):
        neg = value.startswith("-")
        digits = value.lstrip("-")
        n = int(digits, 8) if len(digits) > 1 and digits.startswith("0") else int(digits)
        out[name] = -n if neg else n
    return out


def _ipv4(a, b, c, d) -> int:
    return (a << 24) | (b << 16) | (c << 8) | d


@pytest.fixture(scope="module")
def api_truth():
    """The same kernel through the Python API: registers and memory read at each hit."""
    m = Machine()
    syms = m.symbols
    jiffies, misses = syms["jiffies"].address, syms["dcache_misses"].address
    truth = {"open": [], "ret": [], "xmit": [], "tasks": {}}

    def on_open(p, regs):
        rsp = regs.rsp
        truth["open"].append({
            "rdi": regs.rdi, "rsi": regs.rsi, "rdx": regs.rdx, "rcx": regs.rcx, "rsp": rsp,
            "stack0": m.read_u64(rsp), "stack1": m.read_u64(rsp + 8),
            "fname": m.read_cstring(regs.rsi).decode(), "jiffies": m.read_u64(jiffies),
            "current": m.tasks.current_address(), "below": m.read_u64(misses - 8),
            "pid": regs.task.pid,
        })

    def on_xmit(p, regs):
        sk = m.read_u64(regs.rdi + 8)
        truth["xmit"].append({"len": struct.unpack("<I", m.read(regs.rdi + 32, 4))[0], "sock": m.read(sk, 16),
                              "below": m.read_u64(sk - 8)})

    # The return probe first: probes sharing an address run newest first (add_new_kprobe),
    # and a return probe that ran first would already have put kretprobe_trampoline in
    # the return-address slot that $stack0 reads.
    m.register_kretprobe(Kretprobe("do_sys_open", lambda ri, regs: truth["ret"].append(regs.rax), 20))
    m.register_kprobe(Kprobe("do_sys_open", pre_handler=on_open))
    m.register_kprobe(Kprobe("ip_queue_xmit", pre_handler=on_xmit))
    m.run()
    truth["misses_addr"] = misses
    return truth


@pytest.fixture(scope="module")
def shell_run(tmp_path_factory):
    import subprocess
    import sys

    home = tmp_path_factory.mktemp("home")
    at = Machine().symbols["dcache_hits"].address  # @ADDR: a plain address
    # RETURNS first, for the reason given in api_truth.
    lines = [RETURNS, OPEN_ARGS, DFD_TYPES, GLOBALS.format(at=f"@0x{at:x}:u64"), XMIT, DIO, "run"]
    args = [sys.executable, "-m", "kprobe_shell", "--batch"]
    for line in lines:
        args += ["-ex", line]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120,
                       env={"XDG_CONFIG_HOME": str(home), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_register_forms_and_args_match_the_cpu(shell_run, api_truth, trace_of, minikernel_source):
    hits = trace_of(shell_run, "open_args")
    fs = _defines(minikernel_source("fs.h"))
    assert len(hits) == len(api_truth["open"]) == 12
    for hit, t in zip(hits, api_truth["open"]):
        a = hit["args"]
        assert a["dfd"] == f"0x{t['rdi']:x}"                        # %REG, default x64
        assert a["a1"] == str(fs["AT_FDCWD"])                        # $arg1:s32 is the int dfd = AT_FDCWD
        assert a["a2"] == f"0x{t['rsi']:x}"                          # $arg2 = %si
        assert a["fname"] == f'"{t["fname"]}"'                       # +0(%si):string
        want_flags = fs["O_RDONLY"] | fs["O_LARGEFILE"]
        if t["fname"] == "/dev/sda":                                 # main.c: O_RDWR | O_DIRECT
            want_flags = fs["O_RDWR"] | fs["O_DIRECT"] | fs["O_LARGEFILE"]
        assert a["flags"] == a["a3"] == f"0x{want_flags:x}"         # %dx:x32, $arg3:x32
        assert a["mode"] == a["a4"] == "0"                           # every open passes mode 0
        assert a["sp"] == f"0x{t['rsp']:x}"                          # $stack
        assert a["ret0"] == f"0x{t['stack0']:x}"                     # $stack0: the return address
        assert a["s1"] == f"0x{t['stack1']:x}"                       # $stack1
        assert a["site"].startswith("sys_open+0x")                   # $stack0:symbol
        assert a["cm"] == a["arg14"] == f'"{hit["comm"]}"'           # $comm, named and unnamed
        assert hit["pid"] == t["pid"]


def test_return_site_symbol_agrees_with_the_return_probe(shell_run, trace_of):
    sites = {h["args"]["site"] for h in trace_of(shell_run, "open_args")}
    returns = {h["where"].split(" <- ")[0] for h in trace_of(shell_run, "ret")}
    assert sites == returns == {next(iter(returns))}


def test_comm_and_pid_match_the_guests_task_list(shell_run, trace_of):
    # init prints the pid of each task it starts (main.c), and each task daemonize()s
    # itself under that name
    comm_of = {int(p): c for c, p in re.findall(r"init: (?:kernel_thread|sys_clone) (\w+) -> pid (\d+)", shell_run)}
    assert len(comm_of) == 5
    for hit in trace_of(shell_run, "open_args"):
        if hit["comm"] == "hello":  # execer after its exec of /bin/hello
            assert comm_of[hit["pid"]] == "execer"
        else:
            assert comm_of[hit["pid"]] == hit["comm"]


def test_filenames_and_flags_come_from_the_workload(shell_run, trace_of, minikernel_source):
    main = minikernel_source("main.c")
    opened = set(re.findall(r'(?:cat_file\("\w+", |sys_open\()"(/[^"]+)"', main))
    opened |= set(re.findall(r'walk_path\[\] = "([^"]+)"', main))
    names = {h["args"]["fname"].strip('"') for h in trace_of(shell_run, "open_args")}
    assert names == opened


def test_every_integer_type_of_a_register(shell_run, api_truth, trace_of):
    hits = trace_of(shell_run, "dfd_types")
    assert len(hits) == len(api_truth["open"])
    for hit, t in zip(hits, api_truth["open"]):
        raw = struct.pack("<Q", t["rdi"])
        for bits, (u, s) in {8: ("B", "b"), 16: ("H", "h"), 32: ("I", "i"), 64: ("Q", "q")}.items():
            chunk = raw[: bits // 8]
            assert hit["args"][f"u{bits}"] == str(struct.unpack("<" + u, chunk)[0])
            assert hit["args"][f"s{bits}"] == str(struct.unpack("<" + s, chunk)[0])
            assert hit["args"][f"x{bits}"] == hex(struct.unpack("<" + u, chunk)[0])
        # dfd is the int -100 (AT_FDCWD): narrow signed types show it, s64 of the register does not
        assert hit["args"]["s8"] == hit["args"]["s16"] == hit["args"]["s32"] == "-100"


def test_memory_forms_at_addr_and_symbols(shell_run, api_truth, trace_of):
    hits = trace_of(shell_run, "globals")
    assert len(hits) == len(api_truth["open"])
    for hit, t in zip(hits, api_truth["open"]):
        assert hit["args"]["jif"] == str(t["jiffies"])               # @SYM:u64
        assert hit["args"]["cur"] == f"0x{t['current']:x}"           # @SYM: cpu_pda.pcurrent is `current`
        assert hit["args"]["cpun"] == "0"                            # @SYM+8: cpu_pda.cpunumber, one CPU
        assert hit["args"]["below"] == f"0x{t['below']:x}"           # @SYM-8
    # @ADDR of dcache_hits counts up over the run (fs.c: every dentry-cache hit)
    ats = [int(h["args"]["at"]) for h in hits]
    assert ats == sorted(ats) and ats[-1] > 0


def test_retval_is_signed_and_matches_what_each_task_printed(shell_run, api_truth, trace_of):
    rets = trace_of(shell_run, "ret")
    assert [int(h["args"]["s64"]) for h in rets] == [v - (1 << 64) if v >> 63 else v for v in api_truth["ret"]]
    printed: dict[str, list[int]] = {}
    for who, fd in re.findall(r"\[(\w+)\] open \S+(?: O_DIRECT)? -> fd (-?\d+)", shell_run):
        printed.setdefault(who, []).append(int(fd))
    traced: dict[str, list[int]] = {}
    for h in rets:
        traced.setdefault(h["comm"], []).append(int(h["args"]["s64"]))
    for who, fds in printed.items():
        assert traced[who][: len(fds)] == fds, who
    assert -2 in printed["opener2"]  # /nonexistent: -ENOENT
    for h in rets:
        v = int(h["args"]["s64"])
        assert h["args"]["s32"] == str(v)
        assert h["args"]["u32"] == str(v & 0xFFFFFFFF)
        assert h["args"]["x64"] == hex(v & (1 << 64) - 1)
        assert h["args"]["x8"] == hex(v & 0xFF)
        assert h["args"]["plain"] == hex(v & (1 << 64) - 1)          # no type: x64


def test_nested_dereferences_into_the_socket(shell_run, api_truth, trace_of, minikernel_source):
    hits = trace_of(shell_run, "xmit")
    assert len(hits) == len(api_truth["xmit"]) == 10
    # main.c's three sockets: (saddr, daddr, sport, dport, protocol)
    peer = (_ipv4(10, 0, 0, 1), _ipv4(10, 0, 0, 2), 1024, 80, 6)
    local = (_ipv4(127, 0, 0, 1), _ipv4(127, 0, 0, 1), 1025, 25, 6)
    far = (_ipv4(10, 0, 0, 1), _ipv4(192, 168, 1, 1), 1026, 80, 17)
    payloads = [int(n) for n in re.findall(r"\[netd\] ip_queue_xmit to 10\.0\.0\.2 \((\d+) byte payload\)", shell_run)]
    assert len(payloads) == 8
    expected = [peer] * 8 + [local, far]
    for hit, sock, t in zip(hits, expected, api_truth["xmit"]):
        a = hit["args"]
        saddr, daddr, sport, dport, proto = sock
        assert a["saddr"] == hex(saddr) and a["daddr"] == hex(daddr)       # +0(+8(%di)), +4(+8(%di))
        assert a["below"] == hex(t["below"])                                # -8(+8(%di)): below the sock
        assert a["sport"] == str(sport) and a["dport"] == str(dport)       # u16
        assert a["proto"] == str(proto)                                     # u8
        assert a["ports"] == hex(dport << 16 | sport)                       # x32 over two u16
        assert a["addrs"] == hex(daddr << 32 | saddr)                       # x64 over two u32
        assert a["d32"] == str(struct.unpack("<i", struct.pack("<I", daddr))[0])   # s32
        assert a["d64"] == str(struct.unpack("<q", struct.pack("<Q", daddr << 32 | saddr))[0])
        assert a["hi8"] == str(struct.unpack("<b", struct.pack("<B", daddr >> 24))[0])     # s8
        assert a["hi16"] == str(struct.unpack("<h", struct.pack("<H", daddr >> 16))[0])    # s16
        assert a["b8"] == hex(daddr & 0xFF) and a["b16"] == hex(daddr & 0xFFFF)
        assert int(a["len"]) == t["len"]
        assert t["sock"][:8] == struct.pack("<II", saddr, daddr)
    assert [int(h["args"]["len"]) for h in hits[:8]] == payloads
    assert [int(h["args"]["len"]) for h in hits[8:]] == [len("HELO minikernel\r\n"), len("ping")]
    # 192.168.1.1 has its top bit set: the signed types go negative
    assert int(hits[-1]["args"]["d32"]) < 0 and int(hits[-1]["args"]["hi8"]) < 0


def test_stack_arguments_beyond_the_sixth(shell_run, trace_of, minikernel_source):
    hits = trace_of(shell_run, "dio")
    main = minikernel_source("main.c")
    # opener2: pwrite at 4096, pread at 4096, pread at 0 (512), pread at 0 (100)
    offsets = [int(o) for o in re.findall(r"sys_p(?:write|read)64\(fd, dio_buf, [^,]+, (\d+)\)", main)]
    assert [int(h["args"]["off"]) for h in hits] == offsets                     # $arg6 (a register)
    assert [h["args"]["rw"] for h in hits] == ["1", "0", "0", "0"]              # WRITE, then READ (fs.h)
    for h in hits:
        assert h["args"]["nr_segs"] == "1"                                     # $arg7: first stack slot
        assert h["args"]["gb"].startswith("blkdev_get_blocks+0x0/")            # $arg8:symbol
        assert h["args"]["end_io"] == "0x0"                                    # $arg9: NULL
        assert h["args"]["lock"] == "2"                                        # $arg10: DIO_NO_LOCKING

"""The stub against a raw socket: framing, acks, gdb's error replies for packets that do
not parse or ask for the impossible, a hostile stream, and a connection that drops; the
machine and the shell stay usable after all of it."""
from __future__ import annotations

import functools
import os
import re
import socket
import time

import pytest

from kprobe_shell.gdbstub.protocol import PACKET_SIZE, PacketReader, checksum, escape_binary, frame, unescape_binary
from kprobe_shell.gdbstub.registers import REGISTERS, target_xml

from gdbstub_helpers import slow_guest  # tests/gdbstub/ (pytest puts a test's directory on the path)


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as gdb does
        self.reader = PacketReader(max_size=1 << 20)
        self.items: list = []

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next_item(self):
        while not self.items:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.items += self.reader.feed(data)
        return self.items.pop(0)

    def ask(self, payload: str) -> str:
        """Send a packet; the reply's payload (acks skipped, O packets kept in self.console)."""
        self.send_raw(frame(payload.encode("latin-1")))
        return self.reply()

    def reply(self) -> str:
        while True:
            item = self.next_item()
            assert item is not None, "the stub closed the connection"
            if item.kind == "packet":
                self.send_raw(b"+")
                return item.payload.decode("latin-1")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def client(raw_stub):
    run = raw_stub()
    c = Client(run.port)
    yield run, c
    c.close()


def test_framing_round_trips():
    for payload in (b"", b"g", b"m102c10,8", b"$#}*" * 3):
        assert PacketReader().feed(frame(escape_binary(payload)))[0].payload == escape_binary(payload)
        assert unescape_binary(escape_binary(payload)) == payload
    # Split anywhere, several at once, noise between them: the same packets.
    stream = b"xx" + frame(b"qC") + b"\x00" + frame(b"?") + b"+-"
    items = []
    reader = PacketReader()
    for i in range(len(stream)):
        items += reader.feed(stream[i:i + 1])
    assert [(i.kind, i.payload) for i in items] == [("packet", b"qC"), ("packet", b"?"), ("ack", b""), ("nak", b"")]
    assert checksum(b"qC") == 0xB4


def test_the_target_description_numbers_the_registers_as_gdb_expects():
    xml = target_xml()
    for feature in ("org.gnu.gdb.i386.core", "org.gnu.gdb.i386.sse", "org.gnu.gdb.i386.segments"):
        assert f'<feature name="{feature}">' in xml
    names = [r.name for r in REGISTERS]
    assert names[:18] == ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", *(f"r{i}" for i in range(8, 16)),
                          "rip", "eflags"]
    assert names.index("st0") == 24 and names.index("xmm0") == 40 and names.index("mxcsr") == 56
    assert names[57:] == ["fs_base", "gs_base"]


def test_queries_registers_and_memory(client):
    run, c = client
    m = run.session.machine
    supported = c.ask("qSupported:multiprocess+;swbreak+")
    assert f"PacketSize={PACKET_SIZE:x}" in supported and "qXfer:features:read+" in supported
    assert "qXfer:exec-file:read+" in supported
    assert c.ask("?") == "T05thread:1;"
    assert c.ask("qfThreadInfo") == "m1" and c.ask("qsThreadInfo") == "l"
    assert c.ask("qXfer:exec-file:read::0,1000") == "l" + run.session.image_path
    regs = bytes.fromhex(c.ask("g"))
    assert int.from_bytes(regs[16 * 8:17 * 8], "little") == m.rip == m.image.entry
    assert c.ask("p10") == regs[128:136].hex()
    entry = m.image.entry
    assert c.ask(f"m{entry:x},8") == m.read(entry, 8).hex()
    # A write gdb asks for lands in guest memory, and reads back.
    data = m.image.symbols["jiffies"].address
    assert c.ask(f"M{data:x},8:2a00000000000000") == "OK"
    assert m.read_u64(data) == 42
    assert c.ask(f"P0={(7).to_bytes(8, 'little').hex()}") == "OK" and m.reg("rax") == 7


def test_malformed_and_hostile_packets_get_error_replies(client):
    run, c = client
    m = run.session.machine
    before = m.registers(), m.retired
    # A bad checksum: `-`, asking for it again; nothing runs.
    c.send_raw(b"$g#00")
    assert c.next_item().kind == "nak"
    # Unknown packets: the empty reply ("not supported").
    for payload in ("Xjunk", "qNoSuchQuery", "vNoSuch", "!", "~~~"):
        assert c.ask(payload) == "", payload
    # Packets that do not parse, or ask for what cannot be: E16 (EINVAL), E0e (EFAULT).
    for payload in ("m", "mzz,4", "m10", "m10000000000000000,4", "Mzz", "M1000,4:zz", "M1000,8:00",
                    "pzz", "p999", "P0=zz", "P999=00", "Gzz", "Z0,zz,1", "Z9", "Hgzz", "Hq1", "Hg5",
                    "vCont;x", "vCont;s:9", "qXfer:exec-file:read::zz"):
        assert c.ask(payload).startswith("E"), payload
    assert c.ask("m0,8") == "E0e"  # unmapped
    assert c.ask("Z0,0,1") == "E16"
    assert c.ask("qXfer:features:read:nosuch.xml:0,100") == "E00"
    assert c.ask("T5") == "E01"
    # A huge length is cut to one packet's worth of memory, never more.
    reply = c.ask(f"m{m.image.entry:x},ffffffffffff")
    assert 0 < len(reply) <= PACKET_SIZE and reply == m.read(m.image.entry, len(reply) // 2).hex()
    # Code the probe engine planted, and the tool's own pages, cannot be written by gdb.
    run.session.execute("kprobe vfs_read")
    vfs_read = m.image.symbols["vfs_read"].address
    assert c.ask(f"M{vfs_read:x},1:90") == "E0e"
    assert m.read(vfs_read, 1) == b"\xcc"
    # A packet longer than the packet size: `-`, dropped; the next one is answered.
    c.send_raw(b"$" + b"m" * (PACKET_SIZE + 100) + b"#00")
    assert c.next_item().kind == "nak"
    assert c.ask("qC") == "QC1"
    # Nothing of this ran the guest or changed its registers.
    assert (m.registers(), m.retired) == before


def test_a_dropped_connection_leaves_the_machine_and_shell_usable(client):
    run, c = client
    fast_again = slow_guest(run.session)
    c.ask("QStartNoAckMode")
    c.send_raw(frame(b"c"))  # the guest runs...
    time.sleep(0.05)
    c.close()  # ...and gdb goes away
    assert run.ended() == "gdb closed the connection"
    m = run.session.machine
    assert not m.running and not m.halted
    assert 3 not in m.trap_handlers or m.trap_handlers[3] == m.kprobes.kprobe_handler
    fast_again()
    run.session.execute("continue")
    assert "minikernel: all tasks reaped, halting" in m.console


def test_interrupt_byte_stops_a_running_guest(client):
    run, c = client
    slow_guest(run.session)
    c.send_raw(frame(b"c"))
    time.sleep(0.05)
    c.send_raw(b"\x03")
    assert c.reply() == "T02thread:1;"
    assert not run.session.machine.halted
    assert c.ask("D") == "OK"
    assert run.ended() == "gdb detached"


def test_the_gdbserver_command_refuses_bad_addresses(raw_stub):
    from kprobe_shell.shell.registry import CommandError

    session = raw_stub().session
    for bad, why in (("", "usage"), ("nope", "not [HOST:]PORT"), ("70000", "between 0 and 65535"),
                     ("1 2", "usage"), ("256.1.1.1:5", "cannot listen")):
        with pytest.raises(CommandError, match=re.escape(why)):
            session.execute(f"gdbserver {bad}")


def _monitor(c: Client, line: str) -> tuple[str, str]:
    """qRcmd: (the text of its O packets, the final reply)."""
    c.send_raw(frame(b"qRcmd," + line.encode().hex().encode()))
    text = ""
    while True:
        reply = c.reply()
        if not reply.startswith("O") or reply == "OK":
            return text, reply
        text += bytes.fromhex(reply[1:]).decode()


def test_monitor_runs_shell_commands_and_refuses_the_ones_that_would_end_it(client):
    run, c = client
    text, reply = _monitor(c, "kretprobe vfs_read")
    assert reply == "OK" and text.startswith("Kretprobe 1 at 0x")
    text, reply = _monitor(c, "probes")
    assert reply == "OK" and "vfs_read+0x0" in text
    for line, word in (("quit", "quit"), ("gdbserver 0", "gdbserver")):
        text, reply = _monitor(c, line)
        assert reply == "OK" and text == f"error: '{word}' cannot run from gdb's monitor (detach first)\n"
    # The shell's own output went back to gdb, not to the shell's terminal.
    assert "Kretprobe 1" not in run.shell_output
    assert c.ask("D") == "OK" and run.ended() == "gdb detached"
    assert run.session.probes[1].location == "vfs_read"


@functools.lru_cache(maxsize=None)
def _plain_run(kernel_path):
    from kprobe_shell.api import Machine

    m = Machine(kernel_path)
    m.run()
    return m.console, m.retired


@pytest.mark.parametrize("kind,name", [(2, "watch"), (3, "rwatch"), (4, "awatch")])
def test_watchpoints_stop_after_the_access_and_change_nothing_the_guest_computes(client, kernel_path, kind, name):
    run, c = client
    m = run.session.machine
    jiffies = m.image.symbols["jiffies"].address
    assert c.ask(f"Z{kind},{jiffies:x},8") == "OK"
    seen = []
    for _ in range(3):
        before = m.read_u64(jiffies)
        reply = c.ask("c")
        assert reply == f"T05{name}:{jiffies:x};thread:1;", reply
        seen.append((before, m.read_u64(jiffies), m.rip))
    assert c.ask(f"z{kind},{jiffies:x},8") == "OK"
    if kind == 3:
        return  # reads: two of the kinds run to the end, which is enough to compare
    assert c.ask("c") == "W00"
    # Reported after the instruction (the boot's bss clearing, then `jiffies++` in the
    # timer interrupt): a write watchpoint sees the value written, and the guest ran
    # exactly as it does unwatched (same console, same instruction count).
    if kind == 2:
        assert seen[-1][1] == seen[-1][0] + 1, seen
    assert (m.console, m.retired) == _plain_run(kernel_path)


def test_kill_gives_the_shell_a_fresh_machine(client):
    run, c = client
    run.session.execute("kprobe vfs_read")
    old = run.session.machine
    assert c.ask("s") == "T05thread:1;"
    c.send_raw(frame(b"k"))
    assert run.ended().startswith("gdb killed the guest")
    assert run.session.machine is not old and run.session.machine.retired == 0
    assert run.session.probes[1].location == "vfs_read"


def test_the_tool_pages_symbol_file(client):
    from elftools.elf.elffile import ELFFile

    from kprobe_shell.kprobes.kretprobes import BOOSTER_OFFSET
    from kprobe_shell.machine.layout import STUB_PAGE

    run, c = client
    assert "qXfer:libraries:read+" in c.ask("qSupported")
    reply = c.ask("qXfer:libraries:read::0,1000")
    path = re.fullmatch(r'l<library-list><library name="([^"]+)"><segment address="0x40000000"/></library>'
                        r"</library-list>", reply).group(1)
    with open(path, "rb") as f:
        symbols = {s.name: (s["st_value"], s["st_size"]) for s in ELFFile(f).get_section_by_name(".symtab").iter_symbols()}
    booster = STUB_PAGE + BOOSTER_OFFSET
    assert run.session.machine.kprobes.kretprobes.booster == booster
    # gdb names a caller's frame by its return address minus one: both bytes are covered.
    assert symbols["kretprobe_trampoline"] == (booster - 1, 2)
    assert c.ask("D") == "OK" and run.ended() == "gdb detached"
    assert not os.path.exists(path)


def test_the_gdb_option_refuses_a_bad_address_before_anything_runs(kernel_path):
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "kprobe_shell", "--batch", "--gdb", "nope", "-ex", "echo ran"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env=env)
    assert done.returncode == 2
    assert "kprobe-shell: --gdb nope: 'nope' is not [HOST:]PORT" in done.stdout + done.stderr


def test_ctrl_c_at_the_prompt_ends_the_wait_and_the_gdb_session(kernel_path):
    """The prompt runs a command in a worker thread and turns Ctrl-C into
    machine.request_stop(): that ends gdbserver's wait, and a connected gdb's session."""
    import io
    import threading

    from kprobe_shell.shell.output import Output
    from kprobe_shell.shell.session import Session

    session = Session(output=Output(io.StringIO(), color=False))
    for connect in (False, True):
        done = threading.Thread(target=session.execute, args=("gdbserver 127.0.0.1:0",), daemon=True)
        done.start()
        port = None
        for _ in range(200):
            found = re.findall(r"Waiting for gdb on 127\.0\.0\.1:(\d+)", session.out.stream.getvalue())
            if len(found) == 1 + connect:
                port = int(found[-1])
                break
            time.sleep(0.01)
        assert port is not None
        if connect:
            c = Client(port)
            assert c.ask("?") == "T05thread:1;"
        session.machine.request_stop()  # what the prompt's SIGINT handler does
        done.join(5)
        assert not done.is_alive()
        if connect:
            assert c.next_item() is None  # the stub closed the connection
            c.close()
    text = session.out.stream.getvalue()
    assert "stopped waiting for gdb (Ctrl-C); the shell takes over" in text
    assert "stopped by Ctrl-C at the shell: gdb's connection is closed; the shell takes over" in text
    session.execute("stepi")  # the shell goes on


def test_stepping_a_cpu_that_cannot_run_is_refused(raw_stub):
    run = raw_stub(cpus=2)
    c = Client(run.port)
    try:
        assert bytes.fromhex(c.ask("qThreadExtraInfo,2")).decode() == "CPU#1 [waiting for SIPI]"
        assert c.ask("vCont;s:2") == "E16"
        assert c.ask("vCont;s:1") == "T05thread:1;"
        assert c.ask("D") == "OK" and run.ended() == "gdb detached"
    finally:
        c.close()

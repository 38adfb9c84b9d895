"""The teaching views on the bundled kernel, checked against guest memory read independently:
`stack`, `instances --table`, `slot`; and the teaching commands' handling of bad input."""
from __future__ import annotations

import io
import os
import re
import sys
import time

import pytest

from kprobe_shell.machine.layout import INSN_SLOT_BASE
from kprobe_shell.shell.output import Output
from kprobe_shell.shell.registry import CommandError
from kprobe_shell.shell.session import Session


def hash_ptr(value: int) -> int:
    return ((value * 0x9E37FFFFFFFC0001) % (1 << 64)) >> 58


@pytest.fixture
def shell(kernel_path):
    """A session on the bundled kernel whose output is collected as plain text."""
    buf = io.StringIO()
    s = Session(output=Output(buf, color=False))

    def run(line: str) -> str:
        start = buf.tell()
        s.execute(line)
        return buf.getvalue()[start:]

    s.run = run
    return s


def at_deepest_walk(shell) -> None:
    """Stopped in opener1's fifth nested path_lookup_recursive, with return probes planted."""
    shell.run("kretprobe do_sys_open")
    shell.run("kretprobe path_lookup_recursive")
    shell.run("break path_lookup_recursive+0x86")
    shell.run("run")


# ---------------------------------------------------------------------- stack
def test_stack_labels_every_trampoline_slot_with_its_instance(shell):
    at_deepest_walk(shell)
    m = shell.machine
    rsp = m.reg("rsp")
    # In auto mode the return addresses are the kretprobe booster's `ret` (the int3 at
    # kretprobe_trampoline in boost mode); the view labels both alike.
    tramp = m.kprobes.kretprobes.booster
    assert m.kprobes.kretprobes.is_trampoline(tramp)
    text = shell.run("stack 40")
    rows = re.findall(r"^  rsp\+0x([0-9a-f]+)  0x([0-9a-f]{16}): 0x([0-9a-f]{16})(?:  (.*))?$", text, re.M)
    assert len(rows) == 40
    for off, addr, value, _label in rows:
        assert int(addr, 16) == rsp + int(off, 16)
        assert m.read_u64(int(addr, 16)) == int(value, 16)  # the value is what memory holds
    # Every instance in flight for opener1 has its slot in view, holding the trampoline,
    # labelled with the instance's own real return address.
    task = m.tasks.current_address()
    mine = [ri for ri in m.kprobes.kretprobes.kretprobe_inst_table[hash_ptr(task)] if ri.task == task]
    assert len(mine) == 5
    labelled = {int(a, 16): label for _o, a, v, label in rows if int(v, 16) == tramp}
    assert set(labelled) == {ri.stack_slot for ri in mine}
    for ri in mine:
        assert m.read_u64(ri.stack_slot) == tramp
        assert f"instance #{ri.index} of probe 2 (path_lookup_recursive) for opener1-2" in labelled[ri.stack_slot]
        assert f"(0x{ri.ret_addr:x})" in labelled[ri.stack_slot]
    # The frame-pointer chain: rbp is marked and the word there is a saved rbp.
    rbp = m.reg("rbp")
    rbp_row = next(r for r in rows if int(r[1], 16) == rbp)
    assert "<- rbp" in rbp_row[3] and "saved rbp" in rbp_row[3]
    assert f"(0x{m.read_u64(rbp):x})" in rbp_row[3]


def test_stack_at_a_function_entry_names_the_return_address(shell):
    shell.run("break do_sys_open")
    shell.run("run")
    m = shell.machine
    ret = m.read_u64(m.reg("rsp"))
    text = shell.run("stack 2")
    assert re.search(rf"rsp\+0x000  0x{m.reg('rsp'):016x}: 0x{ret:016x}  <- rsp +return address of do_sys_open -> "
                     rf"{re.escape(m.symbols.format(ret))}", text)


def test_stack_stops_at_the_top_of_the_task_stack(shell):
    at_deepest_walk(shell)
    m = shell.machine
    task = m.tasks.current()
    top = task.stack + m.tasks.layout["stack_size"]
    text = shell.run("stack 1024")
    rows = re.findall(r"^  rsp\+0x[0-9a-f]+  0x([0-9a-f]{16}):", text, re.M)
    assert int(rows[-1], 16) == top - 8
    assert f"stack top 0x{top:x}" in text


# ---------------------------------------------------------------------- instances --table
def test_instance_table_draws_each_bucket_as_its_chain(shell):
    at_deepest_walk(shell)
    mgr = shell.machine.kprobes.kretprobes
    text = shell.run("instances --table")
    drawn = [int(b) for b in re.findall(r"^  \[ ?(\d+)\] ", text, re.M)]
    used = [b for b, bucket in enumerate(mgr.kretprobe_inst_table) if bucket]
    assert drawn == used
    for b in drawn:
        chain = text.split(f"[{b:2d}] ")[1].split("->  NULL")[0]
        tasks = re.findall(r"task_struct 0x([0-9a-f]+)", chain.splitlines()[0])
        assert all(hash_ptr(int(t, 16)) == b for t in tasks)
        nodes = re.findall(r"stack slot 0x([0-9a-f]+)\]", chain)
        # The chain is the bucket's list, head first (newest instance first).
        assert [int(n, 16) for n in nodes] == [ri.stack_slot for ri in mgr.kretprobe_inst_table[b]]
    assert f"empty: {64 - len(used)} of 64 buckets" in text
    assert "pool of probe 2 (path_lookup_recursive): maxactive 10, 5 used, 5 free, nmissed 0" in text


def test_instance_table_when_nothing_is_in_flight(shell):
    text = shell.run("instances --table")
    assert "0 instance(s) in flight in 0 bucket(s)" in text
    assert "empty: 64 of 64 buckets (0-63)" in text


# ---------------------------------------------------------------------- slot
def test_slot_shows_the_original_beside_the_copy(shell):
    m = shell.machine
    sym = m.symbols["kprobe_target"]
    original = m.image.symbol_bytes(sym)[:6]  # from the ELF, not from memory
    shell.run("set kprobe-mode boost")  # an int3 probe (auto mode would jump-optimize it)
    shell.run("kprobe kprobe_target")
    text = shell.run("slot 1")
    slot = INSN_SLOT_BASE
    copy = m.read(slot, 6)
    jmp = m.read(slot + 6, 5)
    assert f"insn slot 0 at 0x{slot:x}" in text
    assert f"original   0x{sym.address:016x}  {original[:2].hex(' ')} [{original[2:].hex(' ')}]" in text
    assert f"in memory  0x{sym.address:016x}  cc " in text and m.read(sym.address, 1) == b"\xcc"
    assert f"slot copy  0x{slot:016x}  {copy[:2].hex(' ')} [{copy[2:].hex(' ')}]" in text
    assert f"jmp back   0x{slot + 6:016x}  {jmp.hex(' ')}" in text
    old = int.from_bytes(original[2:], "little", signed=True)
    new = int.from_bytes(copy[2:], "little", signed=True)
    # Both displacements reach the same variable from their own instruction's end.
    assert sym.address + 6 + old == slot + 6 + new == m.symbols["div_factor"].address
    assert int.from_bytes(jmp[1:], "little", signed=True) + slot + 6 + 5 == sym.address + 6
    assert f"both reach 0x{m.symbols['div_factor'].address:x}" in text


def test_slot_of_a_relative_call_names_where_the_copy_would_go(shell):
    m = shell.machine
    shell.run("kprobe do_fork+0xa")
    text = shell.run("slot 1")
    target = m.symbols["copy_process"].address
    call_at = m.symbols["do_fork"].address + 0xA
    from_slot = target - call_at + INSN_SLOT_BASE
    assert f"the original goes to 0x{target:x} <copy_process+0x0>" in text
    assert f"the CPU goes to 0x{from_slot:x}, never run" in text
    assert "resume_execution 'call rel32'" in text


def test_slot_marks_the_displacement_in_colour_on_a_terminal(kernel_path):
    buf = io.StringIO()
    s = Session(output=Output(buf, color=True))
    s.execute("kprobe kprobe_target")
    s.execute("slot 1")
    assert re.search(r"\x1b\[1;33m\[1e 2c 00 00\]\x1b\[0m", buf.getvalue())


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("line", [
    "stack 0", "stack 5000", "stack abc", "stack 1 2", "slot 7", "slot x", "slot 1 2", "instances --bogus",
    "explain maybe", "smoke-test 3", "smoke-test 1 2", "try", "try try echo", "kprobe --post",
])
def test_bad_input_is_one_line_and_changes_nothing(shell, line):
    shell.run("break do_fork")
    before = (dict(shell.settings), sorted(shell.probes), shell.machine.kprobes.narrator)
    with pytest.raises(CommandError) as exc:
        shell.run(line)
    assert "\n" not in str(exc.value)
    assert (dict(shell.settings), sorted(shell.probes), shell.machine.kprobes.narrator) == before


def test_slot_of_a_breakpoint_or_with_no_probes_is_refused(shell):
    with pytest.raises(CommandError, match="no probes"):
        shell.run("slot")
    shell.run("break do_fork")
    with pytest.raises(CommandError, match="breakpoints have no instruction slot"):
        shell.run("slot 1")


def test_explain_is_set_explain(shell):
    assert "explain is off" in shell.run("explain")
    shell.run("explain on")
    assert shell.settings["explain"] is True and shell.machine.kprobes.narrator is not None
    assert re.match(r"explain +on ", shell.run("show explain"))
    text = shell.run("kprobe kprobe_target")
    assert "  [explain] armed: int3 (cc) planted at kprobe_target+0x0/0xd" in text
    shell.run("explain off")
    assert shell.machine.kprobes.narrator is None and shell.settings["explain"] is False


def test_try_reports_the_refusal_and_goes_on(shell):
    text = shell.run("try kretprobe do_execve")
    assert text.startswith("error: refusing a return probe on do_execve")
    assert shell.probes == {}


def test_pause_in_batch_only_prints(shell):
    shell.batch = True
    assert shell.run("pause next step") == "next step\n"
    assert shell.run("pause") == ""


# ---------------------------------------------------------------------- pause on a terminal
def test_pause_waits_for_enter_on_a_terminal(kernel_path, tmp_path):
    pexpect = pytest.importorskip("pexpect")
    script = tmp_path / "lesson.kps"
    script.write_text("echo before\npause look at this\necho after\n")
    env = dict(os.environ, TERM="dumb", XDG_CONFIG_HOME=str(tmp_path / "c"), XDG_DATA_HOME=str(tmp_path / "d"))
    child = pexpect.spawn(sys.executable, ["-m", "kprobe_shell", "--color", "off", "-x", str(script)], env=env,
                          encoding="utf-8", timeout=30)
    child.expect_exact("look at this [Enter to go on]")
    assert "after" not in child.before
    with pytest.raises(pexpect.TIMEOUT):
        child.expect_exact("after", timeout=1)  # still waiting
    child.send("\r")
    child.expect_exact("after")
    child.expect_exact("(kprobe)")  # then the prompt, as gdb after -x
    time.sleep(0.3)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_pause_does_not_wait_in_batch_mode_even_on_a_terminal(kernel_path, tmp_path):
    pexpect = pytest.importorskip("pexpect")
    script = tmp_path / "lesson.kps"
    script.write_text("pause look at this\necho after\n")
    env = dict(os.environ, TERM="dumb", XDG_CONFIG_HOME=str(tmp_path / "c"), XDG_DATA_HOME=str(tmp_path / "d"))
    child = pexpect.spawn(sys.executable, ["-m", "kprobe_shell", "--batch", "-x", str(script)], env=env,
                          encoding="utf-8", timeout=30)
    child.expect_exact("after")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "Enter to go on" not in child.before


def test_completion_offers_the_teaching_options(shell):
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from kprobe_shell.shell.completer import ShellCompleter

    def texts(line: str) -> list[str]:
        return [c.text for c in ShellCompleter(shell).get_completions(Document(line, len(line)), CompleteEvent())]

    assert texts("explain ") == ["on", "off"]
    assert "--table" in texts("instances --t")
    assert {"stack", "slot", "smoke-test"} <= set(texts("s"))

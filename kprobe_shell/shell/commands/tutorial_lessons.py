"""The guided tour's lessons: what each step asks, how to tell it was done, what it shows.

The lessons follow scripts/demos, one for one (the same numbers and the same commands,
typed by the student a step at a time).  Every lesson but the first two (which share a
machine) starts on a fresh machine the tour boots (tutorial_steps.fresh_machine).
"""
from __future__ import annotations

from ...machine import StopReason
from ..locations import eval_address
from ..registry import CommandError
from .tutorial_steps import (Attempt, Lesson, Step, any_answer, example_path, halted, number_of, placed, probe_at,
                             setting_is, showed_slot_of, stopped_at)


# ---------------------------------------------------------------------- lesson 1
def _examined_do_fork(a: Attempt) -> str | None:
    where = a.rest.split(None, 1)[1] if a.rest.startswith("/") and " " in a.rest else a.rest
    try:
        addr = eval_address(a.session, where)
    except CommandError:
        return "that did not name an address."
    if addr == a.session.machine.symbols["do_fork"].address:
        return None
    return (f"that showed memory at {a.session.machine.symbols.format(addr, with_size=False)}; "
            "this step looks at the first bytes of do_fork.")


def _ran_probe(a: Attempt) -> str | None:
    up = probe_at(a.session, "k", "do_fork")
    if up is None:
        return "the do_fork probe is gone: plant it again with kprobe do_fork."
    if up.obj.hits:
        return None
    return "the guest ran, but no fork went past do_fork yet: run it further (run with no budget)."


LESSON_1 = Lesson(1, "a first kprobe", fresh=False, steps=[
    Step("A kprobe is a breakpoint the kernel plants on itself: the first byte of the probed "
         "instruction becomes int3 (cc). Every new task goes through do_fork.",
         "Plant a kprobe on do_fork.", ("kprobe",), lambda s: "kprobe do_fork",
         placed("k", "do_fork", "a kprobe"),
         "register_kprobe copied do_fork's first instruction into an insn slot and wrote int3 over it."),
    Step("Memory now holds the int3. Look at the first 4 bytes of do_fork as bytes in hex.",
         "Examine do_fork's first bytes.", ("x",), lambda s: "x/4xb do_fork", _examined_do_fork,
         "cc[55]: memory holds cc (int3), the original byte 55 (push rbp) is kept beside it by the kprobe."),
    Step("Let the guest run: init forks its tasks, and each fork traps on the int3.",
         "Run the guest.", ("run", "continue"), lambda s: "run", _ran_probe,
         "Each trace line is one hit: do_int3 found the probe and ran its pre_handler (the trace line); "
         "then the copy of push rbp ran out of line in its insn slot, boosted (the copy and a jmp back, "
         "no debug trap), and execution went on at do_fork's second instruction."),
    Step("The probe counts its hits and misses.", "List the probes.", ("probes",), lambda s: "probes", any_answer,
         "Hits is how many times the int3 was taken; Missed counts hits that came while a probe handler "
         "was already running; Mode says how the copy runs: single-step under TF, or boost (the copy "
         "and its jmp back run without the debug trap)."),
])


# ---------------------------------------------------------------------- lesson 2
def _fresh_with(kind: str, location: str) -> object:
    def check(a: Attempt) -> str | None:
        if a.session.machine.time_ns == 0 and probe_at(a.session, kind, location) is not None:
            return None
        return f"the machine is not fresh, or the probe on {location} is missing."
    return check


def _both_copies_ran(a: Attempt) -> str | None:
    for location in ("kprobe_target", "do_fork+0xa"):
        up = probe_at(a.session, "k", location)
        if up is None:
            return f"the probe on {location} is gone: plant it again."
        if not up.obj.hits:
            return f"the guest has not reached {location} yet: run it to the end (run)."
    return None


LESSON_2 = Lesson(2, "the copy in the insn slot", fresh=False, steps=[
    Step("The copy of the probed instruction lives in an insn slot, a page near the kernel text, "
         "followed by a jmp back.",
         "Show the slot of the do_fork kprobe.", ("slot",), lambda s: f"slot {number_of(s, 'k', 'do_fork')}",
         showed_slot_of("k", "do_fork"),
         "push rbp does not care where it runs: the copy is byte for byte the original. Boosted, the jmp "
         "after it brings execution back to do_fork+0x1; single-stepped, resume_execution moves rip there "
         "after the debug trap."),
    Step("Two kinds of instruction do care where they run. kprobe_target's first instruction reads "
         "div_factor RIP-relative: [rip + disp32] means disp32 bytes after this instruction.",
         "Plant a kprobe on kprobe_target.", ("kprobe",), lambda s: "kprobe kprobe_target",
         placed("k", "kprobe_target", "a kprobe"),
         "Its first instruction was copied to the next free insn slot."),
    Step("Compare the copy with the original.", "Show the slot of the kprobe_target kprobe.", ("slot",),
         lambda s: f"slot {number_of(s, 'k', 'kprobe_target')}", showed_slot_of("k", "kprobe_target"),
         "The displacement in [brackets] was re-targeted: new = (original address + old) - slot, so "
         "from the slot the copy still reads div_factor (arch_copy_kprobe's fix for RIP-relative operands)."),
    Step("The other kind: do_fork+0xa is call copy_process. A call pushes its own address + 5 as the "
         "return address; run from the slot, that would be a slot address.",
         "Plant a kprobe on do_fork+0xa.", ("kprobe",), lambda s: "kprobe do_fork+0xa",
         placed("k", "do_fork+0xa", "a kprobe"),
         "A call's copy cannot be boosted: the debug trap after the step is where the fix-up happens, "
         "so this probe is stepped under TF."),
    Step("The guest ran to its end in lesson 1. Boot it again: reset registers your probes afresh.",
         "Boot a fresh machine.", ("reset",), lambda s: "reset", _fresh_with("k", "do_fork+0xa"),
         "Same image, clock at 0, your three probes registered again with their counters at zero."),
    Step("Run it all: init calls kprobe_target once (smoke_test) and forks five tasks.",
         "Run the guest.", ("run", "continue"), lambda s: "run", _both_copies_ran,
         "The guest's own smoke_test line shows kprobe_target(rand1) = rand1 / 3: the copy read div_factor "
         "through its new displacement. Every fork went on normally: after each step of the call, "
         "resume_execution ('call rel32') rewrote the pushed return address from the slot's to do_fork+0xf."),
])


# ---------------------------------------------------------------------- lesson 3
def _guest_jprobe(a: Attempt) -> str | None:
    up = probe_at(a.session, "j", "ip_queue_xmit")
    if up is not None and up.spec.get("entry") == "jip_queue_xmit":
        return None
    if up is not None:
        return ("that jprobe's handler is the shell's built-in one, run on the host; this step asks for the "
                "guest's own handler: jprobe ip_queue_xmit jip_queue_xmit.")
    return placed("j", "ip_queue_xmit", "a jprobe")(a)


def _printed_skb(a: Attempt) -> str | None:
    rdi = a.session.machine.reg("rdi")
    printed = a.data.get("value", "") if isinstance(a.data, dict) else ""
    try:
        value = int(printed, 0) & (1 << 64) - 1
    except ValueError:
        value = None
    if value == rdi and "rdi" in a.rest:
        return None
    return f"that printed {printed or 'nothing'}; the first argument, skb, is in rdi (print $rdi)."


LESSON_3 = Lesson(3, "a jprobe on ip_queue_xmit", steps=[
    Step("A jprobe's handler has the probed function's own prototype. The guest kernel has one, "
         "jip_queue_xmit(skb, ipfragok): it printk()s its arguments and ends with jprobe_return().",
         "Plant a jprobe on ip_queue_xmit with the guest's handler jip_queue_xmit.", ("jprobe",),
         lambda s: "jprobe ip_queue_xmit jip_queue_xmit", _guest_jprobe,
         "A jprobe is a kprobe whose pre_handler is setjmp_pre_handler and whose break_handler is "
         "longjmp_break_handler."),
    Step("Stop when the first packet's ip_queue_xmit is back in its own body, at its second instruction.",
         "Set a temporary breakpoint at ip_queue_xmit+1.", ("tbreak", "break"),
         lambda s: "tbreak ip_queue_xmit+1", placed("t", "ip_queue_xmit+1", "a temporary breakpoint"),
         "It deletes itself when hit."),
    Step("Run to it.", "Run the guest.", ("run", "continue"), lambda s: "run",
         stopped_at("ip_queue_xmit+1", "at ip_queue_xmit+1"),
         "Before the breakpoint: setjmp_pre_handler saved the registers and the top 64 bytes of the "
         "stack and pointed rip at jip_queue_xmit, whose printk is the 'jprobe:' line; its jprobe_return() "
         "trapped (int3), longjmp_break_handler put the registers and the stack bytes back, and "
         "ip_queue_xmit's first instruction was stepped out of line as for any kprobe."),
    Step("The handler ran as a C function on the same stack. Are ip_queue_xmit's arguments intact?",
         "Print skb, the first argument, from its register.", ("print",), lambda s: "print $rdi", _printed_skb,
         "The same pointer the handler printed: the x86_64 ABI passes the first argument in rdi, and "
         "the longjmp restored every register the handler used."),
    Step("netd sends 10 packets in all.", "Continue to the end.", ("continue", "run"), lambda s: "continue",
         halted, "One 'jprobe:' line per packet, 10 hits: each call went to the handler and came back."),
])


# ---------------------------------------------------------------------- lesson 4
def _hijacked(a: Attempt) -> str | None:
    if any(slot.get("kind") == "trampoline" for slot in a.data or []):
        return None
    return "no slot shown holds kretprobe_trampoline: show more slots (stack 24)."


LESSON_4 = Lesson(4, "return probes and the hijacked return address", steps=[
    Step("A kretprobe is a kprobe on a function's entry whose handler swaps the return address on the "
         "stack for kretprobe_trampoline, keeping the real one in a kretprobe_instance. "
         "path_lookup_recursive calls itself five deep.",
         "Plant a kretprobe on path_lookup_recursive.", ("kretprobe",),
         lambda s: "kretprobe path_lookup_recursive", placed("r", "path_lookup_recursive", "a kretprobe"),
         "The kretprobe is registered with a pool of maxactive instances, one per call in flight."),
    Step("Stop in the deepest of the recursive calls: path_lookup_recursive+0x86 is inside it.",
         "Set a temporary breakpoint at path_lookup_recursive+0x86.", ("tbreak", "break"),
         lambda s: "tbreak path_lookup_recursive+0x86",
         placed("t", "path_lookup_recursive+0x86", "a temporary breakpoint"),
         "The breakpoint is set; it deletes itself when hit."),
    Step("Run to the breakpoint.", "Run the guest.", ("run", "continue"), lambda s: "run",
         stopped_at("path_lookup_recursive+0x86", "in path_lookup_recursive"),
         "The guest stopped inside path_lookup_recursive, five calls deep."),
    Step("Each call's return address on the stack was swapped for kretprobe_trampoline.",
         "Show 24 slots of the stack.", ("stack",), lambda s: "stack 24", _hijacked,
         "The slots marked kretprobe_trampoline are hijacked return addresses: each names the instance "
         "that keeps the real return address, where the trampoline will send the return."),
    Step("The instances are kept in kretprobe_inst_table, 64 buckets chosen by hash_ptr(task).",
         "Draw the instance table.", ("instances",), lambda s: "instances --table", any_answer,
         "One task, one bucket: its five instances are chained newest first, as the trampoline finds them "
         "when the calls return, innermost first."),
    Step("Let the calls return: each return goes through the trampoline, which runs the handler "
         "(the trace line) and jumps to the real address.",
         "Continue to the end.", ("continue", "run"), lambda s: "continue", halted,
         "Every return was traced with its real return site, never the trampoline: int3, the slot, "
         "the hijacked return."),
])


# ---------------------------------------------------------------------- lesson 5
def _open_pool(session):
    up = probe_at(session, "r", "do_sys_open")
    return up.obj if up is not None else None


def _small_pool(a: Attempt) -> str | None:
    rp = _open_pool(a.session)
    if rp is None:
        return placed("r", "do_sys_open", "a kretprobe")(a)
    if rp.maxactive == 1:
        return None
    return f"that kretprobe has a pool of {rp.maxactive} instances; this step wants only one (maxactive=1)."


def _missed(a: Attempt) -> str | None:
    rp = _open_pool(a.session)
    if rp is None:
        return "the do_sys_open kretprobe is gone."
    if rp.nmissed:
        return None
    return "no call was missed yet: run the guest to the end (run)."


LESSON_5 = Lesson(5, "when maxactive is too small", steps=[
    Step("Each kretprobe owns a fixed pool of maxactive instances, one per call in flight. "
         "Five tasks sleep inside do_sys_open at once: try a pool of one.",
         "Plant a kretprobe on do_sys_open with maxactive=1.", ("kretprobe",),
         lambda s: "kretprobe do_sys_open maxactive=1", _small_pool,
         "One instance: the first call in flight takes it, the others find the pool empty."),
    Step("Run it all.", "Run the guest.", ("run", "continue"), lambda s: "run", _missed,
         "While one task held the only instance, the other tasks' calls could not be hijacked: "
         "pre_handler_kretprobe counted them in nmissed and their returns were never traced "
         "(the warning at the end says so)."),
    Step("Count what was missed.", "List the probes.", ("probes",), lambda s: "probes", any_answer,
         "Missed on the do_sys_open kretprobe is the number of calls whose return was lost. The kernel's "
         "default pool is max(10, 2*NR_CPUS); always look at nmissed."),
])


# ---------------------------------------------------------------------- lesson 6
def _refused_on_exec_path(a: Attempt) -> str | None:
    error = a.error or (a.data.get("error") if isinstance(a.data, dict) else None)
    if error and "refusing a return probe on do_execve" in error:
        return None
    if a.new_probes:
        where = a.session.machine.symbols.format(a.new_probes[0].addr, with_size=False)
        return f"that placed a probe at {where}; this step asks for a kretprobe on do_execve, to see it refused."
    return "that was not the refusal of a kretprobe on do_execve."


def _unsafe_return_probe(a: Attempt) -> str | None:
    up = probe_at(a.session, "r", "do_execve")
    return None if up is not None else placed("r", "do_execve", "a kretprobe")(a)


def _stopped_on_bug(a: Attempt) -> str | None:
    stop = a.session.stop_event
    if stop is not None and stop.reason == StopReason.BUG:
        return None
    return "the guest has not hit the BUG yet: run it further."


LESSON_6 = Lesson(6, "return probes on the exec path", steps=[
    Step("In 2.6.12 a task's return-probe instances are recycled by kprobe_flush_task() when it exits, "
         "but also on exec: do_execve -> search_binary_handler -> load_elf_binary -> flush_old_exec "
         "-> flush_thread -> kprobe_flush_task. Every function on that chain is still running then.",
         "Ask for a kretprobe on do_execve (the shell refuses it and says why).", ("kretprobe", "try"),
         lambda s: "kretprobe do_execve", _refused_on_exec_path,
         "Refused, as the redesigned kernel refuses it: the flush would recycle do_execve's instance "
         "before do_execve returns.", expects_refusal=True),
    Step("--unsafe lifts the refusal, so that we can watch the 2005 failure.",
         "Plant the kretprobe on do_execve anyway, with --unsafe.", ("kretprobe",),
         lambda s: "kretprobe do_execve --unsafe", _unsafe_return_probe,
         "Registered: execer's call to do_execve will get an instance and a hijacked return address."),
    Step("Run until execer's exec.", "Run the guest.", ("run", "continue"), lambda s: "run", _stopped_on_bug,
         "The entry took an instance and swapped do_execve's return address for kretprobe_trampoline; "
         "flush_thread's kprobe_flush_task recycled that instance while do_execve was still running; "
         "do_execve's return then reached the trampoline, whose walk of the task's bucket found no "
         "instance to say where to go: the kernel's BUG_ON(!orig_ret_address)."),
    Step("Look at the bucket of the task that came back.", "Draw the instance table.", ("instances",),
         lambda s: "instances --table", any_answer,
         "Empty, and the pool has all its instances free: the flush took the live one without running "
         "its handler. Later kernels flush at task exit only, which makes return probes on exec safe."),
])


# ---------------------------------------------------------------------- lesson 7
def _event_of(session, kind: str, location: str):
    up = probe_at(session, kind, location)
    if up is None:
        return None
    return next((ev for ev in session.trace.events if ev.probe == up.number), None)


def _fetches(kind: str, register: str, what: str):
    def check(a: Attempt) -> str | None:
        up = probe_at(a.session, kind, "kprobe_target")
        if up is None:
            return placed(kind, "kprobe_target", what)(a)
        if register in up.spec.get("definition", ""):
            return None
        return f"that probe does not read {register}; this step wants {what} that fetches {register}."
    return check


def _saw_rand1(a: Attempt) -> str | None:
    stop = stopped_at("fixup_selftest", "at fixup_selftest")(a)
    if stop is not None:
        return stop
    entry, ret = _event_of(a.session, "k", "kprobe_target"), _event_of(a.session, "r", "kprobe_target")
    if entry is None or ret is None:
        return "the trace has no entry and return of kprobe_target: are both probes there?"
    m = a.session.machine
    rand1 = int.from_bytes(m.read(m.symbols["smoke_rand1"].address, 4), "little")
    seen = list(entry.values.values())[:1] + list(ret.values.values())[:1]
    if seen == [rand1, rand1 // 3]:
        return None
    return f"the probes read {', '.join(hex(v) for v in seen)}; they should read rand1 and rand1 / 3."


def _smoke_passed(rand1: int | None):
    def check(a: Attempt) -> str | None:
        data = a.data or {}
        if rand1 is not None and data.get("rand1") != rand1:
            return f"that ran with rand1 = 0x{data.get('rand1', 0):x}; this step asks for 0x{rand1:x}."
        return None if data.get("passed") else "the smoke test did not pass."
    return check


LESSON_7 = Lesson(7, "the kernel's kprobes smoke test", steps=[
    Step("kernel/test_kprobes.c checks the probe types on kprobe_target(v) = v / div_factor (3), "
         "called once by the guest's smoke_test() with rand1. By hand first, with ftrace's probe "
         "definitions: the entry's first argument is in %di.",
         "Define p:smoke/pre on kprobe_target, fetching value=%di:x32.", ("probe-event",),
         lambda s: "p:smoke/pre kprobe_target value=%di:x32", _fetches("k", "%di", "an entry probe"),
         "A kprobe on kprobe_target whose handler reads rdi (ftrace's %di) as a 32-bit hex value."),
    Step("The return value is in %ax when the function returns.",
         "Define r:smoke/ret on kprobe_target, fetching ret=$retval:x32.", ("probe-event",),
         lambda s: "r:smoke/ret kprobe_target ret=$retval:x32", _fetches("r", "$retval", "a return probe"),
         "A kretprobe: $retval is rax read by its handler, after the trampoline."),
    Step("smoke_test() is over when fixup_selftest starts.",
         "Set a temporary breakpoint at fixup_selftest.", ("tbreak", "break"), lambda s: "tbreak fixup_selftest",
         placed("t", "fixup_selftest", "a temporary breakpoint"), "It deletes itself when hit."),
    Step("Run to it.", "Run the guest.", ("run", "continue"), lambda s: "run", _saw_rand1,
         "The entry saw rand1 (the guest's smoke_rand1) and the return rand1 / 3, the same numbers as the "
         "guest's own smoke_test line: the probes saw what the kernel computed, and changed nothing."),
    Step("Now the test itself: each scenario (kprobe with pre and post handlers, two kprobes, the jprobe, "
         "one and two kretprobes) on a fresh machine, checked as test_kprobes.c checks it.",
         "Run the smoke test.", ("smoke-test",), lambda s: "smoke-test", _smoke_passed(None),
         "Every handler saw what the kernel's test expects. Your session's machine was not touched."),
    Step("The kernel draws rand1 at random; any u32 above div_factor must pass.",
         "Run the smoke test with the largest u32, 0xffffffff, as rand1.", ("smoke-test",),
         lambda s: "smoke-test 0xffffffff", _smoke_passed(0xFFFFFFFF),
         "Passed at the edge too: the probes saw rand1, rand1 / 3 and rand1 / 3 + 1 for the largest "
         "value a u32 holds."),
])


# ---------------------------------------------------------------------- lesson 8
def _two_cpus(a: Attempt) -> str | None:
    n = a.session.machine.ncpus
    return None if n == 2 and a.session.machine.time_ns == 0 else f"the machine has {n} CPU(s): set cpus 2, then reset."


def _silence_spinlock_probe(session) -> str:
    up = probe_at(session, "k", "_spin_lock_irqsave")
    up.silent = True
    return (f"(The tour made probe {up.number} silent, as `commands {up.number}` with `silent` would: "
            "hundreds of trace lines would hide the point. It still counts its hits.)")


def _spinlock_probe(session):
    up = probe_at(session, "k", "_spin_lock_irqsave")
    return up.obj if up is not None else None


def _ran_out_of_line(a: Attempt) -> str | None:
    kp = _spinlock_probe(a.session)
    if kp is None:
        return "the _spin_lock_irqsave probe is gone: plant it again."
    return halted(a) or (None if kp.hits else "no hit yet.")


def _lost_in_place(a: Attempt) -> str | None:
    kp = _spinlock_probe(a.session)
    if kp is None:
        return "the _spin_lock_irqsave probe is gone."
    if a.session.settings["kprobe-step"] != "in-place":
        return "kprobe-step is still out-of-line: set kprobe-step in-place first."
    if a.session.machine.time_ns == 0 or halted(a):
        return "run the guest to its end (run)."
    return None if kp.missed_in_place else "no call was lost yet."


LESSON_8 = Lesson(8, "two CPUs, and why kprobes step out of line", steps=[
    Step("The SMP build of the minikernel brings up a second CPU; both call _spin_lock_irqsave all the "
         "time (printk, the run queues, the dcache).",
         "Give the machine 2 CPUs (a setting).", ("set",), lambda s: "set cpus 2", setting_is("cpus", 2),
         "The setting takes effect at the next boot."),
    Step("Boot with it.", "Boot a fresh machine.", ("reset",), lambda s: "reset", _two_cpus,
         "The bundled kernel's CONFIG_SMP build, two CPUs, one kernel text."),
    Step("One probe that both CPUs go through all the time.", "Plant a kprobe on _spin_lock_irqsave.",
         ("kprobe",), lambda s: "kprobe _spin_lock_irqsave", placed("k", "_spin_lock_irqsave", "a kprobe"),
         "Planted: one int3 in the text both CPUs run.", after=_silence_spinlock_probe),
    Step("Out of line, as the kernel does it: the int3 stays while the copy runs in its slot.",
         "Run the guest.", ("run", "continue"), lambda s: "run", _ran_out_of_line,
         lambda s: (f"Every call on either CPU trapped: {_spinlock_probe(s).hits} hits, one per call, and "
                    f"none missed ('probes' lists them).")),
    Step("The naive way puts the original byte back, steps the instruction in place, and plants the "
         "int3 again.",
         "Step probes in place (a setting).", ("set",), lambda s: "set kprobe-step in-place",
         setting_is("kprobe-step", "in-place"), "From now on each hit lifts the int3 for the step."),
    Step("Same workload again.", "Boot a fresh machine.", ("reset",), lambda s: "reset", _two_cpus,
         "The probe is registered again on two CPUs, counters at zero."),
    Step("Run it.", "Run the guest.", ("run", "continue"), lambda s: "run", _lost_in_place,
         lambda s: (f"While one CPU stepped in place, the other ran through _spin_lock_irqsave with no int3 "
                    f"there: {_spinlock_probe(s).missed_in_place} calls were never seen (the warning; 'missed "
                    f"(in-place window)' in probes), {_spinlock_probe(s).hits} were. That is why kprobes copy the "
                    "instruction to a slot and never lift the int3 while armed.")),
])


# ---------------------------------------------------------------------- lesson 9
def _queued_wc(a: Attempt) -> str | None:
    programs = a.session.programs
    if programs and programs[-1].name == "wc" and "/nonexistent" in programs[-1].argv:
        return None
    return "that queued another program or other arguments; the step wants wc on /etc/motd and /nonexistent."


def _saw_opens(a: Attempt) -> str | None:
    up = probe_at(a.session, "k", "do_sys_open")
    if up is None:
        return "the do_sys_open probe is gone: define it again."
    opened = " ".join(ev.args for ev in a.session.trace.events if ev.probe == up.number)
    if halted(a) is None and "/etc/motd" in opened and "/nonexistent" in opened:
        return None
    return "wc has not opened its files yet: run the guest to its end."


LESSON_9 = Lesson(9, "your own program", steps=[
    Step("guest_images/examples/wc is an ordinary static x86_64 Linux program: it counts the lines, "
         "words and bytes of stdin and of its files, with its own system calls. exec puts it on the "
         "guest's disk as /bin/wc; init forks, and the child's execve loads it (load_elf_binary).",
         "Run wc on /etc/motd and /nonexistent, with its own source as stdin.", ("exec",),
         lambda s: f"exec {example_path('wc')} /etc/motd /nonexistent < {example_path('wc.c')}", _queued_wc,
         "Queued: the machine was booted afresh on the kernel's CONFIG_USERSPACE build with wc on its disk."),
    Step("Each syscall instruction enters the kernel at system_call, which calls sys_call_table[rax]: "
         "so a probe on the kernel's do_sys_open sees the program's opens.",
         "Define p:opens on do_sys_open, fetching the file name: filename=+0(%si):string.", ("probe-event",),
         lambda s: "p:opens do_sys_open filename=+0(%si):string", placed("k", "do_sys_open", "a probe"),
         "The second argument of do_sys_open (rsi) is the user's path; +0(%si):string reads the string "
         "it points to."),
    Step("Run it.", "Run the guest.", ("run", "continue"), lambda s: "run", _saw_opens,
         "Every open wc made went through the kernel's own system-call path: /etc/motd opened, "
         "/nonexistent failed in do_sys_open (-ENOENT), so wc printed its message and exited 1."),
])

# ---------------------------------------------------------------------- lesson 10
def _queued_wc_on_motd(a: Attempt) -> str | None:
    programs = a.session.programs
    if programs and programs[-1].name == "wc" and programs[-1].argv[1:] == ["/etc/motd"]:
        return None
    return "that queued another program or other arguments; the step wants wc on /etc/motd alone."


def _user_probe_on_count(session, kind: str):
    """The uprobe (kind u) or uretprobe (ur) on the entry of wc's count, or None."""
    for up in sorted(session.probes.values(), key=lambda p: p.number):
        path, _, place = up.location.rpartition(":")
        if up.kind == kind and path.endswith("wc") and place in ("count", "count+0x0"):
            return up
    return None


def _placed_user(kind: str, what: str):
    def check(a: Attempt) -> str | None:
        if _user_probe_on_count(a.session, kind) is not None:
            return None
        return f"no {what} on wc's count yet (the place is PATH:count, PATH the program file)."
    return check


def _count_returned(a: Attempt) -> str | None:
    ret = _user_probe_on_count(a.session, "ur")
    if ret is None:
        return "the uretprobe on count is gone: place it again."
    if halted(a) is None and ret.obj.hits:
        return None
    return "wc has not finished yet: run the guest to its end."


def _explain_returns(session) -> str:
    entry, ret = _user_probe_on_count(session, "u"), _user_probe_on_count(session, "ur")
    return (f"count was entered {entry.obj.hits} times (stdin, then /etc/motd) and returned {ret.obj.hits} "
            "times. At each entry the int3 in wc's text trapped from user mode; uprobes ran the handlers, "
            "swapped the return address on the user stack for the trampoline in the process's [uprobes] page "
            "and stepped a copy of the first instruction there (TF), as kprobes step theirs in an insn slot. "
            "The return went to the trampoline's int3, which ran the return handler and put the real "
            "return address back: the program never knew (its output and instruction count are those of an "
            "unprobed run).")


LESSON_10 = Lesson(10, "uprobes: the program's own functions", steps=[
    Step("Lesson 9 probed the kernel under wc. Now the probes go on wc's own function count(fd, name), "
         "which counts one file, as Linux 3.5's uprobes do.",
         "Run wc on /etc/motd, with its own source as stdin.", ("exec",),
         lambda s: f"exec {example_path('wc')} /etc/motd < {example_path('wc.c')}", _queued_wc_on_motd,
         "Queued: wc will read stdin, then /etc/motd, calling count for each."),
    Step("A uprobe names a place in a program file, PATH:FUNC as perf probe writes it; its arguments "
         "are fetched from user memory.",
         "Place a uprobe on wc's count with fd=%di and name=+0(%si):ustring.", ("uprobe",),
         lambda s: f"uprobe {example_path('wc')}:count fd=%di name=+0(%si):ustring", _placed_user("u", "uprobe"),
         "Accepted before the program runs: the int3 goes into wc's text when exec maps it (uprobe_mmap)."),
    Step("A uretprobe catches the return: it swaps the user stack's return address for a trampoline.",
         "Place a uretprobe on wc's count fetching $retval.", ("uretprobe",),
         lambda s: f"uretprobe {example_path('wc')}:count returned=$retval", _placed_user("ur", "uretprobe"),
         "Two probes, one int3: the entry breakpoint serves both (a uprobe with two consumers)."),
    Step("Run it.", "Run the guest.", ("run", "continue"), lambda s: "run", _count_returned, _explain_returns),
])

LESSONS = [LESSON_1, LESSON_2, LESSON_3, LESSON_4, LESSON_5, LESSON_6, LESSON_7, LESSON_8, LESSON_9, LESSON_10]
#: Every step of the tour in order, with its lesson.
STEPS = [(lesson, step) for lesson in LESSONS for step in lesson.steps]

"""Tests for the kprobe_events parser (Documentation/trace/kprobetrace.rst)."""

import pytest

from kprobe_shell.tracing.fetch import (
    FETCH_TYPES,
    Arg,
    Comm,
    Deref,
    ImmString,
    Immediate,
    Memory,
    NamedParam,
    Register,
    RetVal,
    StackAddr,
    StackEntry,
    Symbol,
)
from kprobe_shell.tracing.probe_events import (
    Filter,
    ProbeEventDef,
    ProbeEventError,
    parse_probe_event,
)


def only_arg(line, **kwargs):
    defn = parse_probe_event(line, **kwargs)
    assert len(defn.args) == 1
    return defn.args[0]


# --------------------------------------------------------------------------
# Probe head, probe point and event names
# --------------------------------------------------------------------------

class TestProbeHead:
    def test_plain_kprobe_gets_ftrace_default_name(self):
        defn = parse_probe_event("p do_fork")
        assert isinstance(defn, ProbeEventDef)
        assert (defn.kind, defn.group, defn.event) == ("p", "kprobes", "p_do_fork_0")
        assert (defn.symbol, defn.offset, defn.address) == ("do_fork", 0, None)
        assert defn.maxactive == 0 and defn.args == [] and defn.filter is None
        assert defn.text == "p do_fork"

    def test_offset_appears_in_decimal_in_default_name(self):
        defn = parse_probe_event("p do_fork+0x10")
        assert defn.offset == 16
        assert defn.event == "p_do_fork_16"

    def test_return_probe_default_name(self):
        defn = parse_probe_event("r do_fork")
        assert (defn.kind, defn.event, defn.is_return) == ("r", "r_do_fork_0", True)

    def test_return_probe_accepts_explicit_plus_zero(self):
        assert parse_probe_event("r do_fork+0").offset == 0

    def test_percent_return_suffix_makes_a_return_probe(self):
        defn = parse_probe_event("p vfs_read%return $retval")
        assert (defn.kind, defn.symbol, defn.event) == ("r", "vfs_read", "r_vfs_read_0")
        assert defn.args[0].fetch == RetVal()

    def test_address_probe(self):
        defn = parse_probe_event("p 0xffffffff81234560")
        assert defn.symbol is None
        assert defn.address == 0xFFFFFFFF81234560
        assert defn.event == "p_0xffffffff81234560"

    def test_default_name_is_sanitized(self):
        assert parse_probe_event("p foo.isra.0").event == "p_foo_isra_0_0"

    def test_group_and_event(self):
        defn = parse_probe_event("p:mygrp/myevent do_sys_open")
        assert (defn.group, defn.event) == ("mygrp", "myevent")

    def test_event_without_group_uses_kprobes(self):
        defn = parse_probe_event("r:myretprobe do_sys_open $retval")
        assert (defn.group, defn.event) == ("kprobes", "myretprobe")

    @pytest.mark.parametrize("line, maxactive", [
        ("r5 do_fork", 5),
        ("r0 do_fork", 0),  # "0 for the default value"
        ("r4096:grp/ev do_fork", 4096),
        ("r0x10 do_fork", 16),
    ])
    def test_maxactive(self, line, maxactive):
        assert parse_probe_event(line).maxactive == maxactive

    def test_maxactive_with_event_name(self):
        defn = parse_probe_event("r10:retgrp/ret do_fork")
        assert (defn.maxactive, defn.group, defn.event) == (10, "retgrp", "ret")

    def test_delete(self):
        defn = parse_probe_event("-:mygrp/myevent")
        assert (defn.kind, defn.group, defn.event) == ("-", "mygrp", "myevent")
        assert defn.symbol is None and defn.args == []

    def test_delete_default_group(self):
        assert parse_probe_event("-:myevent").group == "kprobes"

    def test_surrounding_whitespace_is_ignored(self):
        defn = parse_probe_event("  p\tdo_fork   %di  ")
        assert defn.symbol == "do_fork"
        assert defn.args[0].fetch == Register("rdi")

    def test_listing_matches_kprobe_events_format(self):
        defn = parse_probe_event("r3:g/e do_fork ret=$retval:s32 $comm")
        assert defn.listing() == "r3:g/e do_fork ret=$retval:s32 arg2=$comm"
        assert parse_probe_event("p do_fork+4").listing() == "p:kprobes/p_do_fork_4 do_fork+4"
        assert parse_probe_event("-:g/e").listing() == "-:g/e"


# --------------------------------------------------------------------------
# Fetch arguments
# --------------------------------------------------------------------------

class TestRegisters:
    @pytest.mark.parametrize("spelling, canonical", [
        ("ax", "rax"), ("bx", "rbx"), ("cx", "rcx"), ("dx", "rdx"),
        ("si", "rsi"), ("di", "rdi"), ("bp", "rbp"), ("sp", "rsp"),
        ("ip", "rip"), ("flags", "eflags"), ("r8", "r8"), ("r15", "r15"),
        ("cs", "cs"), ("ss", "ss"), ("orig_ax", "orig_rax"),
        ("rax", "rax"), ("rdi", "rdi"), ("rip", "rip"), ("rsp", "rsp"),
        ("eax", "rax"), ("esi", "rsi"), ("eip", "rip"), ("rflags", "eflags"),
        ("eflags", "eflags"),
    ])
    def test_register_spellings_normalise(self, spelling, canonical):
        assert only_arg(f"p do_fork %{spelling}").fetch == Register(canonical)

    def test_register_prints_back_in_ftrace_spelling(self):
        assert str(Register("rax")) == "%ax"
        assert str(Register("eflags")) == "%flags"
        assert str(Register("r9")) == "%r9"


class TestFetchArgs:
    @pytest.mark.parametrize("text, fetch", [
        ("@0xffffffff81a00000", Memory(0xFFFFFFFF81A00000)),
        ("@4096", Memory(4096)),
        ("@010", Memory(8)),  # kstrtoul base 0: leading 0 is octal
        ("@jiffies", Symbol("jiffies", 0)),
        ("@jiffies+8", Symbol("jiffies", 8)),
        ("@jiffies-0x10", Symbol("jiffies", -16)),
        ("$stack", StackAddr()),
        ("$stack0", StackEntry(0)),
        ("$stack12", StackEntry(12)),
        ("$arg1", Arg(1)),
        ("$arg9", Arg(9)),
        ("$comm", Comm()),
        ("+0(%di)", Deref(0, Register("rdi"))),
        ("+0x18(%si)", Deref(24, Register("rsi"))),
        ("-8(%bp)", Deref(-8, Register("rbp"))),
        ("+u8(%di)", Deref(8, Register("rdi"), user=True)),
        ("-u8(%di)", Deref(-8, Register("rdi"), user=True)),
        ("+8(+0(%di))", Deref(8, Deref(0, Register("rdi")))),
        ("+4($stack)", Deref(4, StackAddr())),
        ("+0(@jiffies)", Deref(0, Symbol("jiffies"))),
        ("+0($arg2)", Deref(0, Arg(2))),
        ("\\123", Immediate(123)),
        ("\\0x10", Immediate(16)),
        ("\\-1", Immediate(-1)),
    ])
    def test_entry_fetchargs(self, text, fetch):
        assert only_arg(f"p do_fork {text}").fetch == fetch

    def test_retval_on_return_probe(self):
        assert only_arg("r do_fork $retval").fetch == RetVal()

    def test_immediate_string(self):
        arg = only_arg('p do_fork \\"hello"')
        assert arg.fetch == ImmString("hello")
        assert arg.type == FETCH_TYPES["string"]

    @pytest.mark.parametrize("text", [
        "%ax", "@0xffffffff81a00000", "@jiffies+8", "@jiffies-16", "$stack3",
        "$arg2", "$comm", "+8(+0(%di))", "-8(%bp)", "+u8(%di)", "\\5",
    ])
    def test_str_round_trips(self, text):
        fetch = only_arg(f"p do_fork {text}").fetch
        assert str(fetch) == text
        assert only_arg(f"p do_fork {fetch}").fetch == fetch

    def test_address_probe_allows_registers_and_stack(self):
        defn = parse_probe_event("p 0xffffffff81000000 %di $stack1")
        assert [a.fetch for a in defn.args] == [Register("rdi"), StackEntry(1)]

    def test_128_arguments_are_allowed(self):
        defn = parse_probe_event("p do_fork " + " ".join(["%di"] * 128))
        assert len(defn.args) == 128
        assert defn.args[-1].name == "arg128"


class TestArgNamesAndTypes:
    def test_default_names_are_positional(self):
        defn = parse_probe_event("p do_fork a=%di %si b=%dx %cx")
        assert [a.name for a in defn.args] == ["a", "arg2", "b", "arg4"]

    def test_arg_text_and_body(self):
        arg = only_arg("p do_fork flags=%dx:x32")
        assert arg.text == "flags=%dx:x32"
        assert arg.body == "%dx:x32"

    def test_default_type_is_x64(self):
        assert only_arg("p do_fork %di").type == FETCH_TYPES["x64"]

    def test_comm_defaults_to_string(self):
        arg = only_arg("p do_fork $comm")
        assert arg.type.kind == "string"

    @pytest.mark.parametrize("name", [
        "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64",
        "x8", "x16", "x32", "x64", "symbol", "char",
    ])
    def test_basic_types(self, name):
        arg = only_arg(f"p do_fork %di:{name}")
        assert arg.type is FETCH_TYPES[name]

    @pytest.mark.parametrize("text", [
        "+0(%di):string", "+0(%di):ustring", "@jiffies:string", "@0x1000:string",
        "$comm:string", "\\4096:string",
    ])
    def test_string_type_on_memory_fetches(self, text):
        assert only_arg(f"p do_fork {text}").type.kind == "string"

    def test_type_sizes(self):
        t = FETCH_TYPES
        assert (t["u8"].size, t["s16"].size, t["x32"].size, t["u64"].size) == (1, 2, 4, 8)
        assert t["s32"].signed and not t["u32"].signed
        assert (t["x8"].kind, t["u8"].kind, t["symbol"].kind) == ("hex", "int", "symbol")

    def test_bitfield(self):
        ftype = only_arg("p do_fork +0(%di):b4@3/32").type
        assert (ftype.kind, ftype.bit_width, ftype.bit_offset, ftype.size) == ("bitfield", 4, 3, 4)
        assert ftype.name == "b4@3/32"


class TestNamedParams:
    def test_unresolved_params_are_kept(self):
        defn = parse_probe_event("p do_sys_open filename:string flags")
        assert [(a.name, a.fetch) for a in defn.args] == [
            ("filename", NamedParam("filename")), ("flags", NamedParam("flags"))]
        assert defn.args[0].type.kind == "string"
        assert defn.args[1].type == FETCH_TYPES["x64"]

    def test_explicit_name_wins(self):
        assert only_arg("p do_sys_open fn=filename").name == "fn"

    def test_resolver_gets_symbol_and_name(self):
        calls = []

        def resolve(symbol, name):
            calls.append((symbol, name))
            return {"dfd": Register("rdi"), "mode": Arg(4)}[name]

        defn = parse_probe_event("p do_sys_open dfd:s32 mode", resolve_param=resolve)
        assert calls == [("do_sys_open", "dfd"), ("do_sys_open", "mode")]
        assert [a.fetch for a in defn.args] == [Register("rdi"), Arg(4)]
        assert defn.args[0].type == FETCH_TYPES["s32"]

    def test_string_param_in_register_reads_what_it_points_to(self):
        arg = only_arg("p do_sys_open filename:string",
                       resolve_param=lambda sym, name: Register("rsi"))
        assert arg.fetch == Deref(0, Register("rsi"))

    def test_string_param_already_in_memory_is_not_wrapped(self):
        arg = only_arg("p do_sys_open filename:string",
                       resolve_param=lambda sym, name: Deref(16, Register("rbp")))
        assert arg.fetch == Deref(16, Register("rbp"))


# --------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------

def filter_of(line):
    defn = parse_probe_event(line)
    assert isinstance(defn.filter, Filter)
    return defn.filter


class TestFilters:
    LINE = "p do_sys_open dfd=%di:s32 fn=+0(%si):string flags=%dx:x32 if "

    @pytest.mark.parametrize("expr, values, expected", [
        ("dfd == -100", {"dfd": -100}, True),
        ("dfd == -100", {"dfd": 3}, False),
        ("dfd != -100", {"dfd": 3}, True),
        ("dfd < 0", {"dfd": -1}, True),
        ("dfd <= 0", {"dfd": 0}, True),
        ("dfd > 0x10", {"dfd": 17}, True),
        ("dfd >= 0x10", {"dfd": 15}, False),
        ('fn == "/etc/passwd"', {"fn": "/etc/passwd"}, True),
        ('fn != "/etc/passwd"', {"fn": "/etc/passwd"}, False),
        ('fn ~ "/etc/*"', {"fn": "/etc/passwd"}, True),
        ('fn ~ "*.so"', {"fn": "/etc/passwd"}, False),
        ('fn ~ "/e?c/[op]*"', {"fn": "/etc/passwd"}, True),
        ("flags", {"flags": 0}, False),
        ("flags", {"flags": 2}, True),
        ("!flags", {"flags": 0}, True),
        ("dfd == 1 || flags == 2", {"dfd": 0, "flags": 2}, True),
        ("dfd == 1 && flags == 2", {"dfd": 0, "flags": 2}, False),
        ("!(dfd == 1 || flags == 2)", {"dfd": 0, "flags": 0}, True),
        ("dfd == 0 || dfd == 1 && flags == 9", {"dfd": 0, "flags": 0}, True),  # && binds tighter
        ("(dfd == 0 || dfd == 1) && flags == 9", {"dfd": 0, "flags": 0}, False),
        ("((dfd==1))&&flags!=0", {"dfd": 1, "flags": 1}, True),
        ("dfd == 1", {"dfd": None}, False),  # faulted fetch never matches
    ])
    def test_evaluate(self, expr, values, expected):
        assert filter_of(self.LINE + expr).evaluate(values) is expected

    @pytest.mark.parametrize("expr, values, expected", [
        ('$comm == "bash"', {"$comm": "bash"}, True),
        ('comm ~ "open*"', {"$comm": "opensnoop"}, True),
        ("$pid == 42", {"$pid": 42}, True),
        ("common_pid != 42", {"$pid": 42}, False),
    ])
    def test_task_fields(self, expr, values, expected):
        assert filter_of("p do_fork if " + expr).evaluate(values) is expected

    def test_argument_named_comm_shadows_task_comm(self):
        f = filter_of("p do_fork comm=%di if comm == 3")
        assert f.evaluate({"comm": 3, "$comm": "bash"}) is True

    def test_escaped_quote_in_string_literal(self):
        f = filter_of(r'p do_fork s=+0(%di):string if s == "a\"b"')
        assert f.evaluate({"s": 'a"b'}) is True

    def test_filter_keeps_its_text(self):
        assert str(filter_of("p do_fork a=%di if  a == 1 ")) == "a == 1"

    def test_missing_value_is_a_clear_key_error(self):
        with pytest.raises(KeyError, match=r"\$pid"):
            filter_of("p do_fork if $pid == 1").evaluate({})


# --------------------------------------------------------------------------
# Errors: message and caret position
# --------------------------------------------------------------------------

def _long_name():
    return "a" * 33


# (line, caret line, message): the caret marks the expected position.
ERRORS = [
    ("p do_fork %foo",
     "          ^", "Invalid register name '%foo'"),
    ("p do_fork %RAX",
     "          ^", "Invalid register name '%RAX'"),
    ("p do_fork %ax:foo",
     "              ^", "Unknown type 'foo': expected u8..u64, s8..s64, x8..x64, char, "
                        "string, ustring, symbol or b<width>@<offset>/<container>"),
    ("p do_fork %di:x33",
     "              ^", "Unknown type 'x33': expected u8..u64, s8..s64, x8..x64, char, "
                        "string, ustring, symbol or b<width>@<offset>/<container>"),
    ("p do_fork %di:",
     "              ^", "Type is not specified after ':'"),
    ("p do_fork %di:u8[4]",
     "                ^", "Array types (TYPE[N]) are not supported"),
    ("p do_fork $retval",
     "          ^", "$retval is only available on return probes"),
    ("r do_fork $arg1",
     "          ^", "$argN is not available on return probes: arguments only exist at "
                    "function entry"),
    ("p do_fork+8 $arg1",
     "            ^", "$argN is only available on a function entry probe (SYM or SYM+0)"),
    ("p 0xffffffff81000000 $arg1",
     "                     ^", "$argN is only available on a function entry probe "
                               "(SYM or SYM+0)"),
    ("p do_fork $arg0",
     "              ^", "Invalid argument number $arg0: arguments count from 1"),
    ("p do_fork $stack99999",
     "                ^", "Invalid stack number 99999 (max 2048)"),
    ("p do_fork $foo",
     "          ^", "Invalid $-variable '$foo': expected $retval, $stack, $stackN, "
                    "$argN or $comm"),
    ("p do_fork $stackx",
     "          ^", "Invalid $-variable '$stackx': expected $retval, $stack, $stackN, "
                    "$argN or $comm"),
    ("p do_fork $pid",
     "          ^", "Invalid $-variable '$pid': expected $retval, $stack, $stackN, "
                    "$argN or $comm"),
    ("p do_fork +8(%di",
     "                ^", "Dereference brace is not closed: missing ')'"),
    ("p do_fork +8(%di))",
     "                 ^", "Unbalanced parentheses: unexpected ')'"),
    ("p do_fork %di)",
     "             ^", "Unbalanced parentheses: unexpected ')'"),
    ("p do_fork +0(%di)xyz",
     "                 ^", "Unexpected 'xyz' after dereference"),
    ("p do_fork +x(%di)",
     "           ^", "Invalid dereference offset 'x'"),
    ("p do_fork +(%di)",
     "           ^", "Invalid dereference offset ''"),
    ("p do_fork +8%di",
     "          ^", "Dereference needs a brace: +|-OFFS(FETCHARG)"),
    ("p do_fork +0()",
     "             ^", "Missing fetch argument"),
    ("p do_fork +0($comm)",
     "             ^", "$comm can not be dereferenced"),
    ("p do_fork +0(flags)",
     "             ^", "Parameter name 'flags' can not be dereferenced: perf-style names "
                       "must be a whole argument"),
    ("p do_fork " + "+0(" * 15 + "%di" + ")" * 15,
     "          " + "   " * 14 + "^", "Dereference is nested too deeply (max 14)"),
    ("p do_fork x=" + "+0(%di)" * 10,
     "            ^", "Argument expression is too long (max 63 characters)"),
    ("p do_fork 8(%di)",
     "          ^", "Invalid fetch argument '8(%di)': expected %REG, @ADDR, @SYM, $var, "
                    "+|-OFFS(FETCHARG), \\IMM or a parameter name"),
    ("p do_fork junk(",
     "              ^", "Invalid fetch argument: unexpected '('"),
    ("p do_fork @",
     "           ^", "Missing address or symbol after '@'"),
    ("p do_fork @0xzz",
     "           ^", "Invalid memory address '0xzz'"),
    ("p do_fork @+8",
     "           ^", "File offsets (@+OFFS) are only available with uprobes"),
    ("p do_fork @jif!fies",
     "              ^", "Invalid symbol name 'jif!fies'"),
    ("p do_fork @jiffies+zz",
     "                  ^", "Invalid symbol offset '+zz'"),
    ("p do_fork \\zz",
     "           ^", "Invalid immediate value 'zz'"),
    ('p do_fork \\"abc',
     "               ^", "Immediate string is not closed with '\"'"),
    ("p do_fork %di:string",
     "              ^", "'string' type needs a memory argument, not %di: use "
                        "+0(%di):string to read the string it points to"),
    ("p do_fork $arg2:ustring",
     "                ^", "'ustring' type needs a memory argument, not $arg2: use "
                          "+0($arg2):ustring to read the string it points to"),
    ("p do_fork $comm:u32",
     "                ^", "$comm can only be fetched as a string, not u32"),
    ("p do_fork %di:b4@30/32",
     "              ^", "Bitfield b4@30 does not fit in 32 bits"),
    ("p do_fork %di:b4@0/24",
     "                   ^", "Invalid bitfield container size 24: expected 8, 16, 32 or 64"),
    ("p do_fork %di:b4@x/32",
     "              ^", "Invalid bitfield 'b4@x/32': expected b<bit-width>@<bit-offset>/"
                        "<container-size>"),
    ("p do_fork a=%di a=%si",
     "                ^", "Argument name 'a' is already used"),
    ("p do_fork arg2=%di %si",
     "                   ^", "Argument name 'arg2' is already used"),
    ("p do_fork flags flags",
     "                ^", "Argument name 'flags' is already used"),
    ("p do_fork common_pid=%di",
     "          ^", "Argument name 'common_pid' is reserved"),
    ("p do_fork =%di",
     "          ^", "Argument name is not specified before '='"),
    ("p do_fork 1a=%di",
     "          ^", "Argument name must follow the same rules as C identifiers: "
                    "unexpected '1'"),
    ("p do_fork " + _long_name() + "=%di",
     "          ^", "Argument name is too long (max 32)"),
    ("p do_fork a=",
     "            ^", "No argument expression after '='"),
    ("p do_fork " + " ".join(["%di"] * 129),
     "          " + "    " * 128 + "^", "Too many arguments (max 128)"),
    ("r do_fork+4",
     "         ^", "Return probe must be on a function entry: offset must be 0"),
    ("p do_fork+4%return",
     "         ^", "Return probe must be on a function entry: offset must be 0"),
    ("p do_fork%bogus",
     "         ^", "Invalid probed address suffix '%bogus' (only %return)"),
    ("p do_fork+zz",
     "         ^", "Invalid probe offset '+zz': expected +NUMBER"),
    ("p do_fork-4",
     "         ^", "Probe offset must not be negative"),
    ("p 1abc",
     "  ^", "Invalid probed address or symbol '1abc'"),
    ("p do/fork",
     "    ^", "Invalid probed address or symbol 'do/fork'"),
    ("p ext4:ext4_sync_file",
     "  ^", "Module symbols (MOD:SYM) are not supported: probe a symbol of the kernel image"),
    ("p",
     "  ^", "Missing probe point: expected SYM[+offs] or MEMADDR"),
    ("p:myprobe",
     "          ^", "Missing probe point: expected SYM[+offs] or MEMADDR"),
    ("p if $pid == 1",
     "  ^", "Missing probe point: expected SYM[+offs] or MEMADDR"),
    ("p: do_fork",
     "  ^", "Event name is not specified"),
    ("p:grp/ do_fork",
     "      ^", "Event name is not specified"),
    ("p:/ev do_fork",
     "  ^", "Group name is not specified before '/'"),
    ("p:my-ev do_fork",
     "    ^", "Event name must follow the same rules as C identifiers: unexpected '-'"),
    ("p:1grp/ev do_fork",
     "  ^", "Group name must follow the same rules as C identifiers: unexpected '1'"),
    ("p:grp/ev/x do_fork",
     "        ^", "Event name must follow the same rules as C identifiers: unexpected '/'"),
    ("p:" + "e" * 65 + " do_fork",
     "  ^", "Event name is too long (max 64)"),
    ("p5 do_fork",
     " ^", "Maxactive is only for return probes (r[MAXACTIVE])"),
    ("r99999 do_fork",
     " ^", "Maxactive is too big (max 4096)"),
    ("r09 do_fork",
     " ^", "Invalid maxactive number '09'"),
    ("pz do_fork",
     " ^", "Invalid probe type 'pz': expected p[:[GRP/]EVENT] or r[MAXACTIVE][:[GRP/]EVENT]"),
    ("x do_fork",
     "^", "Unknown probe type 'x': expected p (kprobe), r (return probe) or -: (delete)"),
    ("",
     "^", "Empty probe definition"),
    ("-:myprobe %di",
     "          ^", "'-:' (delete) takes no probe point, arguments or filter"),
    ("-:",
     "  ^", "Event name is not specified"),
    ("- myprobe",
     " ^", "Delete needs an event name: -:[GRP/]EVENT"),
    # filters
    ("p do_fork if",
     "             ^", "No filter rule after 'if'"),
    ("p do_fork if x == 1",
     "             ^", "Unknown field 'x' in filter (known: $comm, $pid, comm, common_pid)"),
    ("p do_fork a=%di if (a == 1",
     "                   ^", "Unbalanced parentheses in filter: '(' is never closed"),
    ("p do_fork a=%di if a == 1)",
     "                         ^", "Unbalanced parentheses in filter: unexpected ')'"),
    ("p do_fork a=%di if a = 1",
     "                     ^", "Unexpected character '=' in filter; use '=='"),
    ("p do_fork a=%di if a & 1",
     "                     ^", "Unexpected character '&' in filter; use '&&'"),
    ("p do_fork a=%di if a == 1 a == 2",
     "                          ^", "Unexpected 'a' in filter: expected '&&' or '||'"),
    ("p do_fork a=%di if a ==",
     "                        ^", "Unexpected end of filter: expected a field or a value"),
    ("p do_fork a=%di if a == 12ab",
     "                        ^", "Invalid number '12ab' in filter"),
    ('p do_fork a=%di if a == "x',
     "                        ^", "Unterminated string in filter"),
    ('p do_fork a=%di if a == "x"',
     "                     ^", "Type mismatch in filter: 'a' is an integer but '\"x\"' is a "
                               "string"),
    ('p do_fork s=+0(%di):string if s < "x"',
     "                                ^", "Operator '<' can not compare strings: "
                                          "use ==, != or ~"),
    ("p do_fork a=%di if a ~ 1",
     "                     ^", "Glob match '~' needs a string field and a quoted pattern, "
                               'e.g. comm ~ "open*"'),
    ("p do_fork if $comm",
     "                   ^", "'$comm' is a string: compare it with ==, != or ~"),
]


@pytest.mark.parametrize("line, caret, message", ERRORS,
                         ids=[e[0][:40] for e in ERRORS])
def test_error_message_and_position(line, caret, message):
    with pytest.raises(ProbeEventError) as info:
        parse_probe_event(line)
    error = info.value
    assert error.message == message
    assert error.line == line
    assert error.position == caret.index("^")


def test_there_are_many_distinct_error_messages():
    assert len({message for _, _, message in ERRORS}) >= 25


def test_error_renders_like_ftrace_error_log():
    with pytest.raises(ProbeEventError) as info:
        parse_probe_event("p do_fork %foo")
    assert str(info.value) == (
        "parse error: Invalid register name '%foo'\n"
        "  p do_fork %foo\n"
        "            ^"
    )


def test_error_caret_follows_tabs():
    with pytest.raises(ProbeEventError) as info:
        parse_probe_event("p\tdo_fork\t%foo")
    assert str(info.value).splitlines()[2] == "   \t       \t^"


def test_error_without_position_renders_two_lines():
    assert str(ProbeEventError("boom", "p x", None)) == "parse error: boom\n  p x"


def test_resolver_error_string_is_reported_at_the_argument():
    def resolve(symbol, name):
        return f"No variable '{name}' found in {symbol}"

    with pytest.raises(ProbeEventError) as info:
        parse_probe_event("p do_fork %di nosuch:u32", resolve_param=resolve)
    assert info.value.message == "No variable 'nosuch' found in do_fork"
    assert info.value.position == 14


def test_params_need_a_symbol_probe_point_when_resolving():
    with pytest.raises(ProbeEventError) as info:
        parse_probe_event("p 0xffffffff81000000 flags", resolve_param=lambda s, n: Arg(1))
    assert info.value.message == "Parameter 'flags' needs a symbol probe point"
    assert info.value.position == 21


def test_resolver_returning_garbage_is_a_type_error():
    with pytest.raises(TypeError):
        parse_probe_event("p do_fork flags", resolve_param=lambda s, n: 42)

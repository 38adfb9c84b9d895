"""The IPython extension: %kps and %%kps on one machine across cells, and the HTML views.

Driven in-process (IPython's InteractiveShell, no kernel): the text a view returns is the
shell's own text for the same commands, its HTML draws the same facts (every hijacked
slot links to an instance card that exists in the same fragment), and bad input is one
line, never a traceback.
"""
from __future__ import annotations

import io
import re

import pytest

pytest.importorskip("IPython", reason="the notebook extra is not installed (pip install -e '.[notebook]')")

from kprobe_shell.notebook import NotebookShell, View, instances, magics, stack  # noqa: E402
from kprobe_shell.shell.output import Output  # noqa: E402
from kprobe_shell.shell.session import Session  # noqa: E402

SETUP = ["set kprobe-mode boost", "kretprobe path_lookup_recursive", "p do_sys_open",
         "@opens[comm] = count() on 2", "@lat = hist(pid) on 2", "tbreak path_lookup_recursive+0x86", "run"]


@pytest.fixture
def ipython(kernel_path, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setattr(magics, "_SHELL", None)  # a fresh machine for each test
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "kprobe_shell")
    return ip


@pytest.fixture(scope="module")
def notebook(kernel_path):
    shell = NotebookShell()
    shown: list = []
    shell.run_cell("\n".join(SETUP), shown.append)
    return shell


@pytest.fixture(scope="module")
def plain_shell(kernel_path):
    """The plain shell after the same commands, and what it prints."""
    out = io.StringIO()
    session = Session(output=Output(out, color=False))
    session.batch = True
    for line in SETUP:
        session.execute(line)
    return session, out


def test_line_magics_keep_one_machine_across_cells(ipython, capsys):
    assert ipython.run_line_magic("kps", "kprobe do_fork") is None
    ipython.run_line_magic("kps", "run")
    view = ipython.run_line_magic("kps", "probes")
    assert isinstance(view, View)
    assert re.search(r"^1 +k +0x0+101a30 +do_fork\+0x0/0x31 +y +6 ", repr(view), re.M)
    assert "Kprobe 1 at 0x101a30" in capsys.readouterr().out
    assert "<td>do_fork+0x0/0x31</td>" in view._repr_html_()


def test_a_cell_runs_each_line_and_commands_blocks(ipython, capsys):
    ipython.run_cell_magic("kps", "", "kprobe do_fork\ncommands 1\n  silent\nend\n@forks[comm] = count() on 1\nrun")
    out = capsys.readouterr().out
    assert "Commands for 1: 0 line(s) (silent)" in out
    assert ": p_do_fork_0: (do_fork+0x0" not in out  # silent: no trace lines
    assert "@forks[init]: 5" in out  # maps print when the guest halts


def test_views_text_is_the_shells_text(notebook, plain_shell):
    session, out = plain_shell
    for line in ("stack 24", "instances --table", "instances", "probes", "maps", "slot 1", "trace"):
        start = len(out.getvalue())
        session.execute(line)
        assert repr(notebook.run(line)) + "\n" == out.getvalue()[start:], line


def test_stack_html_links_every_hijacked_slot_to_an_instance_card(notebook):
    page = notebook.run("stack 24")._repr_html_()
    links = re.findall(r'<a href="#([\w-]+)">instance #(\d+)</a>', page)
    ids = set(re.findall(r'<div class="node" id="([\w-]+)">', page))
    assert len(links) == 5 and {target for target, _ in links} == ids
    assert page.count('<tr class="planted">') == 5


def test_instances_html_draws_buckets_and_chains(notebook):
    from kprobe_shell.kprobes.core import hash_ptr

    m = notebook.session.machine
    page = notebook.run("instances")._repr_html_()
    bucket = hash_ptr(m.tasks.current().address)
    chain = re.search(rf'<div class="bucket">\[{bucket}\]</div>(.*?)NULL', page).group(1)
    assert chain.count('class="node"') == 5
    assert "empty: 63 of 64 buckets" in page


def test_maps_html_draws_counts_and_histograms_as_bars(notebook):
    page = notebook.run("maps")._repr_html_()
    widths = [int(w) for w in re.findall(r'class="bar" style="width: (\d+)px"', page)]
    assert widths and max(widths) == 240 and min(widths) >= 0
    assert "@lat (hist)" in page and "@opens (count)" in page
    # bucket labels as bpftrace prints them: the pids 2..6 fall in [2, 4) and [4, 8)
    assert "<td>[2, 4)</td>" in page and "<td>[4, 8)</td>" in page


def test_bad_input_is_one_line(ipython, capsys):
    assert ipython.run_line_magic("kps", "bogus") is None
    assert capsys.readouterr().out == "error: unknown command 'bogus'; try 'help'\n"
    ipython.run_cell_magic("kps", "", "echo one\nkprobe no_such_function\necho never")
    out = capsys.readouterr().out
    assert out.startswith("one\nerror: line 2: ") and "never" not in out
    ipython.run_line_magic("kps", "quit")
    assert "restart the kernel" in capsys.readouterr().out
    ipython.run_line_magic("kps", "")
    assert capsys.readouterr().out.startswith("usage: %kps COMMAND")


def test_python_api_objects_display_as_html(ipython):
    from kprobe_shell import Kprobe, Kretprobe, Machine

    m = Machine()
    rp, kp = Kretprobe("path_lookup_recursive"), Kprobe(symbol_name="do_fork")
    m.register(rp)
    m.register(kp)
    table = m.kprobes.kretprobes.kretprobe_inst_table
    for _ in range(500):  # until a call is in flight
        m.run(1000)
        if any(table):
            break
    assert any(table)
    html = ipython.display_formatter.formatters["text/html"]
    assert "<td>maxactive</td>" in html(rp) and "<td>do_fork (0x101a30)</td>" in html(kp)
    assert "<td>registered</td><td>yes</td>" in html(kp)
    page = html(m)
    assert "kretprobe_inst_table" in page and "Stack of" in page
    assert repr(instances(m)).startswith("kretprobe_inst_table: 64 buckets")
    assert repr(stack(m, 4)).startswith("Stack of ")


def test_a_figure_written_from_a_cell_is_shown_inline(notebook, tmp_path):
    path = tmp_path / "stack.svg"
    view = notebook.run(f"stack 24 --svg {path}")
    assert repr(view).startswith(f"Saved the stack to {path} (SVG, ")
    assert view._repr_html_().startswith("<svg") and view._repr_html_() in path.read_text()


def test_slot_html_shows_what_memory_holds(notebook):
    page = notebook.run("slot 1")._repr_html_()
    assert '<span class="planted">cc</span> int3' in page

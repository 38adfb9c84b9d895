"""The Python API's objects draw themselves in a notebook, extension or not.

A notebook that never runs `%load_ext kprobe_shell` is executed headless (nbclient, a real
kernel): each object's cell output carries text/html drawn by the object's own
`_repr_html_` (the same views the magics show) and a text/plain that says the same facts.
Then the extension, loaded in the same kernel, gives the same HTML: its formatters only
reuse those methods.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook extra is not installed (pip install -e '.[notebook]')")
pytest.importorskip("nbclient", reason="the notebook extra is not installed (pip install -e '.[notebook]')")
pytest.importorskip("ipykernel", reason="the notebook extra is not installed (pip install -e '.[notebook]')")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import make_notebooks  # noqa: E402

SETUP = """\
from kprobe_shell import Jprobe, Kprobe, Kretprobe, Machine
from kprobe_shell.notebook import instances, stack
m = Machine()
rp, kp, jp = Kretprobe("path_lookup_recursive"), Kprobe(symbol_name="do_fork"), Jprobe("ip_queue_xmit", "jip_queue_xmit")
for p in (rp, kp, jp):
    m.register(p)
while not any(m.kprobes.kretprobes.kretprobe_inst_table[b] and len(m.kprobes.kretprobes.kretprobe_inst_table[b]) == 5
              for b in range(64)):
    m.run(1000)
print("magics loaded:", get_ipython().find_line_magic("kps") is not None)"""

SHELL = """\
import io
from kprobe_shell.shell.output import Output
from kprobe_shell.shell.session import Session
session = Session(output=Output(io.StringIO(), color=False))
for line in ("p do_sys_open", "@opens[comm] = count() on 1", "@len = hist(pid) on 1", "run"):
    session.execute(line)"""

CELLS = [SETUP, "rp", "kp", "jp", "rp.used_instances[0]", "m", "stack(m, 24)", "instances(m)", SHELL,
         "session.trace", "session.maps.maps['@opens']", "session.maps.maps['@len']",
         "%load_ext kprobe_shell\nrp"]


@pytest.fixture(scope="module")
def shown(kernel_path) -> list[dict]:
    """Each cell's execute_result: {mime type: text}."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    make_notebooks.execute(nb, timeout=120)
    results = []
    for cell in nb.cells:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{cell.source!r}: {errors}"
        data = [o.data for o in cell.outputs if o.output_type == "execute_result"]
        streams = "".join(o.text for o in cell.outputs if o.output_type == "stream")
        results.append({"stream": streams, **(data[0] if data else {})})
    return results


def test_the_objects_draw_without_the_extension(shown):
    assert shown[0]["stream"] == "magics loaded: False\n"
    rp, kp, jp = shown[1], shown[2], shown[3]
    assert "<td>maxactive</td><td>10: 5 used, 5 free</td>" in rp["text/html"]
    assert "<td>at</td><td>do_fork (0x101a30)</td>" in kp["text/html"]
    assert "<td>handler</td><td>jip_queue_xmit</td>" in jp["text/html"]
    assert re.search(r"^probe +Kretprobe\nat +path_lookup_recursive \(0x[0-9a-f]+\)\nregistered +yes\n",
                     rp["text/plain"])
    assert re.search(r"^hits +6$", kp["text/plain"], re.M)
    assert re.search(r"^handler +jip_queue_xmit$", jp["text/plain"], re.M)


def test_an_instance_and_the_machine_draw_the_chain_and_the_stack(shown):
    ri, machine = shown[4], shown[5]
    assert '<div class="node"><b>#' in ri["text/html"] and "(path_lookup_recursive)</b><br>task opener1-2" in ri["text/html"]
    assert ri["text/plain"].startswith("<kretprobe_instance ") and "of <Kretprobe path_lookup_recursive>" in ri["text/plain"]
    page = machine["text/html"]
    assert "5 instance(s) in flight in 1 bucket(s)" in page and "Stack of opener1-2" in page
    assert re.fullmatch(r"minikernel\.elf: rip \w+\+0x[0-9a-f]+/0x[0-9a-f]+ \(0x[0-9a-f]+\), "
                        r"\d+ instructions, task opener1-2", machine["text/plain"])


def test_the_stack_and_instance_views_of_a_machine(shown):
    stack, table = shown[6], shown[7]
    assert stack["text/plain"].startswith("Stack of opener1-2")
    assert stack["text/html"].count("kretprobe_trampoline: hijacked return address") >= 4
    # every link in the stack's drawing leads to an instance card of the same fragment
    for target in re.findall(r'href="#([^"]+)"', stack["text/html"]):
        assert f'id="{target}"' in stack["text/html"]
    assert table["text/plain"].startswith("kretprobe_inst_table: 64 buckets indexed by hash_ptr(task); 5 instance(s)")
    assert table["text/html"].count('<div class="node"') == 5


def test_the_trace_and_maps_of_a_session(shown):
    trace, opens, lengths = shown[9], shown[10], shown[11]
    assert "<th>time</th><th>task</th>" in trace["text/html"] and "p_do_sys_open_0" in trace["text/html"]
    lines = trace["text/plain"].splitlines()
    assert len(lines) == 12 and all(": p_do_sys_open_0: (do_sys_open+0x0/0xba)" in line for line in lines)
    assert '<span class="bar"' in opens["text/html"] and "@opens (count)" in opens["text/html"]
    assert "@opens[opener1]: " in opens["text/plain"]
    assert "<th>bucket</th><th>count</th>" in lengths["text/html"]
    assert re.search(r"^@len\[\]:|^@len:", lengths["text/plain"], re.M)


def test_the_extension_reuses_the_objects_own_html(shown):
    assert shown[12]["text/html"] == shown[1]["text/html"]
    assert shown[12]["text/plain"] == shown[1]["text/plain"]

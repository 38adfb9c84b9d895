"""TaskView: the tasks read out of guest memory."""
from __future__ import annotations

from kprobe_shell import Machine


def test_current_comm_pid_is_what_read_task_says_at_every_context_switch(kernel_path):
    """The trace lines' short read (comm and pid alone) names the same task as the whole
    task_struct read, for every task the kernel switches to, and for a task-less image."""
    m = Machine(kernel_path)
    seen = []

    def check(machine):
        task = machine.tasks.current()
        assert task is not None
        assert machine.tasks.current_comm_pid() == (task.comm, task.pid)
        seen.append(task.pid)

    m.add_code_hook(m.symbols["schedule"].address, check)
    m.run()
    assert len(set(seen)) >= 5  # init, the workload's children, the idle task...


def test_current_comm_pid_without_kernel_tasks(build_guest):
    m = Machine(build_guest("engine"))
    assert m.tasks.current_comm_pid() == (m.tasks.pseudo.comm, m.tasks.pseudo.pid)

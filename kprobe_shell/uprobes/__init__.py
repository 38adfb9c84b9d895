"""uprobes and uretprobes: probes on the programs' own code, laid out as Linux 3.5+ lays
them out (kernel/events/uprobes.c, arch/x86/kernel/uprobes.c).

| module | kernel counterpart | holds |
|---|---|---|
| `types.py` | include/linux/uprobes.h | `Uprobe`, `Uretprobe` (the consumers), `UprobeEntry` (struct uprobe), `UprobeTask`, `ReturnInstance` |
| `program.py` | the inode and its file offsets | a probed program's ELF: file offset <-> vaddr, text, symbols, instruction boundaries |
| `xol.py` | xol_area, arch_uprobe_pre_xol / post_xol | the per-process "[uprobes]" page, its slots, the step's fix-ups |
| `core.py` | kernel/events/uprobes.c | register/unregister, install_breakpoint, uprobe_mmap, handle_swbp, handle_singlestep, the task hooks |
| `uretprobes.py` | prepare_uretprobe, handle_trampoline | return instances per task |
"""

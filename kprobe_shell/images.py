"""Where the bundled guest images are, installed or in a checkout."""
from __future__ import annotations

from pathlib import Path

BUNDLED_KERNEL = "minikernel/minikernel.elf"
#: The same kernel built with CONFIG_SMP: used when the machine has more than one CPU.
BUNDLED_SMP_KERNEL = "minikernel/minikernel-smp.elf"
#: The same kernel built with CONFIG_USERSPACE: used when the machine runs programs.
BUNDLED_USER_KERNEL = "minikernel/minikernel-user.elf"
#: Built with both: used when programs run on more than one CPU.
BUNDLED_SMP_USER_KERNEL = "minikernel/minikernel-smp-user.elf"


def bundled_kernel(cpus: int, programs: bool) -> str:
    """Which build of the bundled kernel a machine boots: SMP for more than one CPU, with
    user space when it runs programs (relative to the images directory)."""
    if programs:
        return BUNDLED_SMP_USER_KERNEL if cpus > 1 else BUNDLED_USER_KERNEL
    return BUNDLED_SMP_KERNEL if cpus > 1 else BUNDLED_KERNEL


def bundled_image_path(relative: str = BUNDLED_KERNEL) -> str:
    """The path of a bundled image: from the installed package, else from the checkout."""
    try:
        from importlib.resources import files

        candidate = Path(str(files("kprobe_shell.guest_images") / relative))
        if candidate.exists():
            return str(candidate)
    except (ModuleNotFoundError, TypeError):
        pass
    return str(Path(__file__).resolve().parent.parent / "guest_images" / relative)

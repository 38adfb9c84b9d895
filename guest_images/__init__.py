"""The bundled guest images (installed as kprobe_shell.guest_images; sources in guest_images/)."""

#!/usr/bin/env bash
# build_guest.sh - build the kprobe-shell guest images with the machine's gcc.
#
#   guest_images/minikernel/minikernel.elf       the bundled guest kernel (UP)
#   guest_images/minikernel/minikernel-smp.elf   the same sources with -DCONFIG_SMP
#   guest_images/minikernel/minikernel-user.elf  ... with -DCONFIG_USERSPACE (programs)
#   guest_images/minikernel/minikernel-smp-user.elf  ... with both (programs on SMP)
#   guest_images/examples/hello.elf          the "any user image" example
#   guest_images/examples/wc                 a static Linux program (the user-process lesson)
#
# Runnable from any directory.  The output is reproducible: building twice
# (from any checkout path) gives the same bytes.
#
# Usage: scripts/build_guest.sh [--check]
#   --check   build into a temporary directory and compare with the
#             committed ELFs instead of replacing them (exit 1 on a diff)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/guest_images/minikernel"
EXAMPLES="$ROOT/guest_images/examples"
CC="${CC:-gcc}"
CHECK=0
if [[ "${1:-}" == "--check" ]]; then
	CHECK=1
elif [[ $# -gt 0 ]]; then
	echo "usage: $0 [--check]" >&2
	exit 2
fi

export LC_ALL=C
export SOURCE_DATE_EPOCH=0

CFLAGS=(
	-O2 -g -ffreestanding -nostdlib -static -no-pie -fno-pic
	-mcmodel=small -mno-red-zone -mgeneral-regs-only
	-fno-stack-protector -fcf-protection=none -fno-omit-frame-pointer
	-fno-optimize-sibling-calls -fno-asynchronous-unwind-tables
	-Wall -Werror
)

BUILD="$(mktemp -d "${TMPDIR:-/tmp}/build_guest.XXXXXX")"
trap 'rm -rf "$BUILD"' EXIT

# --- the minikernel, UP and SMP -------------------------------------------
# As a 2.6 kernel: one set of sources, built without and with CONFIG_SMP.
# smp.c (AP bring-up) is only linked into the SMP kernel, so the UP kernel's
# code is exactly what it was before SMP existed.
cd "$SRC"
PREFIX_MAP=(-ffile-prefix-map="$SRC"=. -ffile-prefix-map="$BUILD"=build)
USERSPACE_SOURCES="binfmt_elf.c fcntl.c mm.c pipe.c signal.c syscall.c"
build_kernel() {	# build_kernel OUTPUT.elf OBJDIR [extra cflags...]
	local out="$1" objdir="$BUILD/$2"
	shift 2
	local objs=() src obj
	mkdir -p "$objdir"
	for src in head.S entry.S fixups.S $(ls *.c | sort); do
		if [[ $src == smp.c && " $* " != *" -DCONFIG_SMP "* ]]; then
			continue
		fi
		# user processes (paging, ring 3, system calls): only in the
		# -DCONFIG_USERSPACE builds, so the other kernels stay as they were
		if [[ " $USERSPACE_SOURCES " == *" $src "* && " $* " != *" -DCONFIG_USERSPACE "* ]]; then
			continue
		fi
		obj="$objdir/${src%.*}.o"
		"$CC" "${CFLAGS[@]}" "$@" "${PREFIX_MAP[@]}" -c "$src" -o "$obj"
		objs+=("$obj")
	done
	"$CC" "${CFLAGS[@]}" "$@" "${PREFIX_MAP[@]}" -T minikernel.ld \
		-Wl,--build-id=none \
		-o "$BUILD/$out" "${objs[@]}"
}
build_kernel minikernel.elf up
build_kernel minikernel-smp.elf smp -DCONFIG_SMP
build_kernel minikernel-user.elf user -DCONFIG_USERSPACE
build_kernel minikernel-smp-user.elf smp-user -DCONFIG_SMP -DCONFIG_USERSPACE

# --- the example user image (built exactly as the README documents) ------
cp "$EXAMPLES/hello.c" "$BUILD/hello.c"
(cd "$BUILD" && "$CC" -O2 -ffreestanding -nostdlib -static -no-pie -o hello.elf hello.c)

# --- the example Linux program (its own system calls, no libc) -------------
cp "$EXAMPLES/wc.c" "$BUILD/wc.c"
(cd "$BUILD" && "$CC" -O2 -ffreestanding -static -nostdlib -fno-pie -no-pie \
	-fno-asynchronous-unwind-tables -fcf-protection=none -fno-stack-protector \
	-Wl,--build-id=none -o wc wc.c)

if [[ $CHECK == 1 ]]; then
	status=0
	for pair in "minikernel.elf:$SRC/minikernel.elf" "minikernel-smp.elf:$SRC/minikernel-smp.elf" \
		"minikernel-user.elf:$SRC/minikernel-user.elf" \
		"minikernel-smp-user.elf:$SRC/minikernel-smp-user.elf" "wc:$EXAMPLES/wc" \
		"hello.elf:$EXAMPLES/hello.elf"; do
		built="$BUILD/${pair%%:*}"
		committed="${pair#*:}"
		if cmp -s "$built" "$committed"; then
			echo "up to date: ${committed#"$ROOT"/}"
		else
			echo "DIFFERS:    ${committed#"$ROOT"/}" >&2
			status=1
		fi
	done
	exit $status
fi

install -m 0644 "$BUILD/minikernel.elf" "$SRC/minikernel.elf"
install -m 0644 "$BUILD/minikernel-smp.elf" "$SRC/minikernel-smp.elf"
install -m 0644 "$BUILD/minikernel-user.elf" "$SRC/minikernel-user.elf"
install -m 0644 "$BUILD/minikernel-smp-user.elf" "$SRC/minikernel-smp-user.elf"
install -m 0644 "$BUILD/hello.elf" "$EXAMPLES/hello.elf"
install -m 0755 "$BUILD/wc" "$EXAMPLES/wc"
echo "built ${SRC#"$ROOT"/}/minikernel.elf ($(stat -c %s "$SRC/minikernel.elf") bytes)"
echo "built ${SRC#"$ROOT"/}/minikernel-smp.elf ($(stat -c %s "$SRC/minikernel-smp.elf") bytes)"
echo "built ${SRC#"$ROOT"/}/minikernel-user.elf ($(stat -c %s "$SRC/minikernel-user.elf") bytes)"
echo "built ${SRC#"$ROOT"/}/minikernel-smp-user.elf ($(stat -c %s "$SRC/minikernel-smp-user.elf") bytes)"
echo "built ${EXAMPLES#"$ROOT"/}/hello.elf ($(stat -c %s "$EXAMPLES/hello.elf") bytes)"
echo "built ${EXAMPLES#"$ROOT"/}/wc ($(stat -c %s "$EXAMPLES/wc") bytes)"

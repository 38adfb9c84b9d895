/*
 * syscall.c - the system call table with the x86_64 Linux numbers
 * (arch/x86_64/kernel/syscall.c), the system calls static glibc and musl
 * programs make, user faults (arch/x86_64/mm/fault.c, traps.c), and
 * init's runner for the programs the machine put on the disk.
 * CONFIG_USERSPACE builds only.
 */
#include "uspace.h"
#include "fs.h"

#define ENOTTY		25
#define ESPIPE		29
#define ERANGE		34
#define WNOHANG		1
#define ENODEV		19
int get_unused_fd(void);

typedef long (*sys_call_ptr_t)(long, long, long, long, long, long);

long sys_execve(const char *name, char **argv, char **envp, struct pt_regs *regs);
long sys_exit(int error_code);
long do_sys_open(int dfd, const char *filename, int flags, int mode);
void prepare_to_copy(struct task_struct *tsk);
long sys_arch_prctl(int code, unsigned long addr);
struct file *filp_open(const char *filename, int flags, int mode);
extern unsigned long timer_ticks;
int disk_add_file(const char *path, const char *data, unsigned long size, umode_t mode);

/* Unknown system calls: -ENOSYS, reported once per number. */
#define NI_REPORTED_MAX	4096		/* numbers past this are reported every time */
static unsigned char ni_reported[NI_REPORTED_MAX / 8];

__kfunc long sys_ni_syscall_regs(struct pt_regs *regs)
{
	unsigned long nr = regs->orig_rax;

	if (nr >= NI_REPORTED_MAX || !(ni_reported[nr / 8] & (1 << (nr % 8)))) {
		if (nr < NI_REPORTED_MAX)
			ni_reported[nr / 8] |= 1 << (nr % 8);
		printk("%s[%d]: system call %lu is not implemented (-ENOSYS)\n",
		       current->comm, current->pid, nr);
	}
	return -ENOSYS;
}

__kfunc long sys_ni_syscall(void)
{
	return sys_ni_syscall_regs(task_pt_regs(current));
}

/* ------------------------------------------------------------------ */
/* Files: the user buffers are checked, then the VFS does the work. */

__kfunc long sys_user_read(unsigned int fd, char *buf, size_t count)
{
	if (!access_ok((unsigned long)buf, count, 1))
		return -EFAULT;
	return sys_read(fd, buf, count);
}

__kfunc long sys_user_write(unsigned int fd, const char *buf, size_t count)
{
	if (!access_ok((unsigned long)buf, count, 0))
		return -EFAULT;
	return sys_write(fd, buf, count);
}

/* Positional I/O needs a file with positions: a pipe or the console is ESPIPE. */
static long check_seekable(unsigned int fd)
{
	struct file *f = fget(fd);
	long ret = 0;

	if (!f)
		return -EBADF;
	if (!f->f_dentry->d_inode || (f->f_dentry->d_inode->i_mode & S_IFMT) == 0010000 /* S_IFIFO */)
		ret = -ESPIPE;
	fput(f);
	return ret;
}

__kfunc long sys_user_pread64(unsigned int fd, char *buf, size_t count, long pos)
{
	long ret = check_seekable(fd);

	if (ret)
		return ret;
	if (!access_ok((unsigned long)buf, count, 1))
		return -EFAULT;
	return sys_pread64(fd, buf, count, pos);
}

__kfunc long sys_user_pwrite64(unsigned int fd, const char *buf, size_t count, long pos)
{
	long ret = check_seekable(fd);

	if (ret)
		return ret;
	if (!access_ok((unsigned long)buf, count, 0))
		return -EFAULT;
	return sys_pwrite64(fd, buf, count, pos);
}

/*
 * fs/read_write.c: do_readv_writev() calls the file's read or write
 * operation once per segment, not vfs_read/vfs_write (so sys_write
 * counts write(2) calls only, as on Linux).
 */
__kfunc long do_readv_writev(int type, struct file *file, const struct iovec *vec,
			     unsigned long vlen, loff_t *pos)
{
	ssize_t (*fn)(struct file *, char *, size_t, loff_t *);
	long total = 0;

	if (!(file->f_mode & (type == READ ? FMODE_READ : FMODE_WRITE)))
		return -EBADF;
	fn = type == READ ? file->f_op->read : (void *)file->f_op->write;
	if (!fn)
		return -EINVAL;
	for (unsigned long i = 0; i < vlen; i++) {
		struct iovec iv;
		long n;

		if (copy_from_user(&iv, &vec[i], sizeof(iv)))
			return total ? total : -EFAULT;
		if (!iv.iov_len)
			continue;
		if (!access_ok((unsigned long)iv.iov_base, iv.iov_len, type == READ))
			return total ? total : -EFAULT;
		n = fn(file, iv.iov_base, iv.iov_len, pos);
		if (n < 0)
			return total ? total : n;
		total += n;
		if ((size_t)n < iv.iov_len)
			break;
	}
	return total;
}

static long readv_writev(int type, unsigned int fd, const struct iovec *vec, unsigned long vlen)
{
	struct file *file = fget(fd);
	loff_t pos;
	long ret;

	if (!file)
		return -EBADF;
	pos = file->f_pos;
	ret = do_readv_writev(type, file, vec, vlen, &pos);
	file->f_pos = pos;
	fput(file);
	return ret;
}

__kfunc long sys_writev(unsigned int fd, const struct iovec *vec, unsigned long vlen)
{
	return readv_writev(WRITE, fd, vec, vlen);
}

__kfunc long sys_readv(unsigned int fd, const struct iovec *vec, unsigned long vlen)
{
	return readv_writev(READ, fd, vec, vlen);
}

__kfunc long sys_openat(int dfd, const char *filename, int flags, int mode)
{
	long fd = do_sys_open(dfd, filename, flags | O_LARGEFILE, mode);

	if (fd >= 0)
		set_close_on_exec(fd, flags & O_CLOEXEC);
	return fd;
}

__kfunc long sys_user_open(const char *filename, int flags, int mode)
{
	return sys_openat(AT_FDCWD, filename, flags, mode);
}

__kfunc long sys_lseek(unsigned int fd, long offset, unsigned int whence)
{
	struct file *f = fget(fd);
	long pos;

	if (!f)
		return -EBADF;
	if (!S_ISREG(f->f_dentry->d_inode->i_mode)) {
		fput(f);
		return -ESPIPE;
	}
	pos = whence == 0 ? offset : whence == 1 ? f->f_pos + offset :
		whence == 2 ? f->f_dentry->d_inode->i_size + offset : -1;
	if (pos < 0) {
		fput(f);
		return -EINVAL;
	}
	f->f_pos = pos;
	fput(f);
	return pos;
}

/* struct stat (x86_64) */
struct kstat64 {
	unsigned long st_dev, st_ino, st_nlink;
	u32 st_mode, st_uid, st_gid, pad0;
	unsigned long st_rdev;
	long st_size, st_blksize, st_blocks;
	unsigned long times[6];
	long unused[3];
};

static long fill_stat(struct inode *inode, void *statbuf)
{
	struct kstat64 st;

	memset(&st, 0, sizeof(st));
	st.st_dev = 1;
	st.st_ino = inode->i_ino;
	st.st_nlink = 1;
	st.st_mode = inode->i_mode;
	st.st_size = S_ISREG(inode->i_mode) ? inode->i_size : 0;
	st.st_blksize = 4096;
	st.st_blocks = (st.st_size + 511) / 512;
	if ((inode->i_mode & S_IFMT) == S_IFCHR)
		st.st_rdev = 0x501;		/* the console, 5:1 */
	return copy_to_user(statbuf, &st, sizeof(st));
}

__kfunc long sys_newfstat(unsigned int fd, void *statbuf)
{
	struct file *f = fget(fd);
	long ret;

	if (!f)
		return -EBADF;
	if (f->f_dentry->d_inode) {
		ret = fill_stat(f->f_dentry->d_inode, statbuf);
	} else {			/* the console */
		struct inode console = { .i_ino = 3, .i_mode = S_IFCHR | 0600 };

		ret = fill_stat(&console, statbuf);
	}
	fput(f);
	return ret;
}

__kfunc long sys_newstat(const char *filename, void *statbuf)
{
	long fd = sys_user_open(filename, O_RDONLY, 0), ret;

	if (fd < 0)
		return fd;
	ret = sys_newfstat(fd, statbuf);
	sys_close(fd);
	return ret;
}

__kfunc long sys_newfstatat(int dfd, const char *filename, void *statbuf, int flag)
{
	char c;

	if ((flag & 0x1000) && !copy_from_user(&c, filename, 1) && c == '\0')	/* AT_EMPTY_PATH */
		return sys_newfstat(dfd, statbuf);
	return sys_newstat(filename, statbuf);
}

/* The console is not a terminal: stdio buffers it as it would a pipe. */
__kfunc long sys_ioctl(unsigned int fd, unsigned int cmd, unsigned long arg)
{
	struct file *f = fget(fd);

	(void)cmd;
	(void)arg;
	if (!f)
		return -EBADF;
	fput(f);
	return -ENOTTY;
}

__kfunc long sys_readlink(const char *path, char *buf, int bufsiz)
{
	char name[32];
	const char *exe = current->mm ? current->mm->exe : "";
	long n = strlen(exe);

	if (strncpy_from_user(name, path, sizeof(name)) < 0 || strcmp(name, "/proc/self/exe"))
		return -ENOENT;
	if (n > bufsiz)
		n = bufsiz;
	return copy_to_user(buf, exe, n) ? -EFAULT : n;
}

__kfunc long sys_getcwd(char *buf, unsigned long size)
{
	if (size < 2)
		return -ERANGE;
	return copy_to_user(buf, "/", 2) ? -EFAULT : 2;
}

/* ------------------------------------------------------------------ */
/* Memory */

__kfunc long sys_brk(unsigned long brk)
{
	struct mm_struct *mm = current->mm;
	unsigned long newbrk = PAGE_ALIGN(brk);

	if (brk < mm->start_brk || newbrk > USER_LOW_END)
		return mm->brk;
	if (newbrk > mm->brk && do_brk(mm->brk, newbrk - mm->brk) != mm->brk)
		return mm->brk;
	if (newbrk < mm->brk)
		do_munmap(mm, newbrk, mm->brk - newbrk);
	mm->brk = newbrk;
	return brk;
}

#define MAP_SHARED	0x01
#define MAP_ANONYMOUS	0x20
#define EACCES		13

/*
 * mm/mmap.c: do_mmap_pgoff() for a file.  There is no demand paging: the
 * pages are mapped now and filled from the file (mm/filemap.c reads it),
 * so the mapping is private.  A shared writable mapping would have to
 * write back: ENODEV, as a file system without mmap says.
 */
__kfunc long do_mmap_pgoff(struct file *file, unsigned long addr, unsigned long len,
			   unsigned long prot, unsigned long flags, unsigned long pgoff)
{
	struct inode *inode = file->f_dentry->d_inode;
	unsigned long off = pgoff << 12, start, n;
	long ret;

	if (!inode || !S_ISREG(inode->i_mode) || ((flags & 0xf) == MAP_SHARED && (prot & PROT_WRITE)))
		return -ENODEV;
	if (!(file->f_mode & FMODE_READ))
		return -EACCES;
	start = do_mmap_anon(addr, len, prot, flags);
	if (IS_ERR_VALUE(start) || off >= (unsigned long)inode->i_size)
		return start;
	n = inode->i_size - off < len ? inode->i_size - off : len;
	ret = kernel_read(file, off, (char *)start, n);
	if (ret != (long)n) {
		do_munmap(current->mm, start, len);
		return ret < 0 ? ret : -EIO;
	}
	return start;
}

__kfunc long sys_mmap(unsigned long addr, unsigned long len, unsigned long prot,
		      unsigned long flags, unsigned long fd, unsigned long off)
{
	struct file *file;
	long ret;

	if (flags & MAP_ANONYMOUS)
		return do_mmap_anon(addr, len, prot, flags);
	if (off & ~PAGE_MASK)
		return -EINVAL;
	file = fget(fd);
	if (!file)
		return -EBADF;
	ret = do_mmap_pgoff(file, addr, len, prot, flags, off >> 12);
	fput(file);
	return ret;
}

__kfunc long sys_munmap(unsigned long addr, size_t len)
{
	return do_munmap(current->mm, addr, len);
}

/* mm/mremap.c: the pages move with their page table entries, no copy. */
__kfunc long sys_mremap(unsigned long addr, unsigned long old_len, unsigned long new_len,
			unsigned long flags, unsigned long new_addr)
{
	(void)new_addr;
	if ((addr & ~PAGE_MASK) || !new_len || (flags & ~1UL))	/* MREMAP_MAYMOVE only */
		return -EINVAL;
	return do_mremap(addr, PAGE_ALIGN(old_len), PAGE_ALIGN(new_len), flags & 1);
}

/* mm/mprotect.c: only the execute permission changes (see vm_get_page_prot). */
__kfunc long sys_mprotect(unsigned long start, size_t len, unsigned long prot)
{
	unsigned long end;

	if (start & ~PAGE_MASK)
		return -EINVAL;
	if (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM | PROT_GROWSDOWN | PROT_GROWSUP))
		return -EINVAL;
	if ((prot & (PROT_GROWSDOWN | PROT_GROWSUP)) == (PROT_GROWSDOWN | PROT_GROWSUP))
		return -EINVAL;
	end = start + PAGE_ALIGN(len);
	if (end < start)
		return -ENOMEM;
	if (end == start)
		return 0;
	return change_protection(current->mm, start, end, vm_get_page_prot(prot));
}

/* ------------------------------------------------------------------ */
/* Processes */

__kfunc long sys_getpid(void)
{
	return current->pid;
}

__kfunc long sys_getppid(void)
{
	return current->parent->pid;
}

__kfunc long sys_getuid(void)
{
	return 0;
}

__kfunc long sys_set_tid_address(int *tidptr)
{
	current->clear_child_tid = (unsigned long)tidptr;
	return current->pid;
}

__kfunc long sys_set_robust_list(void *head, size_t len)
{
	(void)head;
	(void)len;
	return 0;
}

__kfunc long sys_prlimit64(int pid, unsigned int resource, const void *new_rlim, unsigned long *old)
{
	unsigned long lim[2] = { ~0UL, ~0UL };

	(void)pid;
	(void)new_rlim;
	if (resource == 3)		/* RLIMIT_STACK */
		lim[0] = lim[1] = STACK_PAGES * PAGE_SIZE;
	else if (resource == 4)		/* RLIMIT_CORE: no core files are written */
		lim[0] = lim[1] = 0;
	if (old && copy_to_user(old, lim, sizeof(lim)))
		return -EFAULT;
	return 0;
}

__kfunc long sys_getrandom(char *buf, size_t count, unsigned int flags)
{
	static u32 seed = 0x2545f491;

	(void)flags;
	if (!access_ok((unsigned long)buf, count, 1))
		return -EFAULT;
	for (size_t i = 0; i < count; i++) {
		seed = seed * 1103515245 + 12345;
		buf[i] = seed >> 16;
	}
	return count;
}

struct new_utsname {
	char sysname[65], nodename[65], release[65], version[65], machine[65], domainname[65];
};

__kfunc long sys_newuname(struct new_utsname *name)
{
	static const struct new_utsname uts = {
		"Linux", "kprobe-shell", "2.6.12", "#1 minikernel", "x86_64", "(none)",
	};

	return copy_to_user(name, &uts, sizeof(uts));
}

/* The virtual clock: jiffies times the machine's nanoseconds per tick. */
__kfunc long sys_clock_gettime(int which, unsigned long *tp)
{
	unsigned long ns = jiffies * boot_params.ns_per_tick, ts[2] = { ns / 1000000000, ns % 1000000000 };

	(void)which;
	return copy_to_user(tp, ts, sizeof(ts));
}

__kfunc long sys_gettimeofday(unsigned long *tv, void *tz)
{
	unsigned long ns = jiffies * boot_params.ns_per_tick, t[2] = { ns / 1000000000, ns % 1000000000 / 1000 };

	(void)tz;
	return tv ? copy_to_user(tv, t, sizeof(t)) : 0;
}

__kfunc long sys_time(long *t)
{
	long now = jiffies * boot_params.ns_per_tick / 1000000000;

	if (t && copy_to_user(t, &now, sizeof(now)))
		return -EFAULT;
	return now;
}

__kfunc long sys_nanosleep(const unsigned long *req, unsigned long *rem)
{
	unsigned long ts[2], ticks;

	if (copy_from_user(ts, req, sizeof(ts)))
		return -EFAULT;
	ticks = (ts[0] * 1000000000 + ts[1]) / (boot_params.ns_per_tick ? boot_params.ns_per_tick : 1) + 1;
	set_current_state(TASK_INTERRUPTIBLE);
	ticks = schedule_timeout(ticks);
	if (ticks && signal_pending(current)) {	/* a handler runs: -EINTR, the time left */
		unsigned long ns = ticks * boot_params.ns_per_tick, left[2] = { ns / 1000000000, ns % 1000000000 };

		if (rem && copy_to_user(rem, left, sizeof(left)))
			return -EFAULT;
		return -EINTR;
	}
	return 0;
}

/* glibc's nanosleep and usleep: relative sleeps only (TIMER_ABSTIME is EINVAL here). */
__kfunc long sys_clock_nanosleep(int which, int flags, const unsigned long *req, unsigned long *rem)
{
	(void)which;
	if (flags)
		return -EINVAL;
	return sys_nanosleep(req, rem);
}

__kfunc long sys_user_exit(int code)
{
	return sys_exit(code);
}

__kfunc long sys_fork(void)
{
	return do_fork(SIGCHLD, 0, task_pt_regs(current), 0);
}

/* The parent sleeps until the child has exec'd or exited; the child runs on its memory. */
__kfunc long sys_vfork(void)
{
	return do_fork(CLONE_VFORK | CLONE_VM | SIGCHLD, 0, task_pt_regs(current), 0);
}

/*
 * clone(2) for processes: CLONE_VFORK (with CLONE_VM, as posix_spawn asks)
 * shares the address space as vfork does; CLONE_VM alone gets a copy.
 * Threads (CLONE_THREAD) are refused, once reported.
 */
__kfunc long sys_user_clone(unsigned long flags, unsigned long newsp)
{
	if (flags & CLONE_THREAD) {		/* reported once per call (clone, clone3) */
		unsigned long nr = task_pt_regs(current)->orig_rax;

		if (nr < NI_REPORTED_MAX && !(ni_reported[nr / 8] & (1 << (nr % 8)))) {
			ni_reported[nr / 8] |= 1 << (nr % 8);
			printk("%s[%d]: %s(CLONE_VM|CLONE_THREAD): threads are not supported (-ENOSYS)\n",
			       current->comm, current->pid, nr == 435 ? "clone3" : "clone");
		}
		return -ENOSYS;
	}
	if ((flags & (CLONE_VFORK | CLONE_VM)) == (CLONE_VFORK | CLONE_VM))
		return do_fork(flags & (CSIGNAL | CLONE_VFORK | CLONE_VM | CLONE_CLEAR_SIGHAND), newsp,
			       task_pt_regs(current), 0);
	return do_fork(flags & (CSIGNAL | CLONE_CLEAR_SIGHAND), newsp, task_pt_regs(current), 0);
}

/* clone3(2), which glibc's posix_spawn tries first: the same, from struct clone_args. */
__kfunc long sys_clone3(const unsigned long *uargs, size_t size)
{
	unsigned long args[8];		/* flags pidfd child_tid parent_tid exit_signal stack stack_size tls */

	if (size < sizeof(args))
		return -EINVAL;
	if (copy_from_user(args, uargs, sizeof(args)))
		return -EFAULT;
	if (args[4] & ~CSIGNAL)
		return -EINVAL;
	return sys_user_clone((args[0] & ~CSIGNAL) | args[4], args[5] ? args[5] + args[6] : 0);
}

__kfunc long sys_user_execve(const char *name, char **argv, char **envp)
{
	return sys_execve(name, argv, envp, task_pt_regs(current));
}

__kfunc long sys_user_wait4(int pid, int *stat_addr, int options, void *ru)
{
	int status = 0;
	long ret;

	(void)ru;
	ret = sys_wait4(pid, &status, options, NULL);
	if (ret > 0 && stat_addr && copy_to_user(stat_addr, &status, sizeof(status)))
		return -EFAULT;
	return ret;
}

/* No restartable sequences here, as in a kernel without CONFIG_RSEQ: glibc goes on. */
__kfunc long sys_rseq(void)
{
	return -ENOSYS;
}

__kfunc long sys_pipe(int *fds)
{
	return do_pipe(fds, 0);
}

__kfunc long sys_pipe2(int *fds, int flags)
{
	if (flags & ~(O_CLOEXEC | O_NONBLOCK))
		return -EINVAL;
	return do_pipe(fds, flags);
}

#define SC(nr, fn)	[nr] = (sys_call_ptr_t)(fn)

const sys_call_ptr_t sys_call_table[NR_syscalls] = {
	[0 ... NR_syscalls - 1] = (sys_call_ptr_t)sys_ni_syscall,
	SC(0, sys_user_read), SC(1, sys_user_write), SC(2, sys_user_open), SC(3, sys_close),
	SC(4, sys_newstat), SC(5, sys_newfstat), SC(6, sys_newstat), SC(8, sys_lseek),
	SC(9, sys_mmap), SC(10, sys_mprotect), SC(11, sys_munmap), SC(12, sys_brk),
	SC(25, sys_mremap),
	SC(13, sys_rt_sigaction), SC(14, sys_rt_sigprocmask), SC(16, sys_ioctl),
	SC(19, sys_readv), SC(20, sys_writev), SC(22, sys_pipe), SC(32, sys_dup), SC(33, sys_dup2),
	SC(35, sys_nanosleep), SC(39, sys_getpid), SC(56, sys_user_clone), SC(57, sys_fork),
	SC(58, sys_vfork), SC(59, sys_user_execve), SC(60, sys_user_exit), SC(61, sys_user_wait4),
	SC(62, sys_kill), SC(63, sys_newuname), SC(79, sys_getcwd), SC(89, sys_readlink),
	SC(96, sys_gettimeofday), SC(102, sys_getuid), SC(104, sys_getuid), SC(107, sys_getuid),
	SC(108, sys_getuid), SC(110, sys_getppid), SC(158, sys_arch_prctl), SC(186, sys_getpid),
	SC(201, sys_time), SC(218, sys_set_tid_address), SC(228, sys_clock_gettime),
	SC(231, sys_user_exit), SC(257, sys_openat), SC(262, sys_newfstatat),
	SC(273, sys_set_robust_list), SC(293, sys_pipe2), SC(302, sys_prlimit64), SC(318, sys_getrandom), SC(334, sys_rseq),
	/* signals (signal.c) */
	SC(15, sys_rt_sigreturn), SC(34, sys_pause), SC(109, sys_setpgid), SC(111, sys_getpgrp),
	SC(121, sys_getpgid), SC(127, sys_rt_sigpending), SC(130, sys_rt_sigsuspend), SC(200, sys_tkill),
	SC(234, sys_tgkill), SC(131, sys_sigaltstack), SC(36, sys_getitimer), SC(37, sys_alarm),
	SC(38, sys_setitimer),
	/* descriptors (fcntl.c) */
	SC(72, sys_fcntl), SC(292, sys_dup3),
	/* files programs create (fs.c) */
	SC(21, sys_access), SC(76, sys_truncate), SC(77, sys_ftruncate), SC(82, sys_rename),
	SC(83, sys_mkdir), SC(84, sys_rmdir), SC(87, sys_unlink), SC(95, sys_umask), SC(258, sys_mkdirat),
	SC(263, sys_unlinkat), SC(264, sys_renameat), SC(269, sys_faccessat), SC(316, sys_renameat2),
	SC(230, sys_clock_nanosleep), SC(435, sys_clone3), SC(439, sys_faccessat), SC(17, sys_user_pread64), SC(18, sys_user_pwrite64),
};

/* ------------------------------------------------------------------ */
/* A fault in user mode sends the process its signal (signal.c);
 * #NM (device not available) is the lazy FPU switch instead. */

__kfunc void do_user_trap(struct pt_regs *regs)
{
	struct user_trap_info *info = &user_trap_info[smp_processor_id()];

	if (info->vector == 7) {		/* #NM: lazy FPU switching */
		math_state_restore();
		return;
	}
	local_irq_enable();
	do_trap_signal(regs, info->vector, info->error_code, info->cr2);
	local_irq_disable();
}

/* ------------------------------------------------------------------ */
/* init's runner: one child per program, fork + execve, then reap them. */

static char prog_argv_store[MAX_BOOT_PROGRAMS][1024];

__kfunc int user_program_main(void *arg)
{
	struct boot_program *bp = arg;
	int idx = bp - boot_params.programs;
	char *argv[33], *envp[] = { "HOME=/", "PATH=/bin", "TERM=dumb", NULL };
	char path[48], *s = prog_argv_store[idx];
	struct pt_regs regs;
	long ret;

	set_task_comm(current, bp->name);	/* as exec would, so a failed exec is named too */
	current->pgrp = current->pid;		/* its own process group, as a shell's job */
	snprintf(path, sizeof(path), "/bin/%s", bp->name);
	for (unsigned long i = 0; i < bp->argc && i < 32; i++) {
		argv[i] = s;
		s += strlen(s) + 1;
	}
	argv[bp->argc < 32 ? bp->argc : 32] = NULL;
	if (bp->stdin_size != ~0UL) {
		struct file *f;

		snprintf(path, sizeof(path), "/stdin/%d", idx);
		f = filp_open(path, O_RDONLY, 0);
		if (!IS_ERR(f))
			current->files->fd_array[0] = f;
		snprintf(path, sizeof(path), "/bin/%s", bp->name);
	}
	memset(&regs, 0, sizeof(regs));
	ret = sys_execve(path, argv, envp, &regs);
	if (ret == 0)
		ret_from_execve(&regs);
	if (ret == -ENOEXEC)
		printk("init: %s: exec format error: not a static x86_64 Linux executable\n", path);
	else
		printk("init: execve(\"%s\") failed: %ld\n", path, ret);
	return 127 << 8;
}

static void report_reaped(long pid, const char *comm, int status)
{
	if (status & 0x7f)
		printk("init: reaped pid %ld (%s), killed by signal %d\n", pid, comm, status & 0x7f);
	else
		printk("init: reaped pid %ld (%s), exit code %d\n", pid, comm, (status >> 8) & 0xff);
}

/* init reaps its programs and, silently as Linux's init does, the orphans it adopted. */
__kfunc int run_user_programs(void)
{
	long started[MAX_BOOT_PROGRAMS] = { 0 }, pid;

	for (unsigned long i = 0; i < boot_params.nr_programs && i < MAX_BOOT_PROGRAMS; i++) {
		struct boot_program *bp = &boot_params.programs[i];
		char path[48];

		snprintf(path, sizeof(path), "/bin/%s", bp->name);
		disk_add_file(path, (const char *)bp->image, bp->size, S_IFREG | 0755);
		if (bp->stdin_size != ~0UL) {
			snprintf(path, sizeof(path), "/stdin/%lu", i);
			disk_add_file(path, (const char *)bp->stdin_image, bp->stdin_size, S_IFREG | 0644);
		}
		memcpy(prog_argv_store[i], (const char *)bp->argv_image, sizeof(prog_argv_store[i]));
	}
	disk_add_file("/tmp", NULL, 0, S_IFDIR | 01777);
	for (unsigned long i = 0; i < boot_params.nr_programs && i < MAX_BOOT_PROGRAMS; i++) {
		pid = kernel_thread(user_program_main, &boot_params.programs[i], SIGCHLD);
		printk("init: started /bin/%s -> pid %ld\n", boot_params.programs[i].name, pid);
		started[i] = pid;
	}
	for (;;) {			/* until -ECHILD: no child left, adopted ones included */
		char comm[TASK_COMM_LEN] = "?";
		struct task_struct *p;
		int status = 0, mine = 0;

		pid = sys_wait4(-1, &status, 0x01000000, NULL);	/* WNOWAIT: peek */
		if (pid < 0)
			break;
		p = find_task_by_pid(pid);
		if (p)
			strlcpy(comm, p->comm, sizeof(comm));
		for (unsigned long i = 0; i < MAX_BOOT_PROGRAMS; i++)
			mine |= started[i] == pid;
		pid = sys_wait4(pid, &status, 0, NULL);
		if (mine)
			report_reaped(pid, comm, status);
	}
	return 0;
}

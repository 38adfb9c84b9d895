/*
 * fcntl.c - duplicating file descriptors, close-on-exec and file status
 * flags (fs/fcntl.c, fs/exec.c's flush_old_files).  CONFIG_USERSPACE
 * builds only.  A task has NR_OPEN_DEFAULT (16) descriptors; the
 * close-on-exec flags are one bit each in files_struct.close_on_exec.
 */
#include "uspace.h"
#include "fs.h"

#define F_DUPFD		0
#define F_GETFD		1
#define F_SETFD		2
#define F_GETFL		3
#define F_SETFL		4
#define F_DUPFD_CLOEXEC	1030
#define FD_CLOEXEC	1
#define FD_RESERVED	((struct file *)1)

/* what F_SETFL may change; F_GETFL does not show the open-time-only flags */
#define SETFL_MASK	(O_APPEND | O_NONBLOCK | O_DIRECT)
#define OPEN_ONLY_FLAGS	(O_CREAT | O_EXCL | 0400 /* O_NOCTTY */ | O_TRUNC | O_CLOEXEC)

__kfunc void set_close_on_exec(unsigned int fd, int flag)
{
	struct files_struct *files = current->files;

	if (flag)
		files->close_on_exec |= 1UL << fd;
	else
		files->close_on_exec &= ~(1UL << fd);
}

/* exec: close every descriptor marked close-on-exec. */
__kfunc void flush_old_files(struct files_struct *files)
{
	for (unsigned int fd = 0; fd < NR_OPEN_DEFAULT; fd++) {
		if (files->close_on_exec & (1UL << fd)) {
			sys_close(fd);
			files->close_on_exec &= ~(1UL << fd);
		}
	}
}

/* dup2/dup3/F_DUPFD: newfd gets a new reference to oldfd's file. */
__kfunc long do_dup2(unsigned int oldfd, unsigned int newfd, int cloexec)
{
	struct files_struct *files = current->files;
	struct file *f, *old;

	if (newfd >= NR_OPEN_DEFAULT)
		return -EBADF;
	f = fget(oldfd);
	if (!f)
		return -EBADF;
	if (newfd == oldfd) {
		fput(f);
		return newfd;
	}
	old = files->fd_array[newfd];
	files->fd_array[newfd] = f;
	set_close_on_exec(newfd, cloexec);
	if (old && old != FD_RESERVED)
		fput(old);
	return newfd;
}

/* The lowest free descriptor at or above start. */
__kfunc long locate_fd(unsigned int start)
{
	for (unsigned int fd = start; fd < NR_OPEN_DEFAULT; fd++)
		if (!current->files->fd_array[fd])
			return fd;
	return start >= NR_OPEN_DEFAULT ? -EINVAL : -EMFILE;
}

static long dupfd(unsigned int oldfd, unsigned int start, int cloexec)
{
	long fd;

	if (oldfd >= NR_OPEN_DEFAULT || !current->files->fd_array[oldfd] ||
	    current->files->fd_array[oldfd] == FD_RESERVED)
		return -EBADF;
	fd = locate_fd(start);
	return fd < 0 ? fd : do_dup2(oldfd, fd, cloexec);
}

__kfunc long sys_dup(unsigned int oldfd)
{
	return dupfd(oldfd, 0, 0);
}

__kfunc long sys_dup2(unsigned int oldfd, unsigned int newfd)
{
	return do_dup2(oldfd, newfd, 0);
}

__kfunc long sys_dup3(unsigned int oldfd, unsigned int newfd, int flags)
{
	if (oldfd == newfd || (flags & ~O_CLOEXEC))
		return -EINVAL;
	return do_dup2(oldfd, newfd, !!(flags & O_CLOEXEC));
}

__kfunc long sys_fcntl(unsigned int fd, unsigned int cmd, unsigned long arg)
{
	struct file *filp = fget(fd);
	long err = -EINVAL;

	if (!filp)
		return -EBADF;
	switch (cmd) {
	case F_DUPFD:
	case F_DUPFD_CLOEXEC:
		err = arg >= NR_OPEN_DEFAULT ? -EINVAL : dupfd(fd, arg, cmd == F_DUPFD_CLOEXEC);
		break;
	case F_GETFD:
		err = (current->files->close_on_exec >> fd) & 1;
		break;
	case F_SETFD:
		set_close_on_exec(fd, arg & FD_CLOEXEC);
		err = 0;
		break;
	case F_GETFL:
		err = filp->f_flags & ~OPEN_ONLY_FLAGS;
		break;
	case F_SETFL:
		filp->f_flags = (filp->f_flags & ~SETFL_MASK) | (arg & SETFL_MASK);
		err = 0;
		break;
	}
	fput(filp);
	return err;
}

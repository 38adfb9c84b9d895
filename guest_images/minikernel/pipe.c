/*
 * pipe.c - pipes (fs/pipe.c shaped): one page of buffer, with readers and
 * writers sleeping on the pipe's wait queue.  CONFIG_USERSPACE builds only.
 */
#include "uspace.h"
#include "fs.h"

#define NR_PIPES	8
#define EPIPE		32
#define S_IFIFO		0010000

struct pipe_inode_info {
	wait_queue_head_t wait;
	char *base;			/* the buffer: one page */
	unsigned int start, len;	/* a ring in the page */
	unsigned int readers, writers;
	struct inode inode;
	struct dentry dentry;
};

static struct pipe_inode_info pipes[NR_PIPES];
static unsigned char pipe_used[NR_PIPES];
static spinlock_t pipe_lock = SPIN_LOCK_UNLOCKED;

int get_unused_fd(void);
struct file *get_empty_filp(void);
ssize_t pipe_read(struct file *filp, char *buf, size_t count, loff_t *ppos);
ssize_t pipe_write(struct file *filp, const char *buf, size_t count, loff_t *ppos);
int pipe_release(struct inode *inode, struct file *filp);

static const struct file_operations read_pipe_fops = {
	.name = "read_pipe_fops",
	.read = pipe_read,
	.release = pipe_release,
};

static const struct file_operations write_pipe_fops = {
	.name = "write_pipe_fops",
	.write = pipe_write,
	.release = pipe_release,
};

static struct pipe_inode_info *PIPE_INFO(struct file *filp)
{
	return container_of(filp->f_dentry, struct pipe_inode_info, dentry);
}

/* Sleep on the pipe until ready(pipe) holds; with the pipe's wait queue
 * entered first, a wake-up between the test and schedule() is not lost.
 * A signal ends the wait (-ERESTARTSYS); O_NONBLOCK does not wait (-EAGAIN). */
static int pipe_wait(struct file *filp, struct pipe_inode_info *pipe, int (*ready)(struct pipe_inode_info *))
{
	DECLARE_WAITQUEUE(wait, current);
	int ret = 0;

	if (ready(pipe))
		return 0;
	if (filp->f_flags & O_NONBLOCK)
		return -EAGAIN;
	add_wait_queue(&pipe->wait, &wait);
	for (;;) {
		set_current_state(TASK_INTERRUPTIBLE);
		if (ready(pipe))
			break;
		if (signal_pending(current)) {
			ret = -ERESTARTSYS;
			break;
		}
		schedule();
	}
	__set_current_state(TASK_RUNNING);
	remove_wait_queue(&pipe->wait, &wait);
	return ret;
}

static int readable(struct pipe_inode_info *pipe)
{
	return pipe->len || !pipe->writers;
}

static int writable(struct pipe_inode_info *pipe)
{
	return pipe->len < PAGE_SIZE || !pipe->readers;
}

__kfunc ssize_t pipe_read(struct file *filp, char *buf, size_t count, loff_t *ppos)
{
	struct pipe_inode_info *pipe = PIPE_INFO(filp);
	ssize_t ret;

	(void)ppos;
	if (!count)
		return 0;
	ret = pipe_wait(filp, pipe, readable);
	if (ret)
		return ret;
	preempt_disable();
	while (count && pipe->len) {
		size_t chunk = PAGE_SIZE - pipe->start;

		if (chunk > pipe->len)
			chunk = pipe->len;
		if (chunk > count)
			chunk = count;
		memcpy(buf + ret, pipe->base + pipe->start, chunk);
		pipe->start = (pipe->start + chunk) % PAGE_SIZE;
		pipe->len -= chunk;
		ret += chunk;
		count -= chunk;
	}
	preempt_enable();
	wake_up_interruptible(&pipe->wait);
	return ret;
}

__kfunc ssize_t pipe_write(struct file *filp, const char *buf, size_t count, loff_t *ppos)
{
	struct pipe_inode_info *pipe = PIPE_INFO(filp);
	ssize_t ret = 0;

	(void)ppos;
	while (count) {
		int err = pipe_wait(filp, pipe, writable);

		if (err)
			return ret ? ret : err;
		if (!pipe->readers) {
			send_sig(SIGPIPE, current, 0);
			return ret ? ret : -EPIPE;
		}
		preempt_disable();
		while (count && pipe->len < PAGE_SIZE) {
			unsigned int end = (pipe->start + pipe->len) % PAGE_SIZE;
			size_t chunk = end >= pipe->start ? PAGE_SIZE - end : pipe->start - end;

			if (chunk > count)
				chunk = count;
			memcpy(pipe->base + end, buf + ret, chunk);
			pipe->len += chunk;
			ret += chunk;
			count -= chunk;
		}
		preempt_enable();
		wake_up_interruptible(&pipe->wait);
	}
	return ret;
}

__kfunc int pipe_release(struct inode *inode, struct file *filp)
{
	struct pipe_inode_info *pipe = PIPE_INFO(filp);
	unsigned long flags;
	int gone;

	(void)inode;
	spin_lock_irqsave(&pipe_lock, flags);
	if (filp->f_mode & FMODE_READ)
		pipe->readers--;
	else
		pipe->writers--;
	gone = !pipe->readers && !pipe->writers;
	spin_unlock_irqrestore(&pipe_lock, flags);
	if (gone) {
		free_page((unsigned long)pipe->base);
		pipe_used[pipe - pipes] = 0;
	} else {
		wake_up_interruptible(&pipe->wait);
	}
	return 0;
}

static struct pipe_inode_info *alloc_pipe(void)
{
	struct pipe_inode_info *pipe = NULL;
	unsigned long flags, page = get_zeroed_page();

	if (!page)
		return NULL;
	spin_lock_irqsave(&pipe_lock, flags);
	for (int i = 0; i < NR_PIPES; i++) {
		if (!pipe_used[i]) {
			pipe_used[i] = 1;
			pipe = &pipes[i];
			break;
		}
	}
	spin_unlock_irqrestore(&pipe_lock, flags);
	if (!pipe) {
		free_page(page);
		return NULL;
	}
	memset(pipe, 0, sizeof(*pipe));
	init_waitqueue_head(&pipe->wait);
	pipe->base = (char *)page;
	pipe->readers = pipe->writers = 1;
	pipe->inode.i_ino = 1000 + (pipe - pipes);
	pipe->inode.i_mode = S_IFIFO | 0600;
	pipe->dentry.d_inode = &pipe->inode;
	strlcpy(pipe->dentry.d_iname, "pipe", sizeof(pipe->dentry.d_iname));
	snprintf(pipe->dentry.d_path, sizeof(pipe->dentry.d_path), "pipe:[%lu]", pipe->inode.i_ino);
	pipe->dentry.d_count = 2;
	return pipe;
}

__kfunc long do_pipe(int *fd, int flags)
{
	struct pipe_inode_info *pipe = alloc_pipe();
	struct files_struct *files = current->files;
	struct file *f[2];
	int fds[2] = { -1, -1 };

	if (!pipe)
		return -ENFILE;
	f[0] = get_empty_filp();
	f[1] = get_empty_filp();
	if (f[0])
		fds[0] = get_unused_fd();
	if (f[1] && fds[0] >= 0)
		fds[1] = get_unused_fd();
	if (fds[1] < 0) {
		/* nothing was installed: undo by hand (fput would call release) */
		if (fds[0] >= 0)
			files->fd_array[fds[0]] = NULL;
		for (int i = 0; i < 2; i++)
			if (f[i])
				f[i]->f_count = 0;
		free_page((unsigned long)pipe->base);
		pipe_used[pipe - pipes] = 0;
		return fds[0] < 0 && f[0] ? fds[0] : -ENFILE;
	}
	for (int i = 0; i < 2; i++) {
		f[i]->f_dentry = &pipe->dentry;
		f[i]->f_op = i ? &write_pipe_fops : &read_pipe_fops;
		f[i]->f_mode = i ? FMODE_WRITE : FMODE_READ;
		f[i]->f_flags = (i ? O_WRONLY : O_RDONLY) | (flags & (O_NONBLOCK | O_CLOEXEC));
		files->fd_array[fds[i]] = f[i];
		set_close_on_exec(fds[i], flags & O_CLOEXEC);
	}
	if (copy_to_user(fd, fds, sizeof(fds))) {
		sys_close(fds[0]);
		sys_close(fds[1]);
		return -EFAULT;
	}
	return 0;
}

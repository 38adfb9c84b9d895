/*
 * fs.c - a miniature VFS (fs/open.c, fs/namei.c, fs/dcache.c,
 * fs/read_write.c, fs/file_table.c, mm/filemap.c shaped).
 *
 * Files live in a static in-memory table (the "disk").  Looking a path
 * component up for the first time misses the dentry cache and waits for
 * a simulated disk read (one timer tick), so several tasks can be inside
 * do_sys_open() at the same time.
 */
#include "sched.h"
#include "fs.h"

/* ------------------------------------------------------------------ */
/* The "disk": path -> contents */

extern const void *const hello_elf_image;
extern const unsigned long hello_elf_size;

ssize_t oops_read(struct file *file, char *buf, size_t count, loff_t *ppos);
ssize_t console_read(struct file *file, char *buf, size_t count, loff_t *ppos);
ssize_t console_write(struct file *file, const char *buf, size_t count, loff_t *ppos);

static const struct file_operations generic_ro_fops = {
	.name = "generic_ro_fops",
	.read = generic_file_read,
};

static const struct file_operations oops_fops = {
	.name = "oops_fops",
	.read = oops_read,
};

static const struct file_operations console_fops = {
	.name = "console_fops",
	.read = console_read,
	.write = console_write,
};

struct disk_entry {
	const char *path;
	umode_t mode;
	const char *data;
	loff_t size;
	const struct file_operations *fop;
};

static const char motd[] =
	"Welcome to minikernel 2.6.12 (kprobe-shell guest)\n"
	"Probes welcome; please do not probe the probes.\n";
static const char passwd[] =
	"root:x:0:0:root:/root:/bin/sh\n"
	"daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
	"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
static const char hostname[] = "kprobe-shell\n";
static const char hosts[] =
	"127.0.0.1\tlocalhost\n"
	"10.0.0.1\tminikernel\n"
	"10.0.0.2\tpeer\n";
static const char modules_dep[] =
	"kernel/drivers/char/kprobes_demo.ko:\n"
	"kernel/net/ipv4/netconsole.ko: kernel/drivers/net/8139too.ko\n";

static struct disk_entry disk[] = {
	{ "/etc/motd",		S_IFREG | 0644, motd, sizeof(motd) - 1, &generic_ro_fops },
	{ "/etc/passwd",	S_IFREG | 0644, passwd, sizeof(passwd) - 1, &generic_ro_fops },
	{ "/etc/hostname",	S_IFREG | 0644, hostname, sizeof(hostname) - 1, &generic_ro_fops },
	{ "/etc/hosts",		S_IFREG | 0644, hosts, sizeof(hosts) - 1, &generic_ro_fops },
	{ "/bin/hello",		S_IFREG | 0755, NULL, 0, &generic_ro_fops },
	{ "/dev/console",	S_IFCHR | 0600, NULL, 0, &console_fops },
	{ "/dev/sda",		S_IFBLK | 0660, NULL, 0, &def_blk_fops },
	{ "/dev/oops",		S_IFCHR | 0444, NULL, 0, &oops_fops },
	{ "/usr/lib/modules/2.6.12/modules.dep", S_IFREG | 0644, modules_dep,
	  sizeof(modules_dep) - 1, &generic_ro_fops },
#ifdef CONFIG_USERSPACE
	/* free slots for the programs (and stdin files) the machine provides */
	[9 ... 9 + 2 * 16 - 1] = { "", 0, NULL, 0, NULL },
#endif
};

#define NR_DISK		ARRAY_SIZE(disk)
#define NR_DIR_INODES	16

static struct inode file_inodes[NR_DISK];
static struct inode dir_inodes[NR_DIR_INODES];
static int nr_dir_inodes;
static spinlock_t inode_lock = SPIN_LOCK_UNLOCKED;

__kfunc void vfs_init(void)
{
	for (unsigned int i = 0; i < NR_DISK; i++) {
		struct inode *inode = &file_inodes[i];

		if (!strcmp(disk[i].path, "/bin/hello")) {
			disk[i].data = (const char *)hello_elf_image;
			disk[i].size = hello_elf_size;
		}
		inode->i_ino = 100 + i;
		inode->i_mode = disk[i].mode;
		inode->i_size = disk[i].size;
		inode->i_data = disk[i].data;
		inode->i_fop = disk[i].fop;
		if (S_ISBLK(disk[i].mode)) {
			inode->i_bdev = &ram_bdev;
			inode->i_aops = &def_blk_aops;
			inode->i_size = (loff_t)ram_bdev.bd_nr_sectors * ram_bdev.bd_block_size;
			ram_bdev.bd_inode = inode;
		}
	}
}

#ifdef CONFIG_USERSPACE
#define ENOSPC 28
void tty_write_bytes(const char *s, size_t n);
static char added_paths[2 * 16][48];

/* Put a file the machine provides on the disk (/bin/NAME, /stdin/N); it
 * replaces a file of the same name (a program called hello is not the
 * kernel's own /bin/hello). */
__kfunc int disk_add_file(const char *path, const char *data, unsigned long size, umode_t mode)
{
	unsigned int i;

	for (i = 0; i < NR_DISK && strcmp(disk[i].path, path); i++)
		;
	if (i == NR_DISK) {
		for (i = 0; i < NR_DISK && disk[i].path[0]; i++)
			;
		if (i == NR_DISK)
			return -ENOSPC;
		strlcpy(added_paths[i - 9], path, sizeof(added_paths[0]));
		disk[i].path = added_paths[i - 9];
	}
	disk[i].mode = mode;
	disk[i].data = data;
	disk[i].size = size;
	disk[i].fop = &generic_ro_fops;
	file_inodes[i].i_ino = 100 + i;
	file_inodes[i].i_mode = mode;
	file_inodes[i].i_size = size;
	file_inodes[i].i_data = data;
	file_inodes[i].i_fop = &generic_ro_fops;
	return 0;
}
#endif

/* ------------------------------------------------------------------ */
/* Dentry cache */

#define D_HASHBITS	5
#define NR_DENTRIES	48

static struct dentry dentry_pool[NR_DENTRIES];
static int nr_dentries;
static struct dentry *dentry_hashtable[1 << D_HASHBITS];
static spinlock_t dcache_lock = SPIN_LOCK_UNLOCKED;
static struct inode root_inode = { .i_ino = 2, .i_mode = S_IFDIR | 0755 };
static struct dentry root_dentry = {
	.d_parent = &root_dentry,
	.d_inode = &root_inode,
	.d_iname = "/",
	.d_path = "",
	.d_count = 1,
};
unsigned long dcache_hits, dcache_misses;

/* fs/dcache.c name hashing: partial_name_hash() over every byte */
__kfunc unsigned int full_name_hash(const char *name, unsigned int len)
{
	unsigned long hash = 0;

	while (len--) {
		unsigned long c = (unsigned char)*name++;
		hash = (hash + (c << 4) + (c >> 4)) * 11;
	}
	return (unsigned int)hash;
}

static unsigned int d_hash_bucket(struct dentry *parent, unsigned int hash)
{
	unsigned long h = hash + ((unsigned long)parent >> 4);

	h ^= h >> 7;
	return h & ((1 << D_HASHBITS) - 1);
}

__kfunc struct dentry *d_lookup(struct dentry *parent, struct qstr *name)
{
	struct dentry *d;
	unsigned long flags;

	spin_lock_irqsave(&dcache_lock, flags);
	for (d = dentry_hashtable[d_hash_bucket(parent, name->hash)]; d; d = d->d_hash_next) {
		if (d->d_parent == parent && d->d_hash == name->hash &&
		    d->d_len == name->len && !memcmp(d->d_iname, name->name, name->len)) {
			d->d_count++;
			break;
		}
	}
	spin_unlock_irqrestore(&dcache_lock, flags);
	return d;
}

__kfunc struct dentry *d_alloc(struct dentry *parent, struct qstr *name)
{
	struct dentry *d = NULL;
	unsigned long flags;

	spin_lock_irqsave(&dcache_lock, flags);
	if (nr_dentries < NR_DENTRIES && name->len < sizeof(d->d_iname)) {
		d = &dentry_pool[nr_dentries++];
		d->d_parent = parent;
		d->d_hash = name->hash;
		d->d_len = name->len;
		memcpy(d->d_iname, name->name, name->len);
		d->d_iname[name->len] = '\0';
		snprintf(d->d_path, sizeof(d->d_path), "%s/%s", parent->d_path, d->d_iname);
		d->d_count = 1;
	}
	spin_unlock_irqrestore(&dcache_lock, flags);
	return d;
}

__kfunc void d_add(struct dentry *d, struct inode *inode)
{
	unsigned long flags;
	unsigned int b = d_hash_bucket(d->d_parent, d->d_hash);

	spin_lock_irqsave(&dcache_lock, flags);
	d->d_inode = inode;
	d->d_hash_next = dentry_hashtable[b];
	dentry_hashtable[b] = d;
	spin_unlock_irqrestore(&dcache_lock, flags);
}

static void dput(struct dentry *d)
{
	if (d && d != &root_dentry)
		d->d_count--;
}

/* Read a directory from the "disk": does parent/name exist? */
__kfunc struct inode *disk_lookup(const char *dirpath, struct qstr *name)
{
	char path[DNAME_INLINE_LEN];
	int n = snprintf(path, sizeof(path), "%s/", dirpath);
	unsigned long flags;

	if (n + name->len >= sizeof(path))
		return ERR_PTR(-ENAMETOOLONG);
	memcpy(path + n, name->name, name->len);
	n += name->len;
	path[n] = '\0';

	for (unsigned int i = 0; i < NR_DISK; i++) {
		if (!strcmp(disk[i].path, path))
			return &file_inodes[i];
	}
	for (unsigned int i = 0; i < NR_DISK; i++) {
		if (!strncmp(disk[i].path, path, n) && disk[i].path[n] == '/') {
			struct inode *dir = NULL;

			spin_lock_irqsave(&inode_lock, flags);
			if (nr_dir_inodes < NR_DIR_INODES) {
				dir = &dir_inodes[nr_dir_inodes];
				dir->i_ino = 10 + nr_dir_inodes++;
				dir->i_mode = S_IFDIR | 0755;
			}
			spin_unlock_irqrestore(&inode_lock, flags);
			return dir ? dir : ERR_PTR(-ENOMEM);
		}
	}
	return NULL;
}

/* fs/namei.c: real_lookup() - a dcache miss reads the directory */
__kfunc struct dentry *real_lookup(struct dentry *parent, struct qstr *name)
{
	struct dentry *d;
	struct inode *inode;

	dcache_misses++;
	io_schedule();			/* wait for the directory block */

	/* someone else may have read it in while we slept */
	d = d_lookup(parent, name);
	if (d)
		return d;
	inode = disk_lookup(parent->d_path, name);
	if (IS_ERR(inode))
		return (struct dentry *)inode;
	if (!inode)
		return ERR_PTR(-ENOENT);
	d = d_alloc(parent, name);
	if (!d)
		return ERR_PTR(-ENOMEM);
	d_add(d, inode);
	return d;
}

__kfunc struct dentry *do_lookup(struct nameidata *nd, struct qstr *name)
{
	struct dentry *d = d_lookup(nd->dentry, name);

	if (d) {
		dcache_hits++;
		return d;
	}
	return real_lookup(nd->dentry, name);
}

__kfunc int permission(struct inode *inode, int mask)
{
	umode_t mode = inode->i_mode;

	if ((mask & FMODE_WRITE) && !(mode & 0200))
		return -EPERM;
	if ((mask & FMODE_READ) && !(mode & 0444))
		return -EPERM;
	return 0;
}

/* fs/namei.c: link_path_walk() - resolve a path component by component */
__kfunc int link_path_walk(const char *name, struct nameidata *nd)
{
	while (*name == '/')
		name++;
	if (!*name)
		return 0;

	for (;;) {
		struct qstr this;
		struct dentry *next;
		const char *start = name;

		while (*name && *name != '/')
			name++;
		this.name = start;
		this.len = name - start;
		this.hash = full_name_hash(start, this.len);

		if (!nd->dentry->d_inode || !S_ISDIR(nd->dentry->d_inode->i_mode))
			return -ENOTDIR;
		cond_resched();
		next = do_lookup(nd, &this);
		if (IS_ERR(next))
			return PTR_ERR(next);
		dput(nd->dentry);
		nd->dentry = next;
		nd->last = this;
		nd->depth++;
		while (*name == '/')
			name++;
		if (!*name)
			return 0;
	}
}

__kfunc int path_lookup(const char *name, unsigned int flags, struct nameidata *nd)
{
	nd->dentry = &root_dentry;
	nd->flags = flags;
	nd->depth = 0;
	if (*name != '/')
		return -ENOENT;		/* no cwd in the minikernel */
	return link_path_walk(name, nd);
}

/* ------------------------------------------------------------------ */
/* struct file management (fs/file_table.c, fs/open.c) */

#define NR_FILES	32
#define FD_RESERVED	((struct file *)1)

static struct file file_pool[NR_FILES];
static spinlock_t files_lock = SPIN_LOCK_UNLOCKED;
static struct dentry console_dentry = { .d_iname = "console", .d_path = "/dev/console" };
static struct file console_file = {
	.f_dentry = &console_dentry,
	.f_op = &console_fops,
	.f_mode = FMODE_READ | FMODE_WRITE,
	.f_count = 1,
};

__kfunc struct file *get_empty_filp(void)
{
	struct file *f = NULL;
	unsigned long flags;

	spin_lock_irqsave(&files_lock, flags);
	for (int i = 0; i < NR_FILES; i++) {
		if (!file_pool[i].f_count) {
			f = &file_pool[i];
			memset(f, 0, sizeof(*f));
			f->f_count = 1;
			f->f_owner = current;
			break;
		}
	}
	spin_unlock_irqrestore(&files_lock, flags);
	return f;
}

__kfunc void fput(struct file *file)
{
	unsigned long flags;
	int last;

	if (file == &console_file)
		return;
	spin_lock_irqsave(&files_lock, flags);
	last = (--file->f_count == 0);
	spin_unlock_irqrestore(&files_lock, flags);
	if (last && file->f_op && file->f_op->release)
		file->f_op->release(file->f_dentry->d_inode, file);
	if (last)
		dput(file->f_dentry);
}

__kfunc void init_files(struct files_struct *files)
{
	memset(files, 0, sizeof(*files));
	files->fd_array[0] = &console_file;
	files->fd_array[1] = &console_file;
	files->fd_array[2] = &console_file;
	files->next_fd = 3;
}

/* The first fd to look at: 3 for the kernel's tasks (0-2 are always the
 * console); a program may close and reuse 0-2. */
#ifdef CONFIG_USERSPACE
#define FIRST_FD	0
#else
#define FIRST_FD	3
#endif

__kfunc void exit_files(struct task_struct *tsk)
{
	struct files_struct *files = tsk->files;

	for (int fd = FIRST_FD; fd < NR_OPEN_DEFAULT; fd++) {
		struct file *f = files->fd_array[fd];

		files->fd_array[fd] = NULL;
		if (f && f != FD_RESERVED)
			fput(f);
	}
}

__kfunc int get_unused_fd(void)
{
	struct files_struct *files = current->files;

	for (int fd = FIRST_FD; fd < NR_OPEN_DEFAULT; fd++) {
		if (!files->fd_array[fd]) {
			files->fd_array[fd] = FD_RESERVED;
			return fd;
		}
	}
	return -EMFILE;
}

static void put_unused_fd(unsigned int fd)
{
	current->files->fd_array[fd] = NULL;
}

static void fd_install(unsigned int fd, struct file *file)
{
	current->files->fd_array[fd] = file;
}

#ifdef CONFIG_USERSPACE
/* fork of a program: the child shares its parent's open files (dup_fd). */
__kfunc void copy_files(struct task_struct *p)
{
	struct files_struct *old = current->files, *new = p->files;
	unsigned long flags;

	spin_lock_irqsave(&files_lock, flags);
	for (int fd = 0; fd < NR_OPEN_DEFAULT; fd++) {
		struct file *f = old->fd_array[fd];

		if (!f || f == FD_RESERVED)
			continue;
		if (f != &console_file)
			f->f_count++;
		new->fd_array[fd] = f;
	}
	spin_unlock_irqrestore(&files_lock, flags);
}
#endif

__kfunc struct file *fget(unsigned int fd)
{
	struct file *f;
	unsigned long flags;

	if (fd >= NR_OPEN_DEFAULT)
		return NULL;
	f = current->files->fd_array[fd];
	if (!f || f == FD_RESERVED)
		return NULL;
	spin_lock_irqsave(&files_lock, flags);
	if (f != &console_file)
		f->f_count++;
	spin_unlock_irqrestore(&files_lock, flags);
	return f;
}

/* getname(): copy a file name into a names_cache buffer */
#define NR_NAMES 8
static char names_cache[NR_NAMES][PATH_MAX];
static unsigned char names_used[NR_NAMES];
static spinlock_t names_lock = SPIN_LOCK_UNLOCKED;

__kfunc char *getname(const char *filename)
{
	unsigned long flags;
	char *tmp = NULL;
	size_t len;

	if (!filename)
		return ERR_PTR(-EFAULT);
	len = strnlen(filename, PATH_MAX);
	if (len >= PATH_MAX)
		return ERR_PTR(-ENAMETOOLONG);
	spin_lock_irqsave(&names_lock, flags);
	for (int i = 0; i < NR_NAMES; i++) {
		if (!names_used[i]) {
			names_used[i] = 1;
			tmp = names_cache[i];
			break;
		}
	}
	spin_unlock_irqrestore(&names_lock, flags);
	if (!tmp)
		return ERR_PTR(-ENOMEM);
	memcpy(tmp, filename, len + 1);
	return tmp;
}

__kfunc void putname(const char *name)
{
	int i = (name - names_cache[0]) / PATH_MAX;

	names_used[i] = 0;
}

__kfunc struct file *dentry_open(struct dentry *dentry, int flags)
{
	struct inode *inode = dentry->d_inode;
	struct file *f;
	int err;

	f = get_empty_filp();
	if (!f)
		return ERR_PTR(-ENFILE);
	f->f_flags = flags;
	f->f_mode = ((flags + 1) & O_ACCMODE);	/* O_RDONLY->READ, O_WRONLY->WRITE, O_RDWR->both */
	f->f_dentry = dentry;
	f->f_op = inode->i_fop;
	f->f_pos = 0;
	if (f->f_op && f->f_op->open) {
		err = f->f_op->open(inode, f);
		if (err) {
			f->f_count = 0;
			return ERR_PTR(err);
		}
	}
	return f;
}

__kfunc int open_namei(const char *pathname, int flag, int mode, struct nameidata *nd)
{
	struct inode *inode;
	int err;

	(void)mode;
	err = path_lookup(pathname, 0, nd);
	if (err)
		return err;
	inode = nd->dentry->d_inode;
	if (!inode)
		return -ENOENT;
	if (S_ISDIR(inode->i_mode) && (flag & O_ACCMODE) != O_RDONLY)
		return -EISDIR;
	err = permission(inode, (flag + 1) & O_ACCMODE);
	if (err)
		return err;
	return 0;
}

__kfunc struct file *filp_open(const char *filename, int flags, int mode)
{
	struct nameidata nd;
	int error;

	error = open_namei(filename, flags, mode, &nd);
	if (error) {
		if (nd.dentry)
			dput(nd.dentry);
		return ERR_PTR(error);
	}
	return dentry_open(nd.dentry, flags);
}

/* fs/open.c */
__kfunc long do_sys_open(int dfd, const char *filename, int flags, int mode)
{
	char *tmp;
	long fd;

	(void)dfd;		/* only absolute paths in the minikernel */
	tmp = getname(filename);
	fd = PTR_ERR(tmp);
	if (!IS_ERR(tmp)) {
		fd = get_unused_fd();
		if (fd >= 0) {
			struct file *f = filp_open(tmp, flags, mode);

			if (IS_ERR(f)) {
				put_unused_fd(fd);
				fd = PTR_ERR(f);
			} else {
				fd_install(fd, f);
			}
		}
		putname(tmp);
	}
	return fd;
}

__kfunc long sys_open(const char *filename, int flags, int mode)
{
	return do_sys_open(AT_FDCWD, filename, flags | O_LARGEFILE, mode);
}

__kfunc long sys_close(unsigned int fd)
{
	struct files_struct *files = current->files;
	struct file *f;

	if (fd >= NR_OPEN_DEFAULT)
		return -EBADF;
	f = files->fd_array[fd];
	if (!f || f == FD_RESERVED)
		return -EBADF;
	files->fd_array[fd] = NULL;
	fput(f);
	return 0;
}

struct file *open_exec(const char *name)
{
	struct file *f = filp_open(name, O_RDONLY, 0);

	if (!IS_ERR(f) && !S_ISREG(f->f_dentry->d_inode->i_mode)) {
		fput(f);
		return ERR_PTR(-EPERM);
	}
	return f;
}

/* ------------------------------------------------------------------ */
/* read/write (fs/read_write.c, mm/filemap.c) */

__kfunc int rw_verify_area(int read_write, struct file *file, loff_t *ppos, size_t count)
{
	(void)read_write;
	(void)file;
	if (*ppos < 0 || (ssize_t)count < 0)
		return -EINVAL;
	return 0;
}

/* Wait for the "page" holding the file contents to come in from disk. */
__kfunc void wait_on_page_locked(struct inode *inode)
{
	if (!inode->i_uptodate) {
		io_schedule();
		inode->i_uptodate = 1;
	}
}

__kfunc ssize_t do_generic_file_read(struct file *file, loff_t *ppos, char *buf, size_t count)
{
	struct inode *inode = file->f_dentry->d_inode;
	loff_t pos = *ppos;
	size_t n, done = 0;

	if (pos >= inode->i_size)
		return 0;
	wait_on_page_locked(inode);
	n = inode->i_size - pos;
	if (n > count)
		n = count;
	while (done < n) {		/* copy_to_user(), one cacheline at a time */
		size_t chunk = n - done > 64 ? 64 : n - done;

		memcpy(buf + done, inode->i_data + pos + done, chunk);
		done += chunk;
		cond_resched();
	}
	*ppos = pos + done;
	return done;
}

__kfunc ssize_t generic_file_direct_IO(int rw, struct kiocb *iocb, const struct iovec *iov,
				       loff_t offset, unsigned long nr_segs)
{
	struct inode *inode = iocb->ki_filp->f_dentry->d_inode;

	if (!inode->i_aops || !inode->i_aops->direct_IO)
		return -EINVAL;
	return inode->i_aops->direct_IO(rw, iocb, iov, offset, nr_segs);
}

__kfunc ssize_t generic_file_read(struct file *file, char *buf, size_t count, loff_t *ppos)
{
	struct inode *inode = file->f_dentry->d_inode;

	if (file->f_flags & O_DIRECT) {
		struct iovec iov = { buf, count };
		struct kiocb kiocb = { .ki_filp = file, .ki_pos = *ppos, .ki_users = 1,
				       .ki_task = current };
		ssize_t ret = generic_file_direct_IO(READ, &kiocb, &iov, *ppos, 1);

		if (ret > 0)
			*ppos += ret;
		return ret;
	}
	if (S_ISBLK(inode->i_mode)) {
		struct block_device *bdev = inode->i_bdev;
		loff_t size = inode->i_size;

		if (*ppos >= size)
			return 0;
		if ((loff_t)count > size - *ppos)
			count = size - *ppos;
		io_schedule();
		memcpy(buf, bdev->bd_data + *ppos, count);
		*ppos += count;
		return count;
	}
	return do_generic_file_read(file, ppos, buf, count);
}

__kfunc ssize_t generic_file_write(struct file *file, const char *buf, size_t count, loff_t *ppos)
{
	if (file->f_flags & O_DIRECT) {
		struct iovec iov = { (void *)buf, count };
		struct kiocb kiocb = { .ki_filp = file, .ki_pos = *ppos, .ki_users = 1,
				       .ki_task = current };
		ssize_t ret = generic_file_direct_IO(WRITE, &kiocb, &iov, *ppos, 1);

		if (ret > 0)
			*ppos += ret;
		return ret;
	}
	return -EINVAL;
}

/* /dev/oops: its "DMA" always lands on a bad address */
__kfunc ssize_t oops_read(struct file *file, char *buf, size_t count, loff_t *ppos)
{
	(void)file;
	(void)buf;
	(void)count;
	(void)ppos;
	return -EFAULT;
}

__kfunc ssize_t console_read(struct file *file, char *buf, size_t count, loff_t *ppos)
{
	(void)file;
	(void)buf;
	(void)count;
	(void)ppos;
	return 0;		/* no input */
}

__kfunc ssize_t console_write(struct file *file, const char *buf, size_t count, loff_t *ppos)
{
	(void)file;
	(void)ppos;
#ifdef CONFIG_USERSPACE
	/* raw bytes (printk would stop at a NUL and cut at 256) */
	tty_write_bytes(buf, count);
#else
	printk("%.*s", (int)count, buf);
#endif
	return count;
}

__kfunc ssize_t vfs_read(struct file *file, char *buf, size_t count, loff_t *pos)
{
	ssize_t ret;

	if (!(file->f_mode & FMODE_READ))
		return -EBADF;
	if (!file->f_op || !file->f_op->read)
		return -EINVAL;

	ret = rw_verify_area(READ, file, pos, count);
	if (ret)
		return ret;
	ret = file->f_op->read(file, buf, count, pos);
	if (ret > 0) {
		file->f_dentry->d_inode->i_atime = jiffies;	/* touch_atime */
	} else if (unlikely(ret == -EFAULT)) {
		/*
		 * A fault inside the kernel on a bad address: the real kernel
		 * oopses and die() kills the task.  do_exit() never returns,
		 * so neither does vfs_read() for this task.
		 */
		printk("Unable to handle kernel paging request in vfs_read, file %s\n",
		       file->f_dentry->d_path);
		printk("Oops: 0002 [1] comm: %s pid: %d -- killing task\n",
		       current->comm, current->pid);
		do_exit(SIGSEGV);
	}
	return ret;
}

__kfunc ssize_t vfs_write(struct file *file, const char *buf, size_t count, loff_t *pos)
{
	ssize_t ret;

	if (!(file->f_mode & FMODE_WRITE))
		return -EBADF;
	if (!file->f_op || !file->f_op->write)
		return -EINVAL;
	ret = rw_verify_area(WRITE, file, pos, count);
	if (ret)
		return ret;
	return file->f_op->write(file, buf, count, pos);
}

__kfunc ssize_t sys_read(unsigned int fd, char *buf, size_t count)
{
	struct file *file = fget(fd);
	ssize_t ret;
	loff_t pos;

	if (!file)
		return -EBADF;
	pos = file->f_pos;
	ret = vfs_read(file, buf, count, &pos);
	file->f_pos = pos;
	fput(file);
	return ret;
}

__kfunc ssize_t sys_write(unsigned int fd, const char *buf, size_t count)
{
	struct file *file = fget(fd);
	ssize_t ret;
	loff_t pos;

	if (!file)
		return -EBADF;
	pos = file->f_pos;
	ret = vfs_write(file, buf, count, &pos);
	file->f_pos = pos;
	fput(file);
	return ret;
}

__kfunc int kernel_read(struct file *file, unsigned long offset, char *addr, unsigned long count)
{
	loff_t pos = offset;

	return vfs_read(file, addr, count, &pos);
}

/* ------------------------------------------------------------------ */
/*
 * path_lookup_recursive: resolve one component per call and recurse on
 * the rest, so a single task has several nested frames of the same
 * function live at once.  Returns the number of components from this
 * level down (the deepest call returns 1).
 */
unsigned long path_walk_hash;

__kfunc long path_lookup_recursive(const char *path, int depth)
{
	const char *end;
	unsigned int hash;
	long below;

	while (*path == '/')
		path++;
	if (!*path)
		return 0;
	for (end = path; *end && *end != '/'; end++)
		;
	hash = full_name_hash(path, end - path);
	path_walk_hash = path_walk_hash * 31 + hash + depth;
	cond_resched();
	if (!*end) {
		io_schedule();		/* read the leaf inode */
		below = 0;
	} else {
		below = path_lookup_recursive(end, depth + 1);
	}
	return below + 1;
}

/* positional I/O (fs/read_write.c) */
__kfunc ssize_t sys_pread64(unsigned int fd, char *buf, size_t count, loff_t pos)
{
	struct file *file;
	ssize_t ret;

	if (pos < 0)
		return -EINVAL;
	file = fget(fd);
	if (!file)
		return -EBADF;
	ret = vfs_read(file, buf, count, &pos);
	fput(file);
	return ret;
}

__kfunc ssize_t sys_pwrite64(unsigned int fd, const char *buf, size_t count, loff_t pos)
{
	struct file *file;
	ssize_t ret;

	if (pos < 0)
		return -EINVAL;
	file = fget(fd);
	if (!file)
		return -EBADF;
	ret = vfs_write(file, buf, count, &pos);
	fput(file);
	return ret;
}

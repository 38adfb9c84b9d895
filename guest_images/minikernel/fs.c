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
#ifdef CONFIG_USERSPACE
	.write = generic_file_write,	/* programs write files (held in memory) */
#endif
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
	/* free slots for the programs (and stdin files) the machine provides,
	 * and for the files and directories programs create */
	[9 ... 9 + 2 * 16 + 64 - 1] = { "", 0, NULL, 0, NULL },
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
static unsigned int disk_free_slot(void);
struct dentry *prune_dcache(void);
struct dentry *follow_dotdot(struct nameidata *nd, struct qstr *name);
int open_namei_create(const char *pathname, int flag, int mode, struct nameidata *nd);
int may_open(struct nameidata *nd, int flag);
void igrab(struct inode *inode);
void iput(struct inode *inode);
void read_page_cache(struct inode *inode, loff_t pos, char *buf, size_t n);
ssize_t generic_file_buffered_write(struct file *file, const char *buf, size_t count, loff_t *ppos);
static char added_paths[NR_DISK][48];

/* Put a file the machine provides on the disk (/bin/NAME, /stdin/N); it
 * replaces a file of the same name (a program called hello is not the
 * kernel's own /bin/hello). */
__kfunc int disk_add_file(const char *path, const char *data, unsigned long size, umode_t mode)
{
	unsigned int i;

	for (i = 0; i < NR_DISK && strcmp(disk[i].path, path); i++)
		;
	if (i == NR_DISK) {
		i = disk_free_slot();
		if (i == NR_DISK)
			return -ENOSPC;
		strlcpy(added_paths[i], path, sizeof(added_paths[0]));
		disk[i].path = added_paths[i];
	}
	disk[i].mode = mode;
	disk[i].data = data;
	disk[i].size = size;
	disk[i].fop = S_ISDIR(mode) ? NULL : &generic_ro_fops;
	file_inodes[i].i_ino = 100 + i;
	file_inodes[i].i_mode = mode;
	file_inodes[i].i_size = size;
	file_inodes[i].i_data = data;
	file_inodes[i].i_fop = disk[i].fop;
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
#ifdef CONFIG_USERSPACE
	else if (name->len < sizeof(d->d_iname) && (d = prune_dcache()) != NULL) {
		d->d_parent = parent;
		d->d_hash = name->hash;
		d->d_len = name->len;
		memcpy(d->d_iname, name->name, name->len);
		d->d_iname[name->len] = '\0';
		snprintf(d->d_path, sizeof(d->d_path), "%s/%s", parent->d_path, d->d_iname);
		d->d_count = 1;
	}
#endif
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
#ifdef CONFIG_USERSPACE
	if (name->name[0] == '.' && (name->len == 1 || (name->len == 2 && name->name[1] == '.')))
		return follow_dotdot(nd, name);
#endif
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
#ifndef CONFIG_USERSPACE
	if (*name != '/')
		return -ENOENT;		/* no cwd in the minikernel */
#endif
	return link_path_walk(name, nd);	/* a program's cwd is / */
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
#ifdef CONFIG_USERSPACE
	if (last)
		iput(file->f_dentry->d_inode);
#endif
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
	new->close_on_exec = old->close_on_exec;
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
#ifdef CONFIG_USERSPACE
	igrab(inode);
#endif
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

#ifdef CONFIG_USERSPACE
	if (flag & O_CREAT)
		return open_namei_create(pathname, flag, mode, nd);
#endif
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
#ifdef CONFIG_USERSPACE
	return may_open(nd, flag);
#else
	return 0;
#endif
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

#ifdef CONFIG_USERSPACE
		if (inode->i_pages)
			read_page_cache(inode, pos + done, buf + done, chunk);
		else
#endif
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
#ifdef CONFIG_USERSPACE
	return generic_file_buffered_write(file, buf, count, ppos);
#else
	return -EINVAL;
#endif
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

#ifdef CONFIG_USERSPACE
/* ------------------------------------------------------------------ */
/*
 * Files programs create, write, rename and remove (fs/namei.c's
 * creation side, fs/ramfs, mm/filemap.c's write side): the disk is a
 * RAM file system, as ramfs is.
 *
 * - A name is an entry of disk[]: at most 47 bytes of path, 23 bytes a
 *   component.  A directory is an entry of its own (mkdir) or the prefix
 *   of another entry's path.  The working directory is always /.
 * - A file's bytes live in its page cache: inode->i_pages is a page of
 *   page addresses, so a file holds at most 2 MiB.  A file the machine
 *   provided is copied into pages at its first write.
 * - An unlinked file lives on until its last open file is closed.
 */
#define EACCES		13
#define EEXIST		17
#define EXDEV		18
#define EFBIG		27
#define ENOTEMPTY	39
#define MAX_FILE_PAGES	(PAGE_SIZE / sizeof(unsigned long))
#define AT_REMOVEDIR	0x200
#define FIRST_FREE_SLOT	9		/* disk[0..8] are the kernel's own files */

static unsigned int current_umask = 022;

static int disk_slot(struct inode *inode)
{
	long i = inode - file_inodes;

	return inode && i >= 0 && i < (long)NR_DISK ? (int)i : -1;
}

/* A slot for a new name: free, and not the inode of a file still open. */
static unsigned int disk_free_slot(void)
{
	unsigned int i;

	for (i = FIRST_FREE_SLOT; i < NR_DISK; i++)
		if (!disk[i].path[0] && !file_inodes[i].i_count)
			break;
	return i;
}

static int d_hashed(struct dentry *d)
{
	struct dentry *p;

	for (p = dentry_hashtable[d_hash_bucket(d->d_parent, d->d_hash)]; p; p = p->d_hash_next)
		if (p == d)
			return 1;
	return 0;
}

static void __d_drop(struct dentry *d)
{
	struct dentry **pp = &dentry_hashtable[d_hash_bucket(d->d_parent, d->d_hash)];

	for (; *pp; pp = &(*pp)->d_hash_next) {
		if (*pp == d) {
			*pp = d->d_hash_next;
			break;
		}
	}
	d->d_hash_next = NULL;
}

/* fs/dcache.c: d_drop() - the name is gone; lookups no longer find it. */
__kfunc void d_drop(struct dentry *d)
{
	unsigned long flags;

	spin_lock_irqsave(&dcache_lock, flags);
	__d_drop(d);
	spin_unlock_irqrestore(&dcache_lock, flags);
}

/*
 * The dentry pool is full: reuse an entry nobody holds, that is not a
 * directory (implicit directories get a new inode at each lookup) and
 * is nobody's parent.  Called with dcache_lock held.
 */
__kfunc struct dentry *prune_dcache(void)
{
	for (int i = 0; i < nr_dentries; i++) {
		struct dentry *d = &dentry_pool[i];
		int parent = 0;

		if (d->d_count > 0 || (d->d_inode && S_ISDIR(d->d_inode->i_mode) && d_hashed(d)))
			continue;
		for (int j = 0; j < nr_dentries && !parent; j++)
			parent = dentry_pool[j].d_parent == d && (dentry_pool[j].d_count > 0 || d_hashed(&dentry_pool[j]));
		if (parent)
			continue;
		__d_drop(d);
		return d;
	}
	return NULL;
}

/* "." and "..": the directory itself, or its parent (/.. is /). */
__kfunc struct dentry *follow_dotdot(struct nameidata *nd, struct qstr *name)
{
	struct dentry *d = name->len == 1 ? nd->dentry : nd->dentry->d_parent;

	if (d != &root_dentry)
		d->d_count++;
	return d;
}

__kfunc void igrab(struct inode *inode)
{
	if (disk_slot(inode) >= 0)
		inode->i_count++;
}

void truncate_inode_pages(struct inode *inode, loff_t size);

/* The last close of an unlinked file frees its pages. */
__kfunc void iput(struct inode *inode)
{
	int i = disk_slot(inode);

	if (i < 0 || --inode->i_count > 0 || disk[i].path[0])
		return;
	truncate_inode_pages(inode, 0);
	inode->i_size = 0;
}

/* mm/filemap.c: the page of the file at index, allocated when create. */
__kfunc char *find_or_create_page(struct inode *inode, unsigned long index, int create)
{
	if (index >= MAX_FILE_PAGES)
		return NULL;
	if (!inode->i_pages && (!create || !(inode->i_pages = (unsigned long *)get_zeroed_page())))
		return NULL;
	if (!inode->i_pages[index] && create)
		inode->i_pages[index] = get_zeroed_page();
	return (char *)inode->i_pages[index];
}

/* Copy out of the page cache; a page never written (a hole) reads as zeros. */
__kfunc void read_page_cache(struct inode *inode, loff_t pos, char *buf, size_t n)
{
	while (n) {
		unsigned long off = pos & ~PAGE_MASK;
		size_t chunk = PAGE_SIZE - off < n ? PAGE_SIZE - off : n;
		char *page = find_or_create_page(inode, pos >> 12, 0);

		if (page)
			memcpy(buf, page + off, chunk);
		else
			memset(buf, 0, chunk);
		buf += chunk;
		pos += chunk;
		n -= chunk;
	}
}

/* A file the machine provided goes into the page cache before its first change. */
static int inode_to_page_cache(struct inode *inode)
{
	if (inode->i_pages || !inode->i_data || !inode->i_size)
		return 0;
	if (inode->i_size > (loff_t)(MAX_FILE_PAGES * PAGE_SIZE))
		return -EFBIG;
	for (loff_t pos = 0; pos < inode->i_size; pos += PAGE_SIZE) {
		char *page = find_or_create_page(inode, pos >> 12, 1);
		size_t n = inode->i_size - pos < (loff_t)PAGE_SIZE ? inode->i_size - pos : PAGE_SIZE;

		if (!page) {
			truncate_inode_pages(inode, 0);
			return -ENOSPC;
		}
		memcpy(page, inode->i_data + pos, n);
	}
	inode->i_data = NULL;
	return 0;
}

/* Free the pages past size and zero the tail of the last one. */
__kfunc void truncate_inode_pages(struct inode *inode, loff_t size)
{
	unsigned long first = PAGE_ALIGN(size) >> 12;

	if (!size)
		inode->i_data = NULL;
	if (!inode->i_pages)
		return;
	for (unsigned long i = first; i < MAX_FILE_PAGES; i++) {
		if (inode->i_pages[i]) {
			free_page(inode->i_pages[i]);
			inode->i_pages[i] = 0;
		}
	}
	if ((size & ~PAGE_MASK) && inode->i_pages[size >> 12])
		memset((char *)inode->i_pages[size >> 12] + (size & ~PAGE_MASK), 0, PAGE_SIZE - (size & ~PAGE_MASK));
	if (!size) {
		free_page((unsigned long)inode->i_pages);
		inode->i_pages = NULL;
	}
}

__kfunc int do_truncate(struct inode *inode, loff_t length)
{
	int err;

	if (S_ISDIR(inode->i_mode))
		return -EISDIR;
	if (!S_ISREG(inode->i_mode) || length < 0)
		return -EINVAL;
	if (length > (loff_t)(MAX_FILE_PAGES * PAGE_SIZE))
		return -EFBIG;
	if (length && (err = inode_to_page_cache(inode)))
		return err;
	if (length < inode->i_size)
		truncate_inode_pages(inode, length);
	inode->i_size = length;
	return 0;
}

/* mm/filemap.c: write into the page cache (O_APPEND: at the end of the file). */
__kfunc ssize_t generic_file_buffered_write(struct file *file, const char *buf, size_t count, loff_t *ppos)
{
	struct inode *inode = file->f_dentry->d_inode;
	loff_t pos = file->f_flags & O_APPEND ? inode->i_size : *ppos;
	size_t done = 0;
	int err;

	if (!S_ISREG(inode->i_mode))
		return -EINVAL;
	err = inode_to_page_cache(inode);
	if (err)
		return err;
	while (done < count) {
		unsigned long off = (pos + done) & ~PAGE_MASK;
		size_t chunk = PAGE_SIZE - off < count - done ? PAGE_SIZE - off : count - done;
		char *page = find_or_create_page(inode, (pos + done) >> 12, 1);

		if (!page)
			break;
		memcpy(page + off, buf + done, chunk);
		done += chunk;
	}
	if (!done && count)
		return (pos >> 12) >= (loff_t)MAX_FILE_PAGES ? -EFBIG : -ENOSPC;
	pos += done;
	if (pos > inode->i_size)
		inode->i_size = pos;
	inode->i_uptodate = 1;
	*ppos = pos;
	return done;
}

/* Look up the directory of name: nd holds it, last is the final component. */
static int lookup_parent(const char *name, struct nameidata *nd, struct qstr *last)
{
	char dir[PATH_MAX];
	size_t len = strlen(name);
	const char *base;
	int err;

	while (len > 1 && name[len - 1] == '/')
		len--;
	for (base = name + len; base > name && base[-1] != '/'; base--)
		;
	memcpy(dir, name, base - name);
	dir[base - name] = '\0';
	last->name = base;
	last->len = name + len - base;
	last->hash = full_name_hash(base, last->len);
	err = path_lookup(dir, 0, nd);
	if (err)
		return err;
	if (!nd->dentry->d_inode || !S_ISDIR(nd->dentry->d_inode->i_mode))
		return -ENOTDIR;
	if (!last->len || (base[0] == '.' && (last->len == 1 || (last->len == 2 && base[1] == '.'))))
		return -EISDIR;		/* "/", "." or "..": not a name to create or remove */
	return 0;
}

/* ramfs_mknod(): a new name in dir, for a file or a directory. */
__kfunc struct dentry *ramfs_mknod(struct dentry *dir, struct qstr *last, umode_t mode)
{
	char path[DNAME_INLINE_LEN];
	struct inode *inode;
	struct dentry *d;
	unsigned long flags;
	unsigned int i;

	if (snprintf(path, sizeof(path), "%s/%.*s", dir->d_path, (int)last->len, last->name) >= (int)sizeof(added_paths[0]) ||
	    last->len >= sizeof(d->d_iname))
		return ERR_PTR(-ENAMETOOLONG);
	spin_lock_irqsave(&inode_lock, flags);
	i = disk_free_slot();
	if (i < NR_DISK) {
		strlcpy(added_paths[i], path, sizeof(added_paths[0]));
		disk[i].path = added_paths[i];
	}
	spin_unlock_irqrestore(&inode_lock, flags);
	if (i == NR_DISK)
		return ERR_PTR(-ENOSPC);
	inode = &file_inodes[i];
	memset(inode, 0, sizeof(*inode));
	inode->i_ino = 100 + i;
	inode->i_mode = mode;
	inode->i_uptodate = 1;
	inode->i_fop = S_ISDIR(mode) ? NULL : &generic_ro_fops;
	disk[i].mode = mode;
	disk[i].data = NULL;
	disk[i].size = 0;
	disk[i].fop = inode->i_fop;
	d = d_alloc(dir, last);
	if (!d) {
		disk[i].path = "";
		return ERR_PTR(-ENOMEM);
	}
	d_add(d, inode);
	return d;
}

__kfunc int may_open(struct nameidata *nd, int flag)
{
	struct inode *inode = nd->dentry->d_inode;

	if ((flag & O_DIRECTORY) && !S_ISDIR(inode->i_mode))
		return -ENOTDIR;
	if (S_ISDIR(inode->i_mode) && (flag & O_ACCMODE) != O_RDONLY)
		return -EISDIR;
	if ((flag & O_TRUNC) && S_ISREG(inode->i_mode))
		return do_truncate(inode, 0);
	return 0;
}

/* fs/namei.c: open_namei() with O_CREAT - the name is made if missing. */
__kfunc int open_namei_create(const char *pathname, int flag, int mode, struct nameidata *nd)
{
	struct qstr last;
	struct dentry *d;
	int err, created = 0;

	err = lookup_parent(pathname, nd, &last);
	if (err)
		return err;
	d = do_lookup(nd, &last);
	if (IS_ERR(d)) {
		if (PTR_ERR(d) != -ENOENT)
			return PTR_ERR(d);
		d = ramfs_mknod(nd->dentry, &last, S_IFREG | (mode & 07777 & ~current_umask));
		if (IS_ERR(d))
			return PTR_ERR(d);
		created = 1;
	} else if (flag & O_EXCL) {
		dput(d);
		return -EEXIST;
	}
	dput(nd->dentry);
	nd->dentry = d;
	if (!created && (err = permission(d->d_inode, (flag + 1) & O_ACCMODE)))
		return err;
	return may_open(nd, flag);
}

/* The dentry of an existing name (and its directory's, held in nd). */
static struct dentry *lookup_existing(const char *name, struct nameidata *nd, struct qstr *last)
{
	int err = lookup_parent(name, nd, last);

	if (err)
		return ERR_PTR(err);
	return do_lookup(nd, last);
}

__kfunc int vfs_unlink(struct dentry *d)
{
	struct inode *inode = d->d_inode;
	int i = disk_slot(inode);

	if (S_ISDIR(inode->i_mode))
		return -EISDIR;
	if (i < 0)
		return -EPERM;
	d_drop(d);
	disk[i].path = "";
	if (!inode->i_count) {
		truncate_inode_pages(inode, 0);
		inode->i_size = 0;
	}
	return 0;
}

__kfunc int vfs_rmdir(struct dentry *d)
{
	int i = disk_slot(d->d_inode);
	size_t n = strlen(d->d_path);

	if (!S_ISDIR(d->d_inode->i_mode))
		return -ENOTDIR;
	if (i < 0)
		return -ENOTEMPTY;	/* a directory that is only a prefix has entries */
	for (unsigned int j = 0; j < NR_DISK; j++)
		if (!strncmp(disk[j].path, d->d_path, n) && disk[j].path[n] == '/')
			return -ENOTEMPTY;
	d_drop(d);
	disk[i].path = "";
	return 0;
}

/* A name from user space, into buf. */
static long user_path(const char *filename, char *buf)
{
	long n = strncpy_from_user(buf, filename, PATH_MAX);

	if (n < 0)
		return n;
	return n ? 0 : -ENOENT;
}

static long unlink_or_rmdir(const char *pathname, int rmdir)
{
	char name[PATH_MAX];
	struct nameidata nd;
	struct qstr last;
	struct dentry *d;
	long err = user_path(pathname, name);

	if (err)
		return err;
	d = lookup_existing(name, &nd, &last);
	if (IS_ERR(d)) {
		err = PTR_ERR(d);
	} else {
		err = rmdir ? vfs_rmdir(d) : vfs_unlink(d);
		dput(d);
	}
	dput(nd.dentry);
	return err;
}

__kfunc long sys_unlink(const char *pathname)
{
	return unlink_or_rmdir(pathname, 0);
}

__kfunc long sys_rmdir(const char *pathname)
{
	return unlink_or_rmdir(pathname, 1);
}

/* Paths are resolved from /: dfd is not looked at. */
__kfunc long sys_unlinkat(int dfd, const char *pathname, int flag)
{
	(void)dfd;
	if (flag & ~AT_REMOVEDIR)
		return -EINVAL;
	return unlink_or_rmdir(pathname, flag & AT_REMOVEDIR);
}

__kfunc long sys_mkdir(const char *pathname, int mode)
{
	char name[PATH_MAX];
	struct nameidata nd;
	struct qstr last;
	struct dentry *d;
	long err = user_path(pathname, name);

	if (err)
		return err;
	err = lookup_parent(name, &nd, &last);
	if (err == -EISDIR)
		err = -EEXIST;
	if (!err) {
		d = do_lookup(&nd, &last);
		if (!IS_ERR(d)) {
			dput(d);
			err = -EEXIST;
		} else if (PTR_ERR(d) != -ENOENT) {
			err = PTR_ERR(d);
		} else {
			d = ramfs_mknod(nd.dentry, &last, S_IFDIR | (mode & 07777 & ~current_umask));
			err = IS_ERR(d) ? PTR_ERR(d) : 0;
			if (!err)
				dput(d);
		}
	}
	dput(nd.dentry);
	return err;
}

__kfunc long sys_mkdirat(int dfd, const char *pathname, int mode)
{
	(void)dfd;
	return sys_mkdir(pathname, mode);
}

/* fs/namei.c: vfs_rename() of a file (a directory: EXDEV, so mv copies it). */
__kfunc int vfs_rename(struct dentry *old, struct nameidata *newdir, struct qstr *newname)
{
	char path[DNAME_INLINE_LEN];
	struct dentry *target;
	int i = disk_slot(old->d_inode);

	if (S_ISDIR(old->d_inode->i_mode))
		return -EXDEV;
	if (i < 0)
		return -EPERM;
	if (snprintf(path, sizeof(path), "%s/%.*s", newdir->dentry->d_path, (int)newname->len,
		     newname->name) >= (int)sizeof(added_paths[0]))
		return -ENAMETOOLONG;
	target = do_lookup(newdir, newname);
	if (!IS_ERR(target)) {
		int err = target == old ? 0 : vfs_unlink(target);

		dput(target);
		if (err || target == old)
			return err;
	} else if (PTR_ERR(target) != -ENOENT) {
		return PTR_ERR(target);
	}
	d_drop(old);
	strlcpy(added_paths[i], path, sizeof(added_paths[0]));
	disk[i].path = added_paths[i];
	return 0;
}

__kfunc long sys_rename(const char *oldname, const char *newname)
{
	char oldbuf[PATH_MAX], newbuf[PATH_MAX];
	struct nameidata ond, nnd;
	struct qstr olast, nlast;
	struct dentry *old;
	long err;

	if ((err = user_path(oldname, oldbuf)) || (err = user_path(newname, newbuf)))
		return err;
	old = lookup_existing(oldbuf, &ond, &olast);
	if (IS_ERR(old)) {
		dput(ond.dentry);
		return PTR_ERR(old);
	}
	err = lookup_parent(newbuf, &nnd, &nlast);
	if (!err)
		err = vfs_rename(old, &nnd, &nlast);
	dput(nnd.dentry);
	dput(old);
	dput(ond.dentry);
	return err;
}

__kfunc long sys_renameat2(int olddfd, const char *oldname, int newdfd, const char *newname, unsigned int flags)
{
	(void)olddfd;
	(void)newdfd;
	if (flags)
		return -EINVAL;
	return sys_rename(oldname, newname);
}

__kfunc long sys_renameat(int olddfd, const char *oldname, int newdfd, const char *newname)
{
	return sys_renameat2(olddfd, oldname, newdfd, newname, 0);
}

__kfunc long sys_ftruncate(unsigned int fd, long length)
{
	struct file *f = fget(fd);
	long err;

	if (!f)
		return -EBADF;
	err = f->f_mode & FMODE_WRITE ? do_truncate(f->f_dentry->d_inode, length) : -EINVAL;
	fput(f);
	return err;
}

__kfunc long sys_truncate(const char *path, long length)
{
	long fd = sys_openat(AT_FDCWD, path, O_WRONLY, 0), err;

	if (fd < 0)
		return fd;
	err = sys_ftruncate(fd, length);
	sys_close(fd);
	return err;
}

__kfunc long sys_umask(int mask)
{
	unsigned int old = current_umask;

	current_umask = mask & 0777;
	return old;
}

/* access(2): everyone is root; only existence (and X for a file) is checked. */
__kfunc long sys_faccessat(int dfd, const char *filename, int mode)
{
	char name[PATH_MAX];
	struct nameidata nd;
	long err = user_path(filename, name);

	(void)dfd;
	if (err)
		return err;
	err = path_lookup(name, 0, &nd);
	if (!err && (mode & 1) && S_ISREG(nd.dentry->d_inode->i_mode) && !(nd.dentry->d_inode->i_mode & 0111))
		err = -EACCES;
	dput(nd.dentry);
	return err;
}

__kfunc long sys_access(const char *filename, int mode)
{
	return sys_faccessat(AT_FDCWD, filename, mode);
}
#endif

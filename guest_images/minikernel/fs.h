/*
 * fs.h - a tiny VFS: inodes, dentries, files, block devices and the
 * direct-I/O interface (linux/fs.h shaped).
 */
#ifndef _MK_FS_H
#define _MK_FS_H

#include "kernel.h"

#define O_ACCMODE	00000003
#define O_RDONLY	00000000
#define O_WRONLY	00000001
#define O_RDWR		00000002
#define O_CREAT		00000100
#define O_EXCL		00000200
#define O_TRUNC		00001000
#define O_APPEND	00002000
#define O_NONBLOCK	00004000
#define O_DIRECT	00040000
#define O_LARGEFILE	00100000
#define O_DIRECTORY	00200000
#define O_CLOEXEC	02000000

#define FMODE_READ	1
#define FMODE_WRITE	2

#define AT_FDCWD	-100

#define READ		0
#define WRITE		1

#define S_IFMT		00170000
#define S_IFREG		0100000
#define S_IFBLK		0060000
#define S_IFDIR		0040000
#define S_IFCHR		0020000
#define S_ISREG(m)	(((m) & S_IFMT) == S_IFREG)
#define S_ISDIR(m)	(((m) & S_IFMT) == S_IFDIR)
#define S_ISBLK(m)	(((m) & S_IFMT) == S_IFBLK)

#define PATH_MAX	256

struct file;
struct inode;
struct kiocb;
struct iovec;
struct block_device;
struct buffer_head;

struct file_operations {
	const char *name;
	ssize_t (*read)(struct file *, char *, size_t, loff_t *);
	ssize_t (*write)(struct file *, const char *, size_t, loff_t *);
	int (*open)(struct inode *, struct file *);
	int (*release)(struct inode *, struct file *);
};

struct address_space_operations {
	ssize_t (*direct_IO)(int rw, struct kiocb *iocb, const struct iovec *iov,
			     loff_t offset, unsigned long nr_segs);
};

struct inode {
	unsigned long i_ino;
	umode_t i_mode;
	loff_t i_size;
	const char *i_data;		/* contents of a regular file */
	int i_uptodate;			/* "page cache" filled */
	unsigned long i_atime;
	const struct file_operations *i_fop;
	const struct address_space_operations *i_aops;
	struct block_device *i_bdev;
#ifdef CONFIG_USERSPACE
	unsigned long *i_pages;		/* the page cache: a page of page addresses, or NULL */
	unsigned int i_nlink;		/* 0: unlinked, freed at the last close */
	int i_count;			/* open files */
#endif
};

struct qstr {
	const char *name;
	unsigned int len;
	unsigned int hash;
};

#define DNAME_INLINE_LEN 64
struct dentry {
	struct dentry *d_parent;
	struct dentry *d_hash_next;
	struct inode *d_inode;
	unsigned int d_hash;
	unsigned int d_len;
	char d_iname[24];		/* last component */
	char d_path[DNAME_INLINE_LEN];	/* full path (for lookups on "disk") */
	int d_count;
};

struct nameidata {
	struct dentry *dentry;
	struct qstr last;
	unsigned int flags;
	int depth;
};

struct file {
	struct dentry *f_dentry;
	const struct file_operations *f_op;
	loff_t f_pos;
	unsigned int f_flags;
	unsigned int f_mode;
	int f_count;
	struct task_struct *f_owner;
};

struct iovec {
	void *iov_base;
	size_t iov_len;
};

struct kiocb {
	struct file *ki_filp;
	loff_t ki_pos;
	void *private;
	int ki_users;
	struct task_struct *ki_task;
};

struct block_device {
	dev_t bd_dev;
	const char *bd_name;
	struct inode *bd_inode;
	unsigned int bd_block_size;
	unsigned int bd_blkbits;
	unsigned long bd_nr_sectors;
	u8 *bd_data;
	unsigned long bd_reads, bd_writes;
};

struct buffer_head {
	sector_t b_blocknr;
	size_t b_size;
	struct block_device *b_bdev;
	unsigned long b_state;
	char *b_data;
};

typedef int (get_blocks_t)(struct inode *inode, sector_t iblock,
			   unsigned long max_blocks, struct buffer_head *bh_result,
			   int create);
typedef void (dio_iodone_t)(struct kiocb *iocb, loff_t offset, ssize_t bytes,
			    void *private);

enum { DIO_LOCKING = 1, DIO_NO_LOCKING, DIO_OWN_LOCKING };

/* fs.c */
void vfs_init(void);
long sys_open(const char *filename, int flags, int mode);
long do_sys_open(int dfd, const char *filename, int flags, int mode);
long sys_close(unsigned int fd);
ssize_t sys_read(unsigned int fd, char *buf, size_t count);
ssize_t sys_write(unsigned int fd, const char *buf, size_t count);
ssize_t vfs_read(struct file *file, char *buf, size_t count, loff_t *pos);
ssize_t vfs_write(struct file *file, const char *buf, size_t count, loff_t *pos);
struct file *fget(unsigned int fd);
void fput(struct file *file);
struct file *open_exec(const char *name);
int kernel_read(struct file *file, unsigned long offset, char *addr, unsigned long count);
long path_lookup_recursive(const char *path, int depth);
ssize_t generic_file_read(struct file *file, char *buf, size_t count, loff_t *ppos);
ssize_t generic_file_write(struct file *file, const char *buf, size_t count, loff_t *ppos);
ssize_t sys_pread64(unsigned int fd, char *buf, size_t count, loff_t pos);
ssize_t sys_pwrite64(unsigned int fd, const char *buf, size_t count, loff_t pos);
char *getname(const char *filename);
void putname(const char *name);
unsigned int full_name_hash(const char *name, unsigned int len);
void init_files(struct files_struct *files);
void exit_files(struct task_struct *tsk);

/* blockdev.c */
void blkdev_init(void);
ssize_t __blockdev_direct_IO(int rw, struct kiocb *iocb, struct inode *inode,
			     struct block_device *bdev, const struct iovec *iov,
			     loff_t offset, unsigned long nr_segs, void *get_blocks,
			     void *end_io, int lock_type);
ssize_t blkdev_direct_IO(int rw, struct kiocb *iocb, const struct iovec *iov,
			 loff_t offset, unsigned long nr_segs);
extern const struct file_operations def_blk_fops;
extern const struct address_space_operations def_blk_aops;
extern struct block_device ram_bdev;

#endif
